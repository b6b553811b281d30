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
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch


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

    Optional hook for task families whose forward depends on the task (augmentations, masks, data
    domains): ``task_dependent_forward = True`` and ``materialize(batch, task) -> view``, the task's view of
    the pending batch (must expose ``num_examples``/``num_tokens``). The env then runs the learner's forward
    on the view inside ``step`` (not before the observation), calls ``describe(batch, None)`` and
    ``loss(view, outputs, task)``.
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
