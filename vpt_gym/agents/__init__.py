"""Task designers: agents that pick the pretraining task of each decision.

A designer implements :class:`Designer` (reset with a seed, act on an observation and info, observe the
transition). :data:`DESIGNERS` maps CLI names to factories ``factory(env) -> Designer``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Designer(Protocol):
    """A task designer (the agent of a :class:`~vpt_gym.envs.task_design.TaskDesignEnv`)."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Start an episode; all designer randomness comes from ``seed``."""

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        """The action (an element of the env's action space) for this observation."""

    def observe(self, action: Any, reward: float, observation: np.ndarray, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> None:
        """Learn from one transition (no-op for fixed designers)."""


class FixedDesigner:
    """Always the env's standard task (one-hot NTP, default augmentations): plain continued pretraining.

    The matched-budget baseline every other designer is compared with.
    """

    name = "fixed"

    def __init__(self, env: gym.Env) -> None:
        self.action = env.unwrapped.standard_action

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return self.action

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None


class RandomDesigner:
    """A uniformly random task each decision, from a private ``numpy.random.Generator`` (never a global RNG)."""

    name = "random"

    def __init__(self, env: gym.Env) -> None:
        self.space = env.action_space
        self._rng = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        if isinstance(self.space, gym.spaces.Discrete):
            return int(self.space.start + self._rng.integers(self.space.n))
        if isinstance(self.space, gym.spaces.Box):
            return self._rng.uniform(self.space.low, self.space.high).astype(self.space.dtype)
        raise TypeError(f"RandomDesigner supports Discrete and Box action spaces, got {self.space}")

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None


DESIGNERS: dict[str, Callable[[gym.Env], Designer]] = {
    "fixed": FixedDesigner,
    "random": RandomDesigner,
}
"""Designer factories by name (``vpt-gym run --designer NAME``)."""


def make_designer(name: str, env: gym.Env) -> Designer:
    """A designer by name for ``env``.

    Raises:
        ValueError: unknown name (the message lists :data:`DESIGNERS`).
    """
    if name not in DESIGNERS:
        raise ValueError(f"unknown designer {name!r}; accepted: {sorted(DESIGNERS)}")
    return DESIGNERS[name](env)
