"""The matched learner-update budget of an episode and the ledger of what it cost.

Source: V-Pretraining (Ke & Fanti, arXiv 2601.22108) compares designers at a matched learner-update budget;
everything else a designer spends (feedback passes, look-ahead) is counted so leaderboards see the true cost.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Budget:
    """The budget of one episode.

    Attributes:
        learner_updates: T, learner updates per episode (the matched budget), >= 1.
        updates_per_decision: learner updates per decision (action), >= 1, must divide ``learner_updates``.
        feedback_period: refresh ``g_down`` on a fresh feedback batch every this many decisions, >= 1
            (paper: every 8 steps).

    Raises:
        ValueError: a value outside the ranges above.
    """

    learner_updates: int
    updates_per_decision: int = 1
    feedback_period: int = 8

    def __post_init__(self) -> None:
        for name in ("learner_updates", "updates_per_decision", "feedback_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.learner_updates % self.updates_per_decision:
            raise ValueError(
                f"updates_per_decision={self.updates_per_decision} must divide "
                f"learner_updates={self.learner_updates}"
            )

    @classmethod
    def of(cls, budget: object, *, updates_per_decision: object = 1, feedback_period: object = 8) -> Budget:
        """A :class:`Budget` from user-facing arguments; errors name ``budget`` (the episode length).

        Raises:
            ValueError: ``budget`` is not an integer >= 1, or another field is out of range.
        """
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget (learner updates per episode) must be an integer >= 1, got {budget!r}")
        return cls(learner_updates=budget, updates_per_decision=updates_per_decision,  # type: ignore[arg-type]
                   feedback_period=feedback_period)  # type: ignore[arg-type]

    @property
    def decisions(self) -> int:
        """Decisions per episode = learner_updates / updates_per_decision."""
        return self.learner_updates // self.updates_per_decision


@dataclass(kw_only=True)
class Ledger:
    """What an episode spent, in passes and data. All fields are plain ints.

    Attributes:
        learner_updates: optimizer steps applied to the learner (the matched budget).
        learner_forward: forward passes of the learner on pretraining batches.
        learner_backward: backward passes of the learner on pretraining batches.
        feedback_forward: forward passes on feedback batches (g_down refresh, probes, metrics).
        feedback_backward: backward passes on feedback batches (g_down refresh).
        lookahead_forward: extra forward passes spent by designers or rewards to evaluate other tasks.
        lookahead_backward: extra backward passes spent by designers or rewards to evaluate other tasks.
        designer_forward: forward passes of a designer's own network (e.g. the differentiable designer).
        designer_backward: backward passes of a designer's own network (its meta updates).
        examples: pretraining examples (sequences, images, samples) consumed by learner updates.
        tokens: pretraining tokens consumed by learner updates (0 for non-token data).
        feedback_examples: labeled feedback examples read by feedback passes (g_down refreshes and probe
            forwards; an example read twice counts twice).
        feedback_tokens: tokens of those feedback examples, padding excluded (0 for non-token data).
    """

    learner_updates: int = 0
    learner_forward: int = 0
    learner_backward: int = 0
    feedback_forward: int = 0
    feedback_backward: int = 0
    lookahead_forward: int = 0
    lookahead_backward: int = 0
    designer_forward: int = 0
    designer_backward: int = 0
    examples: int = 0
    tokens: int = 0
    feedback_examples: int = 0
    feedback_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        """A copy as a plain ``dict[str, int]`` (safe to put in ``info``)."""
        return {k: int(v) for k, v in vars(self).items()}
