"""Gradient alignment and the pluggable value estimators that turn one learner update into a reward.

The value of a pretraining task is the first-order predicted drop of the downstream loss after one learner
step theta+ = theta - eta * g_pre:  L_down(theta+) - L_down(theta) ~= -eta * g_down . g_pre, so
``V = eta * g_down,S . g_pre,S`` on the alignment parameter subset S.

Source: V-Pretraining (Ke & Fanti, arXiv 2601.22108), v1 Eq. 13-14 / v2 Eq. 8-9 (first-order value) and
v2 Eq. 28 (alignment on a parameter subset S).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

REWARD_CLIP = 1.0e6
"""Every reward is clipped to [-REWARD_CLIP, REWARD_CLIP] so it is finite in float32 (SB3 stores float32)."""


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> float32; float32 and float64 unchanged (no copy)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def grad_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inner product of two gradients given as matching lists of per-parameter tensors.

    Computed per parameter and summed (never by concatenating into one vector).

    Args:
        a: tensors of shapes [*param_shape_i], any float dtype, one device.
        b: tensors with the same shapes as ``a``.

    Returns:
        Scalar tensor, float64, on the device of ``a``: sum_i <a_i, b_i>.

    Raises:
        ValueError: if the lists differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"gradient lists differ in length: {len(a)} vs {len(b)}")
    if not a:
        return torch.zeros((), dtype=torch.float64)
    parts = [torch.dot(_at_least_float32(x).reshape(-1), _at_least_float32(y).reshape(-1))
             for x, y in zip(a, b, strict=True)]
    return torch.stack(parts).double().sum()


def grad_norm(a: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean norm of a gradient given as a list of per-parameter tensors.

    Returns:
        Scalar tensor, float64: sqrt(sum_i ||a_i||^2); 0 for an empty list.
    """
    if not a:
        return torch.zeros((), dtype=torch.float64)
    norms = torch._foreach_norm([_at_least_float32(x) for x in a])
    return torch.linalg.vector_norm(torch.stack(norms).double())


@dataclass(frozen=True, kw_only=True)
class GradientStats:
    """Alignment of one update, all plain floats.

    Attributes:
        dot: g_down,S . g_pre,S (unit: loss_down * loss_pre / param^2).
        alignment: eta * dot, the predicted one-step drop of L_down (unit: L_down, e.g. nats/token).
        cosine: dot / (|g_down,S| |g_pre,S|) in [-1, 1]; 0 when either norm is 0.
        g_pre_norm: |g_pre,S| >= 0.
        g_down_norm: |g_down,S| >= 0.
        loss: the pretraining loss of the update (nats/token), read in the same host sync; NaN when not given.
    """

    dot: float
    alignment: float
    cosine: float
    g_pre_norm: float
    g_down_norm: float
    loss: float = math.nan


def gradient_stats(g_down: Sequence[torch.Tensor], g_pre: Sequence[torch.Tensor], lr: float,
                   loss: torch.Tensor | None = None, g_down_norm: float | None = None) -> GradientStats:
    """Alignment statistics of one update (one host sync for all of them, the loss included).

    Args:
        g_down: feedback gradient on S, list of tensors [*param_shape_i].
        g_pre: pretraining gradient on S, same shapes.
        lr: learner step size eta > 0.
        loss: optional scalar pretraining loss of the update (any float dtype, any device), returned as
            ``stats.loss`` from the same device-to-host copy as the statistics.
        g_down_norm: |g_down| when the caller already has it (g_down is fixed between refreshes, so an env
            computes it once per refresh); ``None`` computes it here.

    Returns:
        :class:`GradientStats`. Source: V-Pretraining v2 Eq. 8-9 (value), Eq. 28 (subset S).
    """
    dot = grad_dot(g_down, g_pre)
    parts = [dot, grad_norm(g_pre).to(dot.device)]
    if g_down_norm is None:
        parts.append(grad_norm(g_down).to(dot.device))
    if loss is not None:
        parts.append(loss.detach().reshape(()).to(device=dot.device, dtype=dot.dtype))
    values = [float(x) for x in torch.stack(parts).cpu().tolist()]
    d, npre = values[:2]
    nd = float(g_down_norm) if g_down_norm is not None else values[2]
    denom = nd * npre
    cosine = d / denom if denom > 0 and math.isfinite(denom) else 0.0
    cosine = max(-1.0, min(1.0, cosine))
    return GradientStats(dot=d, alignment=lr * d, cosine=cosine, g_pre_norm=npre, g_down_norm=nd,
                         loss=values[-1] if loss is not None else math.nan)


