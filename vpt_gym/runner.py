"""Run one episode of a designer on an env and write its result (atomically)."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym

from vpt_gym.agents import Designer
from vpt_gym.atomic import write_json_atomic as write_json_atomic  # re-exported (public here before)
from vpt_gym.core import Task
from vpt_gym.utils import cpu_model, state_fingerprint, to_plain


def run_episode(env: gym.Env, designer: Designer, *, seed: int, progress: bool = False) -> dict[str, Any]:
    """Run one full episode of ``designer`` on ``env`` from ``reset(seed=seed)``.

    Args:
        env: a vpt_gym env (possibly wrapped).
        designer: the task designer; ``designer.reset(seed)`` is called first.
        seed: episode seed (env and designer).
        progress: show a tqdm bar over learner updates.

    Raises:
        TypeError: ``designer`` is not a :class:`~vpt_gym.agents.Designer` (e.g. a name or a factory).

    Returns:
        A JSON-safe dict: ``env_id``, ``designer``, ``seed``, ``return``, ``eval``, ``ledger``, ``actions``
        (the action log), ``tasks`` (task names), ``trajectory`` (per decision: ``learner_updates``,
        ``reward``, ``pretrain_loss``, ``feedback_loss``; the loss of the feedback gradient last refreshed),
        ``feedback_source``, ``diverged``, ``wall_clock_s`` (the episode, from ``designer.reset``: the env's
        construction, e.g. a one-time base-checkpoint build, is not in it), ``cpu_s`` (CPU seconds of this
        process over the same span, all threads: unlike the wall-clock, not inflated by other processes
        sharing the cores), ``torch_threads`` (``torch.get_num_threads()``
        during the episode: CPU rollouts are bitwise reproducible at the same count only), ``theta0`` (the
        fingerprint of the learner's weights after ``reset``, :func:`vpt_gym.utils.state_fingerprint`: a replay
        can only match from the same theta_0), ``cpu_capability`` (``torch.backends.cpu.get_cpu_capability()``:
        the CPU kernels' instruction set), ``cpu_model`` (:func:`vpt_gym.utils.cpu_model`: the BLAS picks its
        kernels per CPU model, so a bitwise replay needs the same model), ``library_versions`` (the installed
        versions of the libraries whose numerics an episode depends on), ``vpt_gym_version``.
    """
    import torch
    from tqdm.auto import tqdm

    from vpt_gym import __version__

    if isinstance(designer, type) or not isinstance(designer, Designer):
        raise TypeError(
            f"designer must be a Designer object, got {designer!r}; build one with "
            "vpt_gym.agents.make_designer(name, env) or DESIGNERS[name](env)"
        )
    base: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
    start, cpu_start = time.perf_counter(), time.process_time()
    designer.reset(seed)
    obs, info = env.reset(seed=seed)
    feedback_source = info.get("feedback_source")
    theta0 = state_fingerprint(base.learner.module)  # after reset: the episode's starting weights
    total, actions, tasks = 0.0, [], []
    trajectory: dict[str, list] = {"learner_updates": [], "reward": [], "pretrain_loss": [], "feedback_loss": []}
    bar = tqdm(total=base.budget.learner_updates, desc=f"{designer.name}", unit="update", disable=not progress)
    try:
        while True:
            action = designer.act(obs, info)
            next_obs, reward, terminated, truncated, info = env.step(action)
            designer.observe(action, float(reward), next_obs, terminated, truncated, info)
            obs = next_obs
            total += float(reward)
            actions.append(action.name if isinstance(action, Task) else to_plain(action))
            tasks.append(info["task"])
            trajectory["learner_updates"].append(int(info["learner_updates"]))
            trajectory["reward"].append(float(reward))
            trajectory["pretrain_loss"].append(float(info["pretrain_loss"]))
            trajectory["feedback_loss"].append(float(info["feedback_loss"]))
            bar.n = info["learner_updates"]
            bar.set_postfix(task=info["task"], pretrain_loss=f"{info['pretrain_loss']:.3f}", refresh=False)
            bar.refresh()
            if terminated or truncated:
                break
    finally:
        bar.close()
    return to_plain({
        "env_id": env.spec.id if env.spec is not None else type(base).__name__,
        "designer": designer.name,
        "seed": seed,
        "return": total,
        "eval": info.get("eval", {}),
        "ledger": info["ledger"],
        "actions": actions,
        "tasks": tasks,
        "trajectory": trajectory,
        "feedback_source": feedback_source,
        "diverged": bool(info.get("diverged", False)),
        "terminated": bool(terminated),
        "truncated": bool(truncated),
        "wall_clock_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu_start,
        "torch_threads": torch.get_num_threads(),
        "theta0": theta0,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": cpu_model(),
        "library_versions": _library_versions(),
        "vpt_gym_version": __version__,
    })


REPLAY_LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "gymnasium", "reasoning-gym", "torchvision")
"""The libraries whose versions a row records (an episode's numbers depend on them)."""


def _library_versions() -> dict[str, str | None]:
    """``{distribution: installed version or None}`` of :data:`REPLAY_LIBRARIES`."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in REPLAY_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
