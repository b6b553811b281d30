"""Designer look-ahead of :class:`~vpt_gym.envs.task_design.TaskDesignEnv`: the value of tasks not taken.

One forward-mode pass for every task of a menu linear in its targets (docs/ARCHITECTURE.md §7), else one backward (or
one forward-mode pass) per task; every pass is charged in the ledger. The learner is never changed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from vpt_gym.core import Learner, Task, TaskSpace
from vpt_gym.envs.task_design.feedback import charge_feedback_data
from vpt_gym.value import REWARD_CLIP, gradient_stats

if TYPE_CHECKING:
    import gymnasium as gym
    from gymnasium import spaces

    from vpt_gym.budget import Ledger
    from vpt_gym.envs.task_design.feedback import FeedbackGradient
    from vpt_gym.value import ValueEstimator

LOOKAHEAD_VALUES = ("alignment", "preconditioned", "cosine", "value_gain")
"""The values :meth:`LookaheadMixin.lookahead_values` computes."""
_FOLLOWS_REWARD = ("preconditioned", "cosine", "value_gain")
"""Reward modes whose own value the look-ahead computes by default (else ``alignment``)."""


def _times(precondition: Sequence[torch.Tensor] | None, g: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """P * g elementwise (``g`` itself when P is None), in g's dtype."""
    if precondition is None:
        return list(g)
    return [(p * x).to(x.dtype) for p, x in zip(precondition, g, strict=True)]


def _no_measure(learner: Any) -> float:
    """The look-ahead reads the probe loss of each branch only."""
    return 0.0


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


