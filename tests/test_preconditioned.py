"""The optimizer-aware value: ``reward="preconditioned"`` and ``info["step_value"]`` against independent
computations (AdamW's second moment rebuilt from the applied gradients; parameter differences taken outside
the env), the SGD identity, and the preconditioned look-ahead (forward mode vs per-task backward vs by hand)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.value import VALUE_ESTIMATORS, PreconditionedValue, UpdateOutcome, gradient_stats, step_values


def _lm_env(**kwargs):
    return gym.make("vpt/LM-SoftTargets-v0", size="tiny", device="cpu", **kwargs).unwrapped


def test_registry_and_known_answer_of_step_values():
    assert VALUE_ESTIMATORS["preconditioned"] is PreconditionedValue
    g_down = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    g = [torch.tensor([0.5, -1.0]), torch.tensor([[2.0]])]
    p = [torch.tensor([2.0, 4.0]), torch.tensor([[0.25]])]
    before = [torch.tensor([1.0, 1.0]), torch.tensor([[0.0]])]
    after = [torch.tensor([0.5, 2.0]), torch.tensor([[-1.0]])]
    pre, step = step_values(g_down, g, p, before, after, lr=0.1)
    # sum g_down * P * g = 1*2*0.5 + 2*4*(-1) + 3*0.25*2 = 1 - 8 + 1.5 = -5.5; times lr
    assert pre == pytest.approx(-0.55)
    # g_down . (before - after) = 1*0.5 + 2*(-1) + 3*1 = 1.5
    assert step == pytest.approx(1.5)
    pre_identity, _ = step_values(g_down, g, None, before, after, lr=0.1)
    assert pre_identity == pytest.approx(0.1 * (0.5 - 2.0 + 6.0))
    stats = gradient_stats(g_down, g, 0.1)
    assert PreconditionedValue().reward(UpdateOutcome(stats=stats, preconditioned=-0.55)) == pytest.approx(-0.55)


def test_toy_sgd_preconditioned_equals_alignment_and_step_value():
    """Plain SGD without clipping: P = 1 and theta_t - theta_t+1 = eta g, so all three values coincide."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=8, reward="preconditioned")
    env.reset(seed=3)
    for action in [0, 1, 2, 3, 4, 1, 2, 0]:
        _, reward, _, _, info = env.step(action)
        assert reward == pytest.approx(info["alignment"], rel=1e-12)
        assert info["step_value"] == pytest.approx(info["alignment"], rel=1e-9)
        assert info["preconditioned"] == reward


def test_lm_preconditioned_matches_adamw_state_rebuilt_from_the_applied_gradients():
    """reward = eta * sum_S g_down * g_t / (sqrt(v_t / (1 - beta2^t)) + eps), with v_t rebuilt here from the
    clipped gradients of every update (not read from the optimizer), and step_value = g_down . (theta_t -
    theta_t+1) from parameter copies taken outside the env."""
    env = _lm_env(budget=6, reward="preconditioned", feedback_period=100)
    env.reset(seed=0)
    learner = env.learner
    subset = learner.alignment_parameters()
    group = learner.optimizer.param_groups[0]
    beta2, eps, lr = group["betas"][1], group["eps"], learner.lr
    g_down = [g.clone() for g in env.g_down]  # fixed: no refresh within the episode (period 100)
    v = [torch.zeros_like(p) for p in subset]
    for t, action in enumerate([0, 3, 5, 1, 6, 0], start=1):
        theta_before = [p.detach().clone() for p in subset]
        _, reward, _, _, info = env.step(action)
        applied = [p.grad.detach().clone() for p in subset]  # clipped in place by the optimizer step
        v = [beta2 * vi + (1 - beta2) * gi * gi for vi, gi in zip(v, applied)]
        expected = lr * sum(float((gd * gi / ((vi / (1 - beta2**t)).sqrt() + eps)).double().sum())
                            for gd, gi, vi in zip(g_down, applied, v))
        assert reward == pytest.approx(expected, rel=1e-5)
        step = sum(float((gd.double() * (b.double() - p.detach().double())).sum())
                   for gd, b, p in zip(g_down, theta_before, subset))
        assert info["step_value"] == pytest.approx(step, rel=1e-4, abs=1e-9)
        assert info["alignment"] != pytest.approx(reward, rel=0.5)  # AdamW's step is not eta * g_pre


