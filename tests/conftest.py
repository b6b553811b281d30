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
