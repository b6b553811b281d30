"""What a bitwise CPU replay needs: the same theta_0. The cached base is built with a fixed thread count
(whatever the caller's), every row records the fingerprint of its theta_0, and ``validate`` reports a replay
that starts elsewhere as such."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gymnasium as gym
import torch

import vpt_gym  # noqa: F401
from vpt_gym.agents import make_designer
from vpt_gym.benchmark.validate import validate_row
from vpt_gym.envs.lm import LM_PRESETS
from vpt_gym.lm.model import build_gpt2, load_or_pretrain_base
from vpt_gym.runner import run_episode
from vpt_gym.utils import BUILD_THREADS, cpu_model, state_fingerprint


def _build(folder: Path, threads: int) -> bytes:
    config = LM_PRESETS["tiny"].base
    assert config is not None
    corpus = torch.randint(1, config.vocab_size, (20_000,), generator=torch.Generator().manual_seed(0))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load_or_pretrain_base(config, "tokenizer-json-stand-in", corpus, folder, progress=False)
        assert torch.get_num_threads() == threads  # the caller's count is restored
    finally:
        torch.set_num_threads(previous)
    (path,) = folder.glob("base-*.safetensors")
    return path.read_bytes()


def test_the_base_is_the_same_whatever_the_callers_thread_count(tmp_path: Path) -> None:
    one = _build(tmp_path / "one", BUILD_THREADS)
    two = _build(tmp_path / "two", BUILD_THREADS + 1)
    assert hashlib.sha256(one).hexdigest() == hashlib.sha256(two).hexdigest()


def test_state_fingerprint_sees_every_byte() -> None:
    config = LM_PRESETS["tiny"].base
    assert config is not None
    model = build_gpt2(config)
    before = state_fingerprint(model)
    assert before == state_fingerprint(model) and len(before) == 16
    with torch.no_grad():
        p = next(model.parameters())
        p.view(-1)[0] = torch.nextafter(p.view(-1)[0], torch.tensor(float("inf")))  # one ulp
    assert state_fingerprint(model) != before


def test_rows_record_theta0_and_validate_names_a_replay_from_other_weights() -> None:
    env = gym.make("vpt/Toy-Alignment-v0", budget=8)
    row = run_episode(env, make_designer("fixed", env), seed=0)
    env.reset(seed=0)
    assert row["theta0"] == state_fingerprint(env.unwrapped.learner.module)
    assert row["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    row.update(env_kwargs={"budget": 8}, designer_name="fixed")
    assert validate_row(row)["ok"]
    tampered = {**row, "theta0": "0" * 16}
    report = validate_row(tampered)
    assert not report["ok"] and report["mismatches"]["theta0"] == ["0" * 16, row["theta0"]]
    assert "other weights theta_0" in report["hint"]
    assert row["cpu_model"] == cpu_model() and row["cpu_model"] not in report["hint"]  # same model: not named
    moved = validate_row({**tampered, "cpu_model": "Fake CPU 9000"})  # a row from another CPU model
    assert f"The row ran on the CPU model Fake CPU 9000, this replay on {cpu_model()}" in moved["hint"]
