"""Atomic file writes: a temp file in the target's folder, then ``os.replace`` (never a half-written file).

Every file the suite writes (results, leaderboards, plots, checkpoints, tokenizers, SB3 run folders) goes
through :func:`atomic_target`, so a crash or a kill leaves either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vpt_gym.utils import to_plain


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on success it replaces ``path``, on error it is removed.

    Args:
        path: the final file; its folder is created if missing.
        suffix: the temp file's suffix (e.g. ``".png"`` for writers that infer the format from it).

    The temp file is created with mode 0644 (``mkstemp`` makes 0600; results are meant to be shared).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o644)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed and fsync'ed before the rename); returns the path."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` via a temp file in the same folder + ``os.replace``.

    A crash never leaves a half-written file, and an existing file is replaced only by a complete one.
    Non-finite floats are written as ``null`` (:func:`vpt_gym.utils.to_plain`).
    """
    return write_text_atomic(path, json.dumps(to_plain(obj), indent=2, sort_keys=True) + "\n")
