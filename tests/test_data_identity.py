"""Only the data an env reads is part of its rows' identity; published rows resume; the data source is said
(issue 15, item 4)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import vpt_gym  # noqa: F401
from vpt_gym.benchmark.results import read_rows
from vpt_gym.benchmark.runner import finished_keys, plan, run_suite
from vpt_gym.benchmark.suites import load_suite, parse_suite
from vpt_gym.benchmark.validate import validate_row

ROOT = Path(__file__).resolve().parents[1]
SMALL_SUITE = ROOT / "benchmarks" / "suites" / "small.toml"
SMALL_ROWS = ROOT / "benchmarks" / "leaderboard" / "small.jsonl"

TOY = {"id": "vpt/Toy-Alignment-v0", "budget": 8, "metric": "eval_loss", "higher_is_better": False}
LM = {"id": "vpt/LM-SoftTargets-v1", "budget": 8, "metric": "eval_nll", "higher_is_better": False,
      "kwargs": {"size": "tiny"}}


def _suite(envs: list[dict]) -> object:
    return parse_suite({"name": "d", "version": 1, "seeds": [0], "designers": ["fixed"], "envs": envs})


def _other_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "other_data" / "gsm8k"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("{}\n")
    return folder.parent


def test_toy_rows_keep_their_identity_when_the_data_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            data_dir: Path) -> None:
    suite = _suite([TOY, LM])
    hashes = {}
    for name, folder in (("shared", data_dir), ("other", _other_folder(tmp_path)), ("unset", None)):
        if folder is None:
            monkeypatch.delenv("VPT_GYM_DATA", raising=False)
        else:
            monkeypatch.setenv("VPT_GYM_DATA", str(folder))
        specs = {s.env_id: s for s in plan(suite)}
        assert specs[TOY["id"]].data is None and specs[TOY["id"]].data_identity == "none"
        hashes[name] = (specs[TOY["id"]].config_hash, specs[LM["id"]].config_hash)
    assert len({toy for toy, _ in hashes.values()}) == 1, hashes  # toy: one identity whatever VPT_GYM_DATA is
    assert len({lm for _, lm in hashes.values()}) == 3, hashes  # the LM env reads it: three identities


def test_a_toy_rerun_with_other_data_adds_no_duplicate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       data_dir: Path) -> None:
    suite, out = _suite([TOY]), tmp_path / "r.jsonl"
    monkeypatch.setenv("VPT_GYM_DATA", str(data_dir))
    assert len(run_suite(suite, out, progress=False)) == 1
    monkeypatch.setenv("VPT_GYM_DATA", str(_other_folder(tmp_path)))
    assert run_suite(suite, out, progress=False) == []
    assert len(read_rows(out)) == 1


@pytest.mark.parametrize("data", ["shared", "other", "unset"])
def test_published_rows_resume_whatever_the_data(data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 data_dir: Path) -> None:
    """benchmarks/leaderboard/small.jsonl (written when every hash held the data identity) is complete for
    ``bench small.toml`` with the data it ran on; its toy rows stay complete with any other data."""
    if data == "unset":
        monkeypatch.delenv("VPT_GYM_DATA", raising=False)
    else:
        monkeypatch.setenv("VPT_GYM_DATA", str(data_dir if data == "shared" else _other_folder(tmp_path)))
    suite = load_suite(SMALL_SUITE)
    done = finished_keys(suite, read_rows(SMALL_ROWS))
    specs = plan(suite)
    toy = [s for s in specs if s.env_id == "vpt/Toy-Alignment-v0"]
    lm = [s for s in specs if s.env_id == "vpt/LM-SoftTargets-v1"]
    assert toy and all(s.key() in done for s in toy)
    assert lm and all((s.key() in done) == (data == "shared") for s in lm)


def test_a_published_toy_row_validates_with_other_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPT_GYM_DATA", str(_other_folder(tmp_path)))
    rows = read_rows(SMALL_ROWS)
    row = next(r for r in rows if r["env_id"] == "vpt/Toy-Alignment-v0" and r["designer"] == "ucb1")
    assert row["data_identity"] == "none"  # the toy reads no data folder: its rows carry no folder identity
    report = validate_row(row)
    assert report["ok"], report


def test_embedded_fallback_is_said_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from vpt_gym.lm import corpus

    monkeypatch.setattr(corpus, "_embedded_noticed", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING, logger="vpt_gym.lm.corpus"):
        for _ in range(2):
            loaded = corpus.load_math_corpus(None, feedback_size=4, embedded_unlabeled_size=4, embedded_eval_size=4)
    assert loaded.source == corpus.EMBEDDED_SOURCE
    notes = [r.getMessage() for r in caplog.records if r.name == "vpt_gym.lm.corpus"]
    assert notes == [corpus.EMBEDDED_NOTICE] and "\n" not in notes[0]
    assert "VPT_GYM_DATA" in notes[0] and corpus.EMBEDDED_SOURCE in notes[0]


def test_the_leaderboard_says_which_data_a_table_used() -> None:
    from vpt_gym.benchmark.leaderboard import describe_data

    assert describe_data("gsm8k:/somewhere/data/gsm8k", "51d475b24421fd01") == (
        "GSM8K from a data folder (`VPT_GYM_DATA`/`--data`, folder identity `51d475b24421fd01`)")
    assert describe_data("embedded:reasoning_gym.gsm_symbolic", "none") == (
        "the embedded reasoning-gym problems (`embedded:reasoning_gym.gsm_symbolic`), not GSM8K")
    assert describe_data("hub:openai/gsm8k", "none") == "GSM8K from the Hugging Face hub (`hub:openai/gsm8k`)"
    assert describe_data("analytic:toy", "none") == "`analytic:toy`"
    pytest.importorskip("rliable", reason="needs the 'bench' extra (pip install -e '.[bench]')")
    from vpt_gym.benchmark.leaderboard import boards, render_markdown

    text = render_markdown(boards(read_rows(SMALL_ROWS), reps=100), source="small.jsonl")
    assert "Feedback data: GSM8K from a data folder (`VPT_GYM_DATA`/`--data`, folder identity `51d475b24421fd01`)." \
        in text and "Feedback data: `analytic:toy`." in text
