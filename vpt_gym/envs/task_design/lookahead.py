"""Designer look-ahead of :class:`~vpt_gym.envs.task_design.TaskDesignEnv`, a component: the value of tasks not taken.

One forward-mode pass for every task of a menu linear in its targets (docs/ARCHITECTURE.md §7), else one backward (or
one forward-mode pass) per task; every pass is charged in the ledger. The learner is never changed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from vpt_gym.core import DifferentiableTasks, Learner, LinearTaskValues, PreconditionedLearner, Task, TaskSpace
from vpt_gym.envs.task_design.feedback import charge_feedback_data
from vpt_gym.value import REWARD_CLIP, gradient_stats

if TYPE_CHECKING:
    from vpt_gym.budget import Ledger
    from vpt_gym.envs.task_design.feedback import FeedbackGradient
    from vpt_gym.envs.task_design.pending import PendingUpdate
    from vpt_gym.value import Branch, ValueEstimator

LOOKAHEAD_VALUES = ("alignment", "preconditioned", "cosine", "value_gain", "metric_gain")
"""The values :meth:`Lookahead.values` (``TaskDesignEnv.lookahead_values``) computes."""
_FOLLOWS_REWARD = ("preconditioned", "cosine", "value_gain", "metric_gain")
"""Reward modes whose own value the look-ahead computes by default (else ``alignment``)."""


def _times(precondition: Sequence[torch.Tensor] | None, g: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """P * g elementwise (``g`` itself when P is None), in g's dtype."""
    if precondition is None:
        return list(g)
    return [(p * x).to(x.dtype) for p, x in zip(precondition, g, strict=True)]


class _TaskLoss(torch.nn.Module):
    """The pretraining loss of one task on one view, as a module whose parameters are the learner's (so
    ``torch.func.functional_call`` can substitute S by dual tensors for a forward-mode look-ahead)."""

    def __init__(self, learner: Learner, task_space: TaskSpace, view: Any, task: Task) -> None:
        super().__init__()
        self.m = learner.module
        self._call = (learner, task_space, view, task)

    def forward(self) -> torch.Tensor:
        learner, task_space, view, task = self._call
        return task_space.loss(view, learner.forward(view), task)


