"""The env core: construction, reset, step, observation. The feedback side is two components that own their
state (``feedback.FeedbackGradient``, ``feedback.FeedbackProbe``), as are the pending update
(``pending.PendingUpdate``) and the designer look-ahead (``lookahead.Lookahead``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, SupportsFloat, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from vpt_gym.budget import Budget, Ledger
from vpt_gym.core import (
    LOSS_CAP,
    AcceptsTasks,
    BranchableLearner,
    FeedbackSet,
    Learner,
    MaskedActions,
    PreconditionedLearner,
    PretrainStream,
    Task,
    TaskSpace,
    require,
)
from vpt_gym.envs.task_design.feedback import FeedbackGradient, FeedbackProbe
from vpt_gym.envs.task_design.lookahead import LOOKAHEAD_VALUES, Lookahead
from vpt_gym.envs.task_design.pending import PendingUpdate
from vpt_gym.value import (
    Branch,
    GradientStats,
    UpdateOutcome,
    ValueEstimator,
    gradient_stats,
    make_value_estimator,
    step_values,
)

LOG10_NORM_RANGE = (-30.0, 30.0)
"""Bounds of log10 gradient norms in the observation; a zero norm reads as the lower bound."""
VALUE_CAP = 1.0e6
"""Bound of the per-task last value (same scale as the ``alignment`` reward)."""

BASE_FEATURES: tuple[tuple[str, float, float], ...] = (
    ("budget_remaining", 0.0, 1.0),
    ("ema_pretrain_loss", 0.0, LOSS_CAP),
    ("ema_feedback_loss", 0.0, LOSS_CAP),
    ("ema_log10_g_pre_norm", *LOG10_NORM_RANGE),
    ("log10_g_down_norm", *LOG10_NORM_RANGE),
    ("ema_cosine", -1.0, 1.0),
)


def check_feedback_momentum(value: Any) -> float:
    """Validate ``feedback_momentum`` (the running average of g_down across refreshes).

    Raises:
        ValueError: not a real number in [0, 1).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"feedback_momentum must be a number in [0, 1), got {value!r}")
    return float(value)


def _real_valued(action: Any) -> bool:
    """Whether ``action`` holds only real numbers (integer or float dtype; no bool, complex or string)."""
    if isinstance(action, (str, bytes)):
        return False
    if isinstance(action, (list, tuple)):
        try:
            items = np.ravel(np.asarray(action, dtype=object))
        except ValueError:  # ragged
            return False
        if any(isinstance(v, (bool, np.bool_, complex, np.complexfloating, str, bytes)) for v in items):
            return False
    try:
        return np.asarray(action).dtype.kind in "iuf"
    except ValueError:
        return False


def _restore_attributes(parts: Sequence[Any], states: Sequence[dict[str, Any] | None]) -> None:
    """Put back the attribute bindings of ``parts`` saved by ``dict(vars(part))`` (new attributes removed)."""
    for part, state in zip(parts, states, strict=True):
        if state is None:
            continue
        attributes = vars(part)
        for name in [n for n in attributes if n not in state]:
            del attributes[name]
        attributes.update(state)


def _no_measure(learner: Any) -> float:
    """The ``value_gain`` look-ahead reads the probe loss of each branch only."""
    return 0.0


def _log10(x: float) -> float:
    if not (x > 0 and math.isfinite(x)):
        return LOG10_NORM_RANGE[0]
    return min(max(math.log10(x), LOG10_NORM_RANGE[0]), LOG10_NORM_RANGE[1])


def _generators(seed: int, count: int) -> list[torch.Generator]:
    """``count`` independent CPU ``torch.Generator`` objects spawned from one ``SeedSequence(seed)``."""
    gens = []
    for child in np.random.SeedSequence(seed).spawn(count):
        g = torch.Generator(device="cpu")
        g.manual_seed(int(child.generate_state(1, dtype=np.uint64)[0]))
        gens.append(g)
    return gens


_BINDINGS: dict[str, tuple[str, ...]] = {
    "feedback_gradient": ("feedback", "learner"),
    "probe": ("feedback", "learner", "estimator"),
    "pending": ("learner", "task_space", "stream"),
    "lookahead": ("learner", "task_space", "feedback", "value_estimator", "pending", "feedback_gradient"),
}
"""The env parts (and components) each component must hold, by identity."""


