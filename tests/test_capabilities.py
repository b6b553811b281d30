"""The parts' interface as declared Protocols (vpt_gym.core): required ones checked and optional capabilities
resolved once when a TaskDesignEnv is built from its parts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vpt_gym.budget import Budget
from vpt_gym.core import (
    AcceptsTasks,
    DifferentiableTasks,
    DomainMatchedFeedback,
    LinearTaskValues,
    MaskedActions,
    SubsetOnlyGradients,
    TaskDependentForward,
    TaskSpace,
    capability,
    missing_members,
    protocol_members,
)
from vpt_gym.envs.task_design import TaskDesignEnv
from vpt_gym.envs.toy import ToyConfig, ToyTaskSpace, ToyWorld, make_toy_env
from vpt_gym.learners import TorchLearner


def _toy_parts() -> dict[str, Any]:
    """The parts of a fresh toy env (its public attributes), to build another TaskDesignEnv from."""
    env = make_toy_env(budget=8)
    return {"learner": env.learner, "task_space": env.task_space, "stream": env.stream, "feedback": env.feedback,
            "budget": Budget.of(8)}


class FakeTaskSpaceWithoutReset:
    """A fake task space (unit test only): the toy menu with its ``reset`` hidden."""

    def __init__(self, inner: ToyTaskSpace) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "reset":
            raise AttributeError(name)
        return getattr(self._inner, name)


class FakeFlaggedTaskSpace(ToyTaskSpace):
    """A fake task space (unit test only) that declares a task-dependent forward but has no materialize()."""

    task_dependent_forward = True


class FakeMaskedTaskSpace(ToyTaskSpace):
    """A fake task space (unit test only) masking every task but the first."""

    def action_masks(self) -> np.ndarray:
        mask = np.zeros(len(self.tasks), dtype=bool)
        mask[0] = True
        return mask


def test_protocol_members_are_what_the_protocols_declare() -> None:
    assert protocol_members(TaskDependentForward) == ("materialize", "task_dependent_forward")
    assert protocol_members(DomainMatchedFeedback) == ("domain_matched", "matched_weights", "task_losses",
                                                       "weights")
    assert "reset" in protocol_members(TaskSpace)


def test_an_env_built_from_its_parts_is_the_registered_env() -> None:
    """TaskDesignEnv(**parts) of the toy is the same MDP as make_toy_env: same seed, same rollout (bitwise)."""
    built = TaskDesignEnv(**_toy_parts())
    made = make_toy_env(budget=8)
    for env in (built, made):
        env.reset(seed=3)
    for action in [0, 2, 1, 1, 0, 3, 2, 0]:
        a, b = built.step(action), made.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
    assert built.ledger.learner_updates == 8 and a[2]
    assert built.action_masks().all()  # the toy menu masks nothing


def test_a_part_missing_a_required_member_is_refused_by_name() -> None:
    parts = _toy_parts()
    parts["task_space"] = FakeTaskSpaceWithoutReset(parts["task_space"])
    with pytest.raises(TypeError, match=r"task_space=FakeTaskSpaceWithoutReset does not implement "
                                        r"vpt_gym\.core\.TaskSpace: missing reset"):
        TaskDesignEnv(**parts)
    parts = _toy_parts()
    parts["feedback"] = object()
    with pytest.raises(TypeError, match=r"feedback=object .*FeedbackSet: missing evaluate, loss, metric"):
        TaskDesignEnv(**parts)


def test_a_flagged_capability_without_its_methods_is_refused_by_name() -> None:
    parts = _toy_parts()
    parts["task_space"] = FakeFlaggedTaskSpace(ToyWorld(ToyConfig()))
    with pytest.raises(TypeError, match=r"FakeFlaggedTaskSpace sets task_dependent_forward = True but does not "
                                        r"implement vpt_gym\.core\.TaskDependentForward: missing materialize"):
        TaskDesignEnv(**parts)


def test_a_capability_is_read_once_at_construction() -> None:
    """The env takes its mask from the part it was built with (checked at construction, called after)."""
    parts = _toy_parts()
    space = FakeMaskedTaskSpace(ToyWorld(ToyConfig()))
    parts["task_space"] = space
    env = TaskDesignEnv(**parts)
    expected = np.zeros(len(space.tasks), dtype=bool)
    expected[0] = True
    np.testing.assert_array_equal(env.action_masks(), expected)
    assert isinstance(space, MaskedActions) and not isinstance(ToyTaskSpace(ToyWorld(ToyConfig())), MaskedActions)


def test_the_shipped_parts_declare_their_capabilities() -> None:
    from vpt_gym.lm.soft_targets import SoftTargetTaskSpace

    assert missing_members(SoftTargetTaskSpace, LinearTaskValues) == []
    assert missing_members(SoftTargetTaskSpace, DifferentiableTasks) == []
    assert missing_members(SoftTargetTaskSpace, AcceptsTasks) == []
    assert missing_members(TorchLearner, SubsetOnlyGradients) == []
    toy = ToyTaskSpace(ToyWorld(ToyConfig()))
    assert not capability(toy, TaskDependentForward, flag="task_dependent_forward")
    assert not isinstance(toy, LinearTaskValues)

