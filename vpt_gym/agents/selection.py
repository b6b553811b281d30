"""Task selection over whole training runs: the menu task whose fixed-task runs end best on the feedback set.

A per-update reward ranks the tasks of one state; when the tasks' effects only separate over a whole run
(SSL-Augment-v1 small: the six augmentation recipes end within 0.05 probe accuracy of each other, below the
resolution of any per-update feedback batch, README "Reward validity"), a designer can instead compare whole
runs, as a hyperparameter search compares configurations on a validation split. :class:`SelectFixedDesigner`
does that with the env's own feedback split and training seeds that are never evaluation seeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from vpt_gym.agents.constant import ConstantDesigner

SELECTION_FORMAT = 1
"""Version of the cached selection record (bumped when what a record means changes)."""


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0, got {seeds!r}")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must be a non-empty list of distinct integers >= 0, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return tuple(int(s) for s in seeds)


def selection_key(env_id: str, env_kwargs: dict[str, Any], seeds: Sequence[int]) -> str:
    """Hash (16 hex) of what defines a selection: env id, kwargs, training seeds and the record format."""
    blob = json.dumps([SELECTION_FORMAT, env_id, env_kwargs, list(seeds)], sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_selection(env_id: str, env_kwargs: dict[str, Any], seeds: Sequence[int]) -> dict[str, Any]:
    """Run every menu task's fixed-task episode on each training seed and score its final learner.

    For task k (action k of the env's ``Discrete`` menu) and seed s: ``gym.make(env_id, **env_kwargs)``,
    ``reset(seed=s)``, action k at every decision until the episode ends (its budget), then
    ``feedback.validation_score(learner)`` (:class:`~vpt_gym.core.FeedbackValidation`: the feedback split only;
    the episode's ``info["eval"]`` is never read). The selected task is the argmax of the mean score over the
    seeds (ties: the lowest action).

    Returns:
        ``{"format", "env_id", "env_kwargs", "seeds", "tasks": [K task names], "scores": [K][len(seeds)]
        floats, "mean_scores": [K], "selected": int action, "selected_task": str}``.

    Raises:
        TypeError: the env's action space is not ``Discrete``, or its feedback set has no
            ``validation_score``.
        ValueError: bad ``seeds`` (see :class:`SelectFixedDesigner`).
    """
    from vpt_gym.core import FeedbackValidation

    seeds = _check_seeds(seeds)
    probe = gym.make(env_id, **env_kwargs)
    try:
        _check_env(probe)
        base: Any = probe.unwrapped
        tasks = [t.name for t in base.task_space.tasks]
        space: Any = probe.action_space
        actions = [int(space.start + i) for i in range(space.n)]
        base.feedback.validation_score(base.learner)  # a part that cannot score fails here, before any episode
    finally:
        probe.close()
    scores: list[list[float]] = []
    for action in actions:
        row = []
        for seed in seeds:
            env = gym.make(env_id, **env_kwargs)
            try:
                env.reset(seed=seed)
                done = False
                while not done:
                    _, _, terminated, truncated, _ = env.step(action)
                    done = terminated or truncated
                inner: Any = env.unwrapped
                feedback = inner.feedback
                assert isinstance(feedback, FeedbackValidation)
                row.append(float(feedback.validation_score(inner.learner)))
            finally:
                env.close()
        scores.append(row)
    means = [float(np.mean(r)) for r in scores]
    # a run that diverged (a NaN score) is never selected
    best = int(np.argmax([m if math.isfinite(m) else -math.inf for m in means]))
    return {"format": SELECTION_FORMAT, "env_id": env_id, "env_kwargs": env_kwargs, "seeds": list(seeds),
            "tasks": tasks, "scores": scores, "mean_scores": means, "selected": actions[best],
            "selected_task": tasks[best]}


def _check_env(env: gym.Env) -> None:
    from vpt_gym.core import FeedbackValidation

    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise TypeError(f"SelectFixedDesigner needs a Discrete task menu, got {env.action_space}")
    feedback = getattr(env.unwrapped, "feedback", None)
    if not isinstance(feedback, FeedbackValidation):
        raise TypeError(f"SelectFixedDesigner needs a feedback set with validation_score(learner) "
                        f"(vpt_gym.core.FeedbackValidation); {type(feedback).__name__} has none")


class SelectFixedDesigner(ConstantDesigner):
    """Plays, at every decision, the menu task whose fixed-task training runs score best on the feedback split.

    Offline selection, as a hyperparameter search on a validation split: at construction, for every task of
    the ``Discrete`` menu and every training seed of ``seeds`` (never an evaluation seed), one fixed-task
    episode of a fresh copy of the env (same id and keywords, so the same budget), scored at its end by the
    feedback set's ``validation_score`` (:func:`run_selection`). The eval split is never read. Cost: K x
    ``len(seeds)`` episodes, once per (env id, keywords, seeds): the record is cached as JSON in
    ``cache`` (default :func:`vpt_gym.utils.cache_dir`), written atomically, and later constructions read it.
    On a leaderboard the cost is the designer's build time (``build_s``), as PPO's training is outside its
    episodes.

    Args:
        env: a TaskDesignEnv made by ``gym.make`` (its ``spec`` gives the id and keywords to copy).
        seeds: training seeds, distinct integers >= 0 (default 1000, 1001, 1002).
        cache: folder of the selection records (None: the package cache folder).

    Attributes:
        selection: the record of :func:`run_selection`; ``action`` its selected action.

    Raises:
        TypeError: a non-``Discrete`` menu, a feedback set without ``validation_score``, or an env without a
            ``spec`` (not made by ``gym.make``).
        ValueError: ``seeds`` empty, not integers >= 0, or repeated (names the value).
    """

    name = "select_fixed"

    def __init__(self, env: gym.Env, *, seeds: Sequence[int] = (1000, 1001, 1002),
                 cache: str | os.PathLike[str] | None = None) -> None:
        from vpt_gym.utils import cache_dir

        self.seeds = _check_seeds(seeds)
        _check_env(env)
        if env.spec is None:
            raise TypeError("SelectFixedDesigner needs an env made by gym.make (env.spec gives its id and keywords)")
        env_id, env_kwargs = env.spec.id, dict(env.spec.kwargs)
        path = cache_dir(cache) / "selections" / f"{selection_key(env_id, env_kwargs, self.seeds)}.json"
        space: Any = env.action_space
        record = _read_record(path, env_id, self.seeds, int(space.n), int(space.start))
        if record is None:
            record = run_selection(env_id, env_kwargs, self.seeds)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record, indent=1, default=repr))
            tmp.replace(path)  # never a half-written record
        self.selection = record
        self.action = int(record["selected"])
        self.cache_path = path


def _read_record(path: Path, env_id: str, seeds: tuple[int, ...], num_tasks: int,
                 start: int) -> dict[str, Any] | None:
    """The cached record at ``path`` when it is complete and matches; None otherwise (then it is recomputed)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    scores = record.get("scores") if isinstance(record, dict) else None
    if (record.get("format") != SELECTION_FORMAT or record.get("env_id") != env_id
            or tuple(record.get("seeds", ())) != seeds or not isinstance(scores, list) or len(scores) != num_tasks
            or not all(isinstance(r, list) and len(r) == len(seeds)
                       and all(isinstance(v, float) for v in r) for r in scores)
            or not isinstance(record.get("selected"), int) or not start <= record["selected"] < start + num_tasks):
        return None
    return record
