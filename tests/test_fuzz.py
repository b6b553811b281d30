"""Property-based tests (hypothesis) of the env boundary: actions and env keywords (issue 15, item 7).

Every invalid action (ints, numpy scalars and arrays of every dtype, NaN, +-inf, out of range, wrong shape)
raises a ``ValueError`` naming the value and the accepted range before any learner update, and the env steps
on afterwards; a masked action inside the space runs the standard task. Every out-of-range or wrong-type env
keyword raises a ``ValueError`` naming the keyword and the value, and the env builds afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="property tests need hypothesis (the 'dev' extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from extras import env_params  # noqa: E402

import vpt_gym  # noqa: E402,F401
from vpt_gym.envs import ENV_IDS  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast", "ignore:Casting complex values")
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float16,
          np.float32, np.float64, np.complex64, np.complex128]

# ----------------------------------------------------------------------------------------------- actions
numpy_scalars = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.from_dtype(np.dtype(dt)).map(np.dtype(dt).type))
numpy_arrays = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)))
ACTIONS = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-3, max_value=12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.5, -1.5, 1.0000001]),
    numpy_scalars, numpy_arrays,
    st.lists(st.floats(min_value=-2, max_value=2), min_size=0, max_size=3),
    st.none(), st.booleans(), st.text(max_size=3), st.complex_numbers(max_magnitude=2),
)


def _discrete_valid(action: Any, n: int) -> bool:
    """An int, a numpy integer scalar or a 0-d / 1-element integer array in 0..n-1 (DESIGN §2, independently of
    the env's code: no bools, floats or strings)."""
    if isinstance(action, (bool, np.bool_)):
        return False
    if isinstance(action, (int, np.integer)):
        return 0 <= int(action) < n
    if isinstance(action, np.ndarray) and action.shape in ((), (1,)) and action.dtype.kind in "iu":
        return 0 <= int(action.reshape(())) < n
    return False


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _box_valid(action: Any, space: gym.spaces.Box) -> bool:
    """Real numbers (an array of an integer or float dtype, or a list/tuple of ints and floats; no bools,
    complex numbers or strings) of the space's shape, finite and inside the bounds."""
    if isinstance(action, np.ndarray):
        if action.dtype.kind not in "iuf":
            return False
    elif not (isinstance(action, (list, tuple)) and all(_real(v) for v in action)):
        return False
    a = np.asarray(action, dtype=np.float64)
    return bool(a.shape == space.shape and np.all(np.isfinite(a)) and np.all(a >= space.low)
                and np.all(a <= space.high))


def _castable_non_real(action: Any, shape: tuple[int, ...]) -> bool:
    """A bool, complex or string array (or list) of ``shape`` (refused by ``TaskDesignEnv``, found by this fuzz)."""
    a = np.asarray(action) if isinstance(action, (np.ndarray, list, tuple)) else None
    return a is not None and a.shape == shape and a.dtype.kind in "bcUSO"


def _parameters(env: gym.Env) -> list[torch.Tensor]:
    return [p.detach().clone() for p in env.unwrapped.learner.module.parameters()]


def _valid_action(env: gym.Env) -> Any:
    space = env.action_space
    return env.unwrapped.standard_action if isinstance(space, gym.spaces.Discrete) else space.sample()


def _check_action(env: gym.Env, action: Any) -> None:
    """``action`` either steps (valid) or raises a ValueError naming it and the space, before any update;
    then a valid action steps."""
    space = env.action_space
    valid = _discrete_valid(action, int(space.n)) if isinstance(space, gym.spaces.Discrete) else \
        _box_valid(action, space)
    updates = env.unwrapped.ledger.learner_updates
    before = _parameters(env)
    if valid:
        _, _, terminated, _, info = env.step(action)
        assert env.unwrapped.ledger.learner_updates == updates + 1 and info["masked_action"] is False
    else:
        with pytest.raises(ValueError) as err:
            env.step(action)
        message = str(err.value)
        assert message.startswith(f"action {action!r}"), message  # names the value
        if isinstance(space, gym.spaces.Discrete):
            assert f"0..{space.n - 1}" in message, message  # and the accepted range
        else:
            assert str(space) in message or "low=" in message, message
        assert env.unwrapped.ledger.learner_updates == updates  # raised before any update
        assert all(torch.equal(a, b) for a, b in zip(before, _parameters(env)))
        _, _, terminated, _, _ = env.step(_valid_action(env))  # still usable
    if terminated:
        env.reset(seed=0)


@pytest.fixture(scope="module")
def toy_env():
    env = gym.make("vpt/Toy-Alignment-v0", budget=10_000)
    env.reset(seed=0)
    yield env
    env.close()


@pytest.fixture(scope="module")
def lm_envs(data_dir):
    envs = {env_id: gym.make(env_id, size="tiny", budget=10_000, eval_items=1, max_new_tokens=2)
            for env_id in ("vpt/LM-SoftTargets-v0", "vpt/LM-SoftTargetsContinuous-v0")}
    for env in envs.values():
        env.reset(seed=0)
    yield envs
    for env in envs.values():
        env.close()


@FUZZ
@given(action=ACTIONS)
def test_toy_actions(toy_env, action) -> None:
    _check_action(toy_env, action)


@FUZZ
@given(action=ACTIONS)
def test_lm_menu_actions(lm_envs, action) -> None:
    _check_action(lm_envs["vpt/LM-SoftTargets-v0"], action)


BOX_ACTIONS = st.one_of(ACTIONS, hnp.arrays(np.float32, (2,), elements=st.floats(-1.5, 1.5, width=32)),
                        hnp.arrays(np.float64, (2,), elements=st.floats(allow_nan=True, allow_infinity=True)))


@FUZZ
@given(action=BOX_ACTIONS)
def test_lm_box_actions(lm_envs, action) -> None:
    env = lm_envs["vpt/LM-SoftTargetsContinuous-v0"]
    _check_action(env, action)


NON_REAL_BOX_ACTIONS = st.one_of(
    hnp.arrays(np.bool_, (2,)), hnp.arrays(np.complex64, (2,), elements=st.complex_numbers(max_magnitude=0.5,
                                                                                             width=64)),
    st.lists(st.booleans(), min_size=2, max_size=2), st.lists(st.sampled_from(["0.5", "-0.25", "0"]), min_size=2,
                                                               max_size=2))


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(action=NON_REAL_BOX_ACTIONS)
def test_box_actions_that_are_not_real_numbers_are_refused(lm_envs, action) -> None:
    _check_action(lm_envs["vpt/LM-SoftTargetsContinuous-v0"], action)


def _masked_toy(masked: frozenset[int]) -> gym.Env:
    """The toy env composed by hand (Jumanji style) with a task space that masks ``masked`` menu indices."""
    from vpt_gym.budget import Budget
    from vpt_gym.envs.task_design import TaskDesignEnv
    from vpt_gym.envs.toy import ToyConfig, ToyFeedback, ToyStream, ToyTaskSpace, ToyWorld, _Point
    from vpt_gym.learners import TorchLearner

    class MaskedToyTasks(ToyTaskSpace):
        def action_masks(self) -> np.ndarray:
            return np.array([i not in masked for i in range(self.action_space.n)])

    world = ToyWorld(ToyConfig())
    learner = TorchLearner(_Point(world.theta0), forward_fn=lambda m, batch: m.theta, lr=0.1, optimizer="sgd",
                           alignment="all")
    return TaskDesignEnv(learner=learner, task_space=MaskedToyTasks(world), stream=ToyStream(world),
                         feedback=ToyFeedback(world), budget=Budget.of(10_000), reward="alignment")


@FUZZ
@given(masked=st.frozensets(st.integers(1, 4), max_size=4), action=st.integers(0, 4))
def test_masked_actions_run_the_standard_task(masked: frozenset[int], action: int) -> None:
    env, plain = _masked_toy(masked), _masked_toy(frozenset())
    env.reset(seed=3)
    plain.reset(seed=3)
    _, reward, _, _, info = env.step(action)
    expected = 0 if action in masked else action  # the standard task (0) instead of a masked one
    _, expected_reward, _, _, expected_info = plain.step(expected)
    assert info["masked_action"] is (action in masked) and info["task"] == expected_info["task"]
    assert reward == expected_reward


# ---------------------------------------------------------------------------------------------- keywords
def _below(low: float, *, integer: bool) -> st.SearchStrategy:
    if integer:
        return st.integers(min_value=-(10**9), max_value=int(math.ceil(low)) - 1)
    return st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False, min_value=-1e12)


