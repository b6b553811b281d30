"""The ``vpt-gym`` CLI and the runner's atomic result writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vpt_gym.cli import main
from vpt_gym.envs import ENV_IDS
from vpt_gym.runner import write_json_atomic

TOY = "vpt/Toy-Alignment-v0"


def _run_toy(out: Path, *extra: str) -> dict:
    args = ["run", TOY, "--designer", "random", "--budget", "16", "--seed", "3", "--out", str(out), "--no-progress",
            *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


def test_list_prints_every_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(ENV_IDS)
    for env_id, line in zip(ENV_IDS, lines):
        assert line.startswith(env_id + " ")
        assert ENV_IDS[env_id]["tasks"] in line


def test_run_toy_writes_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_toy(tmp_path / "r.json")
    assert result["env_id"] == TOY and result["designer"] == "random" and result["seed"] == 3
    assert result["ledger"]["learner_updates"] == 16
    assert len(result["actions"]) == 16 and len(result["tasks"]) == 16
    assert all(isinstance(a, int) and 0 <= a < 5 for a in result["actions"])
    assert set(result["eval"]) == {"eval_loss", "eval_solved_fraction"}
    assert all(math.isfinite(v) for v in result["eval"].values())
    assert result["feedback_source"] == "analytic:toy"
    assert result["terminated"] is True and result["diverged"] is False
    assert result["env_kwargs"] == {"budget": 16}
    summary = json.loads(capsys.readouterr().out)  # stdout is the JSON summary
    assert summary["eval"] == result["eval"] and summary["ledger"] == result["ledger"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_run_toy_is_reproducible(tmp_path: Path) -> None:
    first = _run_toy(tmp_path / "a.json")
    second = _run_toy(tmp_path / "b.json")
    assert first["eval"] == second["eval"]
    assert first["actions"] == second["actions"]
    assert first["return"] == second["return"]
    other = _run_toy(tmp_path / "c.json", "--designer", "fixed")
    assert other["actions"] == [0] * 16
    assert other["eval"] != first["eval"]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    write_json_atomic(target, {"a": 1, "nan": float("nan"), "nested": [1.5, float("inf")]})
    old = target.read_text()
    assert json.loads(old) == {"a": 1, "nan": None, "nested": [1.5, None]}
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": 2, "z": object()})  # fails part-way through serialization
    assert target.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"], "a temp file was left behind"
    write_json_atomic(tmp_path / "sub" / "new.json", [1, 2])
    assert json.loads((tmp_path / "sub" / "new.json").read_text()) == [1, 2]


@pytest.mark.parametrize("args", [
    ["run", TOY, "--designer", "no_such_designer", "--budget", "4", "--no-progress"],
    ["run", TOY, "--budget", "0", "--no-progress"],
    ["run", TOY, "--budget", "-3", "--no-progress"],
    ["run", "vpt/No-Such-v0", "--budget", "4", "--no-progress"],
    ["run", TOY, "--budget", "4", "--reward", "no_such_reward", "--no-progress"],
    ["run", TOY, "--budget", "4", "--size", "tiny", "--no-progress"],
    ["nope"],
])
def test_bad_arguments_exit(args: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main([*args, "--out", str(tmp_path / "x.json")] if args[0] == "run" else args)
    assert excinfo.value.code not in (0, None)
    assert not (tmp_path / "x.json").exists()


def test_device_on_the_toy_env_is_refused_not_ignored(tmp_path: Path) -> None:
    """The toy runs on the CPU: ``--device cuda`` used to be dropped silently; now it is refused by name."""
    with pytest.raises(SystemExit, match="--device do not apply to the toy env"):
        main(["run", TOY, "--budget", "4", "--device", "cuda", "--out", str(tmp_path / "x.json"), "--no-progress"])
    assert not (tmp_path / "x.json").exists()


def test_out_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="folder"):
        main(["run", TOY, "--budget", "4", "--out", str(tmp_path), "--no-progress"])


def test_run_lm_tiny(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "lm.json"
    assert main(["run", "vpt/LM-SoftTargets-v0", "--size", "tiny", "--budget", "4", "--designer", "fixed",
                 "--seed", "0", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["feedback_source"].startswith("gsm8k:")
    assert str((data_dir / "gsm8k").resolve()) in result["feedback_source"]
    assert result["ledger"]["learner_updates"] == 4
    assert result["actions"] == [0] * 4 and set(result["tasks"]) == {"one_hot"}
    assert {"eval_nll", "eval_pass@1"} <= set(result["eval"])
    assert math.isfinite(result["eval"]["eval_nll"]) and 0.0 <= result["eval"]["eval_pass@1"] <= 1.0


def test_run_threads_are_set_recorded_and_restored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from vpt_gym.cli import THREADS_NOTE

    before = torch.get_num_threads()
    result = _run_toy(tmp_path / "two.json", "--threads", "2")
    assert result["torch_threads"] == 2 and torch.get_num_threads() == before
    captured = capsys.readouterr()
    assert json.loads(captured.out)["torch_threads"] == 2 and "note:" not in captured.err
    assert _run_toy(tmp_path / "one.json", "--threads", "1")["torch_threads"] == 1
    capsys.readouterr()
    torch.set_num_threads(2)  # torch's default on a 2-core machine: the result cannot be rerun bitwise by count 1
    try:
        assert _run_toy(tmp_path / "default.json")["torch_threads"] == 2
    finally:
        torch.set_num_threads(before)
    assert THREADS_NOTE.format(threads=2) in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--threads must be >= 1, got 0"):
        _run_toy(tmp_path / "zero.json", "--threads", "0")


def test_validate_reports_the_thread_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vpt_gym.benchmark.results import append_row

    row = _run_toy(tmp_path / "r.json", "--threads", "1")
    row.update(designer_name="random", env_kwargs={"budget": 16})
    del row["torch_threads"]  # a row written before thread counts were recorded
    append_row(tmp_path / "rows.jsonl", row)
    capsys.readouterr()
    assert main(["validate", str(tmp_path / "rows.jsonl")]) == 0
    captured = capsys.readouterr()
    assert "torch threads " in captured.out and "does not record its torch thread count" in captured.err


def test_run_prints_theta0_eval_beside_the_final_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vpt_gym.envs.toy import ToyConfig, ToyWorld

    result = _run_toy(tmp_path / "r.json")
    world = ToyWorld(ToyConfig())
    expected = 0.5 * float(((world.theta0 - world.theta_star) ** 2).sum())  # L_down at theta_0, closed form
    assert result["eval_theta0"]["eval_loss"] == pytest.approx(expected, rel=1e-12)
    assert result["eval_theta0"]["eval_loss"] > result["eval"]["eval_loss"]  # 16 updates moved toward theta*
    captured = capsys.readouterr()
    assert json.loads(captured.out)["eval_theta0"] == result["eval_theta0"]
    assert f"eval_loss {result['eval']['eval_loss']:.6g} (theta_0 {expected:.6g})" in captured.err
    again = _run_toy(tmp_path / "again.json")  # the reference eval does not disturb the episode
    assert again["eval"] == result["eval"] and again["actions"] == result["actions"]
    assert "eval_theta0" not in _run_toy(tmp_path / "none.json", "--no-reference")


def test_run_set_passes_env_keywords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = _run_toy(tmp_path / "plain.json")
    dim4 = _run_toy(tmp_path / "dim4.json", "--set", "dim=4", "--set", "noise=0.25")
    assert dim4["env_kwargs"] == {"budget": 16, "dim": 4, "noise": 0.25}
    assert dim4["eval"] != plain["eval"]
    for pairs, message in ((["--set", "sise=1"], r"--set sise=\.\.\.: vpt/Toy-Alignment-v0 has no keyword 'sise'; "
                                                 r"accepted: \['batch_size'"),
                           (["--set", "budget=3"], r"--set budget=\.\.\.: use --budget"),
                           (["--set", "dim"], r"--set takes KEY=VALUE, got 'dim'")):
        with pytest.raises(SystemExit, match=message):
            _run_toy(tmp_path / "bad.json", *pairs)
