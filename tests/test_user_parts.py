"""Parts a user passes through ``gymnasium.make``: a feedback set, a stream, a value-estimator object.

Known answer: handing an env the very parts its factory would build (taken from a twin env) gives the same
episode bitwise, and the part handed in is the one the env uses; a part missing Protocol members is refused
by name before anything is built.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from extras import needs

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.envs import env_keywords
from vpt_gym.value import AlignmentValue


def _episode(env: gym.Env, seed: int, steps: int) -> tuple[list[float], list[np.ndarray], dict[str, Any]]:
    obs, _ = env.reset(seed=seed)
    n = env.action_space.n  # type: ignore[attr-defined]
    rewards, observations, info = [], [obs], {}
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step((3 * t + 1) % n)
        rewards.append(float(reward))
        observations.append(obs)
        if terminated or truncated:
            break
    return rewards, observations, info


def _same(a, b) -> None:
    ra, oa, ia = a
    rb, ob, ib = b
    assert ra == rb
    assert all(np.array_equal(x, y) for x, y in zip(oa, ob, strict=True))
    assert ia.get("eval") == ib.get("eval")


CASES = [
    pytest.param("vpt/Toy-Alignment-v0", {"budget": 16}, ("feedback_set", "stream"), id="toy"),
    pytest.param("vpt/LM-SoftTargets-v1", {"size": "tiny", "budget": 6}, ("feedback_set", "stream"), id="lm"),
    pytest.param("vpt/LM-Domains-v1", {"size": "tiny", "budget": 6}, ("feedback_set",), id="lm-domains"),
    pytest.param("vpt/SSL-Mask-v1", {"size": "tiny", "budget": 4}, ("feedback_set", "stream"), id="ssl",
                 marks=needs("vision")),
]


@pytest.mark.parametrize(("env_id", "kwargs", "parts"), CASES)
def test_the_factorys_own_parts_passed_in_give_the_same_episode(env_id: str, kwargs: dict, parts: tuple) -> None:
    assert set(parts) <= set(env_keywords(env_id))
    twin = gym.make(env_id, **kwargs).unwrapped
    given = {"feedback_set": twin.feedback, "stream": twin.stream}
    given = {k: v for k, v in given.items() if k in parts}
    env = gym.make(env_id, **kwargs, **given).unwrapped
    assert env.feedback is twin.feedback
    if "stream" in parts:
        assert env.stream is twin.stream
    expected = _episode(gym.make(env_id, **kwargs), seed=4, steps=6)
    _same(_episode(env, seed=4, steps=6), expected)


def test_a_value_estimator_object_is_the_envs_reward() -> None:
    estimator = AlignmentValue()
    env = gym.make("vpt/Toy-Alignment-v0", budget=16, reward=estimator).unwrapped
    assert env.value_estimator is estimator
    _same(_episode(env, seed=2, steps=8), _episode(gym.make("vpt/Toy-Alignment-v0", budget=16), seed=2, steps=8))


@pytest.mark.parametrize(("env_id", "kwargs", "role"), [
    ("vpt/Toy-Alignment-v0", {}, "feedback_set"), ("vpt/Toy-Alignment-v0", {}, "stream"),
    ("vpt/LM-SoftTargets-v1", {"size": "tiny"}, "feedback_set"), ("vpt/LM-SoftTargets-v1", {"size": "tiny"}, "stream"),
    ("vpt/LM-Domains-v1", {"size": "tiny"}, "feedback_set")])
def test_a_part_missing_protocol_members_is_refused_by_name(env_id: str, kwargs: dict, role: str) -> None:
    with pytest.raises(TypeError, match=rf"{role}=object does not implement vpt_gym\.core\.\w+: missing .*reset"):
        gym.make(env_id, **kwargs, **{role: object()})


def test_the_domain_env_takes_no_stream() -> None:
    """LM-Domains' stream is tied to its domain task space (each row's domain), so it is not a keyword."""
    assert "stream" not in env_keywords("vpt/LM-Domains-v1")
    with pytest.raises(ValueError, match="stream"):
        gym.make("vpt/LM-Domains-v1", size="tiny", stream=object())