class LookaheadMixin:
    """The look-ahead methods of :class:`~vpt_gym.envs.task_design.TaskDesignEnv` (which holds the state)."""

    if TYPE_CHECKING:  # the host env's attributes and methods used here (declared for the type checker)
        learner: Any  # a Learner, optionally with preconditioner/grad_only_on_subset
        task_space: Any  # a TaskSpace, with the optional capabilities probed at construction
        value_estimator: ValueEstimator
        action_space: gym.Space
        forward_mode_lookahead: bool
        forward_mode_per_task: bool
        _ledger: Ledger
        _batch: Any
        _outputs: Any
        _discrete: bool
        _done: bool
        _ready: bool
        _matched: bool
        _linear_values: Callable[..., np.ndarray] | None
        _value_derivative: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None
        _preconditioned: bool
        _task_dependent: bool
        _jvp_unsupported: bool
        feedback_gradient: FeedbackGradient

        def _resolve_action(self, action: Any) -> tuple[Any, bool]: ...

        def _task_loss(self, task: Task, *, lookahead: bool) -> torch.Tensor: ...

        def counterfactual(self, actions: Sequence[Any] | None = None, *, measure: Any,
                           probe_loss: bool = False) -> tuple[float, list[Any]]: ...

        feedback: Any

    def value_derivative(self, tangent: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Differentiable-task hook: (C, D) with D = tangent . grad_S log p on the pending batch's candidates.

        For a target q on C the value of the next update is ``-lr * mean_t sum_k q D`` with tangent = g_down
        (the default), so a designer can differentiate the value through q (V-Pretraining v2 Algorithm 1).
        Cost: one forward-mode pass, charged as ``lookahead_forward``.

        Args:
            tangent: a direction on S (default: the current g_down), tensors shaped like S.

        Returns:
            (C [batch, seq - 1, K] int64, D [batch, seq - 1, K] float32), detached.

        Raises:
            RuntimeError: outside a running episode. NotImplementedError: the task space has no such hook.
        """
        if not self._ready or self._done:
            raise RuntimeError("value_derivative() needs a running episode: call reset() first")
        hook = self._value_derivative
        if hook is None:
            raise NotImplementedError(f"{type(self.task_space).__name__} has no differentiable-task hook")
        self._ledger.lookahead_forward += 1
        direction = self.feedback_gradient.g_down if tangent is None else tangent
        return hook(self.learner, self._batch, self._outputs, direction)

    def lookahead_values(self, actions: Sequence[Any] | None = None, *, value: str | None = None) -> np.ndarray:
        """Designer look-ahead: the value of each action's task for the next update, without taking it.

        For each action, the alignment value ``eta * g_down,S . g_pre,S(task)`` on the batch the next update
        will use (its forward is reused) at the current learner state, with the current cached g_down — the
        same quantity as the ``alignment`` reward. With ``value="preconditioned"`` the tangent is
        ``P * g_down`` with P the optimizer's preconditioner at the current state (AdamW:
        ``1 / (sqrt(v_hat_t) + eps)`` of the last update; P = 1 for SGD and before the first update), so the
        value is ``eta * sum_S P * g_down * g_pre(task)``: the ``preconditioned`` reward up to that update's own
        contribution to v_hat and to clipping (V-Pretraining v2 App. B.4). With ``value="cosine"`` it is
        ``cos(g_down,S, g_pre,S(task))``, the ``cosine`` reward exactly (V-Pretraining v2 Eq. 9 normalized).
        With ``value="value_gain"`` each action's real update is taken on a copy of the learner
        (:meth:`counterfactual`) and the drop of L_down on the fixed probe batch is measured: the
        ``value_gain`` reward of that action exactly (a diverged update reads ``-inf``). The learner is not
        changed.

        Args:
            actions: actions to evaluate (default: every task of a ``Discrete`` menu, in index order).
            value: a name in :data:`LOOKAHEAD_VALUES`; default: the env's reward when it is
                ``"preconditioned"``, ``"cosine"`` or ``"value_gain"``, else ``"alignment"``.

        Returns:
            shape [num_actions], float64, unit of L_down (e.g. nats/token; ``cosine``: none).

        Cost:
            where the task space is linear in its targets (soft-target LM menus) and
            ``forward_mode_lookahead`` is True: ONE forward-mode pass for all actions (docs/ARCHITECTURE.md §7), charged
            as one ``lookahead_forward`` (not for ``cosine``, which needs each task's |g_pre|); otherwise one
            backward to the alignment subset S per action,
            charged as ``lookahead_backward`` (the forward is shared with the update); where the forward
            depends on the task (``task_space.task_dependent_forward``), also one forward per action,
            charged as ``lookahead_forward`` — or, with ``forward_mode_per_task``, one forward-mode pass per
            action instead of the forward and the backward. ``value_gain``: per action a learner forward and
            backward and an optimizer step (``lookahead_forward``, ``lookahead_backward``) and a probe forward
            (``feedback_forward``, its examples and tokens; one more for the loss before when the env's reward
            is not ``value_gain``), plus one forward to rebuild the pending update's graph where the forward
            does not depend on the task.

        Raises:
            RuntimeError: before ``reset`` or after the episode ended.
            ValueError: an action outside the action space, ``actions=None`` on a ``Box`` space, or an unknown
                ``value``.
        """
        if value is None:
            value = self.value_estimator.name if self.value_estimator.name in _FOLLOWS_REWARD else "alignment"
        if value not in LOOKAHEAD_VALUES:
            raise ValueError(f"value={value!r} is not accepted; choose one of {LOOKAHEAD_VALUES}")
        if not self._ready or self._done:
            raise RuntimeError("lookahead_values() needs a running episode: call reset() first")
        if actions is None:
            if not self._discrete:
                raise ValueError("actions=None is only defined for a Discrete menu; "
                                 f"pass actions for {self.action_space}")
            actions = list(range(cast("spaces.Discrete", self.action_space).n))
        tasks = [self.task_space.task(self._resolve_action(a)[0]) for a in actions]
        lr = float(self.learner.lr)
        precondition = self._lookahead_preconditioner() if value == "preconditioned" else None
        linear_values = self._linear_values
        if value == "cosine":
            return np.asarray([self._task_value(task, cosine=True) for task in tasks], dtype=np.float64)
        if value == "value_gain":
            return self._value_gain_lookahead(actions)
        if linear_values is not None and self.forward_mode_lookahead and not self._matched:
            self._ledger.lookahead_forward += 1
            tangent = _times(precondition, self.feedback_gradient.g_down)
            return lr * linear_values(self.learner, self._batch, self._outputs, tangent, tasks)
        return np.asarray([self._task_value(task, precondition) for task in tasks], dtype=np.float64)

    def _value_gain_lookahead(self, actions: Sequence[Any]) -> np.ndarray:
        """The ``value_gain`` of each action, from its real update on a copy of the learner (charged)."""
        _, branches = self.counterfactual(actions, measure=_no_measure, probe_loss=True)
        n = len(branches)  # counterfactual() restores the ledger: charge its passes here
        self._ledger.lookahead_forward += n + (0 if self._task_dependent else 1)
        self._ledger.lookahead_backward += n
        before = 0 if self.value_estimator.needs_probe_loss else 1  # else the loss before is measured too
        self._ledger.feedback_forward += n + before
        probe = self.feedback.probe_batch()
        for _ in range(n + before):
            charge_feedback_data(self._ledger, probe)
        values = [-np.inf if b.outcome is None else
                  float(np.clip(b.outcome.probe_loss_before - b.outcome.probe_loss_after, -REWARD_CLIP, REWARD_CLIP))
                  for b in branches]
        return np.asarray(values, dtype=np.float64)

    def _lookahead_preconditioner(self) -> list[torch.Tensor] | None:
        """P at the current state for the look-ahead (None: P = 1)."""
        return self.learner.preconditioner() if self._preconditioned else None

    def _task_value(self, task: Task, precondition: Sequence[torch.Tensor] | None = None, *,
                    cosine: bool = False) -> float:
        """eta * g_down(task) . grad_S L_pre(task) on the pending batch, without an update (with ``cosine``:
        cos(g_down(task), grad_S L_pre(task)) from a backward).

        Where the forward depends on the task and ``forward_mode_per_task`` is set, one forward-mode pass: the
        JVP of the task's loss along g_down on S (``torch.func.jvp``; the directional derivative IS the dot
        product), charged as one ``lookahead_forward``. Otherwise (or if the learner has an operation without
        forward-mode AD) a backward to S, charged as ``lookahead_backward`` (plus the task's forward).
        """
        lr = float(self.learner.lr)
        tangent = _times(precondition, self.feedback_gradient.for_task(task))
        if self._task_dependent and self.forward_mode_per_task and not self._jvp_unsupported and not cosine:
            try:
                dot = self._loss_jvp(task, tangent)
            except RuntimeError:  # e.g. an in-place op without forward-mode AD: use the backward from now on
                self._jvp_unsupported = True
            else:
                self._ledger.lookahead_forward += 1
                return lr * dot
        loss = self._task_loss(task, lookahead=True)
        g_task = self.learner.subset_gradient(loss, retain_graph=not self._task_dependent)
        self._ledger.lookahead_backward += 1
        stats = gradient_stats(tangent, g_task, lr)
        return stats.cosine if cosine else stats.alignment

    def _loss_jvp(self, task: Task, tangent: Sequence[torch.Tensor]) -> float:
        """tangent . grad_S L_pre(task) by one forward-mode pass through the learner (S substituted by
        ``functional_call``; the math SDPA backend, which has forward-mode AD on every device)."""
        from torch.func import functional_call, jvp
        from torch.nn.attention import SDPBackend, sdpa_kernel

        learner, space = self.learner, self.task_space
        view = space.materialize(self._batch, task)
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
