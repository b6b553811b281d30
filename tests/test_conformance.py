"""vpt_gym.testing: the conformance checks users run on their own parts, run here on the suite's own parts
(the newest version of every env family, every designer, every reward), and shown to catch what they claim to
catch on fakes built to break one rule each."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from extras import env_params, needs

from vpt_gym.agents import DESIGNERS, RandomDesigner
from vpt_gym.envs import ENV_IDS
from vpt_gym.envs.toy import ToyTaskSpace, make_toy_env
from vpt_gym.testing import ConformanceError, check_designer, check_parts, check_task_space, check_value_estimator
from vpt_gym.value import VALUE_ESTIMATORS

LATEST = [p for p in env_params(latest_only=True) if not any(m.name == "slow" for m in p.marks)]


def _parts(env: gym.Env) -> dict[str, Any]:
    base = env.unwrapped
    return {"learner": base.learner, "task_space": base.task_space, "stream": base.stream,
            "feedback": base.feedback}


@pytest.mark.parametrize("env_id", LATEST)
def test_the_suites_own_parts_conform(env_id: str) -> None:
    env = gym.make(env_id, **ENV_IDS[env_id]["smoke_kwargs"])
    parts = _parts(env)
    built = check_parts(**parts, budget=3, reward=env.unwrapped.value_estimator.name)
    assert built.task_space is parts["task_space"] and built.budget.learner_updates == 3


@pytest.mark.parametrize("name", sorted(n for n in DESIGNERS if not n.startswith("vpretraining")
                                         and n != "select_fixed"))
def test_every_designer_conforms_on_the_toy(name: str) -> None:
    """(The paper's designer needs the soft-target hook: it is checked on the LM env below; ``select_fixed``
    needs a feedback split to score runs on: on the SSL env.)"""
    check_designer(DESIGNERS[name], make_toy_env(budget=6))


@needs("vision")
def test_the_run_selection_designer_conforms_on_the_ssl_env(tmp_path) -> None:
    env = gym.make("vpt/SSL-Augment-v1", size="tiny", budget=2, device="cpu")
    check_designer(lambda e: DESIGNERS["select_fixed"](e, seeds=[1000], cache=tmp_path), env)


def test_the_papers_designer_conforms_on_the_lm_env() -> None:
    kwargs = {**ENV_IDS["vpt/LM-SoftTargets-v1"]["smoke_kwargs"], "budget": 4}
    check_designer(DESIGNERS["vpretraining"], gym.make("vpt/LM-SoftTargets-v1", **kwargs))


@pytest.mark.parametrize("name", sorted(VALUE_ESTIMATORS))
def test_every_reward_conforms(name: str) -> None:
    check_value_estimator(VALUE_ESTIMATORS[name]())


# --- fakes, each breaking one rule, to show the checks can fail ----------------------------------------------


class FakeBadDescriptors(ToyTaskSpace):
    """A fake task space (unit test only): one descriptor bound too few, and a standard action off the menu."""

    @property
    def descriptor_low(self) -> np.ndarray:
        return np.asarray(super().descriptor_low)[:-1]

    @property
    def standard_action(self) -> int:
        return 99


class FakeUnseededDesigner(RandomDesigner):
    """A fake designer (unit test only) that draws from a fresh, unseeded generator: not reproducible."""

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return int(np.random.default_rng().integers(self.space.n))


class FakeNanValue:
    """A fake value estimator (unit test only) that passes NaN through and declares a flag as an int."""

    name = "fake_nan"
    needs_probe_loss = 0
    needs_probe_metric = False
    needs_standard_gradient = False
    reward_range = (-1.0, 1.0)

    def reward(self, outcome: Any) -> float:
        return outcome.stats.alignment


def test_check_task_space_lists_every_broken_rule() -> None:
    toy = make_toy_env(budget=4).unwrapped
    with pytest.raises(ConformanceError) as info:
        check_task_space(FakeBadDescriptors(toy.task_space.world))
    failures = info.value.failures
    assert len(failures) == 2
    assert failures[0].startswith("standard_action 99 is not in the action space Discrete(")
    assert "descriptor_low/high have shapes" in failures[1]


def test_check_designer_catches_a_designer_that_ignores_its_seed() -> None:
    with pytest.raises(ConformanceError, match="not deterministic given its seed"):
        check_designer(FakeUnseededDesigner, make_toy_env(budget=32))


def test_check_value_estimator_catches_nan_and_a_non_bool_flag() -> None:
    with pytest.raises(ConformanceError) as info:
        check_value_estimator(FakeNanValue())
    failures = info.value.failures
    assert failures[0] == "needs_probe_loss must be a bool, got 0"
    assert any(f.startswith("reward of a non-finite update is nan") for f in failures)


def test_check_parts_catches_a_stream_that_ignores_its_generator() -> None:
    parts = _parts(make_toy_env(budget=4))
    stream = parts["stream"]

    class FakeUnseededStream:
        """A fake stream (unit test only): resets from an unseeded generator instead of the one passed."""

        def reset(self, generator: Any) -> None:
            import torch

            stream.reset(torch.Generator().manual_seed(int(np.random.default_rng().integers(2**31))))

        def next_batch(self) -> Any:
            return stream.next_batch()

    parts["stream"] = FakeUnseededStream()
    with pytest.raises(ConformanceError, match="does not replay"):
        check_parts(**parts, budget=3)
