"""Small helpers shared by the LM side, the vision side and the benchmark: no vpt_gym imports.

The cache folder and device resolution every env family uses, integer keyword checks, eval-mode inference on
a module, and the JSON-safe copy of results. This module sits at the bottom of the package's layering
(``docs/ARCHITECTURE.md``): anything may import it, it imports nothing of ``vpt_gym``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_ENV_VAR = "VPT_GYM_CACHE"
"""Environment variable naming the cache folder (tokenizers and base checkpoints)."""


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Within the block torch uses ``threads`` CPU threads (its current count for ``None``); yields the count in
    use and restores the previous count on exit, also on an exception. A CPU result reproduces bitwise only
    at the same count, so episodes, replays and SB3 training each run under an explicit one.

    Raises:
        ValueError: ``threads`` not None and not an integer >= 1 (before anything changes).
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 or None, got {threads!r}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``path``, else ``$VPT_GYM_CACHE``, else ``~/.cache/vpt_gym`` (created)."""
    chosen = Path(path or os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "vpt_gym")
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as given.

    Raises:
        ValueError: a device other than auto/cpu/cuda[:N], or ``cuda`` requested but not available.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not accepted; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not accepted; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available (torch {torch.__version__}, CUDA "
                         f"build: {torch.version.cuda or 'no'}); use --device cpu or auto, or install a CUDA build "
                         "of torch on a machine with a GPU")
    return dev


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """``value`` when it is an int (not a bool) in ``[low, high]``.

    Raises:
        ValueError: not an int, or outside the range (the message names ``name`` and the range).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value} outside the accepted range [{low}, {high}]")
    return value


@contextlib.contextmanager
def inference_mode(module: torch.nn.Module) -> Iterator[None]:
    """``torch.no_grad`` and eval mode, restoring every submodule's train/eval flag afterwards."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for submodule, training in modes:
            submodule.training = training


BUILD_THREADS = 1
"""Torch intra-op threads used to build a cached base checkpoint, whatever the caller's count: the bytes of a
pretrained base depend on it (measured: the small LM base built with 1 and with 2 threads differ), and every
episode starts from the base, so rows replay only from a base built the same way."""


@contextlib.contextmanager
def build_threads() -> Iterator[None]:
    """Run the body with :data:`BUILD_THREADS` torch threads, restoring the caller's count afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cpu_model() -> str:
    """This host's CPU model name (Linux ``/proc/cpuinfo`` "model name", else ``platform.processor()``, else
    ``"unknown"``). A replay is bitwise only on the same model: the BLAS (oneMKL in torch's x86 wheels)
    picks its kernels per CPU vendor and model, so a base checkpoint built, or an update taken, on another
    model differs in the last bits (README "Put it on the leaderboard")."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def state_fingerprint(module: torch.nn.Module) -> str:
    """First 16 hex digits of a SHA-256 over ``module``'s state dict (names, dtypes, shapes and bytes, in
    name order): the identity of a learner's theta_0, recorded in every benchmark row."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.view(torch.uint8).numpy())  # hashed through the buffer: no copy of the bytes
    return digest.hexdigest()[:16]


def to_plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, tuples to lists, non-finite floats to None."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
