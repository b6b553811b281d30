"""The feedback side of :class:`~vpt_gym.envs.task_design.TaskDesignEnv`, as two components that own their
state: :class:`FeedbackGradient` (g_down refreshes) and :class:`FeedbackProbe` (probe measurements, outcomes).

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

from vpt_gym.core import DomainMatchedFeedback, SubsetOnlyGradients, Task, capability
from vpt_gym.value import GradientStats, UpdateOutcome, grad_norm

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from vpt_gym.budget import Ledger
    from vpt_gym.value import ValueEstimator

__all__ = ["FeedbackGradient", "FeedbackProbe", "charge_feedback_data"]


def charge_feedback_data(ledger: Ledger, batch: Any) -> None:
    """Count a feedback batch's examples and tokens in ``ledger`` (batches without counts add 0)."""
    ledger.feedback_examples += int(getattr(batch, "num_examples", 0))
    ledger.feedback_tokens += int(getattr(batch, "num_tokens", 0))


class FeedbackGradient:
    """g_down on the alignment subset S, refreshed on fresh feedback batches; owns its state.

    One refresh: a feedback batch, L_down on it (``feedback.loss``), and g_down = grad_S L_down
    (``learner.subset_gradient``; inside ``subset_only()`` when the learner can stop the backward at S), as a
    running average ``g_down <- beta * g_down + (1 - beta) * g_new`` across the refreshes of an episode
    (beta = ``momentum``; 0: the fresh gradient). With domain-matched feedback
    (:class:`~vpt_gym.core.DomainMatchedFeedback`) each task's g_j is kept and ``g_down = sum_j omega_j g_j``;
    :meth:`for_task` gives the gradient that scores an update of a task (V-Pretraining v2 Eq. 44-46).
    Source: V-Pretraining v2 Eq. 8-9 (g_down), Eq. 28 (the subset S).

    State (from :meth:`reset`): ``g_down`` (list of tensors [*param_shape_i], learner dtype and device),
    ``norm`` (|g_down,S|, float), ``loss`` (L_down of the last refresh), ``ema_loss`` (its EMA, decay
    ``ema_decay``; None before the first refresh). Every pass and feedback example is charged in the ledger
    given to :meth:`reset`. Build one with :meth:`for_parts` (it resolves ``matched`` and ``subset_only``).

    Raises:
        ValueError: ``momentum`` or ``ema_decay`` outside [0, 1) (at construction).
    """

    def __init__(self, feedback: Any, learner: Any, *, matched: bool,
                 subset_only: Callable[[], AbstractContextManager[None]] | None, momentum: float,
                 ema_decay: float) -> None:
        for name, value in (("momentum", momentum), ("ema_decay", ema_decay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        self.feedback = feedback
        self.learner = learner
        self.matched = bool(matched)
        self.momentum = float(momentum)
        self.ema_decay = float(ema_decay)
        self._subset_only = subset_only
        self._ledger: Ledger | None = None
        self._g_down: list[torch.Tensor] | None = None
        self._g_tasks: dict[str, list[torch.Tensor]] | None = None
        self.norm = 0.0
        self.loss = float("nan")
        self.ema_loss: float | None = None

    @classmethod
    def for_parts(cls, feedback: Any, learner: Any, *, momentum: float = 0.0,
                  ema_decay: float = 0.9) -> FeedbackGradient:
        """The component for these parts, their optional capabilities resolved (``DomainMatchedFeedback`` on
        ``feedback``, ``SubsetOnlyGradients`` on ``learner``): what :class:`TaskDesignEnv` builds when no
        ``feedback_gradient`` is given, and what a user subclasses and passes in to change how g_down is kept.

        Args:
            feedback: the env's feedback set. learner: the env's learner.
            momentum: beta in [0, 1) of the running average of g_down across refreshes (0: the fresh gradient).
            ema_decay: decay in [0, 1) of the EMA of L_down (the observation's ``ema_feedback_loss``).

        Raises:
            ValueError: ``momentum`` or ``ema_decay`` outside [0, 1).
            TypeError: ``feedback`` sets ``domain_matched`` without the rest of ``DomainMatchedFeedback``.
        """
        return cls(feedback, learner, matched=capability(feedback, DomainMatchedFeedback, flag="domain_matched"),
                   subset_only=learner.grad_only_on_subset if isinstance(learner, SubsetOnlyGradients) else None,
                   momentum=momentum, ema_decay=ema_decay)

    def reset(self, ledger: Ledger) -> None:
        """Start an episode: forget g_down and the EMA; charge passes to ``ledger`` from now on."""
        self._ledger = ledger
        self._g_down = None
        self._g_tasks = None
        self.norm = 0.0
        self.loss = float("nan")
        self.ema_loss = None

    @property
    def g_down(self) -> list[torch.Tensor]:
        """The current g_down on S.

        Raises:
            RuntimeError: before the first refresh of an episode.
        """
        if self._g_down is None:
            raise RuntimeError("g_down is read before the first feedback refresh: reset() the env first")
        return self._g_down

    @g_down.setter
    def g_down(self, value: list[torch.Tensor]) -> None:
        """Replace g_down (a subclass's :meth:`refresh` may transform it after ``super().refresh()``); ``norm``
        follows. Each tensor must have the shape of the one it replaces.

        Raises:
            ValueError: another number of tensors or another shape than the current g_down.
        """
        old = self.g_down
        new = list(value)
        if len(new) != len(old) or any(a.shape != b.shape for a, b in zip(old, new, strict=True)):
            raise ValueError(f"g_down must keep its {len(old)} tensors and their shapes "
                             f"{[tuple(g.shape) for g in old]}, got {[tuple(g.shape) for g in new]}")
        self._g_down = new
        self.norm = float(grad_norm(new))

    def refresh(self) -> bool:
        """Recompute g_down on a fresh feedback batch (charged); False when the loss or g_down is non-finite.

        The method a subclass overrides to change the estimate: call ``super().refresh()``, then read and
        assign :attr:`g_down` (``tests/test_components.py`` has one that negates it)."""
        ledger = self._charging()
        batch = self.feedback.sample_batch()
        charge_feedback_data(ledger, batch)
        only_subset = self._subset_only  # no autograd graph below S
        with only_subset() if only_subset is not None else contextlib.nullcontext():
            return self._gradient(batch, ledger)

    def _charging(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("FeedbackGradient.reset(ledger) must be called before a refresh")
        return self._ledger

    def _gradient(self, batch: Any, ledger: Ledger) -> bool:
        if self.matched:  # per-task g_j cached for domain-matched alignment; g_down = sum_j omega_j g_j
            losses = self.feedback.task_losses(self.learner, batch)
            omega = self.feedback.weights
            old = self._g_tasks or {}
            self._g_tasks = {
                j: self._running_average(old.get(j), [g.detach() for g in self.learner.subset_gradient(lj)])
                for j, lj in losses.items()
            }
            self._g_down = self._combine({j: omega[j] for j in losses})
            loss = sum(omega[j] * lj.detach() for j, lj in losses.items())
            ledger.feedback_forward += len(losses)
            ledger.feedback_backward += len(losses)
        else:
            loss = self.feedback.loss(self.learner, batch)
            self._g_down = self._running_average(self._g_down, [g.detach() for g in self.learner.subset_gradient(loss)])
            ledger.feedback_forward += 1
            ledger.feedback_backward += 1
        both = torch.stack([loss.detach().double().reshape(()), grad_norm(self._g_down).double()]).cpu().tolist()
        self.loss, self.norm = (float(x) for x in both)  # one host sync per refresh
        if not (np.isfinite(self.loss) and np.isfinite(self.norm)):
            return False
        d = self.ema_decay
        self.ema_loss = self.loss if self.ema_loss is None else d * self.ema_loss + (1 - d) * self.loss
        return True

    def _running_average(self, old: list[torch.Tensor] | None, new: list[torch.Tensor]) -> list[torch.Tensor]:
        """beta * old + (1 - beta) * new with beta = ``momentum`` (``new`` at the first refresh)."""
        beta = self.momentum
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

    def for_task(self, task: Task) -> list[torch.Tensor]:
        """The feedback gradient that scores an update of ``task``: g_down, or its domain-matched version."""
        if not self.matched:
            return self.g_down
        return self._combine(self.feedback.matched_weights(task))


class FeedbackProbe:
    """L_down and the feedback metric on the episode's fixed probe batch, before and after each update.

    The ``value_gain`` and ``metric_gain`` rewards read the change (``estimator.needs_probe_loss`` /
    ``needs_probe_metric``); each measurement is one feedback forward on the probe batch, charged in the
    ledger. State: ``loss`` and ``metric``, the values at the current learner state (None: not measured).
    """

    def __init__(self, feedback: Any, learner: Any, estimator: ValueEstimator) -> None:
        self.feedback = feedback
        self.learner = learner
        self.estimator = estimator
        self._ledger: Ledger | None = None
        self.loss: float | None = None
        self.metric: float | None = None

    @classmethod
    def for_parts(cls, feedback: Any, learner: Any, value_estimator: ValueEstimator) -> FeedbackProbe:
        """The component for these parts: what :class:`TaskDesignEnv` builds when no ``probe`` is given
        (``value_estimator``: the env's reward estimator object)."""
        return cls(feedback, learner, value_estimator)

    def reset(self, ledger: Ledger) -> None:
        """Start an episode (after ``feedback.reset``): measure what the estimator needs at theta_0."""
        self._ledger = ledger
        self.loss = self.measure(self.feedback.loss) if self.estimator.needs_probe_loss else None
        self.metric = self.measure(self.feedback.metric) if self.estimator.needs_probe_metric else None

    def measure(self, measure: Callable[[Any, Any], Any]) -> float:
        """``measure(learner, probe_batch)`` (the feedback loss or metric) without autograd, charged as one
        feedback forward on the probe batch."""
        if self._ledger is None:
            raise RuntimeError("FeedbackProbe.reset(ledger) must be called before a measurement")
        batch = self.feedback.probe_batch()
        with torch.no_grad():
            value = float(measure(self.learner, batch))
        self._ledger.feedback_forward += 1
        charge_feedback_data(self._ledger, batch)
        return value

    def outcome(self, stats: GradientStats, std_alignment: float | None, *, preconditioned: float | None = None,
                step_value: float | None = None, probe_loss: bool = False,
                probe_metric: bool = False) -> UpdateOutcome:
        """The :class:`~vpt_gym.value.UpdateOutcome` of an update just applied: the probe measured after it
        where the estimator needs it (or ``probe_loss`` / ``probe_metric`` asks), the state's values becoming
        the "before" of the next update."""
        est = self.estimator
        before_loss = after_loss = before_metric = after_metric = None
        if est.needs_probe_loss or probe_loss:
            before_loss, after_loss = self.loss, self.measure(self.feedback.loss)
            self.loss = after_loss
        if est.needs_probe_metric or probe_metric:
            before_metric, after_metric = self.metric, self.measure(self.feedback.metric)
            self.metric = after_metric
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
