"""Known answers of vpt_gym.value, and the toy env's analytic value (docs/ARCHITECTURE.md §2 reward)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.envs.task_design.env import _generators
from vpt_gym.envs.toy import ToyFeedback
from vpt_gym.value import (
    REWARD_CLIP,
    VALUE_ESTIMATORS,
    AdvantageValue,
    AlignmentValue,
    CosineValue,
    GradientStats,
    MetricGain,
    UpdateOutcome,
    ValueEstimator,
    ValueGain,
    grad_dot,
    grad_norm,
    gradient_stats,
    make_value_estimator,
)

# A gradient over three parameter tensors of different shapes.
G = [
    torch.tensor([[1.0, -2.0], [0.5, 3.0]]),
    torch.tensor([4.0, 0.0, -1.0]),
    torch.tensor(2.0),
]
G_SQUARED_NORM = 1.0 + 4.0 + 0.25 + 9.0 + 16.0 + 0.0 + 1.0 + 4.0  # 35.25


def _stats(**overrides: float) -> GradientStats:
    values = dict(dot=2.0, alignment=0.2, cosine=0.5, g_pre_norm=2.0, g_down_norm=2.0)
    values.update(overrides)
    return GradientStats(**values)


# ------------------------------------------------------------------------------------ grad_dot / grad_norm
def test_identical_gradients() -> None:
    assert float(grad_dot(G, G)) == G_SQUARED_NORM
    # float32 inputs: norms are exact to float32 rounding.
    assert float(grad_norm(G)) == pytest.approx(math.sqrt(G_SQUARED_NORM), rel=1e-6)
    stats = gradient_stats(G, [g.clone() for g in G], lr=0.01)
    assert stats.cosine == pytest.approx(1.0, abs=1e-6)
    assert stats.cosine <= 1.0
    assert stats.alignment == pytest.approx(0.01 * G_SQUARED_NORM, rel=1e-12)
    assert stats.dot == G_SQUARED_NORM
    assert stats.g_pre_norm == stats.g_down_norm == pytest.approx(math.sqrt(G_SQUARED_NORM), rel=1e-6)


def test_orthogonal_gradients() -> None:
    # Orthogonal as a whole although each tensor pair is not: <a0,b0> = 3, <a1,b1> = -3.
    a = [torch.tensor([1.0, 1.0]), torch.tensor([[1.0], [2.0]])]
    b = [torch.tensor([1.0, 2.0]), torch.tensor([[-1.0], [-1.0]])]
    assert float(grad_dot(a, b)) == 0.0
    stats = gradient_stats(a, b, lr=0.1)
    assert stats.cosine == 0.0
    assert stats.alignment == 0.0
    assert stats.g_down_norm == pytest.approx(math.sqrt(7.0), rel=1e-6)
    assert stats.g_pre_norm == pytest.approx(math.sqrt(7.0), rel=1e-6)


def test_opposite_gradients() -> None:
    stats = gradient_stats(G, [-g for g in G], lr=0.5)
    assert stats.cosine == pytest.approx(-1.0, abs=1e-6)
    assert stats.cosine >= -1.0
    assert stats.dot == -G_SQUARED_NORM
    assert stats.alignment == pytest.approx(-0.5 * G_SQUARED_NORM, rel=1e-12)


@pytest.mark.parametrize("zero_side", ["down", "pre", "both"])
def test_zero_gradient_gives_zero_cosine(zero_side: str) -> None:
    zero = [torch.zeros_like(g) for g in G]
    g_down = zero if zero_side in ("down", "both") else G
    g_pre = zero if zero_side in ("pre", "both") else G
    stats = gradient_stats(g_down, g_pre, lr=1.0)
    assert stats.cosine == 0.0
    assert stats.dot == 0.0 and stats.alignment == 0.0
    assert math.isfinite(stats.cosine)


def test_given_g_down_norm_and_loss_give_the_same_stats_in_one_copy() -> None:
    """An env passes |g_down| cached at the refresh and the update's loss: the same numbers, bitwise."""
    g_pre = [2.0 * g + 0.5 for g in G]
    plain = gradient_stats(G, g_pre, lr=0.1)
    cached = gradient_stats(G, g_pre, lr=0.1, loss=torch.tensor(2.5, dtype=torch.float32),
                            g_down_norm=float(grad_norm(G)))
    assert (cached.dot, cached.cosine, cached.g_pre_norm, cached.g_down_norm) == (
        plain.dot, plain.cosine, plain.g_pre_norm, plain.g_down_norm)
    assert cached.loss == 2.5 and math.isnan(plain.loss)


