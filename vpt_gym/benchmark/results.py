"""Results files: one JSON object per line (JSONL), one line per finished episode.

Rows are appended by one writer (the runner's main process) with a single ``os.write`` of a whole line on an
``O_APPEND`` file descriptor, then ``fsync``. A kill can at worst leave a partial last line without its
newline; :func:`read_rows` drops it (and :func:`repair` rewrites the file without it, atomically), so a
rerun of the runner finds every finished row and re-runs only the lost episode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from vpt_gym.atomic import write_bytes_atomic
from vpt_gym.utils import to_plain

ROW_KEY = ("suite", "env_id", "designer", "seed", "config_hash")
"""Fields that identify an episode: a rerun skips rows whose key is already in the file."""


def row_key(row: Mapping[str, Any]) -> tuple:
    """The identity of a row (see :data:`ROW_KEY`)."""
    return tuple(row[k] for k in ROW_KEY)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row of a results file (empty list when the file does not exist).

    A partial last line (no trailing newline: the writer was killed mid-append) is ignored.

    Raises:
        ValueError: a complete line that is not a JSON object (names the line number).
    """
    p = Path(path)
    if not p.exists():
        return []
    text = p.read_text()
    lines = text.split("\n")
    complete = lines[:-1]  # the last element is "" after a final newline, else a partial line
    rows = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: line {number} is not valid JSON ({exc}); the file was edited by hand?") from exc
        if not isinstance(row, dict):
            raise ValueError(f"{p}: line {number} is not a JSON object")
        rows.append(row)
    return rows


def repair(path: str | Path) -> int:
    """Drop a partial last line left by a killed writer (atomic rewrite); returns the bytes dropped."""
    p = Path(path)
    if not p.exists():
        return 0
    data = p.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data[: data.rfind(b"\n") + 1]
    write_bytes_atomic(p, keep)
    return len(data) - len(keep)


def append_row(path: str | Path, row: dict[str, Any]) -> None:
    """Append one row as a single line (one ``os.write`` on an ``O_APPEND`` descriptor, then ``fsync``)."""
    line = (json.dumps(to_plain(row), sort_keys=True, allow_nan=False) + "\n").encode()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - regular files write whole buffers
            raise OSError(f"short write to {p}: {written} of {len(line)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def group_rows(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``{env_id: {designer: [rows sorted by seed]}}``."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        out.setdefault(row["env_id"], {}).setdefault(row["designer"], []).append(row)
    for per_env in out.values():
        for label in per_env:
            per_env[label].sort(key=lambda r: r["seed"])
    return out
