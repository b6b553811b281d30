"""Benchmark protocol: suite parsing, the resumable runner (kill + rerun), replay validation, eval isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest

import vpt_gym  # noqa: F401
from vpt_gym.benchmark.results import append_row, read_rows, repair, row_key
from vpt_gym.benchmark.runner import plan, run_suite
from vpt_gym.benchmark.suites import load_suite, parse_suite
from vpt_gym.benchmark.validate import validate_row

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "benchmarks" / "suites").glob("*.toml"))


def toy_suite(**overrides) -> dict:
    data = {
        "name": "t", "version": 1, "seeds": [0, 1], "designers": ["fixed", "random"],
        "envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "eval_loss", "higher_is_better": False}],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_shipped_suites_parse(path: Path) -> None:
    suite = load_suite(path)
    assert suite.name == path.stem and suite.version >= 1
    assert any(d.name == "fixed" for d in suite.designers), "every suite ranks against the fixed-task baseline"
    assert plan(suite)  # every designer runs somewhere


def test_tiny_suite_is_the_acceptance_suite() -> None:
    suite = load_suite(ROOT / "benchmarks" / "suites" / "tiny.toml")
    assert {e.id for e in suite.envs} >= {"vpt/Toy-Alignment-v0", "vpt/LM-SoftTargets-v0"}
    assert len(plan(suite)) == len(suite.seeds) * sum(len([d for d in suite.designers if d.runs_on(e.id)])
                                                      for e in suite.envs)


def test_plan_subsets_by_env_and_refuses_an_env_outside_the_suite() -> None:
    suite = load_suite(ROOT / "benchmarks" / "suites" / "small.toml")
    every = plan(suite)
    env_id = "vpt/SSL-Augment-v1"
    only = plan(suite, envs=[env_id], designers=["fixed", "random"])
    assert [s.key() for s in only] == [s.key() for s in every
                                       if s.env_id == env_id and s.designer in ("fixed", "random")]
    assert len(only) == 2 * len(suite.seeds)
    with pytest.raises(ValueError, match=r"envs \['vpt/Nope-v0'\] are not in suite 'small'"):
        plan(suite, envs=["vpt/Nope-v0"])


@pytest.mark.parametrize("change, match", [
    ({"seedz": [0]}, r"unknown key\(s\) \['seedz'\]"),
    ({"envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "eval_loss", "higher_is_better": False,
                "kwarg": {}}]}, r"envs\[0\] \(vpt/Toy-Alignment-v0\): unknown key\(s\) \['kwarg'\]"),
    ({"envs": [{"id": "vpt/Nope-v0", "budget": 8, "metric": "m", "higher_is_better": False}]}, "not registered"),
    ({"envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 0, "metric": "m", "higher_is_better": False}]},
     "budget must be an integer >= 1, got 0"),
    ({"envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "m", "higher_is_better": False,
                "kwargs": {"budget": 4}}]}, "set the budget with the 'budget' key"),
    ({"designers": ["fixed", "bogus"]}, "unknown designer 'bogus'"),
    ({"designers": ["fixed", "fixed"]}, "labels .* repeat"),
    ({"seeds": [0, 0]}, "repeat a value"),
    ({"seeds": [-1]}, "seed must be an integer >= 0, got -1"),
    ({"designers": [{"name": "sb3", "label": "ppo", "train": {"algo": "ppo", "timesteps": 8, "seed": 1}}]},
     "train seed 1 is an evaluation seed"),
    ({"designers": [{"name": "sb3", "label": "ppo"}]}, "needs a train table"),
    ({"designers": [{"name": "fixed", "envs": ["vpt/LM-SoftTargets-v0"]}]}, "not in the suite"),
])
def test_bad_suites_are_rejected_with_the_bad_value(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_suite(toy_suite(**change))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_suite(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")


def test_config_hash_changes_with_the_configuration_only() -> None:
    a = parse_suite(toy_suite())
    b = parse_suite(toy_suite(seeds=[0, 1, 2]))
    c = parse_suite(toy_suite(envs=[{"id": "vpt/Toy-Alignment-v0", "budget": 9, "metric": "eval_loss",
                                     "higher_is_better": False}]))
    assert a.config_hash("vpt/Toy-Alignment-v0", "fixed") == b.config_hash("vpt/Toy-Alignment-v0", "fixed")
    assert a.config_hash("vpt/Toy-Alignment-v0", "fixed") != c.config_hash("vpt/Toy-Alignment-v0", "fixed")
    assert a.config_hash("vpt/Toy-Alignment-v0", "fixed") != a.config_hash("vpt/Toy-Alignment-v0", "random")


def test_runner_rows_resume_and_match_a_direct_episode(tmp_path: Path) -> None:
    suite = parse_suite(toy_suite())
    out = tmp_path / "r.jsonl"
    rows = run_suite(suite, out, progress=False)
    assert len(rows) == 4 and len(read_rows(out)) == 4
    row = read_rows(out)[0]
    for key in ("suite", "suite_version", "env_id", "designer", "designer_config", "seed", "vpt_gym_version",
                "config_hash", "eval", "return", "ledger", "actions", "tasks", "trajectory", "metric_value"):
        assert key in row, key
    assert row["ledger"]["learner_updates"] == 8 and len(row["actions"]) == 8
    assert row["metric_value"] == row["eval"]["eval_loss"]
    # the same episode run directly gives the same numbers (bitwise on CPU)
    from vpt_gym.agents import make_designer
    from vpt_gym.runner import run_episode

    env = gym.make(row["env_id"], **row["env_kwargs"])
    direct = run_episode(env, make_designer(row["designer"], env), seed=row["seed"])
    assert direct["eval"] == row["eval"] and direct["actions"] == row["actions"]
    # a rerun writes nothing; a lost row (killed mid-append) is re-run, without duplicates
    assert run_suite(suite, out, progress=False) == []
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:2]) + text[2][: len(text[2]) // 2])  # row 3 half-written, row 4 missing
    assert len(read_rows(out)) == 2
    again = run_suite(suite, out, progress=False)
    assert len(again) == 2
    final = read_rows(out)
    assert sorted(map(row_key, final)) == sorted(map(row_key, rows)) and len(final) == 4
    by_key = {row_key(r): r["eval"] for r in rows}
    assert all(by_key[row_key(r)] == r["eval"] for r in final)


def test_a_grown_suite_reuses_the_unchanged_rows_of_its_earlier_version(tmp_path: Path) -> None:
    """v2 adds a designer and changes the budget of nothing: v1's rows are copied (relabelled, reused_from), the
    new designer's episodes run, and a copied row equals the episode v2 would have run (it validates by replay).
    A v1 row whose env entry changed in v2 is not reused."""
    v1 = parse_suite(toy_suite(designers=["fixed", "random"]))
    old = tmp_path / "v1.jsonl"
    first = run_suite(v1, old, progress=False)
    v2 = parse_suite(toy_suite(version=2, designers=["fixed", "random", "round_robin"]))
    out = tmp_path / "v2.jsonl"
    rows = run_suite(v2, out, progress=False, reuse=old)
    reused = [r for r in rows if "reused_from" in r]
    assert len(reused) == 4 and len(rows) == 6 and {r["designer"] for r in rows if "reused_from" not in r} == {
        "round_robin"}
    by_key = {(r["designer"], r["seed"]): r for r in first}
    for r in reused:
        assert r["suite_version"] == 2 and r["config_hash"] == v2.config_hash(r["env_id"], r["designer"])
        assert r["reused_from"] == {"suite_version": 1, "config_hash": by_key[(r["designer"], r["seed"])]["config_hash"]}
        assert r["eval"] == by_key[(r["designer"], r["seed"])]["eval"]
    fresh = run_suite(v2, tmp_path / "fresh.jsonl", progress=False, designers=["fixed"], seeds=[1])[0]
    copied = next(r for r in reused if r["designer"] == "fixed" and r["seed"] == 1)
    assert fresh["config_hash"] == copied["config_hash"] and fresh["actions"] == copied["actions"]
    assert fresh["eval"] == copied["eval"] and fresh["return"] == copied["return"]
    assert validate_row(copied)["ok"]
    assert run_suite(v2, out, progress=False, reuse=old) == []  # finished: nothing copied twice
    changed = parse_suite(toy_suite(version=3, envs=[{"id": "vpt/Toy-Alignment-v0", "budget": 9,
                                                      "metric": "eval_loss", "higher_is_better": False}]))
    from vpt_gym.benchmark.runner import reuse_rows

    assert reuse_rows(changed, read_rows(old)) == []
    with pytest.raises(FileNotFoundError, match="no such results file"):
        run_suite(v2, tmp_path / "other.jsonl", reuse=tmp_path / "missing.jsonl", progress=False)
    with pytest.raises(ValueError, match="is the results file itself"):
        run_suite(v2, out, reuse=out, progress=False)


def test_sb3_designers_train_with_the_episodes_thread_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench trains a suite's SB3 designer in its own process under ``torch_threads`` (not torch's default,
    which takes every core beside the running workers) and restores the process's count; the episodes then
    load the trained run folder."""
    pytest.importorskip("stable_baselines3", reason="needs the sb3 extra: pip install 'vpt-gym[sb3]'")
    import torch

    import vpt_gym.agents.sb3 as sb3

    real_train, seen = sb3.train, []

    def recording_train(*args, **kwargs):  # the real training, noting the thread count it runs under
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(sb3, "train", recording_train)
    suite = parse_suite(toy_suite(seeds=[0], designers=[
        {"name": "sb3", "label": "ppo", "train": {"algo": "ppo", "timesteps": 128, "seed": 1000}}]))
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rows = run_suite(suite, tmp_path / "r.jsonl", progress=False, torch_threads=1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert len(rows) == 1 and rows[0]["designer_name"].startswith("sb3:") and rows[0]["torch_threads"] == 1


def test_runner_refuses_another_suite_version_and_bad_arguments(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run_suite(parse_suite(toy_suite(seeds=[0], designers=["fixed"])), out, progress=False)
    with pytest.raises(ValueError, match="version 1, this is version 2"):
        run_suite(parse_suite(toy_suite(version=2)), out, progress=False)
    suite = parse_suite(toy_suite())
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        run_suite(suite, out, workers=0)
    with pytest.raises(ValueError, match="backend must be one of"):
        run_suite(suite, out, backend="dask")
    with pytest.raises(ValueError, match=r"designers \['ppo'\] are not in suite"):
        run_suite(suite, out, designers=["ppo"])
    with pytest.raises(ValueError, match=r"seeds \[7\] are not in suite"):
        run_suite(suite, out, seeds=[7])
    with pytest.raises(ValueError, match="is a folder"):
        run_suite(suite, tmp_path)


def test_partial_last_line_is_repaired_atomically(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    append_row(out, {"a": 1})
    with open(out, "a") as handle:
        handle.write('{"a": 2, "b"')
    assert read_rows(out) == [{"a": 1}]
    assert repair(out) == len('{"a": 2, "b"')
    assert out.read_text() == '{"a": 1}\n'
    out.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_rows(out)


def test_local_worker_processes_match_the_in_process_run(tmp_path: Path) -> None:
    suite = parse_suite(toy_suite())
    serial = {row_key(r): r["eval"] for r in run_suite(suite, tmp_path / "a.jsonl", progress=False, torch_threads=1)}
    parallel = run_suite(suite, tmp_path / "b.jsonl", workers=2, progress=False, torch_threads=1)
    assert len(parallel) == 4 and {row_key(r): r["eval"] for r in parallel} == serial


def test_cli_bench_killed_midway_then_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "kill"\nversion = 1\nseeds = [0, 1, 2, 3, 4, 5]\ndesigners = ["fixed", "random"]\n'
        '[[envs]]\nid = "vpt/Toy-Alignment-v0"\nbudget = 400\nmetric = "eval_loss"\nhigher_is_better = false\n')
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "vpt_gym.cli", "bench", str(suite), "--out", str(out), "--workers", "2",
           "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_rows(out)) < 2 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers, mid-suite
    proc.wait()
    before = read_rows(out)
    assert 1 <= len(before) < 12, "the kill should land mid-suite"
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    after = read_rows(out)
    keys = [row_key(r) for r in after]
    assert len(keys) == 12 and len(set(keys)) == 12
    assert {row_key(r): r["eval"] for r in before}.items() <= {row_key(r): r["eval"] for r in after}.items()


def test_validate_replays_rows_and_catches_a_tampered_result(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    run_suite(parse_suite(toy_suite(designers=["random"], seeds=[3])), out, progress=False)
    row = read_rows(out)[0]
    report = validate_row(row)
    assert report == {"ok": True, "mode": "replay", "tolerance": 0.0, "torch_threads": row["torch_threads"],
                      "mismatches": {}, "hint": None}
    tampered = json.loads(json.dumps(row))
    tampered["eval"]["eval_loss"] *= 1.0 + 1e-12
    bad = validate_row(tampered)
    assert not bad["ok"] and set(bad["mismatches"]) == {"eval.eval_loss"}
    with pytest.raises(ValueError, match="row lacks"):
        validate_row({"env_id": "vpt/Toy-Alignment-v0"})


def test_validate_reruns_a_designer_that_builds_its_own_tasks(tmp_path: Path) -> None:
    suite = parse_suite({
        "name": "vp", "version": 1, "seeds": [0], "designers": ["vpretraining"],
        "envs": [{"id": "vpt/LM-SoftTargets-v0", "budget": 4, "metric": "eval_nll", "higher_is_better": False,
                  "kwargs": {"size": "tiny", "eval_items": 2, "max_new_tokens": 4}}]})
    out = tmp_path / "r.jsonl"
    run_suite(suite, out, progress=False, torch_threads=1)
    row = read_rows(out)[0]
    assert any(isinstance(a, str) for a in row["actions"])  # designer-built tasks are logged by name
    report = validate_row(row)
    assert report["ok"] and report["mode"] == "rerun", report


def test_designers_never_see_the_eval_split() -> None:
    """By construction: the eval split is read once, by the env, after the designer's last action."""
    from vpt_gym.agents import make_designer
    from vpt_gym.runner import run_episode

    env = gym.make("vpt/Toy-Alignment-v0", budget=6)
    feedback = env.unwrapped.feedback
    calls = {"evaluate": 0}
    original = feedback.evaluate

    def counting_evaluate(learner):
        calls["evaluate"] += 1
        return original(learner)

    feedback.evaluate = counting_evaluate
    inner = make_designer("random", env)
    seen = []

    class SpyDesigner:  # a fake designer for this test only: records what a designer can observe
        name = "spy"

        def reset(self, seed=None):
            inner.reset(seed)

        def act(self, observation, info):
            seen.append((calls["evaluate"], "eval" in info))
            return inner.act(observation, info)

        def observe(self, *args):
            inner.observe(*args)

    result = run_episode(env, SpyDesigner(), seed=0)
    assert len(seen) == 6 and all(n == 0 and not has_eval for n, has_eval in seen)
    assert calls["evaluate"] == 1 and "eval_loss" in result["eval"]


def test_rows_are_keyed_by_the_data_they_ran_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of an env that reads the data folder are keyed by it; validate needs that data to replay them."""
    from vpt_gym.benchmark.suites import data_identity
    from vpt_gym.benchmark.validate import _data_folder

    lm = {"id": "vpt/LM-SoftTargets-v0", "budget": 8, "metric": "eval_nll", "higher_is_better": False,
          "kwargs": {"size": "tiny"}}
    suite = parse_suite(toy_suite(designers=["fixed"], seeds=[0], envs=[lm]))
    folder = tmp_path / "data"
    (folder / "gsm8k").mkdir(parents=True)
    (folder / "gsm8k" / "train.jsonl").write_text("{}\n")
    monkeypatch.setenv("VPT_GYM_DATA", str(folder))
    (first,) = plan(suite)
    assert first.data == str(folder.resolve()) and first.data_identity == data_identity(folder)
    monkeypatch.delenv("VPT_GYM_DATA")
    (second,) = plan(suite)  # other data: another episode, not "already finished"
    assert second.data is None and second.data_identity == "none" and second.config_hash != first.config_hash
    row = {"env_id": lm["id"], "data": first.data, "data_identity": first.data_identity}
    assert _data_folder(row) == first.data  # replays with the row's own folder, whatever the environment says
    (folder / "gsm8k" / "train.jsonl").write_text("{}\n{}\n")  # the folder now holds other data
    with pytest.raises(ValueError, match="holds the same files: set VPT_GYM_DATA"):
        _data_folder(row)


def _descendants(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_cli_bench_terminated_stops_its_workers_and_says_how_to_resume(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "term"\nversion = 1\nseeds = [0, 1, 2, 3]\ndesigners = ["fixed"]\n'
        '[[envs]]\nid = "vpt/Toy-Alignment-v0"\nbudget = 4000\nmetric = "eval_loss"\nhigher_is_better = false\n')
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "vpt_gym.cli", "bench", str(suite), "--out", str(out), "--workers", "2",
           "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while time.monotonic() < deadline and len(workers) < 2 and proc.poll() is None:
        time.sleep(0.2)
        workers = _descendants(proc.pid)
    proc.terminate()  # a plain `kill PID`
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "rerun the same command to resume" in stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.2)
    alive = [p for p in workers if Path(f"/proc/{p}/stat").exists()
             and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert workers and not alive, f"orphaned workers {alive}"


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_ctrl_c_during_bench_leaks_no_semaphore(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole foreground group) while both workers are mid-episode: exit 130, the resume
    hint, and no ``resource_tracker: ... leaked semaphore objects`` (tqdm's lock in terminated workers)."""
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "ctrlc"\nversion = 1\nseeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\ndesigners = ["fixed"]\n'
        '[[envs]]\nid = "vpt/Toy-Alignment-v0"\nbudget = 6000\nmetric = "eval_loss"\nhigher_is_better = false\n')
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "vpt_gym.cli", "bench", str(suite), "--out", str(out), "--workers", "2",
           "--threads", "1", "--no-progress"]
    # A shell's background job (`pytest ... &`) inherits SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: restore the default so the bench sees Ctrl-C as it would in a terminal.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not read_rows(out) and proc.poll() is None:
        time.sleep(0.1)  # one episode finished: both workers have run an episode's code
    time.sleep(0.2)  # 12 episodes of ~3 s on 2 workers: 5 rounds remain, so the signal lands mid-run
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, f"rows at the end: {len(read_rows(out))}; " + stderr[-2000:]
    assert "rerun the same command to resume" in stderr
    assert "leaked" not in stderr, stderr[-2000:]


def test_torch_threads_sets_the_count_and_restores_it_even_on_an_error() -> None:
    """``vpt_gym.utils.torch_threads`` (episodes, replays and SB3 training run under it): the block sees the
    count asked for, the previous count comes back after a normal exit and after an exception, ``None`` keeps
    the current count, and a bad count is refused before anything changes."""
    import torch

    from vpt_gym.utils import torch_threads

    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    with torch_threads(target) as count:
        assert count == target == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"), torch_threads(target):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with torch_threads(None) as count:
        assert count == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"), torch_threads(bad):
            pass
        assert torch.get_num_threads() == before