def _above(high: float) -> st.SearchStrategy:
    return st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False, max_value=1e12)


# keyword -> (kind, lowest accepted, highest accepted or None, None accepted?) as the env cards document them
COMMON = {"budget": ("int", 1, None), "updates_per_decision": ("int", 1, None), "feedback_period": ("int", 1, None)}
RANGES: dict[str, dict[str, tuple]] = {
    "vpt/Toy-Alignment-v0": {**COMMON, "dim": ("int", 2, None), "num_sources": ("int", 2, None),
                             "batch_size": ("int", 1, None), "feedback_batch_size": ("int", 1, None),
                             "world_seed": ("int", 0, None), "radius": ("float", 0.0, None),
                             "bias": ("float", 0.0, None), "noise": ("float", 0.0, None),
                             "feedback_noise": ("float", 0.0, None), "phase_noise": ("float", 0.0, None),
                             "omega": ("float", None, None), "lr": ("float", 1e-300, 1.0),
                             "tolerance": ("float", 1e-300, None)},
    "lm": {**COMMON, "eval_items": ("int", 1, None), "max_new_tokens": ("int", 1, None),
           "feedback_size": ("int", 1, 7472), "split_seed": ("int", 0, None), "feedback_batch_size": ("int", 1, None),
           "lr": ("float", 1e-300, None)},
    "vision": {**COMMON, "batch_size": ("int", 1, None), "feedback_size": ("int", 1, None),
               "eval_size": ("int", 1, None), "num_local": ("int", 0, None), "split_seed": ("int", 0, None),
               "lr": ("float", 1e-300, None), "probe_size": ("int", 1, None)},
}
SOFT_TARGETS = {"math_fraction": ("float", 0.0, 1.0), "top_k": ("int", 2, 512), "alpha_max": ("float", 1e-300, 1.0)}
WRONG_FOR = {
    "int": st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not float(v).is_integer()),
                     st.text(max_size=3), st.lists(st.integers(), max_size=2), st.booleans()),
    "float": st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), st.text(max_size=3),
                       st.lists(st.floats(), max_size=2), st.booleans(), st.dictionaries(st.text(max_size=2),
                                                                                           st.integers(), max_size=1)),
}