class Lookahead:
    """The designer look-ahead: the value of tasks not taken, on the pending update; owns its settings.

    Holds the parts it reads (learner, task space, the pending update, the g_down component, the feedback
    set for the probe batch) and the optional capabilities the env resolved at construction; charges every
    pass in the ledger given to :meth:`reset`. The learner is never changed. The env's public
    ``lookahead_values`` and ``value_derivative`` check the episode and the actions, then call this.

    Settings (attributes, also on the env): ``forward_mode_lookahead`` (one forward-mode pass for every task
    of a menu linear in its targets; default True) and ``forward_mode_per_task`` (task-dependent families:
    one forward-mode pass per task instead of a forward and a backward; default False, the slower on CPU).
    """

    def __init__(self, *, learner: Learner, task_space: TaskSpace, pending: PendingUpdate,
                 feedback_gradient: FeedbackGradient, feedback: Any, value_estimator: ValueEstimator,
                 task_dependent: bool, matched: bool, preconditioned: bool,
                 linear_values: Callable[..., np.ndarray] | None,
                 value_derivative: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self.learner: Any = learner  # a Learner, optionally a PreconditionedLearner
        self.task_space: Any = task_space  # a TaskSpace, with the capabilities resolved by the env
        self.pending = pending
        self.feedback_gradient = feedback_gradient
        self.feedback = feedback
        self.value_estimator = value_estimator
        self.task_dependent = bool(task_dependent)
        self.matched = bool(matched)
        self.preconditioned = bool(preconditioned)
        self.linear_values = linear_values
        self.value_derivative_hook = value_derivative
        self.forward_mode_lookahead = True
        """One forward-mode pass for every task of a menu linear in its targets (else a backward per task)."""
        self.forward_mode_per_task = False
        """Task-dependent families: one forward-mode pass per task instead of a forward and a backward."""
        self._jvp_unsupported = False  # set once the learner showed an op without forward-mode AD

    @classmethod
    def for_parts(cls, *, learner: Learner, task_space: TaskSpace, pending: PendingUpdate,
                  feedback_gradient: FeedbackGradient, value_estimator: ValueEstimator) -> Lookahead:
        """The component for these parts, their optional capabilities resolved (``PreconditionedLearner``,
        ``LinearTaskValues``, ``DifferentiableTasks``; task-dependent forward and domain-matched feedback
        from ``pending`` and ``feedback_gradient``): what :class:`TaskDesignEnv` builds when no ``lookahead``
        is given. The feedback set is ``feedback_gradient.feedback``.
        """
        return cls(learner=learner, task_space=task_space, pending=pending, feedback_gradient=feedback_gradient,
                   feedback=feedback_gradient.feedback, value_estimator=value_estimator,
                   task_dependent=pending.task_dependent, matched=feedback_gradient.matched,
                   preconditioned=isinstance(learner, PreconditionedLearner),
                   linear_values=task_space.linear_values if isinstance(task_space, LinearTaskValues) else None,
                   value_derivative=(task_space.value_derivative if isinstance(task_space, DifferentiableTasks)
                                     else None))

    def reset(self, ledger: Ledger) -> None:
        """Start an episode charging ``ledger``."""
        self._ledger = ledger

    def default_value(self) -> str:
        """The value computed when none is named: the env's reward where the look-ahead computes it."""
        return self.value_estimator.name if self.value_estimator.name in _FOLLOWS_REWARD else "alignment"

    def value_derivative(self, tangent: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, D) of the differentiable-task hook on the pending batch (see ``TaskDesignEnv.value_derivative``);
        one ``lookahead_forward``.

        Raises:
            NotImplementedError: the task space has no such hook.
        """
        hook = self.value_derivative_hook
        if hook is None:
            raise NotImplementedError(f"{type(self.task_space).__name__} has no differentiable-task hook")
        self._ledger.lookahead_forward += 1
        direction = self.feedback_gradient.g_down if tangent is None else tangent
        return hook(self.learner, self.pending.batch, self.pending.outputs, direction)

    def values(self, tasks: Sequence[Task], value: str,
               branches: Callable[[], Sequence[Branch]]) -> np.ndarray:
        """The value of each task for the next update (see ``TaskDesignEnv.lookahead_values``).

        Args:
            tasks: the tasks of the actions asked for.
            value: a name in :data:`LOOKAHEAD_VALUES` (checked by the env).
            branches: for ``value_gain`` / ``metric_gain``: each action's real update on a copy of the learner
                (``TaskDesignEnv.counterfactual`` with the probe loss / metric; it restores the ledger, the
                passes are charged here).

        Returns:
            shape [len(tasks)], float64, unit of L_down (``cosine``: none).
        """
        lr = float(self.learner.lr)
        precondition = self._preconditioner() if value == "preconditioned" else None
        if value == "cosine":
            return np.asarray([self.task_value(task, cosine=True) for task in tasks], dtype=np.float64)
        if value in ("value_gain", "metric_gain"):
            return self._measured_gain(branches(), metric=value == "metric_gain")
        if self.linear_values is not None and self.forward_mode_lookahead and not self.matched:
            self._ledger.lookahead_forward += 1
            tangent = _times(precondition, self.feedback_gradient.g_down)
            return lr * self.linear_values(self.learner, self.pending.batch, self.pending.outputs, tangent, tasks)
        return np.asarray([self.task_value(task, precondition) for task in tasks], dtype=np.float64)

    def _measured_gain(self, branches: Sequence[Branch], *, metric: bool) -> np.ndarray:
        """Each branch's ``value_gain`` (its real update's probe-loss drop) or, with ``metric``, its
        ``metric_gain`` (the probe metric's change); the branches' passes charged."""
        n = len(branches)
        self._ledger.lookahead_forward += n + (0 if self.task_dependent else 1)
        self._ledger.lookahead_backward += n
        known = self.value_estimator.needs_probe_metric if metric else self.value_estimator.needs_probe_loss
        before = 0 if known else 1  # else the value before is measured too
        self._ledger.feedback_forward += n + before
        probe = self.feedback.probe_batch()
        for _ in range(n + before):
            charge_feedback_data(self._ledger, probe)
        values = []
        for b in branches:  # the branches measured the probe loss (metric) before and after
            if b.outcome is None:
                values.append(-np.inf)
                continue
            gain = (cast(float, b.outcome.metric_after) - cast(float, b.outcome.metric_before) if metric else
                    cast(float, b.outcome.probe_loss_before) - cast(float, b.outcome.probe_loss_after))
            values.append(float(np.clip(gain, -REWARD_CLIP, REWARD_CLIP)))
        return np.asarray(values, dtype=np.float64)

    def _preconditioner(self) -> list[torch.Tensor] | None:
        """P at the current state for the look-ahead (None: P = 1)."""
        return self.learner.preconditioner() if self.preconditioned else None

    def task_value(self, task: Task, precondition: Sequence[torch.Tensor] | None = None, *,
                   cosine: bool = False) -> float:
        """eta * g_down(task) . grad_S L_pre(task) on the pending batch, without an update (with ``cosine``:
        cos(g_down(task), grad_S L_pre(task)) from a backward). Unit of L_down (``cosine``: none).

        Where the forward depends on the task and ``forward_mode_per_task`` is set, one forward-mode pass: the
        JVP of the task's loss along g_down on S (``torch.func.jvp``; the directional derivative IS the dot
        product), charged as one ``lookahead_forward``. Otherwise (or if the learner has an operation without
        forward-mode AD) a backward to S, charged as ``lookahead_backward`` (plus the task's forward).
        """
        lr = float(self.learner.lr)
        tangent = _times(precondition, self.feedback_gradient.for_task(task))
        if self.task_dependent and self.forward_mode_per_task and not self._jvp_unsupported and not cosine:
            try:
                dot = self._loss_jvp(task, tangent)
            except RuntimeError:  # e.g. an in-place op without forward-mode AD: use the backward from now on
                self._jvp_unsupported = True
            else:
                self._ledger.lookahead_forward += 1
                return lr * dot
        loss = self.pending.task_loss(task, lookahead=True)
        g_task = self.learner.subset_gradient(loss, retain_graph=not self.task_dependent)
        self._ledger.lookahead_backward += 1
        stats = gradient_stats(tangent, g_task, lr)
        return stats.cosine if cosine else stats.alignment

    def _loss_jvp(self, task: Task, tangent: Sequence[torch.Tensor]) -> float:
        """tangent . grad_S L_pre(task) by one forward-mode pass through the learner (S substituted by
        ``functional_call``; the math SDPA backend, which has forward-mode AD on every device)."""
        from torch.func import functional_call, jvp
        from torch.nn.attention import SDPBackend, sdpa_kernel

        learner, space = self.learner, self.task_space
        view = space.materialize(self.pending.batch, task)
        names = list(learner.alignment_names)
        primals = tuple(p.detach() for p in learner.alignment_parameters())
        tangents = tuple(t.detach().to(p.dtype) for t, p in zip(tangent, primals, strict=True))
        adapter = _TaskLoss(learner, space, view, task)

        def loss_of(*params: torch.Tensor) -> torch.Tensor:
            return functional_call(adapter, {f"m.{n}": p for n, p in zip(names, params, strict=True)}, ())

        with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            _, dot = jvp(loss_of, primals, tangents)  # type: ignore[misc]  # torch's jvp stub also allows the has_aux 3-tuple
        return float(dot)
