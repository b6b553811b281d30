"""The MDP contract (docs/ARCHITECTURE.md §2), checked on every registered id with its ``smoke_kwargs``.

Parametrized over :data:`vpt_gym.envs.ENV_IDS`, so a new registration is checked without touching this file.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from extras import env_params
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers import PassiveEnvChecker

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.envs import ENV_IDS

ENV_ID_LIST = env_params(sorted(ENV_IDS))  # skip, with the reason, envs whose extra is missing
LATEST_IDS = env_params(sorted(ENV_IDS), latest_only=True)  # episodes: older versions only under -m slow
INFO_KEYS = ("learner_updates", "task", "pretrain_loss", "feedback_loss", "alignment", "cosine", "ledger")
PLAIN_SCALARS = (bool, int, float, str, type(None))
# SB3's checker may only warn about the bounds/dtype of a Box action space (the brief of these tests).
SB3_ALLOWED_WARNINGS = ("symmetric and normalized Box action space", "action space has dtype")


def _smoke_kwargs(env_id: str) -> dict[str, Any]:
    return dict(ENV_IDS[env_id]["smoke_kwargs"])


def _make(env_id: str, **overrides: Any) -> gym.Env:
    return gym.make(env_id, **{**_smoke_kwargs(env_id), **overrides})


def _budget(env_id: str) -> int:
    return int(_smoke_kwargs(env_id)["budget"])


def _actions(space: gym.Space, count: int, seed: int) -> list[Any]:
    """A fixed, seeded action sequence inside ``space``."""
    rng = np.random.default_rng(seed)
    if isinstance(space, spaces.Discrete):
        return [int(space.start + rng.integers(space.n)) for _ in range(count)]
    assert isinstance(space, spaces.Box), space
    return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(count)]


def _invalid_actions(space: gym.Space) -> list[Any]:
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        return [start + n, start - 1, 2.5, np.int64(start + n), [start, start], "0"]
    assert isinstance(space, spaces.Box), space
    inside = ((space.low + space.high) / 2).astype(space.dtype)
    above = inside.copy()
    above.flat[0] = space.high.flat[0] + 1.0
    below = inside.copy()
    below.flat[-1] = space.low.flat[-1] - 0.5
    nan = inside.copy()
    nan.flat[0] = np.nan
    return [
        np.concatenate([inside.ravel(), inside.ravel()[:1]]),  # wrong shape (one element too many)
        inside.ravel()[:-1] if inside.size > 1 else np.zeros((2, 2), dtype=space.dtype),  # wrong shape
        above,
        below,
        nan,
        float(inside.flat[0]),  # a scalar for a vector space
    ]


def _assert_plain(value: Any, where: str) -> None:
    """Everything in info is plain Python: no tensors, no numpy arrays."""
    assert not isinstance(value, (torch.Tensor, np.ndarray)), f"{where} is a {type(value).__name__}"
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), f"{where} has non-str key {k!r}"
            _assert_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _assert_plain(v, f"{where}[{i}]")
    else:
        assert isinstance(value, PLAIN_SCALARS), f"{where} = {value!r} is a {type(value).__name__}"


def _same(a: Any, b: Any, where: str = "info") -> None:
    """Bitwise equality of nested infos (NaN equals NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == b or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _state(env: gym.Env) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in env.unwrapped.learner.module.state_dict().items()}


