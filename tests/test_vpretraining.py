"""The differentiable designer (V-Pretraining v2 Algorithm 1) and the forward-mode value of soft targets."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import vpt_gym  # noqa: F401
from vpt_gym.agents import make_designer
from vpt_gym.agents.vpretraining import TargetDesignerNet, VPretrainingDesigner
from vpt_gym.core import Task
from vpt_gym.learners import TorchLearner
from vpt_gym.lm.model import lm_forward
from vpt_gym.lm.soft_targets import GIVEN_TARGETS, SoftTargetTaskSpace, candidate_set, log_prob_jvp
from vpt_gym.lm.stream import TokenBatch
from vpt_gym.runner import run_episode
from vpt_gym.value import grad_dot

VOCAB, SEQ, K = 40, 9, 6


@pytest.fixture()
def tiny_float64():
    """A float64 GPT-2 learner, one batch, its logits, the soft-target task space and a random g_down."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                           resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, bos_token_id=0,
                                           eos_token_id=0)).double()
    learner = TorchLearner(model, forward_fn=lm_forward, lr=0.01, alignment="last1")
    ids = torch.randint(0, VOCAB, (3, SEQ), generator=gen)
    batch = TokenBatch(ids, torch.zeros(3, dtype=torch.int64), ("math",), 3, 3 * SEQ)
    space = SoftTargetTaskSpace(vocab_size=VOCAB, domain_names=("math",), top_k=K, alphas=(0.1, 0.5),
                                temperatures=(0.5, 2.0))
    g_down = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in learner.alignment_parameters()]
    return learner, batch, learner.forward(batch), space, g_down


def _explicit_dot(learner, batch, space, task, g_down) -> float:
    loss = space.loss(batch, learner.forward(batch), task)
    return float(grad_dot(g_down, learner.subset_gradient(loss)))


def test_forward_mode_values_match_explicit_per_task_gradients(tiny_float64):
    learner, batch, outputs, space, g_down = tiny_float64
    fast = space.linear_values(learner, batch, outputs, g_down, space.tasks)
    explicit = np.array([_explicit_dot(learner, batch, space, t, g_down) for t in space.tasks])
    assert len(space.tasks) == 7  # one-hot, 2 uniform, 2 x 2 self-distillation
    np.testing.assert_allclose(fast, explicit, rtol=1e-4, atol=1e-10)
    assert np.abs(fast - explicit).max() / np.abs(explicit).max() < 1e-4


def test_log_prob_jvp_is_the_directional_derivative(tiny_float64):
    learner, batch, outputs, space, g_down = tiny_float64
    cand = candidate_set(outputs[:, :-1], batch.input_ids[:, 1:], K)
    subset = dict(zip(learner.alignment_names, learner.alignment_parameters()))
    derivative = log_prob_jvp(learner.module, batch.input_ids, cand, subset, g_down)
    logp = torch.log_softmax(learner.forward(batch)[:, :-1], -1).gather(-1, cand)
    grads = torch.autograd.grad(logp[1, 4, 2], learner.alignment_parameters())
    assert float(derivative[1, 4, 2]) == pytest.approx(float(grad_dot(g_down, grads)), rel=1e-6)
    assert all(p.grad is None for p in learner.module.parameters())  # no .grad touched