def step_values(g_down: Sequence[torch.Tensor], g_applied: Sequence[torch.Tensor],
                preconditioner: Sequence[torch.Tensor] | None, theta_before: Sequence[torch.Tensor],
                theta_after: Sequence[torch.Tensor], lr: float) -> tuple[float, float]:
    """The optimizer-aware values of one update, read in one host sync.

    Args:
        g_down: feedback gradient on S, tensors [*param_shape_i].
        g_applied: the update's gradient on S as the optimizer applied it (after clipping), same shapes.
        preconditioner: P on S (AdamW: ``1 / (sqrt(v_hat_t) + eps)`` after the update), or ``None`` for P = 1.
        theta_before / theta_after: S before and after the optimizer step.
        lr: the step size eta > 0.

    Returns:
        ``(preconditioned, step_value)``, floats in units of L_down:
        ``preconditioned = eta * sum_S g_down * P * g`` (the first-order value of a preconditioned step,
        momentum left out; V-Pretraining v2 App. B.4; LESS, Xia et al. 2024, Adam influence) and
        ``step_value = g_down . (theta_t - theta_t+1)`` (the first-order value of the whole step actually
        taken, momentum and weight decay included; Taylor expansion of L_down at theta_t).
    """
    if preconditioner is None:
        pre = grad_dot(g_down, g_applied)
    else:
        pre = grad_dot(g_down, [p * g for p, g in zip(preconditioner, g_applied, strict=True)])
    delta = [_at_least_float32(b) - _at_least_float32(a) for b, a in zip(theta_before, theta_after, strict=True)]
    step = grad_dot(g_down, delta).to(pre.device)
    both = torch.stack([pre, step]).cpu().tolist()
    return float(lr) * float(both[0]), float(both[1])


@dataclass(frozen=True, kw_only=True)
class UpdateOutcome:
    """Everything an estimator may read about one learner update.

    Attributes:
        stats: gradient alignment of the chosen task's update.
        probe_loss_before / probe_loss_after: L_down on the episode's fixed probe batch before and after
            the update (None unless the estimator ``needs_probe_loss``).
        metric_before / metric_after: the feedback metric on the probe batch (None unless
            ``needs_probe_metric``).
        standard_alignment: eta * g_down,S . g_pre,S(standard task) on the same batch (None unless
            ``needs_standard_gradient``).
        preconditioned: eta * sum_S g_down * P * g of the applied step (:func:`step_values`).
        step_value: g_down,S . (theta_t - theta_t+1) of the applied step (:func:`step_values`).
    """

    stats: GradientStats
    probe_loss_before: float | None = None
    probe_loss_after: float | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    standard_alignment: float | None = None
    preconditioned: float | None = None
    step_value: float | None = None


@runtime_checkable
class ValueEstimator(Protocol):
    """Turns one learner update into a reward; declares what it needs and so what it costs.

    Attributes:
        name: registry name.
        needs_probe_loss: one extra feedback forward per update (probe loss after the update).
        needs_probe_metric: one feedback-metric evaluation (e.g. greedy decoding) per update.
        needs_standard_gradient: one extra look-ahead backward per update (the standard task's g_pre).
        reward_range: documented bounds of the reward.
    """

    name: str
    needs_probe_loss: bool
    needs_probe_metric: bool
    needs_standard_gradient: bool
    reward_range: tuple[float, float]

    def reward(self, outcome: UpdateOutcome) -> float:
        """The reward of one update (finite, inside ``reward_range``)."""


def _clip(x: float) -> float:
    if x != x:  # NaN
        return 0.0
    return max(-REWARD_CLIP, min(REWARD_CLIP, x))


@dataclass(frozen=True, kw_only=True)
class Branch:
    """One counterfactual update (:meth:`TaskDesignEnv.counterfactual`).

    Attributes:
        action: the action branched on (masked actions resolved to the standard task, as in ``step``).
        task: the task's name.
        outcome: what the env's value estimators read about the update (None: the update diverged).
        measured: ``measure(learner)`` after the update (e.g. the eval split's loss).
    """

    action: Any
    task: str
    outcome: UpdateOutcome | None
    measured: float


@dataclass(frozen=True)
class AlignmentValue:
    """``eta * g_down,S . g_pre,S``: predicted one-step drop of L_down. Extra cost: none (g_pre reused).

    Source: V-Pretraining v2 Eq. 8-9; Eq. 28 for the subset S. Range: clipped to +-REWARD_CLIP.
    """

    name: str = "alignment"
    needs_probe_loss: bool = False
    needs_probe_metric: bool = False
    needs_standard_gradient: bool = False
    reward_range: tuple[float, float] = (-REWARD_CLIP, REWARD_CLIP)

    def reward(self, outcome: UpdateOutcome) -> float:
        return _clip(outcome.stats.alignment)


