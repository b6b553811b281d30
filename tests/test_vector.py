"""Vector envs in worker processes: no hang after OpenMP has started in the parent (issue 15, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import pytest

import vpt_gym  # noqa: F401
from vpt_gym.envs import ENV_IDS, EntryPoint, safe_start_method

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 180

# (The forkserver/spawn case is the README's example, which tests/test_readme.py runs by default.)
# Two torch threads in the parent whatever the machine (a 1-core taskset would never start OpenMP's pool,
# and the bug would hide): the parent builds Gymnasium's dummy env (torch.linalg.qr in ToyWorld) before the
# workers start, which is what left forked workers blocked in libgomp.
SCRIPT = """
import torch
torch.set_num_threads(2)
import gymnasium as gym
import numpy as np
import vpt_gym

if __name__ == "__main__":
    envs = gym.make_vec("vpt/Toy-Alignment-v0", num_envs=2, vectorization_mode="async", budget=8,
                        vector_kwargs={{"context": {context!r}}})
    obs, info = envs.reset(seed=[0, 1])
    for _ in range(8):
        obs, reward, terminated, truncated, info = envs.step(np.zeros(2, dtype=np.int64))
    envs.close()
    print("done", obs.shape, terminated.tolist())
"""


def _plain_shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("context", ["fork", pytest.param(safe_start_method(), marks=pytest.mark.slow)])
def test_async_vector_env_finishes_after_openmp_started(context: str, tmp_path: Path) -> None:
    script = tmp_path / "vec.py"
    script.write_text(textwrap.dedent(SCRIPT.format(context=context)))
    try:
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_plain_shell_env(),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"gym.make_vec(..., context={context!r}) did not finish in {TIMEOUT_S} s (workers blocked)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done (2, 18) [True, True]" in proc.stdout


def test_safe_start_method_is_not_fork() -> None:
    import multiprocessing

    assert safe_start_method() in ("forkserver", "spawn")
    assert safe_start_method() in multiprocessing.get_all_start_methods()


def test_every_id_is_registered_with_its_factory() -> None:
    for env_id, spec in ENV_IDS.items():
        entry = gym.spec(env_id).entry_point
        assert isinstance(entry, EntryPoint) and entry.target == spec["entry_point"]
