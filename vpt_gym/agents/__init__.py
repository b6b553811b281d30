"""Task designers: agents that pick the pretraining task of each decision.

A designer implements :class:`Designer` (reset with a seed, act on an observation and info, observe the
transition). :data:`DESIGNERS` maps CLI names to factories ``factory(env) -> Designer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from vpt_gym.agents.bandits import (  # bandits imports nothing from this module
    DiscountedUCBDesigner,
    EpsilonGreedyDesigner,
    EXP3Designer,
    RoundRobinDesigner,
    ThompsonSamplingDesigner,
    UCB1Designer,
)
from vpt_gym.agents.constant import ConstantDesigner
from vpt_gym.agents.selection import SelectFixedDesigner  # imports nothing from this module


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


class FixedDesigner(ConstantDesigner):
    """Always the env's standard task (one-hot NTP, default augmentations): plain continued pretraining.

    The matched-budget baseline every other designer is compared with.
    """

    name = "fixed"

    def __init__(self, env: gym.Env) -> None:
        base: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
        self.action = base.standard_action


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


def load_designer_class(spec: str) -> Callable[..., Designer]:
    """The designer factory named by ``spec`` = ``FILE.py:ClassName`` or ``package.module:ClassName``.

    A file path is relative to the working directory; the file is imported once per process (as module
    ``vpt_gym_user.<stem>``) and may import anything installed. The factory is called as ``factory(env,
    **kwargs)`` and must return a :class:`Designer`.

    Raises:
        ValueError: ``spec`` is not of the form ``SOURCE:NAME``, or the source has no attribute ``NAME``.
        FileNotFoundError: the ``.py`` file does not exist.
        ImportError: the module cannot be imported.
    """
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr.isidentifier():
        raise ValueError(f"designer {spec!r} is not of the form FILE.py:ClassName or package.module:ClassName")
    if source.endswith(".py"):
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"designer file {source!r} does not exist (looked for {path}); give a path "
                                    "relative to the working directory, e.g. my_designer.py:MyDesigner")
        module_name = f"vpt_gym_user.{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    else:
        module = importlib.import_module(source)
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise ValueError(f"designer {spec!r}: {source} has no class or function {attr!r}")
    return factory


def make_designer(name: str, env: gym.Env, **kwargs: Any) -> Designer:
    """A designer by name for ``env``; ``kwargs`` go to its constructor.

    ``sb3:PATH`` loads a Stable-Baselines3 run folder (:class:`vpt_gym.agents.sb3.SB3Designer`);
    ``FILE.py:ClassName`` or ``package.module:ClassName`` builds your own designer class (see
    :func:`load_designer_class`).

    Raises:
        ValueError: unknown name (the message lists :data:`DESIGNERS`).
        TypeError: a keyword the designer does not take, or the object built is not a :class:`Designer`.
    """
    if name.startswith("sb3:"):
        from vpt_gym.agents.sb3 import SB3Designer

        return SB3Designer(env, name[len("sb3:"):], **kwargs)
    if ":" in name:
        designer = load_designer_class(name)(env, **kwargs)
        if isinstance(designer, type) or not isinstance(designer, Designer):
            missing = [m for m in ("name", "reset", "act", "observe") if not hasattr(designer, m)]
            raise TypeError(f"designer {name!r} built a {type(designer).__name__}, not a vpt_gym Designer "
                            f"(missing: {missing}); it needs name, reset(seed), act(observation, info) and "
                            "observe(action, reward, observation, terminated, truncated, info)")
        return designer
    if name not in DESIGNERS:
        raise ValueError(f"unknown designer {name!r}; accepted: {sorted(DESIGNERS)}, sb3:RUN_DIR (a model saved by "
                         "`vpt-gym train`) or your own class as FILE.py:ClassName")
    return DESIGNERS[name](env, **kwargs)


class GreedyDesigner:
    """Greedy look-ahead: each decision, the task with the largest predicted value at the current state.

    Calls :meth:`~vpt_gym.envs.task_design.TaskDesignEnv.lookahead_values` under the env's reward where the
    look-ahead computes it (``preconditioned``, ``cosine``, ``value_gain``, ``metric_gain``; else ``alignment``),
    with the cost charged in the ledger (e.g. one backward to the alignment subset S per candidate task, or for
    ``value_gain`` / ``metric_gain`` one branch update and probe forward (metric evaluation) per task), and
    takes the argmax among unmasked tasks (ties: the lowest index). For a ``Box`` action space the candidates
    are a grid with ``grid_points`` values per dimension.

    Source: the first-order value of V-Pretraining (arXiv 2601.22108, v2 Eq. 8-9), maximized greedily over
    the task menu instead of by a trained designer.

    Raises:
        ValueError: ``grid_points`` < 2, or an action space other than ``Discrete``/``Box``.
    """

    name = "greedy"

    def __init__(self, env: gym.Env, *, grid_points: int = 5) -> None:
        if grid_points < 2:
            raise ValueError(f"grid_points must be >= 2, got {grid_points}")
        self.env: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
        space = env.action_space
        if isinstance(space, gym.spaces.Discrete):
            self.candidates: list[Any] = [int(space.start + i) for i in range(space.n)]
        elif isinstance(space, gym.spaces.Box):
            bounds = zip(space.low.ravel(), space.high.ravel(), strict=True)
            axes = [np.linspace(lo, hi, grid_points) for lo, hi in bounds]
            mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, space.low.size)
            self.candidates = [p.reshape(space.shape).astype(space.dtype) for p in mesh]
        else:
            raise ValueError(f"GreedyDesigner supports Discrete and Box action spaces, got {space}")
        self.discrete = isinstance(space, gym.spaces.Discrete)

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        values = self.env.lookahead_values(self.candidates)
        if self.discrete:
            values = np.where(self.env.action_masks(), values, -np.inf)
        return self.candidates[int(np.argmax(values))]

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None


class FollowTheLeaderDesigner(GreedyDesigner):
    """Follow-the-leader on the look-ahead values: greedy's full-information feedback, summed over the episode.

    Each decision the look-ahead gives the value of every candidate task at the current state, as for
    :class:`GreedyDesigner` and at its cost (charged in the ledger); the designer adds them to a running sum
    ``G_a = sum_{s<=t} V_s(a)`` over the decisions of the episode so far and takes ``argmax_a G_a`` among
    unmasked tasks (ties: the lowest index). Greedy follows one state's estimate; this follows the task
    whose one-step value is largest on average over the states visited, so a noisy estimate (a 64-image
    probe batch) does not switch the task every update. Source: Follow-the-Leader, full-information online
    learning with the look-ahead values as gains (Shalev-Shwartz 2012, "Online Learning and Online Convex
    Optimization", §2.2); measured in README "Put it on the leaderboard".

    Raises:
        ValueError: as :class:`GreedyDesigner`.
    """

    name = "follow_the_leader"

    def __init__(self, env: gym.Env, *, grid_points: int = 5) -> None:
        super().__init__(env, grid_points=grid_points)
        self.totals = np.zeros(len(self.candidates), dtype=np.float64)
        """G_a, the sum of each candidate's look-ahead values this episode, shape [num_candidates], float64."""

    def reset(self, seed: int | None = None) -> None:
        self.totals = np.zeros(len(self.candidates), dtype=np.float64)

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        self.totals += np.asarray(self.env.lookahead_values(self.candidates), dtype=np.float64)
        totals = np.where(self.env.action_masks(), self.totals, -np.inf) if self.discrete else self.totals
        return self.candidates[int(np.argmax(totals))]


def _vpretraining(env: gym.Env, **kwargs: Any) -> Designer:
    from vpt_gym.agents.vpretraining import VPretrainingDesigner

    return VPretrainingDesigner(env, **kwargs)


def _vpretraining_random_feedback(env: gym.Env, **kwargs: Any) -> Designer:
    from vpt_gym.agents.vpretraining import VPretrainingDesigner

    return VPretrainingDesigner(env, feedback="random", **kwargs)


DESIGNERS: dict[str, Callable[..., Designer]] = {
    "fixed": FixedDesigner,
    "random": RandomDesigner,
    "greedy": GreedyDesigner,
    FollowTheLeaderDesigner.name: FollowTheLeaderDesigner,
    RoundRobinDesigner.name: RoundRobinDesigner,
    EpsilonGreedyDesigner.name: EpsilonGreedyDesigner,
    UCB1Designer.name: UCB1Designer,
    EXP3Designer.name: EXP3Designer,
    ThompsonSamplingDesigner.name: ThompsonSamplingDesigner,
    DiscountedUCBDesigner.name: DiscountedUCBDesigner,
    SelectFixedDesigner.name: SelectFixedDesigner,
    "vpretraining": _vpretraining,
    "vpretraining_random_feedback": _vpretraining_random_feedback,
}
"""Designer factories by name (``vpt-gym run --designer NAME``): ``factory(env, **kwargs) -> Designer``."""

_FORWARDED: dict[str, tuple[str, tuple[str, ...]]] = {
    "vpretraining": ("vpt_gym.agents.vpretraining:VPretrainingDesigner", ()),
    "vpretraining_random_feedback": ("vpt_gym.agents.vpretraining:VPretrainingDesigner", ("feedback",)),
}
"""Factories of :data:`DESIGNERS` that forward ``**kwargs``: the class they build and the keywords they set."""

DESIGNER_METHODS = ("reset", "act", "observe")
"""The methods a designer class must define (``name`` may be set per instance, so it is checked on objects)."""


def designer_keywords(name: str) -> tuple[str, ...]:
    """The constructor keywords the designer ``name`` accepts (after the env), sorted.

    ``name`` is anything :func:`make_designer` takes; ``sb3:RUN_DIR`` takes none. A factory that accepts any
    keyword (``**kwargs`` that it does not forward to a known class) gives ``("*",)``.

    Raises:
        ValueError: an unknown name; FileNotFoundError / ImportError: a user designer that cannot be loaded.
    """
    import importlib
    import inspect

    if name == "sb3" or name.startswith("sb3:"):
        return ()
    if name in _FORWARDED:
        target, bound = _FORWARDED[name]
        module, _, attr = target.partition(":")
        factory, skip = getattr(importlib.import_module(module), attr), set(bound)
    elif ":" in name:
        factory, skip = load_designer_class(name), set()
    elif name in DESIGNERS:
        factory, skip = DESIGNERS[name], set()
    else:
        raise ValueError(f"unknown designer {name!r}; accepted: {sorted(DESIGNERS)}, sb3:RUN_DIR (a model saved by "
                         "`vpt-gym train`) or your own class as FILE.py:ClassName")
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # no introspectable signature (a C callable): accept anything
        return ("*",)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return ("*",)
    positional = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                       inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    env_parameter = positional[0].name if positional else None  # factory(env, **kwargs)
    return tuple(sorted(p.name for p in parameters
                        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
                        and p.name != env_parameter and p.name not in skip))


def check_designer(name: str, kwargs: Any = None) -> None:
    """Check, without an env, that ``name`` builds a designer and takes ``kwargs`` (a mapping of keywords).

    A user class must define :data:`DESIGNER_METHODS`; every keyword must be one of
    :func:`designer_keywords`.

    Raises:
        ValueError: an unknown name, a keyword the designer does not take (names it and the accepted ones),
            or a user class that is not a Designer (names the missing methods).
        FileNotFoundError / ImportError: a user designer that cannot be loaded.
    """
    if ":" in name and not name.startswith("sb3:"):
        factory = load_designer_class(name)
        if isinstance(factory, type):
            missing = [m for m in DESIGNER_METHODS if not callable(getattr(factory, m, None))]
            if missing:
                raise ValueError(f"designer {name!r} is not a vpt_gym Designer (missing: {missing}); it needs name, "
                                 "reset(seed), act(observation, info) and observe(action, reward, observation, "
                                 "terminated, truncated, info)")
    accepted = designer_keywords(name)
    unknown = sorted(set(kwargs or {}) - set(accepted)) if "*" not in accepted else []
    if unknown:
        raise ValueError(f"designer {name!r} takes no keyword(s) {unknown}; accepted: {list(accepted)}")