def _assert_state_equal(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        assert actual[k].dtype == expected[k].dtype, k
        assert torch.equal(actual[k], expected[k]), f"parameter {k} differs from theta_0"


def _run_episode(env: gym.Env, actions: list[Any], seed: int) -> tuple[list, list, list, list, list]:
    obs, info = env.reset(seed=seed)
    observations, rewards, terminateds, truncateds, infos = [obs], [], [], [], [info]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        terminateds.append(terminated)
        truncateds.append(truncated)
        infos.append(info)
        if terminated or truncated:
            break
    return observations, rewards, terminateds, truncateds, infos


# --------------------------------------------------------------------------------------------- checkers
@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_gymnasium_check_env(env_id: str) -> None:
    env = _make(env_id)
    kind = "discrete" if isinstance(env.action_space, gym.spaces.Discrete) else "box"
    assert ENV_IDS[env_id]["action"] == kind, "ENV_IDS action is out of date"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
    gym_warnings = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert gym_warnings == [], gym_warnings
    env.close()


@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_passive_checker_through_make(env_id: str) -> None:
    env = _make(env_id)
    assert env.spec is not None and env.spec.id == env_id
    wrapper, chain = env, []
    while isinstance(wrapper, gym.Wrapper):
        chain.append(type(wrapper))
        wrapper = wrapper.env
    assert PassiveEnvChecker in chain, f"gymnasium.make did not add the passive checker: {chain}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs, info = env.reset(seed=0)
        for action in _actions(env.action_space, 2, seed=0):
            obs, reward, terminated, truncated, info = env.step(action)
    gym_warnings = [str(w.message) for w in caught if "WARN" in str(w.message)]
    assert gym_warnings == [], gym_warnings
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_sb3_check_env(env_id: str) -> None:
    pytest.importorskip("stable_baselines3", reason="needs the 'sb3' extra (pip install -e '.[sb3]')")
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = _make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sb3_check_env(env.unwrapped, warn=True)
    bad = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and not any(a in str(w.message) for a in SB3_ALLOWED_WARNINGS)
    ]
    assert bad == [], bad
    env.close()


# ------------------------------------------------------------------------------ episode and determinism
@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_full_episode_contract_and_determinism(env_id: str) -> None:
    """A full random-action episode obeys §2, and a second env replays it bitwise (same seed and actions)."""
    budget = _budget(env_id)
    env_a, env_b = _make(env_id), _make(env_id)
    base = env_a.unwrapped
    assert base.budget.updates_per_decision == 1
    assert base.budget.learner_updates == budget
    actions = _actions(env_a.action_space, budget, seed=7)
    run_a = _run_episode(env_a, actions, seed=11)
    run_b = _run_episode(env_b, actions, seed=11)
    observations, rewards, terminateds, truncateds, infos = run_a

    assert len(rewards) == budget, f"episode ended after {len(rewards)} of {budget} decisions"
    assert terminateds == [False] * (budget - 1) + [True]
    assert truncateds == [False] * budget
    assert all(type(t) is bool for t in terminateds + truncateds)
    for i, obs in enumerate(observations):
        assert obs.dtype == np.float32 and obs.shape == env_a.observation_space.shape
        assert env_a.observation_space.contains(obs), f"observation {i} outside the space: {obs}"
        assert np.all(np.isfinite(obs))
    for i, reward in enumerate(rewards):
        assert type(reward) is float and math.isfinite(reward), f"reward {i} = {reward!r}"
        assert abs(reward) <= float(np.finfo(np.float32).max)
    assert infos[0]["learner_updates"] == 0 and infos[0]["ledger"]["learner_updates"] == 0
    _assert_plain(infos[0], "reset info")
    for step, info in enumerate(infos[1:], start=1):
        missing = [k for k in INFO_KEYS if k not in info]
        assert missing == [], f"step {step}: info lacks {missing}"
        _assert_plain(info, f"info of step {step}")
        assert info["learner_updates"] == step == info["ledger"]["learner_updates"]
        assert info["task"] in [t.name for t in base.task_space.tasks] or not isinstance(
            env_a.action_space, spaces.Discrete
        )
        for key in ("pretrain_loss", "feedback_loss", "alignment", "cosine"):
            assert math.isfinite(info[key]), f"step {step}: {key} = {info[key]!r}"
        assert -1.0 <= info["cosine"] <= 1.0
        assert info.get("diverged", False) is False
        if step < budget:
            assert "eval" not in info, f"eval reported at step {step} before the episode end"
    final = infos[-1]
    assert final["ledger"]["learner_updates"] == budget == len(rewards)
    assert final["ledger"]["learner_backward"] == budget
    assert "eval" in final and final["eval"], "no held-out eval at the episode end"
    for key, value in final["eval"].items():
        assert type(value) is float and math.isfinite(value), f"eval[{key!r}] = {value!r}"
    # the metrics a suite may rank by (checked when a suite loads) are the ones the env reports
    assert set(final["eval"]) == set(ENV_IDS[env_id]["eval_metrics"]), "ENV_IDS eval_metrics is out of date"

    # Determinism: a separately made env, same seed, same actions -> bitwise identical rollout.
    assert len(run_b[0]) == len(observations)
    for i, (x, y) in enumerate(zip(observations, run_b[0])):
        assert np.array_equal(x, y), f"observation {i} differs between two identically seeded envs"
    assert rewards == run_b[1]
    assert terminateds == run_b[2] and truncateds == run_b[3]
    for i, (x, y) in enumerate(zip(infos, run_b[4])):
        _same(x, y, f"info[{i}]")

    # The episode is over: stepping again is an error, not a silent extra update.
    with pytest.raises(RuntimeError):
        base.step(actions[0])
    assert base.ledger.learner_updates == budget
    env_a.close()
    env_b.close()