def test_lm_preconditioned_lookahead_forward_mode_equals_per_task_backward_and_hand_computation():
    env = _lm_env(budget=8, reward="preconditioned")
    env.reset(seed=1)
    for action in (0, 2):
        env.step(action)
    forward = env.lookahead_values()
    env.forward_mode_lookahead = False
    backward = env.lookahead_values()
    np.testing.assert_allclose(forward, backward, rtol=2e-4, atol=1e-10)
    # by hand for the standard task: P from AdamW's state, g_pre of one_hot by autograd on a fresh forward
    learner = env.learner
    group = learner.optimizer.param_groups[0]
    subset = learner.alignment_parameters()
    p = []
    for param in subset:
        state = learner.optimizer.state[param]
        v_hat = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
        p.append(1.0 / (v_hat.sqrt() + group["eps"]))
    outputs = learner.forward(env.pending_batch)
    loss = env.task_space.loss(env.pending_batch, outputs, env.task_space.tasks[0])
    g_task = torch.autograd.grad(loss, subset)
    by_hand = learner.lr * sum(float((pi * gd * gt).double().sum()) for pi, gd, gt in zip(p, env.g_down, g_task))
    assert forward[0] == pytest.approx(by_hand, rel=2e-4)
    alignment = env.lookahead_values(value="alignment")
    assert not np.allclose(alignment, forward)
    with pytest.raises(ValueError, match="value='bogus'"):
        env.lookahead_values(value="bogus")


def test_preconditioned_is_accepted_by_every_learner_env_factory():
    for env_id in ("vpt/Toy-Alignment-v0", "vpt/LM-SoftTargets-v0", "vpt/LM-Domains-v0"):
        kwargs = {} if "Toy" in env_id else {"size": "tiny", "device": "cpu"}
        env = gym.make(env_id, budget=2, reward="preconditioned", **kwargs)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(env.unwrapped.standard_action)
        assert np.isfinite(reward) and reward == info["preconditioned"]
        env.close()


def test_feedback_momentum_is_a_running_average_of_the_fresh_g_down():
    """Same seed and actions: the learner and feedback draws are identical, so the averaged env's g_down must
    be beta * (its previous g_down) + (1 - beta) * (the plain env's fresh g_down) at every refresh."""
    beta = 0.75
    fresh = gym.make("vpt/Toy-Alignment-v0", budget=6, feedback_period=1).unwrapped
    averaged = gym.make("vpt/Toy-Alignment-v0", budget=6, feedback_period=1, feedback_momentum=beta).unwrapped
    fresh.reset(seed=4)
    averaged.reset(seed=4)
    assert torch.equal(fresh.g_down[0], averaged.g_down[0])  # the first refresh has no history
    expected = fresh.g_down[0].clone()
    for action in [1, 2, 3, 4, 0]:
        fresh.step(action)
        averaged.step(action)
        expected = beta * expected + (1 - beta) * fresh.g_down[0]
        torch.testing.assert_close(averaged.g_down[0], expected, rtol=1e-12, atol=0.0)
        assert torch.equal(fresh.learner.module.theta, averaged.learner.module.theta)
    with pytest.raises(ValueError, match="feedback_momentum"):
        gym.make("vpt/Toy-Alignment-v0", feedback_momentum=1.0)
    with pytest.raises(ValueError, match="feedback_momentum"):
        gym.make("vpt/LM-SoftTargets-v0", size="tiny", feedback_momentum=-0.1)