def _components(*, learner: Learner, task_space: TaskSpace, stream: PretrainStream, feedback: FeedbackSet,
                value_estimator: ValueEstimator, feedback_momentum: float, ema_decay: float,
                feedback_gradient: FeedbackGradient | None, probe: FeedbackProbe | None,
                pending: PendingUpdate | None,
                lookahead: Lookahead | None) -> tuple[FeedbackGradient, FeedbackProbe, PendingUpdate, Lookahead]:
    """The env's four components: each one given, checked against the env's parts, or its default.

    Raises:
        TypeError: a component of the wrong class.
        ValueError: a component built for other parts than the env's, or ``feedback_momentum`` besides a
            ``feedback_gradient`` of another momentum.
    """
    for given, cls, role in ((feedback_gradient, FeedbackGradient, "feedback_gradient"),
                             (probe, FeedbackProbe, "probe"), (pending, PendingUpdate, "pending"),
                             (lookahead, Lookahead, "lookahead")):
        if given is None:
            continue
        if not isinstance(given, cls):
            raise TypeError(f"{role} must be a vpt_gym.envs.task_design.{cls.__name__} (or a subclass), "
                            f"got {type(given).__name__}")
        for name in _BINDINGS[role]:
            if not hasattr(given, name):
                raise ValueError(f"{role}={type(given).__name__} holds no {name!r}: a subclass must call "
                                 f"super().__init__ (or build it with {cls.__name__}.for_parts)")
    if feedback_gradient is None:
        feedback_gradient = FeedbackGradient.for_parts(feedback, learner, momentum=feedback_momentum,
                                                       ema_decay=ema_decay)
    elif feedback_momentum not in (0.0, feedback_gradient.momentum):
        raise ValueError(f"feedback_momentum={feedback_momentum!r} is given besides a feedback_gradient of "
                         f"momentum {feedback_gradient.momentum!r}: set the momentum on the component only")
    if pending is None:
        pending = PendingUpdate.for_parts(learner, task_space, stream)
    if probe is None:
        probe = FeedbackProbe.for_parts(feedback, learner, value_estimator)
    if lookahead is None:
        lookahead = Lookahead.for_parts(learner=learner, task_space=task_space, pending=pending,
                                        feedback_gradient=feedback_gradient, value_estimator=value_estimator)
    env_parts = {"learner": learner, "task_space": task_space, "stream": stream, "feedback": feedback,
                 "value_estimator": value_estimator, "estimator": value_estimator, "pending": pending,
                 "feedback_gradient": feedback_gradient}
    components = {"feedback_gradient": feedback_gradient, "probe": probe, "pending": pending, "lookahead": lookahead}
    for role, component in components.items():
        for name in _BINDINGS[role]:
            if getattr(component, name) is not env_parts[name]:
                hint = (" (pass the reward as that ValueEstimator object, reward=estimator)"
                        if name in ("estimator", "value_estimator") else
                        f" (pass the {name} it was built with, {name}=...)" if name in ("pending", "feedback_gradient")
                        else "")
                raise ValueError(f"{role} was built for another {name} than the env's: a different "
                                 f"{type(getattr(component, name)).__name__} instance than the env's "
                                 f"{type(env_parts[name]).__name__}{hint}")
    return feedback_gradient, probe, pending, lookahead


