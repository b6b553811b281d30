"""Validate a leaderboard row by replaying it (CompilerGym-style): same env, same seed, same actions.

A row whose action log holds only actions of the env's action space is replayed action by action (the
designer is not needed). A row whose designer built its own tasks (the paper's differentiable designer
passes ``Task`` objects with per-token soft targets, logged by name) is re-run with the same designer,
configuration and seed instead. Either way, the eval metrics, the return and the action log must match:
bitwise on CPU, within ``GPU_RTOL`` on a GPU (non-deterministic kernels).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vpt_gym.agents import Designer

GPU_RTOL = 1e-3
"""Relative tolerance of eval metrics and return when the row ran on a GPU."""


@dataclass
class ReplayDesigner:
    """Plays a recorded action log (a list of ints or float lists), one action per decision."""

    actions: list[Any]
    name: str = "replay"
    _next: int = field(default=0, init=False)

    def reset(self, seed: int | None = None) -> None:
        self._next = 0

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        if self._next >= len(self.actions):
            raise RuntimeError(f"the action log has {len(self.actions)} actions; the env asked for more")
        action = self.actions[self._next]
        self._next += 1
        if isinstance(action, list):
            return np.asarray(action, dtype=np.float32)
        return action

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None


def _close(a: Any, b: Any, rtol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if rtol == 0.0:
        return a == b
    return math.isclose(float(a), float(b), rel_tol=rtol, abs_tol=rtol * 1e-3)


def _data_folder(row: dict[str, Any]) -> str | None:
    """The data folder to replay ``row`` with: its recorded folder, else ``$VPT_GYM_DATA``, whichever has the
    row's data identity (rows written before data identities were recorded: ``$VPT_GYM_DATA`` as it is).
    ``None`` for an env that reads no data folder (:data:`~vpt_gym.envs.ENV_IDS` ``reads_data``), whatever the
    row recorded.

    Raises:
        ValueError: neither folder holds the data the row ran on (the message says what to set).
    """
    from vpt_gym.benchmark.suites import data_identity
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.lm.corpus import DATA_ENV_VAR

    spec = ENV_IDS.get(row.get("env_id", ""))
    if spec is not None and not spec["reads_data"]:
        return None
    current = os.environ.get(DATA_ENV_VAR) or None
    recorded = row.get("data_identity")
    if recorded is None:
        return current
    if recorded == "none":
        return None
    for folder in (row.get("data"), current):
        if folder and Path(folder).is_dir() and data_identity(Path(folder).resolve()) == recorded:
            return str(Path(folder).resolve())
    raise ValueError(f"row ran on the data folder {row.get('data')!r} (identity {recorded}); neither it nor "
                     f"${DATA_ENV_VAR}={current!r} holds the same files: set {DATA_ENV_VAR} to your copy of it")


def validate_row(row: dict[str, Any]) -> dict[str, Any]:
    """Replay ``row`` and compare its eval metrics, return and action log.

    Returns:
        ``{"ok": bool, "mode": "replay" | "rerun", "tolerance": float, "torch_threads": int, "mismatches":
        {field: [recorded, replayed]}, "hint": str | None}`` (``hint``: why a CPU replay differs, when the row
        records it: another theta_0, other CPU kernels or library versions); the replay uses the row's
        ``torch_threads`` (this process's count for rows without one).

    The replay reads the data folder the row ran on (see :func:`_data_folder`); a different feedback
    source is reported as a ``feedback_source`` mismatch.

    Raises:
        ValueError: the row lacks a field needed for the replay (names it), or its data folder is not here.
    """
    import gymnasium as gym

    import vpt_gym  # noqa: F401
    from vpt_gym.agents import make_designer
    from vpt_gym.benchmark.runner import data_environment
    from vpt_gym.runner import run_episode
    from vpt_gym.utils import torch_threads

    needed = ("env_id", "env_kwargs", "seed", "actions", "eval", "return", "designer_name")
    missing = [k for k in needed if k not in row]
    if missing:
        raise ValueError(f"row lacks {missing}; was it written by `vpt-gym bench`?")
    rtol = 0.0 if str(row.get("device", "cpu")).startswith("cpu") else GPU_RTOL
    data = _data_folder(row)
    recorded = row.get("torch_threads")
    with torch_threads(None if recorded is None else int(recorded)), data_environment(data):
        env = gym.make(row["env_id"], **row["env_kwargs"])
        try:
            discrete = isinstance(env.action_space, gym.spaces.Discrete)
            replayable = all(isinstance(a, int) if discrete else isinstance(a, list) for a in row["actions"])
            if replayable:
                designer: Designer = ReplayDesigner(list(row["actions"]))
                mode = "replay"
            else:
                mode = "rerun"
                designer = make_designer(row["designer_name"], env, **row.get("designer_kwargs", {}))
            result = run_episode(env, designer, seed=int(row["seed"]))
        finally:
            env.close()
    mismatches: dict[str, list] = {}
    if "theta0" in row and result["theta0"] != row["theta0"]:  # reported first: every other field follows it
        mismatches["theta0"] = [row["theta0"], result["theta0"]]
    if "feedback_source" in row and result["feedback_source"] != row["feedback_source"]:
        mismatches["feedback_source"] = [row["feedback_source"], result["feedback_source"]]
    for key in sorted(set(row["eval"]) | set(result["eval"])):
        a, b = row["eval"].get(key), result["eval"].get(key)
        if not _close(a, b, rtol):
            mismatches[f"eval.{key}"] = [a, b]
    if not _close(row["return"], result["return"], rtol):
        mismatches["return"] = [row["return"], result["return"]]
    if result["actions"] != row["actions"]:
        mismatches["actions"] = [len(row["actions"]), len(result["actions"])]
    return {"ok": not mismatches, "mode": mode, "tolerance": rtol, "torch_threads": result["torch_threads"],
            "mismatches": mismatches, "hint": _hint(row, result, mismatches)}


def _hint(row: dict[str, Any], result: dict[str, Any], mismatches: dict[str, list]) -> str | None:
    """Why a CPU replay can differ, when it does: another theta_0 (the cached base built on another CPU or
    with another thread count) or other CPU kernels; None when the replay matches."""
    if not mismatches:
        return None
    if "theta0" in mismatches:
        hint = ("the replay starts from other weights theta_0 than the row (the base checkpoint cached here was "
                "built differently: another CPU, library version or thread count); no episode can match from "
                "there")
        model, here_model = row.get("cpu_model"), result.get("cpu_model")
        if model and here_model and model != here_model:
            hint += (f". The row ran on the CPU model {model}, this replay on {here_model}: the BLAS picks its "
                     "kernels per CPU model, so replay it on the row's CPU model")
        elif not model:
            hint += (f". The row does not record its CPU model (this replay: {here_model}); the published "
                     "small.jsonl rows without one ran on AMD EPYC hosts (README \"Put it on the leaderboard\")")
        return hint
    if "theta0" not in row:
        return ("the row predates theta_0 fingerprints, so whether it started from the same weights is unknown "
                f"(this replay's theta0 = {result['theta0']}); a base built on another CPU differs bitwise")
    model, here_model = row.get("cpu_model"), result.get("cpu_model")
    if model and here_model and model != here_model:
        return (f"the row ran on the CPU model {model}, this replay on {here_model}: the BLAS picks its kernels "
                "per CPU model, so float results differ bitwise")
    recorded, here = row.get("cpu_capability"), result.get("cpu_capability")
    if recorded and recorded != here:
        return f"the row ran on {recorded} CPU kernels, this replay on {here}: float results differ bitwise"
    versions = {k: (v, result.get("library_versions", {}).get(k))
                for k, v in (row.get("library_versions") or {}).items()}
    changed = {k: pair for k, pair in versions.items() if pair[0] != pair[1]}
    if changed:
        return "other library versions than the row's (recorded, here): " + ", ".join(
            f"{k} {a} -> {b}" for k, (a, b) in sorted(changed.items()))
    return None