def test_grad_dot_returns_float64_scalar_and_rejects_length_mismatch() -> None:
    dot = grad_dot(G, G)
    assert dot.dtype == torch.float64 and dot.shape == ()
    assert grad_norm(G).dtype == torch.float64
    assert float(grad_dot([], [])) == 0.0 and float(grad_norm([])) == 0.0
    with pytest.raises(ValueError, match="3 vs 2"):
        grad_dot(G, G[:2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_stats_matches_float64_hand_computation(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (13,), (3, 2, 4), ()]
    g_down = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    g_pre = [torch.randn(s, generator=gen, dtype=torch.float64) + 0.3 * d for s, d in zip(shapes, g_down)]
    # Hand computation in float64 on the inputs as the learner holds them (rounded to ``dtype``).
    down = torch.cat([g.to(dtype).double().reshape(-1) for g in g_down]).tolist()
    pre = torch.cat([g.to(dtype).double().reshape(-1) for g in g_pre]).tolist()
    dot = math.fsum(x * y for x, y in zip(down, pre))
    n_down = math.sqrt(math.fsum(x * x for x in down))
    n_pre = math.sqrt(math.fsum(y * y for y in pre))
    lr = 3e-3
    stats = gradient_stats([g.to(dtype) for g in g_down], [g.to(dtype) for g in g_pre], lr)
    # float32 gradients: float32 products; float64 gradients must keep float64 precision.
    rel = 1e-6 if dtype == torch.float32 else 1e-12
    assert stats.dot == pytest.approx(dot, rel=rel)
    assert stats.alignment == pytest.approx(lr * dot, rel=rel)
    assert stats.g_down_norm == pytest.approx(n_down, rel=rel)
    assert stats.g_pre_norm == pytest.approx(n_pre, rel=rel)
    assert stats.cosine == pytest.approx(dot / (n_down * n_pre), rel=rel)
    assert 0.0 < stats.cosine < 1.0
    assert all(type(v) is float for v in (stats.dot, stats.alignment, stats.cosine, stats.g_pre_norm,
                                          stats.g_down_norm))


# -------------------------------------------------------------------------------------------- estimators
def test_estimator_rewards_on_hand_built_outcome() -> None:
    outcome = UpdateOutcome(
        stats=_stats(alignment=0.125, cosine=-0.25),
        probe_loss_before=2.5,
        probe_loss_after=2.0,
        metric_before=0.25,
        metric_after=0.75,
        standard_alignment=0.5,
    )
    assert AlignmentValue().reward(outcome) == 0.125
    assert CosineValue().reward(outcome) == -0.25
    assert ValueGain().reward(outcome) == 0.5  # before - after: a drop of L_down is positive
    assert MetricGain().reward(outcome) == 0.5  # after - before: a rise of the metric is positive
    assert AdvantageValue().reward(outcome) == -0.375  # V(chosen) - V(standard)


def test_estimator_costs_are_declared() -> None:
    needs = {name: (cls().needs_probe_loss, cls().needs_probe_metric, cls().needs_standard_gradient)
             for name, cls in VALUE_ESTIMATORS.items()}
    assert needs == {
        "alignment": (False, False, False),
        "cosine": (False, False, False),
        "value_gain": (True, False, False),
        "metric_gain": (False, True, False),
        "advantage": (False, False, True),
        "preconditioned": (False, False, False),
    }
    assert CosineValue().reward_range == (-1.0, 1.0)
    for name, cls in VALUE_ESTIMATORS.items():
        est = cls()
        assert est.name == name
        assert isinstance(est, ValueEstimator)


@pytest.mark.parametrize("value, expected", [
    (1e9, REWARD_CLIP), (-1e9, -REWARD_CLIP), (math.inf, REWARD_CLIP), (-math.inf, -REWARD_CLIP),
    (math.nan, 0.0), (REWARD_CLIP * 0.5, REWARD_CLIP * 0.5),
])
def test_reward_clip_and_nan(value: float, expected: float) -> None:
    assert AlignmentValue().reward(UpdateOutcome(stats=_stats(alignment=value))) == expected
    assert ValueGain().reward(UpdateOutcome(stats=_stats(), probe_loss_before=value, probe_loss_after=0.0)) == expected
    assert MetricGain().reward(UpdateOutcome(stats=_stats(), metric_before=0.0, metric_after=value)) == expected
    assert AdvantageValue().reward(UpdateOutcome(stats=_stats(alignment=value), standard_alignment=0.0)) == expected


def test_reward_clip_is_inside_float32() -> None:
    assert np.isfinite(np.float32(REWARD_CLIP))
    for name in VALUE_ESTIMATORS:
        low, high = make_value_estimator(name).reward_range
        assert -REWARD_CLIP <= low < high <= REWARD_CLIP


def test_make_value_estimator() -> None:
    for name, cls in VALUE_ESTIMATORS.items():
        assert isinstance(make_value_estimator(name), cls)
    custom = AlignmentValue(name="custom")
    assert make_value_estimator(custom) is custom
    with pytest.raises(ValueError) as excinfo:
        make_value_estimator("nope")
    message = str(excinfo.value)
    assert "'nope'" in message
    for name in ("alignment", "cosine", "value_gain", "metric_gain", "advantage"):
        assert name in message
    with pytest.raises(ValueError, match="ValueEstimator"):
        make_value_estimator(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- toy: analytic value
def _toy(reward: str) -> gym.Env:
    return gym.make("vpt/Toy-Alignment-v0", budget=16, reward=reward)


def _hand_values(base) -> list[tuple[float, float]]:
    """(alignment, exact probe drop) of every menu task for the pending batch, in float64 by hand."""
    theta = base.learner.module.theta.detach().clone()
    eta = base.learner.lr
    g_down = torch.cat([g.reshape(-1) for g in base.g_down]).double()
    y_probe = base.feedback.probe_batch().y
    g_probe = theta - y_probe.mean(dim=0)
    values = []
    for task in base.task_space.tasks:
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        alignment = eta * float(g_down @ g_pre)
        drop = eta * float(g_probe @ g_pre) - 0.5 * eta**2 * float(g_pre @ g_pre)
        values.append((alignment, drop))
    return values


def test_toy_g_down_is_the_feedback_gradient_at_theta0() -> None:
    """After reset, g_down = theta_0 - mean(y) of the first feedback batch drawn after the probe."""
    env = _toy("alignment")
    base = env.unwrapped
    seed = 21
    env.reset(seed=seed)
    feedback = ToyFeedback(base.feedback.world)
    feedback.reset(_generators(seed, 4)[3])  # the env's feedback generator: draws the probe first
    y = feedback.sample_batch().y
    assert torch.equal(feedback.probe_batch().y, base.feedback.probe_batch().y)
    expected = base.learner.module.theta.detach() - y.mean(dim=0)
    assert len(base.g_down) == 1
    assert torch.allclose(base.g_down[0], expected, rtol=0, atol=1e-12)


def test_toy_alignment_matches_hand_computation() -> None:
    """info["alignment"] = eta (theta - mean y_feedback) . (theta - mean x_task), float64, to ~1e-9."""
    env = _toy("alignment")
    base = env.unwrapped
    env.reset(seed=3)
    actions = [0, 1, 2, 3, 4, 2, 0, 4, 1, 3]  # crosses a g_down refresh (feedback_period 8)
    for step, action in enumerate(actions):
        expected_alignment, _ = _hand_values(base)[action]
        _, reward_value, _, _, info = env.step(action)
        assert info["alignment"] == pytest.approx(expected_alignment, rel=1e-9, abs=1e-12), f"step {step}"
        assert reward_value == info["alignment"]


def test_toy_value_gain_is_exact_quadratic_drop() -> None:
    """With SGD the value_gain reward is eta g_probe . g - eta^2 |g|^2 / 2 exactly (L_down is quadratic)."""
    env = _toy("value_gain")
    base = env.unwrapped
    assert type(base.learner.optimizer) is torch.optim.SGD
    env.reset(seed=3)
    actions = [0, 1, 2, 3, 4, 2, 0, 4, 1, 3]
    for step, action in enumerate(actions):
        _, expected_drop = _hand_values(base)[action]
        theta_before = base.learner.module.theta.detach().clone()
        batch = base.pending_batch
        _, reward_value, _, _, info = env.step(action)
        assert reward_value == pytest.approx(expected_drop, rel=1e-9, abs=1e-12), f"step {step}"
        # The update itself is plain SGD on the task's pretraining gradient: theta+ = theta - eta g_pre.
        g_pre = theta_before - base.task_space.samples(batch, base.task_space.tasks[action]).mean(dim=0)
        theta_after = base.learner.module.theta.detach()
        assert torch.allclose(theta_after, theta_before - base.learner.lr * g_pre, rtol=0, atol=1e-12)
        assert info["task"] == base.task_space.tasks[action].name


def test_toy_value_gain_equals_probe_loss_difference() -> None:
    """The value_gain reward is L_down(theta_t) - L_down(theta_t+1) on the episode's fixed probe batch."""
    env = _toy("value_gain")
    base = env.unwrapped
    env.reset(seed=9)
    y = base.feedback.probe_batch().y

    def probe_loss() -> float:
        theta = base.learner.module.theta.detach()
        return float(0.5 * ((theta[None, :] - y) ** 2).sum(dim=1).mean())

    for action in (4, 3, 2, 1, 0):
        before = probe_loss()
        _, reward_value, _, _, info = env.step(action)
        assert reward_value == pytest.approx(before - probe_loss(), rel=1e-9, abs=1e-12)
        # Probe: one forward at reset, then one per update.
    assert info["ledger"]["feedback_forward"] == 1 + 1 + 5  # g_down refresh + probe at reset + 5 probes
