"""The component interfaces of a task-design environment (docs/ARCHITECTURE.md §3).

A :class:`~vpt_gym.envs.task_design.TaskDesignEnv` is composed of the parts below. Each is a
``typing.Protocol``: any object with these attributes works, no inheritance needed. Dependencies point
down: a learner knows nothing of tasks, rewards or RL; only the env knows Gymnasium.

Per learner update the env calls, in order::

    batch   = stream.next_batch()                        # before the decision (observed)
    outputs = learner.forward(batch)                     # one forward, kept for the update
    desc    = task_space.describe(batch, outputs)        # descriptors of that batch -> observation
    ...agent picks an action -> task...
    loss    = task_space.loss(batch, outputs, task)      # scalar pretraining loss L_pre(theta; task)
    g_pre   = learner.backward(loss)                     # full backward; returns the grads on S
    learner.apply_update()                               # theta <- optimizer(theta, grad)

and every ``feedback_period`` decisions ``g_down = learner.subset_gradient(feedback.loss(learner, b))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch

LOSS_CAP = 1.0e3
"""Upper bound of loss features in observations and batch descriptors (nats per token or the learner's unit)."""


@dataclass(frozen=True, kw_only=True)
class Task:
    """One pretraining task: how an unlabeled batch becomes a prediction problem.

    Attributes:
        name: human-readable, unique within a menu (e.g. ``"one_hot"``, ``"uniform_top64_a0.25"``).
        family: task family (e.g. ``"one_hot"``, ``"uniform"``, ``"self_distill"``, ``"source"``).
        params: family parameters (plain floats/ints/strings), e.g. ``{"alpha": 0.25, "temperature": 1.0}``.
    """

    name: str
    family: str
    params: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Learner(Protocol):
    """The model being (continued-)pretrained, its optimizer and its alignment subset S.

    Attributes:
        module: the ``torch.nn.Module`` being trained.
        device: the device of ``module``.
        lr: learning rate eta (the step size used in the first-order value ``eta * g_down . g_pre``).
        num_parameters: total trainable parameters.
        alignment_names: names (``named_parameters``) of the alignment subset S, in order.
    """

    @property
    def module(self) -> torch.nn.Module:
        """The ``torch.nn.Module`` being trained."""

    @property
    def device(self) -> torch.device:
        """The device of :attr:`module`."""

    @property
    def lr(self) -> float:
        """The learning rate eta."""

    def alignment_parameters(self) -> list[torch.Tensor]:
        """The alignment subset S (V-Pretraining v2 Eq. 28): the parameters whose gradients are aligned."""

    def reset(self, generator: torch.Generator) -> None:
        """Restore theta_0 and the optimizer state bit-for-bit from the in-memory snapshot.

        ``generator`` drives any learner-side randomness of the episode (none for the default learners).
        """

    def forward(self, batch: Any) -> Any:
        """Forward pass on a pretraining batch, with autograd graph (reused by the update)."""

    def backward(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Zero grads, backpropagate ``loss`` through all parameters; return the grads of S (g_pre,S).

        The returned tensors are the live ``.grad`` buffers of S (no copy); valid until the next call.
        """

    def subset_gradient(self, loss: torch.Tensor, *, retain_graph: bool = False) -> list[torch.Tensor]:
        """Gradient of ``loss`` w.r.t. S only (``torch.autograd.grad``); does not touch ``.grad``."""

    def apply_update(self) -> None:
        """One optimizer step with the grads left by :meth:`backward`."""


@runtime_checkable
class PreconditionedLearner(Protocol):
    """Capability: a learner whose optimizer preconditions its step (AdamW), for the ``preconditioned`` value.

    Without it the env uses P = 1 (the SGD case).
    """

    def preconditioner(self) -> list[torch.Tensor] | None:
        """P on S at the optimizer's current state (tensors shaped like S), or None for P = 1."""


@runtime_checkable
class BranchableLearner(Protocol):
    """Capability: a learner whose whole state can be copied and put back (counterfactual credit)."""

    def snapshot(self) -> Any:
        """A deep copy of everything an update changes (weights, buffers, optimizer state, EMA teacher)."""

    def restore(self, snapshot: Any) -> None:
        """Put back a :meth:`snapshot` bit-for-bit; the snapshot stays reusable."""


@runtime_checkable
class HeldOutLoss(Protocol):
    """Capability: a feedback set that reports a differentiable-loss counterpart on its eval split."""

    def eval_loss(self, learner: Learner) -> float:
        """The downstream loss on the fixed eval split at the learner's current state (lower is better)."""


@runtime_checkable
class PretrainStream(Protocol):
    """The unlabeled pretraining data: yields the batch of the next learner update."""

    def reset(self, generator: torch.Generator) -> None:
        """Start a new episode; all sampling uses ``generator`` (never a global RNG)."""

    def next_batch(self) -> Any:
        """The next pretraining batch (must expose ``num_examples`` and ``num_tokens`` ints)."""


@runtime_checkable
class TaskSpace(Protocol):
    """A task menu (``Discrete``) or a continuous task parameterization (``Box``).

    Attributes:
        action_space: the Gymnasium action space.
        tasks: the named menu (for a ``Box`` space: the single entry describing the family).
        standard_action: the action of the standard task (one-hot NTP, default augmentations, ...).
        descriptor_names / descriptor_low / descriptor_high: the batch descriptors' names and bounds.

    Optional capabilities, each a Protocol below that the env checks once at construction:
    :class:`TaskDependentForward`, :class:`AcceptsTasks`, :class:`MaskedActions`, :class:`LinearTaskValues`,
    :class:`DifferentiableTasks`.
    """

    # Read-only properties, so that an implementation may hold a narrower type (``Box``, a tuple of names).
    @property
    def action_space(self) -> gym.Space:
        """The Gymnasium action space."""

    @property
    def tasks(self) -> Sequence[Task]:
        """The named menu (for a ``Box`` space: the single entry describing the family)."""

    @property
    def standard_action(self) -> Any:
        """The action of the standard task."""

    @property
    def descriptor_names(self) -> Sequence[str]:
        """The batch descriptors' names."""

    @property
    def descriptor_low(self) -> np.ndarray:
        """The batch descriptors' lower bounds."""

    @property
    def descriptor_high(self) -> np.ndarray:
        """The batch descriptors' upper bounds."""

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode; stochastic tasks (random masks, augmentations) draw from ``generator``."""

    def task(self, action: Any) -> Task:
        """The task for an action inside ``action_space`` (validated by the env before)."""

    def menu_index(self, action: Any) -> int:
        """Index into ``tasks`` used for per-task statistics (always 0 for a continuous space)."""

    def loss(self, batch: Any, outputs: Any, task: Task) -> torch.Tensor:
        """Scalar pretraining loss of ``task`` on ``batch`` given the learner's ``outputs``."""

    def describe(self, batch: Any, outputs: Any) -> np.ndarray:
        """Descriptors of the batch the next update will use, shape [num_descriptors], float32."""


@runtime_checkable
class FeedbackSet(Protocol):
    """A small labeled downstream set: feedback split (rewards) and a disjoint eval split.

    Attributes:
        source: where the examples came from (e.g. ``"gsm8k:/data/gsm8k"``).
        metric_name: name of the non-differentiable feedback metric (e.g. ``"pass@1"``).
    """

    @property
    def source(self) -> str:
        """Where the examples came from."""

    @property
    def metric_name(self) -> str:
        """The name of the non-differentiable feedback metric."""

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: feedback sampling uses ``generator``; draws the fixed probe batch."""

    def sample_batch(self) -> Any:
        """A fresh feedback batch from the feedback split (``num_examples``/``num_tokens`` ints)."""

    def probe_batch(self) -> Any:
        """The episode's fixed feedback probe batch (for ``value_gain`` and ``metric_gain``)."""

    def loss(self, learner: Learner, batch: Any) -> torch.Tensor:
        """Differentiable downstream loss L_down on a feedback batch, scalar float32."""

    def metric(self, learner: Learner, batch: Any) -> float:
        """Non-differentiable feedback metric on a feedback batch (higher is better)."""

    def evaluate(self, learner: Learner) -> dict[str, float]:
        """Held-out metrics on the eval split (never seen by designers or rewards)."""


# --- Optional capabilities ---------------------------------------------------------------------------------
# Each is checked once, when a TaskDesignEnv is built (``capability``); the env never probes its parts later.


@runtime_checkable
class TaskDependentForward(Protocol):
    """A task space whose tasks change the learner's input (augmentations, masks, data domains).

    With ``task_dependent_forward = True`` the env runs the learner's forward on ``materialize(batch, task)``
    (the task's view of the pending batch; it exposes ``num_examples``/``num_tokens``) inside ``step``, not
    before the observation; it then calls ``describe(batch, None)`` and ``loss(view, outputs, task)``.
    """

    task_dependent_forward: bool

    def materialize(self, batch: Any, task: Task) -> Any:
        """The task's view of ``batch`` (the learner's input for this task's update)."""


@runtime_checkable
class AcceptsTasks(Protocol):
    """A task space that takes designer-built :class:`Task` objects as actions (``env.step(task)``)."""

    def accepts(self, task: Task) -> bool:
        """Whether ``task`` (built by a designer, not from the menu) is a task of this family."""


@runtime_checkable
class MaskedActions(Protocol):
    """A menu with currently invalid tasks (``env.action_masks()``, as sb3-contrib's MaskablePPO reads)."""

    def action_masks(self) -> np.ndarray:
        """Valid-action mask, shape [K], bool."""


@runtime_checkable
class LinearTaskValues(Protocol):
    """Soft-target families whose loss is linear in the target: every task's value in one forward-mode pass.

    The env's look-ahead uses it (``lookahead_values``) instead of one backward per task.
    """

    def linear_values(self, learner: Any, batch: Any, outputs: torch.Tensor, tangent: Sequence[torch.Tensor],
                      tasks: Sequence[Task]) -> np.ndarray:
        """``tangent . g_pre(task)`` for each task, shape [len(tasks)], float64 (before the lr factor)."""


@runtime_checkable
class DifferentiableTasks(Protocol):
    """The hook of the paper's differentiable task designer (V-Pretraining v2 Eq. 10-12)."""

    def value_derivative(self, learner: Any, batch: Any, outputs: torch.Tensor,
                         tangent: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(C [batch, seq - 1, K] int64, D [batch, seq - 1, K] float32): the value's derivative per target."""


@runtime_checkable
class DomainMatchedFeedback(Protocol):
    """A multi-task feedback set that scores each update with its domains' own feedback tasks.

    With ``domain_matched = True`` the env caches each g_j at every refresh (one feedback forward/backward
    per task j) and scores an update of ``task`` with ``g_down(task) = sum_j w_j(task) g_j``
    (V-Pretraining v2 Eq. 44-46).
    """

    domain_matched: bool
    weights: Mapping[str, float]

    def task_losses(self, learner: Any, batch: Any) -> dict[str, torch.Tensor]:
        """{j: scalar L_j} on a feedback batch."""

    def matched_weights(self, task: Task) -> dict[str, float]:
        """{j: w_j(task)}: the feedback weights that score an update of ``task``."""


@runtime_checkable
class FeedbackValidation(Protocol):
    """A feedback set that scores a whole learner state on its feedback split alone (the eval split unread).

    Used by designers that choose among whole training runs (:class:`vpt_gym.agents.selection.
    SelectFixedDesigner`): a validation score, like a held-out score but computed on the designer's own
    labelled data, so choosing by it never reads the eval split.
    """

    def validation_score(self, learner: Any) -> float:
        """Higher is better; a deterministic function of the learner's state and the feedback split."""


@runtime_checkable
class SubsetOnlyGradients(Protocol):
    """A learner that can stop the feedback backward at S (no autograd graph below the subset)."""

    def grad_only_on_subset(self) -> AbstractContextManager[None]:
        """A context inside which the forward builds a graph only for the parameters of S."""


def protocol_members(protocol: type) -> tuple[str, ...]:
    """The attribute and method names a ``Protocol`` declares (its own, sorted), e.g. for error messages."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n in vars(protocol) if not n.startswith("_")}
    return tuple(sorted(names))


def missing_members(part: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``part`` lacks (empty when ``part`` implements it)."""
    return [name for name in protocol_members(protocol) if not hasattr(part, name)]


def require(part: object, protocol: type, role: str) -> None:
    """Check that ``part`` implements ``protocol``.

    Raises:
        TypeError: naming the role (e.g. ``"task_space"``), the part's type and every missing member.
    """
    missing = missing_members(part, protocol)
    if missing:
        raise TypeError(f"{role}={type(part).__name__} does not implement vpt_gym.core.{protocol.__name__}: "
                        f"missing {', '.join(missing)}")


def capability(part: object, protocol: type, *, flag: str | None = None) -> bool:
    """Whether ``part`` has the optional capability ``protocol`` (checked once, at env construction).

    Args:
        part: a task space, feedback set or learner.
        protocol: one of the capability Protocols of this module.
        flag: for a capability that a part switches on with a boolean attribute (``task_dependent_forward``,
            ``domain_matched``): the part has it only when that attribute is true.

    Raises:
        TypeError: ``flag`` is set on ``part`` but the rest of ``protocol`` is missing (names what is missing).
    """
    missing = missing_members(part, protocol)
    if flag is not None:
        on = bool(getattr(part, flag, False))
        if on and missing:
            raise TypeError(f"{type(part).__name__} sets {flag} = True but does not implement "
                            f"vpt_gym.core.{protocol.__name__}: missing {', '.join(missing)}")
        return on
    return not missing
