"""Regression guard of the performance benchmarks' machinery (issue "Performance"): no wall-clock thresholds.

Checked here: the plain loop that ``benchmarks/overhead.py`` times against performs exactly the learner
updates of the env stepping the standard task (so the ratio compares like with like); the script's JSON has
its medians and ratios, a breakdown that sums to the step, the greedy K sweep and the memory ratios (the ratio
arithmetic on fixed fake timings and byte counts, hand-computed); and ``benchmarks/vector_scaling.py`` finishes
its episodes and turns fixed fake rates into the hand-computed speedups and goals.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from extras import env_params, needs

import vpt_gym  # noqa: F401

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """Import a benchmark script as a module (by name, so that spawned children can import it too)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def overhead():
    return _load("overhead")


@pytest.mark.parametrize("env_id", env_params(["vpt/LM-SoftTargets-v0", "vpt/SSL-Augment-v0"]))
def test_plain_loop_makes_the_same_updates_as_the_env(overhead, env_id: str) -> None:
    """The baseline is the same learner on the same batches: after 5 updates the weights are bitwise equal."""
    envs = [overhead.make_env(env_id, "tiny", "cpu", "alignment", 1, 6) for _ in range(2)]
    for env in envs:
        env.reset(seed=3)
    for _ in range(5):
        overhead.plain_step(envs[0])
        envs[1].step(envs[1].standard_action)
    plain, stepped = (env.learner.module.state_dict() for env in envs)
    assert plain.keys() == stepped.keys()
    assert all(torch.equal(plain[k], stepped[k]) for k in plain)
    assert envs[1]._ledger.feedback_backward == 6  # reset + 5 refreshes at period 1: the env did its own work