@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_reset_restores_theta0_and_optimizer(env_id: str) -> None:
    env = _make(env_id)
    base = env.unwrapped
    theta0 = _state(env)
    env.reset(seed=3)
    _assert_state_equal(_state(env), theta0)
    for action in _actions(env.action_space, 3, seed=1):
        env.step(action)
    moved = _state(env)
    assert any(not torch.equal(moved[k], theta0[k]) for k in theta0), "three learner updates changed nothing"
    assert base.ledger.learner_updates == 3
    env.reset(seed=4)
    _assert_state_equal(_state(env), theta0)
    assert len(base.learner.optimizer.state) == 0, "optimizer state survived reset()"
    assert all(p.grad is None for p in base.learner.module.parameters()), "gradients survived reset()"
    assert base.ledger.learner_updates == 0
    env.close()


@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_reset_seed_determinism(env_id: str) -> None:
    env = _make(env_id)
    base = env.unwrapped
    num_descriptors = len(base.task_space.descriptor_names)
    assert num_descriptors >= 1
    obs_a, info_a = env.reset(seed=5)
    env.step(_actions(env.action_space, 1, seed=0)[0])
    obs_b, info_b = env.reset(seed=5)
    obs_c, _ = env.reset(seed=6)
    assert np.array_equal(obs_a, obs_b)
    _same(info_a, info_b, "reset info")
    assert not np.array_equal(obs_a[-num_descriptors:], obs_c[-num_descriptors:]), (
        "a different seed gave the same descriptors of the first batch"
    )
    env.close()


# ----------------------------------------------------------------------------------- errors and checks
@pytest.mark.parametrize("env_id", LATEST_IDS)
def test_invalid_action_raises_before_any_update(env_id: str) -> None:
    env = _make(env_id)
    base = env.unwrapped
    env.reset(seed=0)
    before = _state(env)
    for action in _invalid_actions(env.action_space):
        with pytest.raises(ValueError) as excinfo:
            env.step(action)
        message = str(excinfo.value)
        assert repr(action) in message or str(action) in message, f"message does not name the action: {message}"
        assert str(env.action_space) in message, f"message does not name the space: {message}"
        assert base.ledger.learner_updates == 0
        assert base.ledger.learner_backward == 0
        _assert_state_equal(_state(env), before)
        assert len(base.learner.optimizer.state) == 0
    # The env is still usable after rejected actions.
    _, _, terminated, _, info = env.step(_actions(env.action_space, 1, seed=0)[0])
    assert info["learner_updates"] == 1 and not terminated
    env.close()


@pytest.mark.parametrize("env_id", ENV_ID_LIST)
def test_step_before_reset_raises(env_id: str) -> None:
    env = _make(env_id)
    base = env.unwrapped
    theta0 = _state(env)
    with pytest.raises(RuntimeError):
        base.step(_actions(env.action_space, 1, seed=0)[0])
    _assert_state_equal(_state(env), theta0)
    env.close()


@pytest.mark.parametrize("env_id", ENV_ID_LIST)
@pytest.mark.parametrize("budget", [0, -1])
def test_non_positive_budget_raises_at_make(env_id: str, budget: int) -> None:
    with pytest.raises(ValueError, match=str(budget)):
        _make(env_id, budget=budget)


@pytest.mark.parametrize("env_id", ENV_ID_LIST)
def test_unknown_reward_raises_at_make(env_id: str) -> None:
    with pytest.raises(ValueError, match="no_such_reward"):
        _make(env_id, reward="no_such_reward")
