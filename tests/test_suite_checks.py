"""A suite is checked whole when it is loaded: one ``error:`` line per bad entry, before any episode (issue 15,
item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

import vpt_gym  # noqa: F401
from vpt_gym.benchmark.suites import SuiteError, load_suite
from vpt_gym.cli import main

HALF_DESIGNER = "class Half:\n    def __init__(self, env):\n        pass\n"

GOOD_ENVS = """
[[envs]]
id = "vpt/Toy-Alignment-v0"
budget = 8
metric = "eval_loss"
higher_is_better = false
"""


def _suite(tmp_path: Path, designers: str, envs: str = GOOD_ENVS) -> Path:
    (tmp_path / "half_designer.py").write_text(HALF_DESIGNER)
    path = tmp_path / "my_suite.toml"
    path.write_text(f'name = "s"\nversion = 1\nseeds = [0, 1, 2]\ndesigners = {designers}\n{envs}')
    return path


def _bench_errors(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stderr lines ``vpt-gym bench`` exits with; checks that no episode ran."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", path.name, "--out", str(out), "--no-progress"])  # relative, as a user types it
    assert not out.exists(), "episodes ran before the suite was checked"
    message = str(exit_info.value.code)
    lines = message.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), message
    assert "Traceback" not in message
    return lines


CASES = {
    "metric": ('["fixed"]', GOOD_ENVS.replace('"eval_loss"', '"eval_los"'),
               "error: my_suite.toml: envs[0] (vpt/Toy-Alignment-v0): metric 'eval_los' is not reported by "
               "vpt/Toy-Alignment-v0; accepted: ['eval_loss', 'eval_solved_fraction']"),
    "designer_kwargs": ('["fixed", { name = "epsilon_greedy", kwargs = { epsilonn = 0.2 } }]', GOOD_ENVS,
                        "error: my_suite.toml: designers[1] ('epsilon_greedy'): designer 'epsilon_greedy' takes no "
                        "keyword(s) ['epsilonn']; accepted: ['epsilon', 'initial_value', 'reward_scale', "
                        "'reward_window']"),
    "env_kwargs": ('["fixed"]', GOOD_ENVS + '\n[[envs]]\nid = "vpt/LM-SoftTargets-v0"\nbudget = 8\nmetric = "eval_nll"\n'
                   'higher_is_better = false\nkwargs = { sise = "tiny" }\n',
                   "error: my_suite.toml: envs[1] (vpt/LM-SoftTargets-v0): kwargs ['sise'] are not keywords of "
                   "vpt/LM-SoftTargets-v0; accepted: ['alignment',"),
    "not_a_designer": ('["fixed", "half_designer.py:Half"]', GOOD_ENVS,
                       "error: my_suite.toml: designers[1] ('half_designer.py:Half'): designer 'half_designer.py:Half' "
                       "is not a vpt_gym Designer (missing: ['reset', 'act', 'observe'])"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bench_names_the_bad_entry_before_running(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    designers, envs, expected = CASES[case]
    lines = _bench_errors(_suite(tmp_path, designers, envs), tmp_path, monkeypatch)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_every_problem_of_a_suite_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    envs = (GOOD_ENVS.replace('"eval_loss"', '"eval_los"') + '\n[[envs]]\nid = "vpt/LM-SoftTargets-v0"\nbudget = 8\n'
            'metric = "eval_nll"\nhigher_is_better = false\nkwargs = { sise = "tiny", size = "huge" }\n')
    designers = '["fixed", { name = "epsilon_greedy", kwargs = { epsilonn = 0.2 } }, "half_designer.py:Half"]'
    path = _suite(tmp_path, designers, envs)
    lines = _bench_errors(path, tmp_path, monkeypatch)
    assert [line.removeprefix("error: my_suite.toml: ").split("): ")[0] + ")" for line in lines] == [
        "designers[1] ('epsilon_greedy')", "designers[2] ('half_designer.py:Half')",
        "envs[0] (vpt/Toy-Alignment-v0)", "envs[1] (vpt/LM-SoftTargets-v0)"]
    assert "'sise'" in lines[3] and "size='huge'" in lines[3] and "['tiny', 'small', 'paper']" in lines[3]
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert len(err.value.errors) == 4 and isinstance(err.value, ValueError)


def test_a_bad_reward_name_and_a_broken_designer_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.py").write_text("class Broken(:\n")
    envs = GOOD_ENVS.replace("higher_is_better = false", 'higher_is_better = false\nkwargs = { reward = "alignmnt" }')
    lines = _bench_errors(_suite(tmp_path, '["fixed", "broken.py:Broken"]', envs), tmp_path, monkeypatch)
    assert len(lines) == 2
    assert "designers[1] ('broken.py:Broken'): designer 'broken.py:Broken' cannot be loaded: SyntaxError" in lines[0]
    assert "envs[0] (vpt/Toy-Alignment-v0): kwargs reward='alignmnt' is not accepted" in lines[1]


def test_add_designer_kwargs_and_keywords_are_checked(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path, '["fixed"]'))
    with pytest.raises(ValueError, match=r"unknown designer 'nope'"):
        suite.with_designers(["nope"])


def test_env_keywords_hold_every_smoke_keyword() -> None:
    from vpt_gym.envs import ENV_IDS, env_keywords

    for env_id, spec in ENV_IDS.items():
        assert set(spec["smoke_kwargs"]) <= set(env_keywords(env_id)), env_id
        assert "continuous" not in env_keywords(env_id) and "menu" not in env_keywords(env_id)
