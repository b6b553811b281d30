"""The env's components (g_down, probe, pending update, look-ahead) passed to TaskDesignEnv as constructor
arguments: the defaults are what ``for_parts`` builds, a subclass changes the MDP the way it says, and a
component built for other parts is refused before any work."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vpt_gym.budget import Budget
from vpt_gym.envs.task_design import FeedbackGradient, FeedbackProbe, Lookahead, PendingUpdate, TaskDesignEnv
from vpt_gym.envs.toy import make_toy_env
from vpt_gym.value import make_value_estimator

ACTIONS = [0, 2, 1, 1, 0, 3, 2, 0, 1, 3, 3, 2]


def _parts() -> dict[str, Any]:
    """The parts of a fresh toy env (its public attributes); g_down refreshed every 3 decisions."""
    env = make_toy_env(budget=len(ACTIONS))
    return {"learner": env.learner, "task_space": env.task_space, "stream": env.stream, "feedback": env.feedback,
            "budget": Budget.of(len(ACTIONS), feedback_period=3)}


def _rollout(env: TaskDesignEnv, seed: int = 5) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for action in ACTIONS:
        obs, reward, *_ = env.step(action)
        observations.append(obs)
        rewards.append(float(reward))
    return observations, rewards


class FakeNegatedFeedbackGradient(FeedbackGradient):
    """A fake g_down component (unit test only): each refresh keeps -grad_S L_down instead of grad_S L_down."""

    def refresh(self) -> bool:
        ok = super().refresh()
        self.g_down = [-g for g in self.g_down]
        return ok


class FakeCountingLookahead(Lookahead):
    """A fake look-ahead (unit test only): counts the calls of ``values``."""

    calls = 0

    def values(self, *args: Any, **kwargs: Any) -> np.ndarray:
        self.calls += 1
        return super().values(*args, **kwargs)


def test_components_built_by_for_parts_are_the_defaults() -> None:
    """An env given the four components built by for_parts is the default env, bitwise."""
    parts = _parts()
    estimator = make_value_estimator("alignment")
    g = FeedbackGradient.for_parts(parts["feedback"], parts["learner"])
    pending = PendingUpdate.for_parts(parts["learner"], parts["task_space"], parts["stream"])
    given = TaskDesignEnv(**parts, reward=estimator, feedback_gradient=g, pending=pending,
                          probe=FeedbackProbe.for_parts(parts["feedback"], parts["learner"], estimator),
                          lookahead=Lookahead.for_parts(learner=parts["learner"], task_space=parts["task_space"],
                                                        pending=pending, feedback_gradient=g,
                                                        value_estimator=estimator))
    assert given.feedback_gradient is g and given.pending is pending
    obs_a, rewards_a = _rollout(given)
    obs_b, rewards_b = _rollout(TaskDesignEnv(**_parts()))
    assert rewards_a == rewards_b
    for a, b in zip(obs_a, obs_b, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_feedback_gradient_with_momentum_is_the_env_argument() -> None:
    """The running average set on the component equals ``feedback_momentum=`` on the env (and is not the
    fresh-gradient episode: the test can fail)."""
    parts = _parts()
    g = FeedbackGradient.for_parts(parts["feedback"], parts["learner"], momentum=0.5)
    env = TaskDesignEnv(**parts, feedback_gradient=g)
    assert env.feedback_momentum == 0.5
    _, with_component = _rollout(env)
    _, with_argument = _rollout(TaskDesignEnv(**_parts(), feedback_momentum=0.5))
    _, fresh = _rollout(TaskDesignEnv(**_parts()))
    assert with_component == with_argument
    assert with_component != fresh


def test_a_subclassed_feedback_gradient_changes_the_reward_as_it_says() -> None:
    """alignment = eta * g_down . g_pre is linear in g_down: negating g_down negates every reward exactly,
    while the learner (never updated on g_down) takes the same steps."""
    parts = _parts()
    negated = TaskDesignEnv(**parts, feedback_gradient=FakeNegatedFeedbackGradient.for_parts(parts["feedback"],
                                                                                               parts["learner"]))
    _, rewards_negated = _rollout(negated)
    theta_negated = negated.learner.module.theta.detach().clone()
    default = TaskDesignEnv(**_parts())
    _, rewards = _rollout(default)
    assert any(r != 0.0 for r in rewards)
    assert rewards_negated == [-r for r in rewards]
    torch.testing.assert_close(theta_negated, default.learner.module.theta.detach(), rtol=0, atol=0)


def test_a_given_lookahead_answers_the_designer_queries() -> None:
    parts = _parts()
    g = FeedbackGradient.for_parts(parts["feedback"], parts["learner"])
    pending = PendingUpdate.for_parts(parts["learner"], parts["task_space"], parts["stream"])
    estimator = make_value_estimator("alignment")
    lookahead = FakeCountingLookahead.for_parts(learner=parts["learner"], task_space=parts["task_space"],
                                                pending=pending, feedback_gradient=g, value_estimator=estimator)
    env = TaskDesignEnv(**parts, reward=estimator, feedback_gradient=g, pending=pending, lookahead=lookahead)
    reference = TaskDesignEnv(**_parts())
    for e in (env, reference):
        e.reset(seed=2)
    np.testing.assert_array_equal(env.lookahead_values(), reference.lookahead_values())
    assert lookahead.calls == 1


def test_a_component_built_for_other_parts_is_refused_by_name() -> None:
    parts, other = _parts(), _parts()
    with pytest.raises(ValueError, match=r"feedback_gradient was built for another learner than the env's: "
                                         r"a different TorchLearner instance"):
        TaskDesignEnv(**parts, feedback_gradient=FeedbackGradient.for_parts(parts["feedback"], other["learner"]))
    with pytest.raises(ValueError, match=r"pending was built for another stream"):
        TaskDesignEnv(**parts, pending=PendingUpdate.for_parts(parts["learner"], parts["task_space"],
                                                               other["stream"]))
    with pytest.raises(ValueError, match=r"probe was built for another estimator .*reward=estimator"):
        TaskDesignEnv(**parts, probe=FeedbackProbe(parts["feedback"], parts["learner"],
                                                   make_value_estimator("alignment")))
    g = FeedbackGradient.for_parts(parts["feedback"], parts["learner"])
    pending = PendingUpdate.for_parts(parts["learner"], parts["task_space"], parts["stream"])
    estimator = make_value_estimator("alignment")
    lookahead = Lookahead.for_parts(learner=parts["learner"], task_space=parts["task_space"], pending=pending,
                                    feedback_gradient=g, value_estimator=estimator)
    with pytest.raises(ValueError, match=r"lookahead was built for another pending .*pending=\.\.\."):
        TaskDesignEnv(**parts, reward=estimator, feedback_gradient=g, lookahead=lookahead)
    with pytest.raises(TypeError, match=r"probe must be a vpt_gym\.envs\.task_design\.FeedbackProbe .*got dict"):
        TaskDesignEnv(**parts, probe={})  # type: ignore[arg-type]


class FakeUninitializedFeedbackGradient(FeedbackGradient):
    """A fake g_down component (unit test only) whose __init__ forgets super().__init__."""

    def __init__(self) -> None:
        pass


def test_a_subclass_without_super_init_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"feedback_gradient=FakeUninitializedFeedbackGradient holds no 'feedback': "
                                         r"a subclass must call super\(\).__init__"):
        TaskDesignEnv(**_parts(), feedback_gradient=FakeUninitializedFeedbackGradient())


def test_g_down_keeps_its_shapes() -> None:
    env = TaskDesignEnv(**_parts())
    env.reset(seed=0)
    g = env.feedback_gradient
    g.g_down = [2.0 * x for x in g.g_down]
    assert g.norm == pytest.approx(float(torch.cat([x.reshape(-1) for x in g.g_down]).norm()), rel=1e-12)
    with pytest.raises(ValueError, match=r"g_down must keep its 1 tensors and their shapes \[\(8,\)\], got \[\(3,\)\]"):
        g.g_down = [torch.zeros(3)]


def test_momentum_given_twice_is_refused() -> None:
    parts = _parts()
    g = FeedbackGradient.for_parts(parts["feedback"], parts["learner"], momentum=0.5)
    with pytest.raises(ValueError, match=r"feedback_momentum=0\.25 is given besides a feedback_gradient of "
                                         r"momentum 0\.5"):
        TaskDesignEnv(**parts, feedback_gradient=g, feedback_momentum=0.25)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\), got 1\.0"):
        FeedbackGradient.for_parts(parts["feedback"], parts["learner"], momentum=1.0)


def test_the_architecture_doc_example_runs() -> None:
    """docs/ARCHITECTURE.md's subclass example, run on the toy's parts: every g_down entry ends clipped."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "ClippedGDown" in b]
    assert len(blocks) == 1
    namespace: dict[str, Any] = dict(_parts())
    exec(blocks[0], namespace)  # noqa: S102 - the repository's own documentation
    env = namespace["env"]
    _, rewards = _rollout(env)
    assert env.feedback_momentum == 0.5 and len(rewards) == len(ACTIONS)
    assert max(float(g.abs().max()) for g in env.g_down) <= 1e-3