def test_overhead_script_reports_consistent_ratios(overhead, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "overhead.json"
    monkeypatch.setattr(sys, "argv", ["overhead.py", "--env", "lm", "--size", "tiny", "--steps", "3", "--warmup",
                                      "1", "--rewards", "alignment", "--feedback-periods", "1", "--lookahead-k",
                                      "1", "2", "--set", "feedback_batch_size=2", "--json", str(out)])
    overhead.main()
    result = json.loads(out.read_text())
    assert "ratio" in capsys.readouterr().out
    (row,) = result["rows"]
    assert (row["reward"], row["feedback_period"]) == ("alignment", 1)
    assert set(row) >= {"plain_median_ms", "env_median_ms", "ratio_median", "plain_mean_ms", "env_mean_ms",
                        "ratio_mean"}  # the arithmetic: test_summarize_* below
    assert row["ratio_median"] > 0 and row["ratio_mean"] > 0
    parts = row["env_breakdown_ms"]
    for label in ("learner backward", "learner update", "feedback gradient", "alignment", "observation"):
        assert parts[label] > 0, label
    assert sum(parts.values()) == pytest.approx(row["env_mean_ms"], rel=1e-6)  # "other" closes the sum
    assert [(r["K"], r["lookahead"]) for r in result["lookahead"]] == [(1, "jvp"), (1, "backward"), (2, "jvp"),
                                                                      (2, "backward")]
    assert all(r["ratio_vs_step"] > 0 for r in result["lookahead"])
    memory = result["memory"]
    assert memory["env"]["peak_bytes"] > 0 and memory["plain"]["peak_bytes"] > 0  # the ratios: test_memory_ratios_*
    assert memory["ratio_peak"] > 0 and memory["ratio_growth"] > 0
    assert result["dtype"] == "float32" and result["params"] > result["alignment_params"] > 0
    assert result["env_kwargs"] == {"feedback_batch_size": 2}


def test_summarize_drops_the_warmup_and_divides_env_by_plain(overhead) -> None:
    # after one warmup step: plain 2, 4, 3 ms (median 3, mean 3); env 6, 12, 6 ms (median 6, mean 8)
    summary = overhead.summarize([9.0, 0.002, 0.004, 0.003], [9.0, 0.006, 0.012, 0.006], warmup=1)
    assert summary == pytest.approx({"plain_median_ms": 3.0, "env_median_ms": 6.0, "ratio_median": 2.0,
                                     "plain_mean_ms": 3.0, "env_mean_ms": 8.0, "ratio_mean": 8 / 3})


def test_memory_ratios_of_fixed_byte_counts(overhead) -> None:
    # peaks 300 / 200 bytes; growth over the built env 300 - 100 = 200 vs 200 - 150 = 50; a zero growth counts 1
    ratios = overhead.memory_ratios({"base_bytes": 150, "peak_bytes": 200}, {"base_bytes": 100, "peak_bytes": 300})
    assert ratios == pytest.approx({"ratio_peak": 1.5, "ratio_growth": 4.0})
    flat = overhead.memory_ratios({"base_bytes": 200, "peak_bytes": 200}, {"base_bytes": 100, "peak_bytes": 300})
    assert flat["ratio_growth"] == pytest.approx(200.0)


def test_env_kwargs_parse_as_literals_and_reject_malformed_items(overhead) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    assert overhead.parse_env_kwargs(["feedback_batch_size=4", "alignment=last1", "lr=1e-3"], parser) == {
        "feedback_batch_size": 4, "alignment": "last1", "lr": 1e-3}
    with pytest.raises(SystemExit):
        overhead.parse_env_kwargs(["feedback_batch_size"], parser)
    with pytest.raises(SystemExit):  # the script's own options own these
        overhead.parse_env_kwargs(["dtype=bfloat16"], parser)


@pytest.mark.parametrize("backend", ["gymnasium", pytest.param("sb3", marks=needs("sb3"))])
def test_vector_scaling_runs_its_episodes(backend: str, tmp_path: Path, monkeypatch) -> None:
    scaling = _load("vector_scaling")
    out = tmp_path / "scaling.json"
    monkeypatch.setattr(sys, "argv", ["vector_scaling.py", "--env-id", "vpt/Toy-Alignment-v0", "--budget", "4",
                                      "--episodes", "1", "--workers", "1", "2", "--backends", backend,
                                      "--json", str(out)])
    scaling.main()
    rows = json.loads(out.read_text())["rows"]
    assert [(r["backend"], r["workers"]) for r in rows] == [(backend, 1), (backend, 2)]
    assert all(r["episodes_per_s"] > 0 for r in rows)


def test_vector_scaling_speedup_and_goal_from_fixed_rates(tmp_path: Path, monkeypatch) -> None:
    scaling = _load("vector_scaling")
    rates = {("gymnasium", 1): 2.0, ("gymnasium", 2): 3.0, ("sb3", 1): 1.0, ("sb3", 2): 1.8}
    monkeypatch.setattr(scaling, "run_gymnasium", lambda env_id, kwargs, n, episodes, method: rates["gymnasium", n])
    monkeypatch.setattr(scaling, "run_sb3", lambda env_id, kwargs, n, episodes, method: rates["sb3", n])
    monkeypatch.setattr(scaling.os, "cpu_count", lambda: 2)
    out = tmp_path / "scaling.json"
    monkeypatch.setattr(sys, "argv", ["vector_scaling.py", "--env-id", "vpt/Toy-Alignment-v0", "--workers", "1", "2",
                                      "--json", str(out)])
    scaling.main()
    rows = json.loads(out.read_text())["rows"]
    # speedup = rate / 1-worker rate; the goal is speedup >= 0.8 * workers: 1.5 < 1.6 misses it, 1.8 meets it
    assert [(r["backend"], r["workers"], r["speedup"], r["meets_goal"]) for r in rows] == [
        ("gymnasium", 1, 1.0, True), ("gymnasium", 2, 1.5, False), ("sb3", 1, 1.0, True), ("sb3", 2, 1.8, True)]
