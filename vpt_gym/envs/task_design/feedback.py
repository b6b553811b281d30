"""The feedback side of :class:`~vpt_gym.envs.task_design.TaskDesignEnv`: g_down refreshes, probes, outcomes.

g_down is the gradient of L_down on a feedback batch, on the alignment subset S only, refreshed every
``feedback_period`` decisions (V-Pretraining v2 Eq. 8-9, 28); probes measure L_down or the metric on the
episode's fixed probe batch for the ``value_gain``/``metric_gain`` rewards. Every pass and every feedback
example read is charged in the ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from vpt_gym.core import Task
from vpt_gym.value import GradientStats, UpdateOutcome, grad_norm

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from vpt_gym.budget import Ledger
    from vpt_gym.value import ValueEstimator


class FeedbackMixin:
    """The feedback methods of :class:`~vpt_gym.envs.task_design.TaskDesignEnv` (which holds the state)."""

    if TYPE_CHECKING:  # the host env's attributes these methods read and write (declared for the type checker)
        feedback: Any  # a FeedbackSet, with task_losses/weights when domain-matched
        learner: Any  # a Learner, optionally with grad_only_on_subset
        value_estimator: ValueEstimator
        ema_decay: float
        feedback_momentum: float
        _ledger: Ledger
        _matched: bool
        _subset_only: Callable[[], AbstractContextManager[None]] | None
        _g_down: list[torch.Tensor]
        _g_tasks: dict[str, list[torch.Tensor]] | None
        _g_down_norm: float
        _feedback_loss: float
        _ema_fb: float | None
        _probe_loss: float
        _probe_metric: float

    def _charge_feedback_data(self, batch: Any) -> None:
        """Count a feedback batch's examples and tokens in the ledger (batches without counts add 0)."""
        self._ledger.feedback_examples += int(getattr(batch, "num_examples", 0))
        self._ledger.feedback_tokens += int(getattr(batch, "num_tokens", 0))

    def _refresh_feedback(self) -> bool:
        """Recompute g_down on a fresh feedback batch; False when it is non-finite."""
        batch = self.feedback.sample_batch()
        self._charge_feedback_data(batch)
        only_subset = self._subset_only  # no autograd graph below S
        with only_subset() if only_subset is not None else contextlib.nullcontext():
            return self._feedback_gradient(batch)

    def _feedback_gradient(self, batch: Any) -> bool:
        if self._matched:  # per-task g_j cached for domain-matched alignment; g_down = sum_j omega_j g_j
            losses = self.feedback.task_losses(self.learner, batch)
            omega = self.feedback.weights
            old = self._g_tasks or {}
            self._g_tasks = {
                j: self._running_average(old.get(j), [g.detach() for g in self.learner.subset_gradient(lj)])
                for j, lj in losses.items()
            }
            self._g_down = self._combine({j: omega[j] for j in losses})
            loss = sum(omega[j] * lj.detach() for j, lj in losses.items())
            self._ledger.feedback_forward += len(losses)
            self._ledger.feedback_backward += len(losses)
        else:
            loss = self.feedback.loss(self.learner, batch)
            self._g_down = self._running_average(self._g_down, [g.detach() for g in self.learner.subset_gradient(loss)])
            self._ledger.feedback_forward += 1
            self._ledger.feedback_backward += 1
        both = torch.stack([loss.detach().double().reshape(()), grad_norm(self._g_down).double()]).cpu().tolist()
        self._feedback_loss, self._g_down_norm = (float(x) for x in both)  # one host sync per refresh
        if not (np.isfinite(self._feedback_loss) and np.isfinite(self._g_down_norm)):
            return False
        d = self.ema_decay
        self._ema_fb = self._feedback_loss if self._ema_fb is None else d * self._ema_fb + (1 - d) * self._feedback_loss
        return True

    def _running_average(self, old: list[torch.Tensor] | None, new: list[torch.Tensor]) -> list[torch.Tensor]:
        """beta * old + (1 - beta) * new with beta = ``feedback_momentum`` (``new`` at the first refresh)."""
        beta = self.feedback_momentum
        if old is None or beta == 0.0:
            return new
        return [o.mul(beta).add_(n, alpha=1.0 - beta) for o, n in zip(old, new, strict=True)]

    def _combine(self, coefficients: dict[str, float]) -> list[torch.Tensor]:
        """sum_j coefficients[j] * g_j over the cached per-task feedback gradients (domain-matched mode)."""
        g_tasks = cast(dict[str, list[torch.Tensor]], self._g_tasks)  # filled by the refresh that calls this
        out = [torch.zeros_like(g) for g in next(iter(g_tasks.values()))]
        for j, c in coefficients.items():
            if c != 0.0:
                for acc, g in zip(out, g_tasks[j], strict=True):
                    acc.add_(g, alpha=float(c))
        return out

    def _g_down_for(self, task: Task) -> list[torch.Tensor]:
        """The feedback gradient that scores an update of ``task``: g_down, or its domain-matched version."""
        if not self._matched:
            return self._g_down
        return self._combine(self.feedback.matched_weights(task))

    def _measure_probe(self, measure: Callable[[Any, Any], Any]) -> float:
        """``measure(learner, probe_batch)`` (the feedback loss or metric) without autograd, charged as one
        feedback forward on the probe batch."""
        batch = self.feedback.probe_batch()
        with torch.no_grad():
            value = float(measure(self.learner, batch))
        self._ledger.feedback_forward += 1
        self._charge_feedback_data(batch)
        return value

    def _outcome(self, stats: GradientStats, std_alignment: float | None, *, preconditioned: float | None = None,
                 step_value: float | None = None, probe_loss: bool = False) -> UpdateOutcome:
        est = self.value_estimator
        before_loss = after_loss = before_metric = after_metric = None
        if est.needs_probe_loss or probe_loss:
            before_loss, after_loss = self._probe_loss, self._measure_probe(self.feedback.loss)
            self._probe_loss = after_loss
        if est.needs_probe_metric:
            before_metric, after_metric = self._probe_metric, self._measure_probe(self.feedback.metric)
            self._probe_metric = after_metric
        return UpdateOutcome(
            stats=stats,
            probe_loss_before=before_loss,
            probe_loss_after=after_loss,
            metric_before=before_metric,
            metric_after=after_metric,
            standard_alignment=std_alignment,
            preconditioned=preconditioned,
            step_value=step_value,
        )
