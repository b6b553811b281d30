"""Leaderboard: golden file from a real results file, statistics by hand, budget parity, plots, CLI, Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from vpt_gym import __version__
from vpt_gym.benchmark.leaderboard import boards, render_markdown, write_leaderboard
from vpt_gym.benchmark.results import read_rows

DATA = Path(__file__).resolve().parent / "data"
RESULTS = DATA / "golden_results.jsonl"
GOLDEN = DATA / "golden_LEADERBOARD.md"

pytest.importorskip("rliable", reason="needs the 'bench' extra (pip install -e '.[bench]')")


FAST = 200  # bootstrap resamples where the test does not check the published intervals


def _rows() -> list[dict]:
    return read_rows(RESULTS)


def test_markdown_matches_the_golden_file() -> None:
    text = render_markdown(boards(_rows()), source=RESULTS.name).replace(f"vpt-gym {__version__}", "vpt-gym VERSION")
    if os.environ.get("VPT_GYM_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "rerun with VPT_GYM_UPDATE_GOLDEN=1 if the change is intended"


def test_iqm_and_improvement_by_hand() -> None:
    board = boards(_rows(), reps=FAST)[0]
    assert board.env_id == "vpt/Toy-Alignment-v0" and board.budget == 16 and not board.higher_is_better
    by_name = {d.designer: d for d in board.designers}
    fixed = np.sort(by_name["fixed"].scores)
    assert by_name["fixed"].iqm == pytest.approx(fixed[1:4].mean(), rel=1e-12)  # 5 runs: IQM = middle three
    # paired improvement (lower is better): IQM of fixed - greedy per seed
    diff = np.sort(np.asarray(by_name["fixed"].scores) - np.asarray(by_name["greedy"].scores))
    assert by_name["greedy"].improvement == pytest.approx(diff[1:4].mean(), rel=1e-12)
    for d in board.designers:
        lo, hi = d.iqm_ci
        assert lo <= d.iqm <= hi
    assert by_name["fixed"].improvement is None and by_name["fixed"].extra_passes_per_update == 0.0
    assert by_name["greedy"].extra_passes_per_update == 5.0  # one backward per task of the 5-task menu
    # ranked best first (lowest eval loss)
    assert [d.iqm for d in board.designers] == sorted(d.iqm for d in board.designers)


def test_refuses_to_rank_different_budgets_or_mixed_suites() -> None:
    rows = _rows()
    other = json.loads(json.dumps(rows[0]))
    other["budget"], other["designer"] = 32, "long"
    other["ledger"]["learner_updates"] = 32
    with pytest.raises(ValueError, match="refusing to rank designers with different learner-update budgets"):
        boards(rows + [other], reps=FAST)
    short = json.loads(json.dumps(rows[0]))
    short["ledger"]["learner_updates"] = 15
    with pytest.raises(ValueError, match="spent 15 learner updates, not the budget 16"):
        boards([short] + rows[1:], reps=FAST)
    mixed = json.loads(json.dumps(rows[0]))
    mixed["suite"] = "other"
    with pytest.raises(ValueError, match="mix suites"):
        boards(rows + [mixed], reps=FAST)
    with pytest.raises(ValueError, match="no rows"):
        boards([])
    with pytest.raises(ValueError, match="reps must be an integer >= 100, got 10"):
        boards(rows, reps=10)


def test_write_leaderboard_is_deterministic_with_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the 'bench' extra (pip install -e '.[bench]')")
    a = write_leaderboard(_rows(), tmp_path / "a", source="r.jsonl", reps=FAST)
    b = write_leaderboard(_rows(), tmp_path / "b", source="r.jsonl", reps=FAST)
    files = sorted(p.name for p in a.parent.iterdir())
    assert files == ["LEADERBOARD.md", "aggregate.png", "vpt_Toy-Alignment-v0_curves.png",
                     "vpt_Toy-Alignment-v0_tasks.png"]
    for name in files:
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes(), name
    assert "![vpt_Toy-Alignment-v0_curves](vpt_Toy-Alignment-v0_curves.png)" in a.read_text()


def test_cli_leaderboard_and_validate(tmp_path: Path, capsys) -> None:
    from vpt_gym.cli import main

    assert main(["leaderboard", str(RESULTS), "--out", str(tmp_path / "lb"), "--no-plots", "--reps", "200"]) == 0
    assert "| 1 | greedy |" in capsys.readouterr().out
    assert main(["validate", str(RESULTS), "--row", "0"]) == 0
    ok = "row 0: vpt/Toy-Alignment-v0 fixed seed 0: ok (replay, tolerance 0.0, torch threads 1)"
    assert ok in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--row 99 is outside 0..19"):
        main(["validate", str(RESULTS), "--row", "99"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["leaderboard", str(tmp_path / "missing.jsonl")])


def test_ray_backend_on_a_local_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="needs the 'ray' extra (pip install -e '.[ray]')")
    from vpt_gym.benchmark.runner import run_suite
    from vpt_gym.benchmark.suites import parse_suite

    suite = parse_suite({"name": "ray", "version": 1, "seeds": [0, 1], "designers": ["fixed", "ucb1"],
                         "envs": [{"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "eval_loss",
                                   "higher_is_better": False}]})
    local = {(r["designer"], r["seed"]): r["eval"] for r in run_suite(suite, tmp_path / "a.jsonl", progress=False,
                                                                      torch_threads=1)}
    rows = run_suite(suite, tmp_path / "b.jsonl", backend="ray", workers=2, progress=False, torch_threads=1)
    assert len(rows) == 4 and {(r["designer"], r["seed"]): r["eval"] for r in rows} == local
    assert run_suite(suite, tmp_path / "b.jsonl", backend="ray", workers=2, progress=False) == []  # resumable


def test_plots_in_a_subfolder_are_linked_from_the_markdown(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the 'bench' extra (pip install -e '.[bench]')")
    md = write_leaderboard(_rows(), tmp_path, source="r.jsonl", reps=FAST, plots_subdir="figs")
    assert md == tmp_path / "LEADERBOARD.md"
    assert (tmp_path / "figs" / "vpt_Toy-Alignment-v0_curves.png").is_file()
    assert "![vpt_Toy-Alignment-v0_curves](figs/vpt_Toy-Alignment-v0_curves.png)" in md.read_text()
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_published_leaderboard_matches_its_results_file() -> None:
    """benchmarks/LEADERBOARD.md is what `vpt-gym leaderboard` renders from benchmarks/leaderboard/small.jsonl."""
    root = Path(__file__).resolve().parents[1] / "benchmarks"
    published = (root / "LEADERBOARD.md").read_text()
    rows = read_rows(root / "leaderboard" / "small.jsonl")
    header = published.split("\n", 3)[2]  # "From `small.jsonl`, rendered by vpt-gym X[ with `COMMAND`]."
    command = header.split(" with `", 1)[1].rsplit("`.", 1)[0] if " with `" in header else None
    plots = {b.env_id: [f"leaderboard/{b.env_id.replace('/', '_')}_curves.png",
                        f"leaderboard/{b.env_id.replace('/', '_')}_tasks.png"] for b in boards(rows, reps=100)}
    plots[""] = ["leaderboard/aggregate.png"]
    text = render_markdown(boards(rows), source="small.jsonl", plots=plots, command=command)
    assert text == published


def test_refuses_to_rank_rows_run_on_different_feedback_data() -> None:
    rows = _rows()
    other = json.loads(json.dumps(rows[0]))
    other["feedback_source"], other["seed"] = "gsm8k:/elsewhere", 99
    with pytest.raises(ValueError, match="refusing to rank rows run on different feedback data"):
        boards(rows + [other], reps=FAST)


def test_refuses_to_rank_rows_of_one_seed_from_different_theta0() -> None:
    """Rows of one seed that start from different weights (another CPU model's base) are not ranked together;
    rows of other seeds may differ (a seed may draw its own theta_0)."""
    rows = json.loads(json.dumps(_rows()))
    for r in rows:
        r["theta0"] = f"{r['seed']:016x}"
    boards(rows, reps=FAST)  # one fingerprint per seed: ranked
    other = json.loads(json.dumps(rows[0]))
    other.update(theta0="f" * 16, cpu_model="Some Other CPU", designer="other", designer_name="other")
    with pytest.raises(ValueError, match=rf"refusing to rank rows of seed {rows[0]['seed']} that start from "
                                         r"different weights theta_0: .*ffffffffffffffff \(on Some Other CPU\)"):
        boards(rows + [other], reps=FAST)


def test_compute_per_update_in_learner_step_equivalents() -> None:
    """Hand-worked: a forward is 1/3 of a learner step, a backward 2/3; data fields do not count."""
    from vpt_gym.benchmark.leaderboard import step_equivalents

    ledger = {"learner_updates": 200, "learner_forward": 200, "learner_backward": 200, "feedback_forward": 25,
              "feedback_backward": 25, "lookahead_backward": 200, "examples": 1600, "tokens": 204800}
    assert step_equivalents(ledger) == pytest.approx(200 + 25 + 200 * 2 / 3, rel=1e-12)
    by_name = {d.designer: d for d in boards(_rows(), reps=FAST)[0].designers}
    # greedy on the toy: the env's own passes as fixed, plus one look-ahead backward per task (5) per update
    assert by_name["greedy"].step_equivalents_per_update - by_name["fixed"].step_equivalents_per_update == \
        pytest.approx(5 * 2 / 3, rel=1e-9)
    assert by_name["fixed"].step_equivalents_per_update >= 1.0  # at least the learner's own step


def test_latest_version_follows_the_registered_versions() -> None:
    from vpt_gym.envs import latest_version

    assert latest_version("vpt/SSL-Augment-v1") == "vpt/SSL-Augment-v3"
    assert latest_version("vpt/SSL-Augment-v3") == "vpt/SSL-Augment-v3"
    assert latest_version("vpt/LM-SoftTargets-v0") == "vpt/LM-SoftTargets-v1"
    assert latest_version("vpt/Toy-Alignment-v0") == "vpt/Toy-Alignment-v0"
    with pytest.raises(KeyError, match="vpt/Nope-v0"):
        latest_version("vpt/Nope-v0")


def test_a_superseded_env_section_names_the_current_version() -> None:
    from vpt_gym.benchmark.leaderboard import _superseded_note

    assert _superseded_note("vpt/Toy-Alignment-v0") == [] and _superseded_note("vpt/SSL-Augment-v3") == []
    assert _superseded_note("my/Custom-v0") == []  # a user's id outside the registry
    (line,) = _superseded_note("vpt/SSL-Augment-v2")
    assert line.startswith("Superseded by `vpt/SSL-Augment-v3`") and "`vpt/SSL-Augment-v2` is out of date" in line


def test_a_board_counts_the_cpu_models_its_rows_ran_on() -> None:
    rows = json.loads(json.dumps(_rows()))
    for r in rows[:3]:
        r["cpu_model"] = "Intel(R) Xeon(R) Processor"
    rows[3]["cpu_model"] = "AMD EPYC"
    (board,) = boards(rows, reps=FAST)
    assert board.cpu_models == (("not recorded", len(rows) - 4), ("Intel(R) Xeon(R) Processor", 3), ("AMD EPYC", 1))
    text = render_markdown([board], source="x.jsonl")
    assert f"CPU model of the rows: not recorded ({len(rows) - 4} rows), Intel(R) Xeon(R) Processor (3 rows), " \
           "AMD EPYC (1 row);" in text
