"""Your own designer by name: ``FILE.py:ClassName`` / ``module:ClassName`` in make_designer, suites and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest

import vpt_gym  # noqa: F401
from vpt_gym.agents import Designer, load_designer_class, make_designer
from vpt_gym.benchmark.suites import parse_suite
from vpt_gym.cli import main
from vpt_gym.runner import run_episode

TOY = "vpt/Toy-Alignment-v0"
ALWAYS = '''
class Always:
    """Always the same menu index (default 2)."""

    name = "always"

    def __init__(self, env, index=2):
        self.index = index

    def reset(self, seed=None):
        pass

    def act(self, observation, info):
        return self.index

    def observe(self, action, reward, observation, terminated, truncated, info):
        pass
'''


@pytest.fixture()
def designer_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "always.py").write_text(ALWAYS)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "always.py"


def test_file_designer_runs_an_episode(designer_file: Path) -> None:
    env = gym.make(TOY, budget=8)
    designer = make_designer("always.py:Always", env, index=3)
    assert isinstance(designer, Designer) and designer.name == "always"
    result = run_episode(env, designer, seed=0)
    assert result["actions"] == [3] * 8 and result["tasks"] == ["source_2"] * 8
    absolute = make_designer(f"{designer_file}:Always", env)  # an absolute path names the same module
    assert type(absolute) is type(designer) and absolute.index == 2


def test_module_designer() -> None:
    env = gym.make(TOY, budget=4)
    designer = make_designer("vpt_gym.agents:FixedDesigner", env)
    assert designer.name == "fixed" and designer.act(None, {}) == 0


def test_bad_designer_specs(designer_file: Path, tmp_path: Path) -> None:
    env = gym.make(TOY, budget=4)
    with pytest.raises(FileNotFoundError, match="designer file 'nowhere.py' does not exist"):
        make_designer("nowhere.py:X", env)
    with pytest.raises(ValueError, match="has no class or function 'Missing'"):
        make_designer("always.py:Missing", env)
    with pytest.raises(ValueError, match="not of the form FILE.py:ClassName"):
        load_designer_class("always.py:")
    with pytest.raises(ModuleNotFoundError):
        make_designer("no_such_module_xyz:Thing", env)
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_designer("always.py:Always", env, bogus=1)
    with pytest.raises(ValueError, match="unknown designer 'nope'.*FILE.py:ClassName"):
        make_designer("nope", env)


def test_suite_accepts_file_designers(designer_file: Path) -> None:
    suite = parse_suite({"name": "s", "version": 1, "seeds": [0], "designers": ["fixed", {"name": "always.py:Always",
                         "label": "mine", "kwargs": {"index": 1}}],
                         "envs": [{"id": TOY, "budget": 4, "metric": "eval_loss", "higher_is_better": False}]})
    assert [d.label for d in suite.designers] == ["fixed", "mine"]
    with pytest.raises(ValueError, match=r"designers\[0\] \('gone.py:X'\): designer file 'gone.py' does not exist"):
        parse_suite({"name": "s", "version": 1, "seeds": [0], "designers": ["gone.py:X"],
                     "envs": [{"id": TOY, "budget": 4, "metric": "eval_loss", "higher_is_better": False}]})
    bigger = suite.with_designers(["random", "two=always.py:Always"])
    assert [(d.label, d.name) for d in bigger.designers][-2:] == [("random", "random"), ("two", "always.py:Always")]
    assert bigger.envs == suite.envs and bigger.seeds == suite.seeds
    with pytest.raises(ValueError, match="repeat"):
        suite.with_designers(["mine=always.py:Always"])


def test_file_designer_source_enters_the_config_hash(designer_file: Path) -> None:
    """Editing a user designer's file changes its rows' config hash (so a resumed run re-runs them); the
    built-in designers' hashes do not depend on it."""
    suite = parse_suite({"name": "s", "version": 1, "seeds": [0], "designers": ["fixed", {"name": "always.py:Always",
                         "label": "mine"}],
                         "envs": [{"id": TOY, "budget": 4, "metric": "eval_loss", "higher_is_better": False}]})
    before = suite.config_hash(TOY, "mine"), suite.config_hash(TOY, "fixed")
    designer_file.touch()
    assert suite.config_hash(TOY, "mine") == before[0]  # same bytes, same hash
    designer_file.write_text(ALWAYS.replace("default 2", "default 2 (edited)"))
    after = suite.config_hash(TOY, "mine"), suite.config_hash(TOY, "fixed")
    assert after[0] != before[0] and after[1] == before[1]
    from vpt_gym.benchmark.suites import designer_source_identity

    assert designer_source_identity("fixed") is None and designer_source_identity("sb3") is None
    assert designer_source_identity("json:JSONDecoder") is not None  # module:Class reads the module's file
    assert designer_source_identity("no_such_module_xyz:X") is None


def test_cli_run_and_bench_with_a_file_designer(designer_file: Path, tmp_path: Path) -> None:
    assert main(["run", TOY, "--designer", "always.py:Always", "--budget", "4", "--out", "r.json",
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["actions"] == [2] * 4
    with pytest.raises(SystemExit, match="designer file 'missing.py' does not exist"):
        main(["run", TOY, "--designer", "missing.py:X", "--budget", "4", "--no-progress"])
    (tmp_path / "suite.toml").write_text(f'name = "t"\nversion = 1\nseeds = [0, 1]\ndesigners = ["fixed", "random"]\n'
                                         f'[[envs]]\nid = "{TOY}"\nbudget = 4\nmetric = "eval_loss"\n'
                                         "higher_is_better = false\n")
    assert main(["bench", "suite.toml", "--designers", "fixed", "--add-designer", "mine=always.py:Always",
                 "--seeds", "1", "--out", "rows.jsonl", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert sorted((r["designer"], r["seed"]) for r in rows) == [("fixed", 1), ("mine", 1)]
    mine = next(r for r in rows if r["designer"] == "mine")
    assert mine["designer_name"] == "always.py:Always" and mine["actions"] == [2] * 4
    assert main(["validate", "rows.jsonl"]) == 0
