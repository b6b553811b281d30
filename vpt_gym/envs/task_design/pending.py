"""The pending update of :class:`~vpt_gym.envs.task_design.TaskDesignEnv`: the batch the next learner update
will use, the learner's forward on it, and a task-dependent family's view of it; a component that owns this
state and charges its passes in the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from vpt_gym.core import Learner, PretrainStream, Task, TaskDependentForward, TaskSpace, capability

if TYPE_CHECKING:
    from vpt_gym.budget import Ledger

__all__ = ["PendingUpdate"]


class PendingUpdate:
    """The batch of the next learner update and its forward; owns its state.

    The batch is sampled from the stream before each decision (the observation describes it). Where the
    learner's forward does not depend on the task (soft targets), the forward runs once, at sampling, and
    every task's loss reuses it; where it does (``TaskDependentForward``: augmentations, masks, data
    domains), each task's view of the batch is built by ``task_space.materialize`` and run through the
    learner when the task's loss is asked for.

    State (from :meth:`reset`, then :meth:`prepare`): ``batch`` (the stream's batch), ``outputs`` (the
    learner's outputs on it, with graph; None for a task-dependent family), ``view`` (the view the last real
    update trained on; task-dependent families only), ``descriptors`` (the task space's description of the
    batch, [num_descriptors] float64). Passes are charged in the ledger given to :meth:`reset`.
    """

    def __init__(self, learner: Learner, task_space: TaskSpace, stream: PretrainStream, *,
                 task_dependent: bool) -> None:
        self.learner = learner
        self.task_space = task_space
        self.stream = stream
        self.task_dependent = bool(task_dependent)
        """Whether the learner's forward depends on the task (``TaskDependentForward``)."""
        self.batch: Any = None
        self.outputs: Any = None
        self.view: Any = None
        self.descriptors = np.zeros(0, dtype=np.float64)

    @classmethod
    def for_parts(cls, learner: Learner, task_space: TaskSpace, stream: PretrainStream) -> PendingUpdate:
        """The component for these parts, ``TaskDependentForward`` resolved on ``task_space``: what
        :class:`TaskDesignEnv` builds when no ``pending`` is given.

        Raises:
            TypeError: ``task_space`` sets ``task_dependent_forward`` without the rest of the capability.
        """
        return cls(learner, task_space, stream,
                   task_dependent=capability(task_space, TaskDependentForward, flag="task_dependent_forward"))

    def reset(self, ledger: Ledger) -> None:
        """Start an episode charging ``ledger``; nothing is pending until :meth:`prepare`."""
        self._ledger = ledger
        self.batch = self.outputs = self.view = None

    def prepare(self) -> None:
        """Sample the next batch and, unless the forward depends on the task, run its forward (charged as
        ``learner_forward``; reused by the next update and by every look-ahead of it)."""
        self.batch = self.stream.next_batch()
        if self.task_dependent:
            self.outputs = None
        else:
            self.outputs = self.learner.forward(self.batch)
            self._ledger.learner_forward += 1
        self.descriptors = np.asarray(self.task_space.describe(self.batch, self.outputs), dtype=np.float64)

    def rebuild_graph(self) -> None:
        """Run the pending forward again (a backward spent its graph); not charged: a branch of the
        counterfactual harness, whose passes are restored. No-op for a task-dependent family."""
        if not self.task_dependent:
            self.outputs = self.learner.forward(self.batch)

    def task_loss(self, task: Task, *, lookahead: bool) -> torch.Tensor:
        """Pretraining loss of ``task`` on the pending batch: a 0-d tensor with graph to the learner.

        Task-independent forwards reuse the pending forward. Where the forward depends on the task,
        ``task_space.materialize(batch, task)`` builds the task's view and the learner runs a forward on it,
        charged as ``lookahead_forward`` for a look-ahead, else ``learner_forward`` (then the view is kept
        as :attr:`view`: the batch that update trained on).
        """
        if not self.task_dependent:
            return self.task_space.loss(self.batch, self.outputs, task)
        view = cast(TaskDependentForward, self.task_space).materialize(self.batch, task)
        outputs = self.learner.forward(view)
        if lookahead:
            self._ledger.lookahead_forward += 1
        else:
            self._ledger.learner_forward += 1
            self.view = view
        return self.task_space.loss(view, outputs, task)

    def trained_batch(self) -> Any:
        """The batch the last real update trained on: the task's view (task-dependent families), else the
        pending batch (its examples and tokens are the ledger's)."""
        return self.view if self.task_dependent else self.batch
