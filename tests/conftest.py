"""Shared test setup: offline hub, the provided data folder, and a per-session cache under tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA_DIR = Path(os.environ.get("VPT_GYM_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data").resolve()


@pytest.fixture(scope="session", autouse=True)
def _vpt_environment(tmp_path_factory: pytest.TempPathFactory):
    """Point VPT_GYM_DATA at ../shared/data and VPT_GYM_CACHE at a session tmp folder."""
    patch = pytest.MonkeyPatch()
    patch.setenv("VPT_GYM_DATA", str(DATA_DIR))
    patch.setenv("VPT_GYM_CACHE", str(tmp_path_factory.mktemp("vpt_cache")))
    patch.setenv("HF_HUB_OFFLINE", "1")
    yield
    patch.undo()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The provided real data folder (``../shared/data``)."""
    if not (DATA_DIR / "gsm8k" / "train.jsonl").exists():
        pytest.skip(f"provided data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def local_checkpoint(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A tiny local ``from_pretrained`` folder (random GPT-2 + a BPE with eos id 0) for the ``paper`` presets."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from vpt_gym.lm.corpus import EOS_TOKEN, build_tokenizer, load_general_text

    folder = tmp_path_factory.mktemp("checkpoint")
    text, _ = load_general_text(data_dir)
    tok = build_tokenizer([text[i : i + 2000] for i in range(0, 200_000, 2000)], vocab_size=300,
                          cache_dir=tmp_path_factory.mktemp("tok"))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN).save_pretrained(folder)
    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0,
                               embd_pdrop=0, attn_pdrop=0, bos_token_id=0, eos_token_id=0)).save_pretrained(folder)
    return folder