def _ranges(env_id: str) -> dict[str, tuple]:
    if env_id in RANGES:
        return RANGES[env_id]
    if env_id.startswith("vpt/LM-SoftTargets"):
        return {**RANGES["lm"], **SOFT_TARGETS}
    return RANGES["lm" if env_id.startswith("vpt/LM-") else "vision"]


def _bad_values(kind: str, low: float | None, high: float | None) -> st.SearchStrategy:
    options = [WRONG_FOR[kind]]
    if low is not None:
        options.append(_below(low, integer=kind == "int"))
    if high is not None:
        options.append(st.integers(min_value=int(high) + 1, max_value=10**9) if kind == "int" else _above(high))
    return st.one_of(options)


def _keyword_case(env_id: str) -> st.SearchStrategy:
    table = _ranges(env_id)
    return st.sampled_from(sorted(table)).flatmap(
        lambda key: st.tuples(st.just(key), _bad_values(*table[key])))


def _needs(env_id: str) -> None:
    if env_id.startswith("vpt/SSL-"):
        pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")


@pytest.mark.parametrize("env_id", env_params(latest_only=True))
def test_bad_env_keywords_raise_a_value_error_naming_them(env_id: str, data_dir) -> None:
    _needs(env_id)
    smoke = dict(ENV_IDS[env_id]["smoke_kwargs"])

    @FUZZ
    @given(case=_keyword_case(env_id))
    def check(case: tuple[str, Any]) -> None:
        key, value = case
        with pytest.raises(ValueError) as err:
            gym.make(env_id, **{**smoke, key: value})
        message = str(err.value)
        named = repr(value) in message or str(value) in message or (isinstance(value, float) and f"{value:g}" in
                                                                    message)
        assert named and (key in message or key.replace("_", " ") in message), f"{key}={value!r}: {message}"

    check()
    env = gym.make(env_id, **smoke)  # the registry and the caches are still fine
    env.reset(seed=0)
    env.close()
