"""Soak: many resets and short episodes of an env in one process keep resident memory flat and leave no file
descriptor or thread behind once the env is closed (issue 15, item 7).

The default run soaks the toy env (500 resets, 100 episodes) and the tiny soft-target LM (50 resets, 10
episodes); ``-m slow`` soaks every registered id at its smoke configuration (1,000 resets, 200 episodes)
and prints the resident-memory slope of each.
"""

from __future__ import annotations

import gc
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vpt_gym  # noqa: F401
from vpt_gym.agents import make_designer
from vpt_gym.envs import ENV_IDS

pytestmark = pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc (Linux)")
SLOPE_LIMIT_KIB = 16.0
"""Largest resident-memory growth per episode accepted over the soak's second half (KiB/episode): a leak of
one float32 learner copy per episode (~370 KiB for the tiny LM) or of one per-step Python object per step
shows well above it."""


def _rss_kib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _os_threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


@dataclass(frozen=True)
class Soak:
    """What one soak measured."""

    slope_kib_per_episode: float
    rss_kib: tuple[float, ...]
    leaked_fds: tuple[str, ...]
    extra_python_threads: int
    extra_os_threads: int


def soak(env_id: str, *, resets: int, episodes: int) -> Soak:
    """Build ``env_id`` (smoke configuration), ``reset`` it ``resets`` times, run ``episodes`` episodes with the
    random designer, close it; resident memory is sampled after every episode."""
    kwargs = dict(ENV_IDS[env_id]["smoke_kwargs"])
    warm = gym.make(env_id, **kwargs)  # caches, the tokenizer, torch's thread pool: built once per process
    warm.reset(seed=0)
    warm.step(warm.action_space.sample())
    warm.close()
    del warm
    gc.collect()
    fds, python_threads, os_threads = _open_fds(), threading.active_count(), _os_threads()

    env = gym.make(env_id, **kwargs)
    for seed in range(resets):
        env.reset(seed=seed)
    designer = make_designer("random", env)
    rss = []
    for seed in range(episodes):
        designer.reset(seed)
        obs, info = env.reset(seed=seed)
        terminated = truncated = False
        while not (terminated or truncated):
            action = designer.act(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            designer.observe(action, reward, obs, terminated, truncated, info)
        rss.append(_rss_kib())  # no gc.collect() here: with torch loaded it costs ~0.3 s
    env.close()
    del env, designer
    gc.collect()
    second_half = np.asarray(rss[len(rss) // 2:])
    slope = float(np.polyfit(np.arange(second_half.size), second_half, 1)[0]) if second_half.size > 1 else 0.0
    return Soak(slope_kib_per_episode=slope, rss_kib=tuple(rss), leaked_fds=tuple(sorted(_open_fds() - fds)),
                extra_python_threads=threading.active_count() - python_threads,
                extra_os_threads=_os_threads() - os_threads)


def _check(result: Soak, env_id: str) -> None:
    print(f"{env_id}: RSS {result.rss_kib[0] / 1024:.1f} -> {result.rss_kib[-1] / 1024:.1f} MiB over "
          f"{len(result.rss_kib)} episodes; slope of the second half {result.slope_kib_per_episode:+.2f} KiB/episode")
    assert result.slope_kib_per_episode < SLOPE_LIMIT_KIB, result
    assert not result.leaked_fds, f"{env_id}: file descriptors left open after close(): {result.leaked_fds}"
    assert result.extra_python_threads <= 0 and result.extra_os_threads <= 0, result


@pytest.mark.parametrize(("env_id", "resets", "episodes"), [("vpt/Toy-Alignment-v0", 500, 100),
                                                            ("vpt/LM-SoftTargets-v0", 50, 10)])
def test_short_soak(env_id: str, resets: int, episodes: int, data_dir) -> None:
    _check(soak(env_id, resets=resets, episodes=episodes), env_id)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_soak_every_env(env_id: str, data_dir) -> None:
    if env_id.startswith("vpt/SSL-"):
        pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")
    _check(soak(env_id, resets=1000, episodes=200), env_id)