@dataclass(frozen=True)
class CosineValue:
    """Cosine of g_down,S and g_pre,S, in [-1, 1] (0 when a norm is 0). Extra cost: none."""

    name: str = "cosine"
    needs_probe_loss: bool = False
    needs_probe_metric: bool = False
    needs_standard_gradient: bool = False
    reward_range: tuple[float, float] = (-1.0, 1.0)

    def reward(self, outcome: UpdateOutcome) -> float:
        cosine = outcome.stats.cosine
        return 0.0 if cosine != cosine else max(-1.0, min(1.0, cosine))


@dataclass(frozen=True)
class ValueGain:
    """Measured drop ``L_down(theta_t) - L_down(theta_t+1)`` on the fixed probe batch.

    Extra cost: one feedback forward per update (the loss before is the previous update's loss after).
    Range: clipped to +-REWARD_CLIP.
    """

    name: str = "value_gain"
    needs_probe_loss: bool = True
    needs_probe_metric: bool = False
    needs_standard_gradient: bool = False
    reward_range: tuple[float, float] = (-REWARD_CLIP, REWARD_CLIP)

    def reward(self, outcome: UpdateOutcome) -> float:
        assert outcome.probe_loss_before is not None and outcome.probe_loss_after is not None
        return _clip(outcome.probe_loss_before - outcome.probe_loss_after)


@dataclass(frozen=True)
class MetricGain:
    """Change of the non-differentiable feedback metric (e.g. exact-match pass rate) on the probe batch.

    Extra cost: one metric evaluation per update (for LMs: greedy decoding of the probe batch).
    Source: the non-differentiable feedback named as future work in V-Pretraining (v2 §6).
    Range: [-1, 1] for rate metrics; clipped to +-REWARD_CLIP in general.
    """

    name: str = "metric_gain"
    needs_probe_loss: bool = False
    needs_probe_metric: bool = True
    needs_standard_gradient: bool = False
    reward_range: tuple[float, float] = (-REWARD_CLIP, REWARD_CLIP)

    def reward(self, outcome: UpdateOutcome) -> float:
        assert outcome.metric_before is not None and outcome.metric_after is not None
        return _clip(outcome.metric_after - outcome.metric_before)


@dataclass(frozen=True)
class AdvantageValue:
    """``V(chosen task) - V(standard task)`` on the same batch and the same g_down.

    The batch-to-batch swing shared by all tasks cancels in the difference (docs/ARCHITECTURE.md §2).
    Extra cost: one look-ahead backward per update (the standard task's g_pre,S). Range: +-REWARD_CLIP.
    """

    name: str = "advantage"
    needs_probe_loss: bool = False
    needs_probe_metric: bool = False
    needs_standard_gradient: bool = True
    reward_range: tuple[float, float] = (-REWARD_CLIP, REWARD_CLIP)

    def reward(self, outcome: UpdateOutcome) -> float:
        assert outcome.standard_alignment is not None
        return _clip(outcome.stats.alignment - outcome.standard_alignment)


@dataclass(frozen=True)
class PreconditionedValue:
    """``eta * sum_S g_down * g / (sqrt(v_hat_t) + eps)``: the first-order value of an AdamW step.

    g is the update's gradient as the optimizer applied it (after clipping) and v_hat_t the bias-corrected
    second moment after this update; equal to ``alignment`` for an SGD learner without clipping. Extra
    cost: none (elementwise on S, read in the update's second host sync). Source: V-Pretraining v2 App. B.4
    (g_down^T P g_pre); LESS (Xia et al. 2024) Adam influence. Range: clipped to +-REWARD_CLIP.
    """

    name: str = "preconditioned"
    needs_probe_loss: bool = False
    needs_probe_metric: bool = False
    needs_standard_gradient: bool = False
    reward_range: tuple[float, float] = (-REWARD_CLIP, REWARD_CLIP)

    def reward(self, outcome: UpdateOutcome) -> float:
        assert outcome.preconditioned is not None
        return _clip(outcome.preconditioned)


VALUE_ESTIMATORS: dict[str, type] = {
    "alignment": AlignmentValue,
    "cosine": CosineValue,
    "value_gain": ValueGain,
    "metric_gain": MetricGain,
    "advantage": AdvantageValue,
    "preconditioned": PreconditionedValue,
}
"""Registry of value estimators by name."""


def make_value_estimator(reward: str | ValueEstimator) -> ValueEstimator:
    """A value estimator by registry name (or pass one through).

    Raises:
        ValueError: an unknown name (the message lists the accepted names).
    """
    if not isinstance(reward, str):
        if not isinstance(reward, ValueEstimator):
            raise ValueError(f"reward must be a name in {sorted(VALUE_ESTIMATORS)} or a ValueEstimator, got {reward!r}")
        return reward
    if reward not in VALUE_ESTIMATORS:
        raise ValueError(f"unknown reward {reward!r}; accepted: {sorted(VALUE_ESTIMATORS)}")
    return VALUE_ESTIMATORS[reward]()