def test_meta_gradient_matches_finite_differences(tiny_float64):
    """dJ/dphi of J(phi) = -g_down . g_pre(q_phi), analytic (via D) vs central differences (explicit g_pre)."""
    learner, batch, outputs, space, g_down = tiny_float64
    ids, gold = batch.input_ids, batch.input_ids[:, 1:]
    cand = candidate_set(outputs[:, :-1], gold, K)
    subset = dict(zip(learner.alignment_names, learner.alignment_parameters()))
    derivative = log_prob_jvp(learner.module, ids, cand, subset, g_down)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        net = TargetDesignerNet(vocab_size=VOCAB, context_length=16, width=8, heads=2, alpha_max=0.5,
                                alpha_init=0.2).double()

    def targets() -> torch.Tensor:
        r, alpha = net(ids, gold, cand)
        return (1 - alpha) * (cand == gold[..., None]).double() + alpha * r

    def explicit_objective() -> float:
        with torch.no_grad():
            q = targets()
        task = Task(name="designed", family=GIVEN_TARGETS, params={"candidates": cand, "q": q})
        return -_explicit_dot(learner, batch, space, task, g_down)

    analytic_objective = (targets() * derivative.double()).sum(-1).mean()
    assert float(analytic_objective.detach()) == pytest.approx(explicit_objective(), rel=1e-9)
    params = list(net.parameters())
    grads = torch.autograd.grad(analytic_objective, params)
    gen = torch.Generator().manual_seed(2)
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    analytic = float(grad_dot(grads, direction))
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(eps * d)
    plus = explicit_objective()
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.sub_(2 * eps * d)
    minus = explicit_objective()
    finite = (plus - minus) / (2 * eps)
    assert analytic == pytest.approx(finite, rel=1e-4)
    assert abs(analytic) > 1e-8  # the check is not vacuous


def test_designer_never_gives_the_learner_feedback_gradients_and_is_charged():
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=4, eval_items=1, max_new_tokens=4)
    base = env.unwrapped
    designer = VPretrainingDesigner(env, meta_period=2)
    designer.reset(0)
    obs, info = env.reset(seed=0)
    params = list(base.learner.module.parameters())
    for step in range(4):
        task = designer.act(obs, info)
        # after g_down (reset/refresh) and the meta update, no learner parameter holds a gradient
        assert step > 0 or all(p.grad is None for p in params)
        before = [p.detach().clone() for p in params]
        obs, reward, terminated, truncated, info = env.step(task)
        assert info["task"] == "vpretraining" and np.isfinite(reward)
        assert any(not torch.equal(b, p) for b, p in zip(before, params))
    ledger = info["ledger"]
    assert ledger["learner_updates"] == 4
    assert ledger["lookahead_forward"] == 2  # meta updates at decisions 0 and 2
    assert ledger["designer_backward"] == 2 and ledger["designer_forward"] == 4 + 2
    assert len(designer.meta_losses) == 2


def test_random_feedback_control_uses_a_same_norm_direction():
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=2, eval_items=1, max_new_tokens=4)
    designer = make_designer("vpretraining_random_feedback", env)
    env.reset(seed=0)
    direction = designer._random_direction()
    norm = lambda gs: float(torch.sqrt(sum((g.double() ** 2).sum() for g in gs)))  # noqa: E731
    assert norm(direction) == pytest.approx(norm(env.unwrapped.g_down), rel=1e-5)
    assert float(grad_dot(direction, env.unwrapped.g_down)) != pytest.approx(norm(direction) ** 2, rel=1e-2)
    row = run_episode(env, designer, seed=0)
    assert row["designer"] == "vpretraining_random_feedback" and row["ledger"]["learner_updates"] == 2


def test_the_hook_rejects_bad_tasks():
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=2, eval_items=1, max_new_tokens=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not accepted"):
        env.step(Task(name="bogus", family="no_such_family"))
    needs_grad = torch.zeros(8, 63, 4, requires_grad=True)
    with pytest.raises(ValueError, match="not accepted"):
        env.step(Task(name="x", family=GIVEN_TARGETS, params={"candidates": torch.zeros(8, 63, 4, dtype=torch.int64),
                                                             "q": needs_grad}))
    multi = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=4, updates_per_decision=2, eval_items=1,
                     max_new_tokens=4)
    multi.reset(seed=0)
    with pytest.raises(ValueError, match="updates_per_decision=1"):
        multi.step(VPretrainingDesigner(multi).act(None, {}))
    with pytest.raises(ValueError, match="soft-target LM env"):
        VPretrainingDesigner(gym.make("vpt/Toy-Alignment-v0"))