class TaskDesignEnv(gym.Env):
    """Continued pretraining as an MDP: each action picks the pretraining task of the next learner update(s).

    Description:
        An episode is one continued-pretraining run of the learner from its base checkpoint theta_0 for a
        fixed budget of learner updates T. Each decision the agent (the task designer) picks a task; the
        learner takes ``updates_per_decision`` optimizer steps on that task's self-supervised loss. The
        learner never receives the downstream gradient; the designer is rewarded for aligning the
        pretraining gradient g_pre with the feedback gradient g_down (V-Pretraining, arXiv 2601.22108).

    Action Space:
        ``task_space.action_space``: ``Discrete(K)`` over the named menu ``task_names`` (index
        ``standard_action`` is the standard task), or a bounded ``Box`` parameterizing the task. An action
        outside the space raises ``ValueError`` before any update. An action inside the space that
        ``action_masks()`` masks runs the standard task and sets ``info["masked_action"] = True``.

    Observation Space:
        ``Box(float32)`` of size 6 + 2K + D (K = menu size, 1 for a ``Box`` action space; D = batch
        descriptors), names in ``observation_names``:

        | index       | feature                              | range            | unit                    |
        |-------------|--------------------------------------|------------------|-------------------------|
        | 0           | budget remaining (fraction of T)     | [0, 1]           | -                       |
        | 1           | EMA of the pretraining loss          | [0, 1e3]         | learner loss unit       |
        | 2           | EMA of the feedback loss L_down      | [0, 1e3]         | feedback loss unit      |
        | 3           | EMA of log10 ‖g_pre,S‖               | [-30, 30]        | log10                   |
        | 4           | log10 ‖g_down,S‖ (current g_down)    | [-30, 30]        | log10                   |
        | 5           | EMA of cos(g_down,S, g_pre,S)        | [-1, 1]          | -                       |
        | 6..5+K      | last value eta*g_down.g_pre per task | [-1e6, 1e6]      | feedback loss unit      |
        | 6+K..5+2K   | selection frequency per task         | [0, 1]           | fraction of updates     |
        | 6+2K..      | descriptors of the next batch        | task_space bounds| see ``task_space``      |

        With ``reward="preconditioned"`` the last value per task is the preconditioned value of that update.
        EMAs use decay ``ema_decay`` and start at the first measurement. Descriptors describe the batch the
        next update will use (sampled, and its forward run, before the observation is returned).

    Reward:
        The named ``ValueEstimator`` (``reward``): ``alignment`` (default, eta * g_down,S . g_pre,S),
        ``cosine``, ``value_gain``, ``metric_gain``, ``advantage`` or ``preconditioned`` (eta * sum_S g_down * g
        / (sqrt(v_hat_t) + eps) with the applied, clipped gradient g and AdamW's bias-corrected second moment
        after the update; V-Pretraining v2 App. B.4), summed over the decision's updates. ``info`` also
        holds ``preconditioned`` and ``step_value`` = g_down,S . (theta_t - theta_t+1), the first-order
        value of the step actually taken (momentum and weight decay included), for every reward.
        Finite, clipped to [-1e6, 1e6]; ``divergence_penalty`` on divergence. Optional domain-matched hook:
        a feedback set with ``domain_matched = True``, ``task_losses(learner, batch) -> {j: L_j}``, ``weights``
        ({j: omega_j}) and ``matched_weights(task) -> {j: w_j}`` has each g_j cached at every g_down refresh
        (one feedback forward/backward per task j in the ledger); an update of ``task`` is then scored with
        ``g_down(task) = sum_j w_j(task) g_j`` instead of ``g_down = sum_j omega_j g_j`` (V-Pretraining v2
        Eq. 44-46); the observed g_down norm stays that of ``sum_j omega_j g_j``.

    Episode End:
        ``terminated=True`` when the budget of learner updates is exhausted (the remaining fraction is
        observed, so this is part of the task; Pardo et al. 2018), or when a loss or gradient is non-finite
        (``info["diverged"] = True``, reward ``divergence_penalty``, the bad update is not applied).
        ``truncated`` is always False here; it comes only from outside limits (e.g. a ``TimeLimit``
        wrapper). At episode end ``info["eval"]`` holds the held-out metrics of the eval split.

    Budget:
        ``budget.learner_updates`` learner updates per episode; ``info["ledger"]`` counts learner updates,
        learner / feedback / look-ahead forward and backward passes, pretraining examples and tokens, and
        feedback examples and tokens (:class:`~vpt_gym.budget.Ledger`).

    Arguments:
        learner: the :class:`~vpt_gym.core.Learner` (owns theta_0 snapshot, optimizer, subset S).
        task_space: the :class:`~vpt_gym.core.TaskSpace` (menu, losses, batch descriptors).
        stream: the unlabeled :class:`~vpt_gym.core.PretrainStream`.
        feedback: the :class:`~vpt_gym.core.FeedbackSet` (feedback and disjoint eval split).
        budget: the :class:`~vpt_gym.budget.Budget` (T, updates per decision, feedback period).
        reward: a value-estimator name or object.
        ema_decay: decay of the observation EMAs, in [0, 1).
        divergence_penalty: reward on divergence, finite.
        evaluate_at_end: run the eval split at episode end (``info["eval"]``).
        feedback_momentum: beta in [0, 1): each refresh sets g_down <- beta * g_down + (1 - beta) * g_new (a
            running average across refreshes, restarted every episode; 0 = the fresh gradient only).
        data_sources: where each pretraining stream's data came from, ``{name: source}`` (kept as
            ``env.data_sources``; provenance only, no effect on the MDP).
        decontamination: per pretraining domain, what decontamination removed (``{domain: {"documents": n,
            "dropped": m}}``; kept as ``env.decontamination``).
        feedback_gradient: the g_down component (:class:`~vpt_gym.envs.task_design.FeedbackGradient`) built for
            ``feedback`` and ``learner``; default ``FeedbackGradient.for_parts(feedback, learner,
            momentum=feedback_momentum, ema_decay=ema_decay)``. Pass a subclass (override ``refresh``) to
            change how g_down is estimated and kept; its ``momentum`` then is the env's ``feedback_momentum``.
        probe: the probe component (:class:`~vpt_gym.envs.task_design.FeedbackProbe`) built for ``feedback``,
            ``learner`` and the reward's estimator object; default ``FeedbackProbe.for_parts(feedback,
            learner, estimator)``.
        pending: the pending-update component (:class:`~vpt_gym.envs.task_design.PendingUpdate`) built for
            ``learner``, ``task_space`` and ``stream``; default ``PendingUpdate.for_parts(learner, task_space,
            stream)``.
        lookahead: the designer look-ahead (:class:`~vpt_gym.envs.task_design.Lookahead`) built on the env's
            learner, task space, ``pending``, ``feedback_gradient`` and reward estimator; default
            ``Lookahead.for_parts(...)`` on those. A ``lookahead`` therefore needs the ``pending`` and
            ``feedback_gradient`` it was built with passed too.

    Raises:
        ValueError: a setting outside its range (named, with the range); a component built for other parts
            than the env's (names the component and the part), or ``feedback_momentum`` given besides a
            ``feedback_gradient`` with another momentum.
        TypeError: a part missing a member of its Protocol, or a component of the wrong class.

    Version History:
        v0: initial release.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        *,
        learner: Learner,
        task_space: TaskSpace,
        stream: PretrainStream,
        feedback: FeedbackSet,
        budget: Budget,
        reward: str | ValueEstimator = "alignment",
        ema_decay: float = 0.9,
        divergence_penalty: float = -1.0,
        evaluate_at_end: bool = True,
        feedback_momentum: float = 0.0,
        data_sources: Mapping[str, str] | None = None,
        decontamination: Mapping[str, Mapping[str, Any]] | None = None,
        feedback_gradient: FeedbackGradient | None = None,
        probe: FeedbackProbe | None = None,
        pending: PendingUpdate | None = None,
        lookahead: Lookahead | None = None,
    ) -> None:
        if not isinstance(budget, Budget):
            raise ValueError(f"budget must be a vpt_gym.budget.Budget, got {budget!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if not np.isfinite(divergence_penalty) or abs(divergence_penalty) > VALUE_CAP:
            raise ValueError(f"divergence_penalty must be finite and within +-{VALUE_CAP}, got {divergence_penalty!r}")
        for part, protocol, role in ((learner, Learner, "learner"), (task_space, TaskSpace, "task_space"),
                                     (stream, PretrainStream, "stream"), (feedback, FeedbackSet, "feedback")):
            require(part, protocol, role)
        self.feedback_momentum = check_feedback_momentum(feedback_momentum)
        value_estimator = make_value_estimator(reward)
        components = _components(learner=learner, task_space=task_space, stream=stream, feedback=feedback,
                                 value_estimator=value_estimator, feedback_momentum=self.feedback_momentum,
                                 ema_decay=float(ema_decay), feedback_gradient=feedback_gradient, probe=probe,
                                 pending=pending, lookahead=lookahead)
        self.data_sources: dict[str, str] = dict(data_sources or {})
        """Where each pretraining stream's data came from (``{stream name: source}``; a factory's record)."""
        self.decontamination: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (decontamination or {}).items()}
        """Per pretraining domain, what decontamination against the feedback and eval splits removed."""
        self.learner = learner
        self.task_space = task_space
        self.stream = stream
        self.feedback = feedback
        self.budget = budget
        self.value_estimator = value_estimator
        self.ema_decay = float(ema_decay)
        self.divergence_penalty = float(divergence_penalty)
        self.evaluate_at_end = bool(evaluate_at_end)
        # Optional capabilities (vpt_gym.core), resolved once here; nothing probes the parts later.
        self._masks = task_space.action_masks if isinstance(task_space, MaskedActions) else None
        self._accepts = task_space.accepts if isinstance(task_space, AcceptsTasks) else None
        self._preconditioned = isinstance(learner, PreconditionedLearner)
        self.feedback_gradient, self.probe, self.pending, self.lookahead = components
        self.feedback_momentum = self.feedback_gradient.momentum
        self._matched = self.feedback_gradient.matched
        """The g_down component (refreshes, running average, domain-matched g_j; its own state); the probe
        component (L_down / metric on the fixed probe batch before and after each update); the pending update
        component (the next batch, its forward, a task-dependent family's view); the designer look-ahead
        component (:meth:`lookahead_values`, :meth:`value_derivative`)."""

        self.action_space = task_space.action_space
        self._discrete = isinstance(self.action_space, spaces.Discrete)
        self.num_menu = len(task_space.tasks) if self._discrete else 1
        self.standard_action = task_space.standard_action
        self._standard_task = task_space.task(task_space.standard_action)
        k = self.num_menu
        names = [n for n, _, _ in BASE_FEATURES]
        low = [lo for _, lo, _ in BASE_FEATURES]
        high = [hi for _, _, hi in BASE_FEATURES]
        menu = self.task_names if self._discrete else ["continuous"]
        names += [f"last_value[{t}]" for t in menu] + [f"frequency[{t}]" for t in menu]
        low += [-VALUE_CAP] * k + [0.0] * k
        high += [VALUE_CAP] * k + [1.0] * k
        names += [f"batch.{d}" for d in task_space.descriptor_names]
        low += list(np.asarray(task_space.descriptor_low, dtype=np.float64))
        high += list(np.asarray(task_space.descriptor_high, dtype=np.float64))
        self.observation_names: tuple[str, ...] = tuple(names)
        self._obs_low = np.asarray(low, dtype=np.float32)
        self._obs_high = np.asarray(high, dtype=np.float32)
        self.observation_space = spaces.Box(self._obs_low, self._obs_high, dtype=np.float32)
        self._ready = False

    # ----------------------------------------------------------------------------------------- properties
    @property
    def task_names(self) -> list[str]:
        """Names of the task menu, index = discrete action."""
        return [t.name for t in self.task_space.tasks]

    @property
    def ledger(self) -> Ledger:
        """The current episode's ledger (a live object; copy with ``as_dict()``)."""
        return self._ledger

    @property
    def g_down(self) -> list[torch.Tensor]:
        """The cached feedback gradient on S: list of tensors [*param_shape_i], learner dtype and device."""
        return self.feedback_gradient.g_down

    def action_masks(self) -> np.ndarray:
        """Valid-action mask, shape [K], bool (all True unless the task space masks some tasks)."""
        if self._masks is None:
            return np.ones(self.num_menu, dtype=bool)
        return np.asarray(self._masks(), dtype=bool)

    @property
    def pending_batch(self) -> Any:
        """The batch the next update will use (sampled before the decision; see the observation)."""
        return self.pending.batch

    @property
    def pending_outputs(self) -> Any:
        """The learner's outputs on :attr:`pending_batch` (e.g. logits [batch, seq, vocab], with graph)."""
        return self.pending.outputs

    @property
    def forward_mode_lookahead(self) -> bool:
        """Look-ahead of a menu linear in its targets (soft-target LM menus) by ONE forward-mode pass for
        every task (docs/ARCHITECTURE.md §7) instead of a backward per task; default True."""
        return self.lookahead.forward_mode_lookahead

    @forward_mode_lookahead.setter
    def forward_mode_lookahead(self, on: bool) -> None:
        self.lookahead.forward_mode_lookahead = bool(on)

    @property
    def forward_mode_per_task(self) -> bool:
        """Look-ahead of task-dependent families (augmentations, masks, domains) by one forward-mode pass per
        task instead of a forward + backward. Same values (relative difference ~1e-6 in float32); off by
        default because PyTorch's forward mode is the slower of the two on CPU (measured per candidate, tiny
        presets: SSL-Mask 46 vs 26 ms, LM-Domains 47 vs 12 ms; ``benchmarks/overhead.py``)."""
        return self.lookahead.forward_mode_per_task

    @forward_mode_per_task.setter
    def forward_mode_per_task(self, on: bool) -> None:
        self.lookahead.forward_mode_per_task = bool(on)

    def charge(self, *, designer_forward: int = 0, designer_backward: int = 0) -> None:
        """Record passes a designer spent on its own network (e.g. a meta update) in the ledger.

        Raises:
            ValueError: a negative count.
        """
        if designer_forward < 0 or designer_backward < 0:
            raise ValueError(f"pass counts must be >= 0, got {designer_forward}, {designer_backward}")
        self._ledger.designer_forward += int(designer_forward)
        self._ledger.designer_backward += int(designer_backward)

    # ---------------------------------------------------------------------------------------- look-ahead
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
        return self.lookahead.value_derivative(tangent)

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
        ``value_gain`` reward of that action exactly (a diverged update reads ``-inf``); with
        ``value="metric_gain"`` likewise the change of the feedback metric on the probe batch, the
        ``metric_gain`` reward exactly. The learner is not changed.

        Args:
            actions: actions to evaluate (default: every task of a ``Discrete`` menu, in index order).
            value: a name in :data:`LOOKAHEAD_VALUES`; default: the env's reward when it is
                ``"preconditioned"``, ``"cosine"``, ``"value_gain"`` or ``"metric_gain"``, else ``"alignment"``.

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
            does not depend on the task. ``metric_gain``: the same with a metric evaluation of the probe batch
            in place of the probe forward (one more for the metric before when the env's reward is not
            ``metric_gain``).

        Raises:
            RuntimeError: before ``reset`` or after the episode ended.
            ValueError: an action outside the action space, ``actions=None`` on a ``Box`` space, or an unknown
                ``value``.
        """
        if value is None:
            value = self.lookahead.default_value()
        if value not in LOOKAHEAD_VALUES:
            raise ValueError(f"value={value!r} is not accepted; choose one of {LOOKAHEAD_VALUES}")
        if not self._ready or self._done:
            raise RuntimeError("lookahead_values() needs a running episode: call reset() first")
        if actions is None:
            if not self._discrete:
                raise ValueError("actions=None is only defined for a Discrete menu; "
                                 f"pass actions for {self.action_space}")
            actions = list(range(cast(spaces.Discrete, self.action_space).n))
        tasks = [self.task_space.task(self._resolve_action(a)[0]) for a in actions]
        return self.lookahead.values(
            tasks, value, lambda: self.counterfactual(actions, measure=_no_measure, probe_loss=value == "value_gain",
                                                      probe_metric=value == "metric_gain")[1])

    # --------------------------------------------------------------------------------------------- reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Restore theta_0 and the optimizer bit-for-bit and start a new episode.

        Args:
            seed: episode seed; one ``numpy.random.SeedSequence(seed)`` is spawned into learner, task,
                data-order and feedback generators. ``None`` draws the episode seed from the env's
                ``np_random`` (itself seeded by the last ``reset(seed=...)``).
            options: unused.

        Returns:
            (observation [obs_dim] float32, info dict with ``ledger``, ``feedback_source``, ``episode_seed``).
        """
        super().reset(seed=seed)
        episode_seed = int(seed) if seed is not None else int(self.np_random.integers(0, 2**63 - 1))
        g_learner, g_tasks, g_data, g_feedback = self._rngs = _generators(episode_seed, 4)
        self.learner.reset(g_learner)
        self.task_space.reset(g_tasks)
        self.stream.reset(g_data)
        self.feedback.reset(g_feedback)

        self._ledger = Ledger()
        self._decisions = 0
        self._episode_seed = episode_seed
        self._counts = np.zeros(self.num_menu, dtype=np.int64)
        self._last_value = np.zeros(self.num_menu, dtype=np.float64)
        self._ema_pre: float | None = None
        self._ema_log_g_pre: float | None = None
        self._ema_cos: float | None = None
        self._done = False

        self.feedback_gradient.reset(self._ledger)
        self._diverged = not self.feedback_gradient.refresh()
        self.probe.reset(self._ledger)
        self.pending.reset(self._ledger)
        self.lookahead.reset(self._ledger)
        self.pending.prepare()
        self._ready = True
        info = {
            "learner_updates": 0,
            "ledger": self._ledger.as_dict(),
            "feedback_source": str(self.feedback.source),
            "episode_seed": episode_seed,
        }
        return self._observation(), info

    # ---------------------------------------------------------------------------------------------- step
    def _resolve_action(self, action: Any) -> tuple[Any, bool]:
        space: Any = self.action_space  # Discrete (self._discrete) or Box
        if self._discrete:
            a = np.asarray(action)
            if a.shape not in ((), (1,)) or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"action {action!r} is not an integer of the action space {space}; pass a menu index "
                                 f"0..{space.n - 1} (an int or a 0-d/1-element integer array)")
            index = int(a.reshape(()))
            if not space.contains(index):
                raise ValueError(f"action {action!r} is outside the action space {space} (accepted: 0..{space.n - 1}; "
                                 f"env.unwrapped.task_names lists the menu)")
            masked = not bool(self.action_masks()[index])
            return (self.standard_action if masked else index), masked
        if not _real_valued(action):  # bool, complex (its imaginary part would be dropped), strings, objects
            raise ValueError(f"action {action!r} is not a real-valued array of the action space {space} "
                             f"(low={space.low}, high={space.high})")
        try:
            a = np.asarray(action, dtype=space.dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"action {action!r} is not an array of the action space {space}") from exc
        if a.shape != space.shape:
            raise ValueError(f"action {action!r} has shape {a.shape}; the action space {space} needs {space.shape}")
        if not np.all(np.isfinite(a)) or not space.contains(a):
            raise ValueError(f"action {action!r} is outside the action space {space} "
                             f"(low={space.low}, high={space.high})")
        return a, False

    def _resolve_task(self, task: Task) -> Task:
        if self._accepts is None or not self._accepts(task):
            raise ValueError(f"task {task.name!r} (family {task.family!r}) is not accepted by "
                             f"{type(self.task_space).__name__}")
        if self.budget.updates_per_decision != 1:
            raise ValueError("a designer-built Task describes one batch: it needs updates_per_decision=1, "
                             f"got {self.budget.updates_per_decision}")
        return task

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Run ``updates_per_decision`` learner updates on the task the action picks.

        Args:
            action: an element of ``action_space``; or, through the differentiable-task hook, a
                :class:`~vpt_gym.core.Task` built by a designer for the pending batch (e.g. family
                ``given_targets`` of the LM task space; needs ``updates_per_decision == 1``). Such a task is
                reported by name in ``info["task"]`` and not counted in the per-task observation entries.

        Returns:
            (observation, reward, terminated, truncated, info) — see the class docstring.

        Raises:
            ValueError: the action is outside ``action_space`` (raised before any update).
            RuntimeError: ``step`` before ``reset`` or after the episode ended.
        """
        if isinstance(action, Task):
            task, k, masked = self._resolve_task(action), None, False
        else:
            action, masked = self._resolve_action(action)
            task, k = self.task_space.task(action), self.task_space.menu_index(action)
        if not self._ready or self._done:
            raise RuntimeError("call reset() before step(): the episode has not started or has ended")
        est = self.value_estimator
        reward = 0.0
        losses: list[float] = []
        cosines: list[float] = []
        alignment = preconditioned = step_value = 0.0
        diverged = self._diverged
        for _ in range(self.budget.updates_per_decision):
            if diverged:
                break
            applied = self._apply(task)
            if applied is None:
                diverged = True
                break
            stats, outcome = applied
            value = est.reward(outcome)
            reward += value
            losses.append(stats.loss)
            cosines.append(stats.cosine)
            alignment += stats.alignment
            preconditioned += float(outcome.preconditioned or 0.0)
            step_value += float(outcome.step_value or 0.0)
            self._record(k, stats.loss, stats, outcome)
            if self._ledger.learner_updates < self.budget.learner_updates:
                self.pending.prepare()
        self._decisions += 1
        if not diverged and self._decisions % self.budget.feedback_period == 0 and not self._budget_spent():
            diverged = not self.feedback_gradient.refresh()
        if diverged:
            reward = self.divergence_penalty
        self._diverged = diverged
        terminated = bool(diverged or self._budget_spent())
        self._done = terminated
        info: dict[str, Any] = {
            "learner_updates": int(self._ledger.learner_updates),
            "decision": int(self._decisions),
            "task": task.name,
            "masked_action": bool(masked),
            "diverged": bool(diverged),
            "pretrain_loss": float(np.mean(losses)) if losses else float("nan"),
            "feedback_loss": float(self.feedback_gradient.loss),
            "alignment": float(alignment),
            "preconditioned": float(preconditioned),
            "step_value": float(step_value),
            "cosine": float(np.mean(cosines)) if cosines else 0.0,
            "ledger": self._ledger.as_dict(),
        }
        if terminated and self.evaluate_at_end:
            with torch.no_grad():
                info["eval"] = {k2: float(v) for k2, v in self.feedback.evaluate(self.learner).items()}
        return self._observation(), float(reward), terminated, False, info

    # ----------------------------------------------------------------------------------- counterfactuals
    def counterfactual(self, actions: Sequence[Any] | None = None, *, measure: Callable[[Any], float],
                       probe_loss: bool = False, probe_metric: bool = False) -> tuple[float, list[Branch]]:
        """Counterfactual credit: each action's real update on the pending batch, measured, then undone.

        For each action the learner (weights, optimizer state, BatchNorm statistics, EMA teacher and centre:
        ``learner.snapshot()``) and the episode's generators are put back to the current state, the task's
        real update is taken exactly as :meth:`step` takes it (same batch, same g_down, same clipping and
        optimizer step), its :class:`~vpt_gym.value.UpdateOutcome` is recorded and ``measure(learner)`` is
        read. Afterwards the env is restored so that the episode continues bit-for-bit as without the call
        (CPU; checked in the tests). Nothing is charged in the ledger: this is a measurement harness
        (``benchmarks/reward_validity.py``), not a designer's look-ahead.

        Args:
            actions: actions to branch on (default: every task of a ``Discrete`` menu, in index order).
            measure: ``measure(learner) -> float``, e.g. the eval split's loss (``feedback.eval_loss``); run
                under ``torch.no_grad``.
            probe_loss: also measure L_down on the fixed probe batch before and after each update (fills
                ``probe_loss_before``/``_after`` of the outcomes, as the ``value_gain`` reward reads them).
            probe_metric: likewise the feedback metric (``metric_before``/``_after``, as ``metric_gain`` reads them).

        Returns:
            ``(measured_before, branches)``: ``measure`` at the current state and one :class:`Branch` per
            action (``outcome`` None when that update diverged).

        Raises:
            RuntimeError: outside a running episode. ValueError: an action outside the action space, or
            ``actions=None`` on a ``Box`` space.
        """
        if not self._ready or self._done:
            raise RuntimeError("counterfactual() needs a running episode: call reset() first")
        branchable = self.learner
        if not isinstance(branchable, BranchableLearner):
            raise NotImplementedError(f"{type(branchable).__name__} has no snapshot()/restore(): it cannot branch")
        if actions is None:
            if not self._discrete:
                raise ValueError("actions=None is only defined for a Discrete menu; "
                                 f"pass actions for {self.action_space}")
            actions = list(range(cast(spaces.Discrete, self.action_space).n))
        resolved = [self._resolve_action(a)[0] for a in actions]
        learner_state = branchable.snapshot()
        rng_states = [g.get_state() for g in self._rngs]
        parts = (self.task_space, self.stream, self.feedback)  # their plain attributes (e.g. a per-batch seed memo)
        part_states = [dict(vars(p)) if hasattr(p, "__dict__") else None for p in parts]
        probe = self.probe
        saved_ledger = copy.deepcopy(self._ledger)  # restored in place: the components hold this object
        saved_view = copy.deepcopy(self.pending.view)
        saved_probe = (probe.loss, probe.metric)
        with torch.no_grad():
            before = float(measure(self.learner))
        force_probe = probe_loss and not self.value_estimator.needs_probe_loss
        force_metric = probe_metric and not self.value_estimator.needs_probe_metric
        if force_probe:
            probe.loss = probe.measure(self.feedback.loss)
        if force_metric:
            probe.metric = probe.measure(self.feedback.metric)
        start = (probe.loss, probe.metric)
        branches: list[Branch] = []
        try:
            for action in resolved:
                branchable.restore(learner_state)
                for g, state in zip(self._rngs, rng_states, strict=True):
                    g.set_state(state)
                _restore_attributes(parts, part_states)
                probe.loss, probe.metric = start  # each branch's probe "before" is the current state's
                self.pending.rebuild_graph()  # the pending graph is spent by each branch's backward
                task = self.task_space.task(action)
                applied = self._apply(task, probe_loss=force_probe, probe_metric=force_metric)
                with torch.no_grad():
                    after = float(measure(self.learner))
                branches.append(Branch(action=action, task=task.name,
                                       outcome=None if applied is None else applied[1], measured=after))
        finally:
            branchable.restore(learner_state)
            for g, state in zip(self._rngs, rng_states, strict=True):
                g.set_state(state)
            _restore_attributes(parts, part_states)
            vars(self._ledger).update(vars(saved_ledger))
            self.pending.view = saved_view
            probe.loss, probe.metric = saved_probe
            self.pending.rebuild_graph()  # a fresh graph for the real update (same values, bitwise on CPU)
        return before, branches

    # ------------------------------------------------------------------------------------------ internals
    def _apply(self, task: Task, *, probe_loss: bool = False,
               probe_metric: bool = False) -> tuple[GradientStats, UpdateOutcome] | None:
        """One real learner update of ``task`` on the pending batch, with its outcome; None on divergence
        (a non-finite loss or gradient: nothing is applied). The ledger counts the update's passes."""
        est = self.value_estimator
        lr = float(self.learner.lr)
        std_alignment = None
        if est.needs_standard_gradient:
            std_alignment = self.lookahead.task_value(self._standard_task)
        loss = self.pending.task_loss(task, lookahead=False)
        batch = self.pending.trained_batch()
        g_pre = self.learner.backward(loss)
        self._ledger.learner_backward += 1
        g_down = self.feedback_gradient.for_task(task)
        stats = gradient_stats(g_down, g_pre, lr, loss=loss,  # the update's first host sync
                               g_down_norm=None if self._matched else self.feedback_gradient.norm)
        if not (np.isfinite(stats.loss) and np.isfinite(stats.g_pre_norm) and np.isfinite(stats.dot)):
            return None
        subset = self.learner.alignment_parameters()
        theta_before = [p.detach().clone() for p in subset]
        self.learner.apply_update()  # clips g_pre in place (live .grad buffers) when the learner clips
        preconditioner = cast(PreconditionedLearner, self.learner).preconditioner() if self._preconditioned else None
        preconditioned, step_value = step_values(g_down, g_pre, preconditioner, theta_before,  # second sync
                                                 [p.detach() for p in subset], lr)
        self._ledger.learner_updates += 1
        self._ledger.examples += int(batch.num_examples)
        self._ledger.tokens += int(batch.num_tokens)
        outcome = self.probe.outcome(stats, std_alignment, preconditioned=preconditioned, step_value=step_value,
                                     probe_loss=probe_loss, probe_metric=probe_metric)
        return stats, outcome

    def _budget_spent(self) -> bool:
        return self._ledger.learner_updates >= self.budget.learner_updates

    def _record(self, k: int | None, loss_value: float, stats: GradientStats, outcome: UpdateOutcome) -> None:
        d = self.ema_decay
        if k is not None:
            self._counts[k] += 1
            self._last_value[k] = (outcome.preconditioned if self.value_estimator.name == "preconditioned"
                                   else stats.alignment)
        log_norm = _log10(stats.g_pre_norm)
        self._ema_pre = loss_value if self._ema_pre is None else d * self._ema_pre + (1 - d) * loss_value
        self._ema_log_g_pre = log_norm if self._ema_log_g_pre is None else d * self._ema_log_g_pre + (1 - d) * log_norm
        self._ema_cos = stats.cosine if self._ema_cos is None else d * self._ema_cos + (1 - d) * stats.cosine

    def _observation(self) -> np.ndarray:
        k = self.num_menu
        fb = self.feedback_gradient
        updates = self._ledger.learner_updates
        base = [
            1.0 - updates / self.budget.learner_updates,
            self._ema_pre if self._ema_pre is not None else 0.0,
            fb.ema_loss if fb.ema_loss is not None else 0.0,
            self._ema_log_g_pre if self._ema_log_g_pre is not None else LOG10_NORM_RANGE[0],
            _log10(fb.norm),
            self._ema_cos if self._ema_cos is not None else 0.0,
        ]
        freq = self._counts / updates if updates else np.zeros(k)  # designer-built tasks are not counted
        obs = np.concatenate([np.asarray(base, dtype=np.float64), self._last_value, freq, self.pending.descriptors])
        obs = np.nan_to_num(obs, nan=0.0, posinf=VALUE_CAP, neginf=-VALUE_CAP)
        return np.clip(obs, self._obs_low, self._obs_high).astype(np.float32)
