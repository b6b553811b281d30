"""Bad user input is rejected with a message that names the value and the accepted range."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vpt_gym  # noqa: F401
from vpt_gym.agents import DESIGNERS, make_designer
from vpt_gym.lm.model import resolve_device
from vpt_gym.runner import run_episode


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x"])
def test_unknown_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda'"):
        resolve_device(device)


def test_cpu_and_auto_devices_resolve():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("budget", [0, -3, 2.5])
def test_budget_errors_name_the_budget(budget):
    with pytest.raises(ValueError, match=r"budget \(learner updates per episode\) must be an integer >= 1"):
        gym.make("vpt/Toy-Alignment-v0", budget=budget)


def test_box_action_of_wrong_shape_names_the_shape():
    env = gym.make("vpt/LM-SoftTargetsContinuous-v0", size="tiny", budget=2, eval_items=1, max_new_tokens=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"has shape \(3,\); the action space .* needs \(2,\)"):
        env.step(np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("bad", ["random", DESIGNERS["random"]])
def test_run_episode_rejects_names_and_factories(bad):
    env = gym.make("vpt/Toy-Alignment-v0", budget=4)
    with pytest.raises(TypeError, match="make_designer"):
        run_episode(env, bad, seed=0)
    result = run_episode(env, make_designer("random", env), seed=0)
    assert result["ledger"]["learner_updates"] == 4 and len(result["actions"]) == 4


@pytest.mark.parametrize("env_id", ["vpt/LM-SoftTargets-v0", "vpt/LM-Domains-v0"])
@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_feedback_batch_size_must_be_a_positive_int(env_id, bad):
    with pytest.raises(ValueError, match=rf"feedback_batch_size must be an integer >= 1 or None, got {bad!r}"):
        gym.make(env_id, size="tiny", feedback_batch_size=bad)


def test_feedback_batch_size_sets_the_refresh_batch():
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=2, feedback_batch_size=3, eval_items=1,
                   max_new_tokens=4).unwrapped
    env.reset(seed=0)
    assert env.feedback.sample_batch().num_examples == 3
    domains = gym.make("vpt/LM-Domains-v0", size="tiny", budget=2, feedback_batch_size=2, eval_items=1,
                       max_new_tokens=4, heldout_eval_windows=4).unwrapped
    domains.reset(seed=0)
    parts = domains.feedback.sample_batch().parts
    assert {name: part.num_examples for name, part in parts.items()} == {"gsm8k": 2, "code": 2}


# Found by tests/test_fuzz.py: before the registry checked keywords, each of these raised a TypeError or a
# RuntimeError from deep inside the build, or was accepted.
KEYWORD_CASES = [
    ("vpt/Toy-Alignment-v0", "dim", 2.5), ("vpt/Toy-Alignment-v0", "num_sources", 2.5),
    ("vpt/Toy-Alignment-v0", "batch_size", 2.5), ("vpt/Toy-Alignment-v0", "world_seed", 2.5),
    ("vpt/Toy-Alignment-v0", "world_seed", "0"), ("vpt/Toy-Alignment-v0", "world_seed", -1),
    ("vpt/Toy-Alignment-v0", "lr", "0.1"), ("vpt/Toy-Alignment-v0", "omega", float("nan")),
    ("vpt/Toy-Alignment-v0", "noise", float("inf")), ("vpt/Toy-Alignment-v0", "radius", float("inf")),
    ("vpt/LM-SoftTargets-v0", "lr", float("inf")), ("vpt/LM-SoftTargets-v0", "math_fraction", "0.5"),
    ("vpt/LM-SoftTargets-v0", "alignment", 2.5), ("vpt/LM-SoftTargets-v0", "data", 3),
    ("vpt/LM-SoftTargets-v0", "alphas", 0.3), ("vpt/LM-SoftTargets-v0", "top_k", 2.5),
    ("vpt/SSL-Mask-v0", "split_seed", -1),
]


@pytest.mark.parametrize(("env_id", "key", "value"), KEYWORD_CASES, ids=lambda v: str(v))
def test_bad_env_keywords_are_value_errors_naming_them(env_id: str, key: str, value, data_dir) -> None:
    from vpt_gym.envs import ENV_IDS

    if env_id.startswith("vpt/SSL-"):
        pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")
    with pytest.raises(ValueError) as err:
        gym.make(env_id, **{**ENV_IDS[env_id]["smoke_kwargs"], key: value})
    assert key in str(err.value) and repr(value) in str(err.value), str(err.value)


def test_an_unknown_keyword_names_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match=r"vpt/LM-SoftTargets-v0 has no keyword\(s\) \['sise'\]; accepted: \[.*'size'"):
        gym.make("vpt/LM-SoftTargets-v0", sise="tiny")
