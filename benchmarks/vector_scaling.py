"""Episodes per second with 1, 2, 4 env workers: Gymnasium AsyncVectorEnv and SB3 SubprocVecEnv.

Each worker is a process (``forkserver`` where available, else ``spawn``) running one env with one torch
thread (and, when several GPUs exist, its own GPU: worker i gets ``cuda:{i % num_gpus}``). The fixed
designer's action (the standard task) is stepped in every sub-env until each has finished ``--episodes``
episodes (autoreset); the clock starts after the first reset, so process start-up is excluded. Reported:
episodes/s per worker count and the speedup over one worker, against the goal ``>= 0.8 * N`` for N <= cores.

Usage:
    python benchmarks/vector_scaling.py [--env-id vpt/LM-SoftTargets-v0] [--size tiny] [--workers 1 2 4]
        [--episodes 3] [--budget 16] [--json scaling.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from typing import Any, Callable

import numpy as np


def make_env_fn(env_id: str, kwargs: dict[str, Any], index: int) -> Callable[[], Any]:
    def make():
        import gymnasium as gym
        import torch

        import vpt_gym  # noqa: F401

        torch.set_num_threads(1)
        extra = dict(kwargs)
        if torch.cuda.device_count() > 1 and env_id != "vpt/Toy-Alignment-v0":
            extra["device"] = f"cuda:{index % torch.cuda.device_count()}"
        return gym.make(env_id, **extra)

    return make


def _standard_actions(n: int, space) -> np.ndarray:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Discrete):
        return np.zeros(n, dtype=np.int64)
    raise ValueError("vector_scaling.py steps Discrete menus (the standard task is action 0)")


def run_gymnasium(env_id: str, kwargs: dict, workers: int, episodes: int, method: str) -> float:
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode

    venv = AsyncVectorEnv([make_env_fn(env_id, kwargs, i) for i in range(workers)], context=method,
                          autoreset_mode=AutoresetMode.SAME_STEP)
    try:
        venv.reset(seed=list(range(workers)))
        done = np.zeros(workers, dtype=np.int64)
        actions = _standard_actions(workers, venv.single_action_space)
        start = time.perf_counter()
        while done.min() < episodes:
            _, _, terminated, truncated, _ = venv.step(actions)
            done += terminated | truncated
        return float(done.sum()) / (time.perf_counter() - start)
    finally:
        venv.close()


def run_sb3(env_id: str, kwargs: dict, workers: int, episodes: int, method: str) -> float:
    from stable_baselines3.common.vec_env import SubprocVecEnv

    venv = SubprocVecEnv([make_env_fn(env_id, kwargs, i) for i in range(workers)], start_method=method)
    try:
        venv.seed(0)
        venv.reset()
        done = np.zeros(workers, dtype=np.int64)
        actions = _standard_actions(workers, venv.action_space)
        start = time.perf_counter()
        while done.min() < episodes:
            _, _, dones, _ = venv.step(actions)
            done += dones
        return float(done.sum()) / (time.perf_counter() - start)
    finally:
        venv.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="vpt/LM-SoftTargets-v0")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=3, help="episodes per worker (after the first reset)")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--backends", nargs="+", default=["gymnasium", "sb3"], choices=["gymnasium", "sb3"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    kwargs: dict[str, Any] = {"budget": args.budget}
    if not args.env_id.startswith("vpt/Toy-"):
        kwargs.update(size=args.size, device="cpu")
    if args.env_id.startswith("vpt/LM-"):
        kwargs.update(eval_items=2, max_new_tokens=8)
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    cores = os.cpu_count() or 1
    runners = {"gymnasium": run_gymnasium, "sb3": run_sb3}
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.env_id} {kwargs} start method {method}, {cores} cores, {args.episodes} episodes per worker, "
          f"1-minute load average {load:.2f} before the runs (other work on the cores lowers the speedups)")
    print(f"{'backend':<10}{'workers':>8}{'episodes/s':>12}{'speedup':>9}{'goal':>7}")
    for backend in args.backends:
        base = None
        for n in args.workers:
            rate = runners[backend](args.env_id, kwargs, n, args.episodes, method)
            base = base or rate
            speedup = rate / base
            goal = f">={0.8 * n:.1f}" if n <= cores else "n/a"
            rows.append({"backend": backend, "workers": n, "episodes_per_s": rate, "speedup": speedup,
                         "meets_goal": bool(speedup >= 0.8 * n) if n <= cores else None})
            print(f"{backend:<10}{n:>8}{rate:>12.3f}{speedup:>9.2f}{goal:>7}")
    result = {"env_id": args.env_id, "env_kwargs": kwargs, "start_method": method, "cores": cores,
              "load_average_before": load, "rows": rows}
    if args.json:
        from vpt_gym.runner import write_json_atomic

        write_json_atomic(args.json, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
