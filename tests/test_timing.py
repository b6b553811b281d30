"""Episode times are reported apart from env builds (the one-time base build) and as CPU seconds (issue 15,
item 6)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import vpt_gym  # noqa: F401
from vpt_gym.benchmark.results import read_rows
from vpt_gym.benchmark.runner import plan, run_spec
from vpt_gym.benchmark.suites import parse_suite

DATA = Path(__file__).resolve().parent / "data"
SUITE = {"name": "t", "version": 1, "seeds": [0], "designers": ["fixed"],
         "envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "eval_loss", "higher_is_better": False}]}


def test_a_slow_env_build_is_in_build_s_not_in_the_episode_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from vpt_gym.envs import toy

    original = toy.ToyWorld.__init__

    def slow_build(self, config):  # stands in for a one-time base-checkpoint build inside gymnasium.make
        time.sleep(1.0)
        original(self, config)

    monkeypatch.setattr(toy.ToyWorld, "__init__", slow_build)
    (spec,) = plan(parse_suite(SUITE))
    row = run_spec(spec)
    assert row["build_s"] >= 1.0
    assert row["wall_clock_s"] < 1.0 and 0.0 < row["cpu_s"] < 1.0


def test_leaderboard_reports_builds_apart_and_cpu_seconds() -> None:
    pytest.importorskip("rliable", reason="needs the 'bench' extra (pip install -e '.[bench]')")
    from vpt_gym.benchmark.leaderboard import boards, render_markdown

    rows = read_rows(DATA / "golden_results.jsonl")
    for i, row in enumerate(rows):
        row.update(cpu_s=0.25, build_s=150.0 if i == 0 else 0.5)  # one row built the base
    text = render_markdown(boards(rows, reps=100), source="x.jsonl")
    assert "| median wall-clock s | median CPU s |" in text and "| 0.0 | 0.2 |" in text
    assert "Env and designer builds, not in the times above: at most 150.0 s per episode" in text
    first = rows[0]["designer"]
    assert f"at most 150.0 s per episode ({first}'s;" in text  # names the designer whose build it was
