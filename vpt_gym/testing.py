"""Conformance checks for your own parts: run them before you trust an env, a designer or a reward you wrote.

As :func:`gymnasium.utils.env_checker.check_env` does for a Gymnasium env, each function exercises a part
against the contract of docs/ARCHITECTURE.md (§2 MDP contract, §3 components) and raises
:class:`ConformanceError` listing every failed check (not only the first)::

    from vpt_gym.testing import check_parts, check_designer, check_value_estimator

    env = check_parts(learner=my_learner, task_space=my_tasks, stream=my_stream, feedback=my_feedback)
    check_designer(MyDesigner, env)
    check_value_estimator(MyValue())

The suite runs the same checks on its own parts (``tests/test_conformance.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from vpt_gym.core import (
    FeedbackSet,
    Learner,
    LinearTaskValues,
    PretrainStream,
    Task,
    TaskSpace,
    missing_members,
)

__all__ = ["ConformanceError", "check_designer", "check_parts", "check_task_space", "check_value_estimator"]


class ConformanceError(AssertionError):
    """A part breaks the contract. ``failures`` holds one line per failed check."""

    def __init__(self, part: str, failures: Sequence[str]) -> None:
        self.failures = list(failures)
        super().__init__(f"{part} fails {len(self.failures)} check(s):\n" + "\n".join(f"- {f}" for f in failures))


def _raise_if(part: str, failures: list[str]) -> None:
    if failures:
        raise ConformanceError(part, failures)


def _menu_actions(space: spaces.Space, n_box: int = 3) -> list[Any]:
    """Every menu action (Discrete), or the low corner, centre and high corner of a Box."""
    if isinstance(space, spaces.Discrete):
        return [int(space.start) + i for i in range(int(space.n))]
    if isinstance(space, spaces.Box):
        return [np.asarray(space.low + (space.high - space.low) * f, dtype=space.dtype)
                for f in np.linspace(0.0, 1.0, n_box)]
    raise ConformanceError("task_space", [f"action_space must be Discrete or Box, got {space}"])


def check_task_space(task_space: Any) -> None:
    """Check a task space on its own (no learner): the static half of the :class:`~vpt_gym.core.TaskSpace`
    contract.

    Checks: every member of the Protocol exists; the action space is ``Discrete`` or a finite ``Box``;
    ``standard_action`` lies in it; ``tasks`` has one entry per ``Discrete`` action (one for a ``Box``), each a
    :class:`~vpt_gym.core.Task`; ``task(a)`` returns a Task and ``menu_index(a)`` an index into ``tasks`` for
    every menu action (a ``Box``: corners and centre); the descriptor names and bounds have one entry each
    with ``low <= high``.

    Raises:
        ConformanceError: listing every failed check.
    """
    missing = missing_members(task_space, TaskSpace)
    _raise_if("task_space", [f"missing TaskSpace member {m!r}" for m in missing])
    failures: list[str] = []
    space = task_space.action_space
    if isinstance(space, spaces.Box) and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        failures.append(f"a Box action space must be bounded, got low={space.low}, high={space.high}")
    actions = _menu_actions(space)
    if not space.contains(task_space.standard_action):
        failures.append(f"standard_action {task_space.standard_action!r} is not in the action space {space}")
    tasks = list(task_space.tasks)
    want = int(space.n) if isinstance(space, spaces.Discrete) else 1
    if len(tasks) != want:
        failures.append(f"tasks has {len(tasks)} entries; a {type(space).__name__} action space needs {want}")
    if not all(isinstance(t, Task) for t in tasks):
        failures.append("every entry of tasks must be a vpt_gym.core.Task")
    for a in actions:
        task = task_space.task(a)
        if not isinstance(task, Task):
            failures.append(f"task({a!r}) returned {type(task).__name__}, not a vpt_gym.core.Task")
        index = task_space.menu_index(a)
        if not (isinstance(index, (int, np.integer)) and 0 <= int(index) < max(len(tasks), 1)):
            failures.append(f"menu_index({a!r}) = {index!r} is not an index into tasks (0..{len(tasks) - 1})")
    names = list(task_space.descriptor_names)
    low, high = np.asarray(task_space.descriptor_low), np.asarray(task_space.descriptor_high)
    if low.shape != (len(names),) or high.shape != (len(names),):
        failures.append(f"descriptor_low/high have shapes {low.shape}/{high.shape}; "
                        f"{len(names)} descriptor_names need ({len(names)},)")
    elif not np.all(low <= high):
        failures.append(f"descriptor_low must be <= descriptor_high, got {low} > {high} somewhere")
    _raise_if("task_space", failures)


def _rollout(env: Any, actions: Sequence[Any], seed: int) -> tuple[list[tuple[np.ndarray, float, bool]], dict]:
    """(observation, reward, terminated) per step from reset(seed), and the last info."""
    obs, info = env.reset(seed=seed)
    out = [(obs, 0.0, False)]
    for a in actions:
        obs, reward, terminated, _, info = env.step(a)
        out.append((obs, float(reward), bool(terminated)))
        if terminated:
            break
    return out, info


def check_parts(*, learner: Learner, task_space: TaskSpace, stream: PretrainStream, feedback: FeedbackSet,
                budget: int = 4, reward: str = "alignment", seed: int = 0, rtol: float = 1e-3) -> Any:
    """Build a :class:`~vpt_gym.envs.task_design.TaskDesignEnv` from your parts and check the MDP contract.

    Checks, in order: each part implements its Protocol (and any capability it switches on: the env's
    construction); :func:`check_task_space`; Gymnasium's ``check_env``; one episode of ``budget`` learner
    updates cycling through the menu: observations inside the observation space, finite rewards,
    ``terminated`` exactly at the budget with ``learner_updates == budget`` in the ledger, ``eval`` metrics in
    the last ``info``; the same seed replays the same observations and rewards (bitwise, on CPU); with
    :class:`~vpt_gym.core.LinearTaskValues`, the one-pass look-ahead agrees with one backward per task
    (relative tolerance ``rtol``).

    Args:
        learner, task_space, stream, feedback: your parts (duck-typed, see ``vpt_gym.core``).
        budget: learner updates of the checked episode, >= 2.
        reward: the value estimator of the env under check.
        seed: the episode seed.
        rtol: tolerance of the look-ahead comparison (float32 forward mode vs backward: ~1e-6 measured).

    Returns:
        The built env (reset and run; call ``reset`` before using it).

    Raises:
        TypeError: a part lacks a member of its Protocol (raised by the env's construction).
        ValueError: ``budget`` < 2.
        ConformanceError: listing every failed check.
    """
    from gymnasium.utils.env_checker import check_env

    from vpt_gym.budget import Budget
    from vpt_gym.envs.task_design import TaskDesignEnv

    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2:
        raise ValueError(f"budget must be an integer >= 2, got {budget!r}")
    env = TaskDesignEnv(learner=learner, task_space=task_space, stream=stream, feedback=feedback,
                        budget=Budget.of(budget), reward=reward)
    check_task_space(task_space)
    failures: list[str] = []
    try:
        check_env(env, skip_render_check=True)
    except AssertionError as exc:
        failures.append(f"gymnasium check_env: {exc}")
    menu = _menu_actions(env.action_space)
    actions = [menu[i % len(menu)] for i in range(budget)]
    first, last_info = _rollout(env, actions, seed)
    if not all(env.observation_space.contains(o) for o, _, _ in first):
        failures.append("an observation is outside observation_space")
    if not all(math.isfinite(r) for _, r, _ in first):
        failures.append(f"a reward is not finite: {[r for _, r, _ in first[1:]]}")
    ends = [t for _, _, t in first[1:]]
    if len(ends) != budget or not ends[-1] or any(ends[:-1]):
        failures.append(f"terminated must be True exactly at update {budget}, got {ends}")
    if env.ledger.learner_updates != budget:
        failures.append(f"ledger.learner_updates = {env.ledger.learner_updates}, want {budget}")
    evaluated = last_info.get("eval")
    if not (isinstance(evaluated, dict) and evaluated and all(math.isfinite(v) for v in evaluated.values())):
        failures.append(f"the last info must hold finite held-out metrics under 'eval', got {evaluated!r}")
    second, _ = _rollout(env, actions, seed)
    same = len(first) == len(second) and all(
        np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(first, second, strict=True))
    if not same:
        failures.append(f"seed {seed} does not replay: two episodes with the same seed and actions differ "
                        "(draw every random number from the generator reset() passes)")
    if isinstance(task_space, LinearTaskValues) and isinstance(env.action_space, spaces.Discrete):
        env.reset(seed=seed)
        one_pass = env.lookahead_values()
        env.forward_mode_lookahead = False
        try:
            per_task = env.lookahead_values()
        finally:
            env.forward_mode_lookahead = True
        scale = max(float(np.max(np.abs(per_task))), 1e-12)
        if not np.allclose(one_pass, per_task, rtol=rtol, atol=rtol * scale):
            failures.append(f"linear_values disagrees with one backward per task: {one_pass} vs {per_task}")
    _raise_if(f"parts ({type(task_space).__name__})", failures)
    return env


def check_designer(factory: Callable[[Any], Any], env: Any, *, seed: int = 0) -> None:
    """Check a task designer on an env: the :class:`~vpt_gym.agents.Designer` contract.

    Checks: ``factory(env)`` is a Designer (``reset``, ``act``, ``observe``); one episode through
    :func:`vpt_gym.runner.run_episode` ends at the env's budget with every action inside the action space (or
    a designer-built Task the env accepted); the same seed gives the same actions (a designer draws from the
    seed ``reset`` passes, never from global RNGs).

    Args:
        factory: a designer class or function ``env -> designer``.
        env: the env (use a small budget: the episode runs twice).
        seed: the episode seed.

    Raises:
        ConformanceError: listing every failed check.
    """
    from vpt_gym.agents import Designer
    from vpt_gym.runner import run_episode

    designer = factory(env)
    if not isinstance(designer, Designer):
        raise ConformanceError(type(designer).__name__, ["not a Designer: needs reset(seed), act(observation, "
                                                         "info) and observe(action, reward, ...)"])
    failures: list[str] = []
    first = run_episode(env, designer, seed=seed)
    second = run_episode(env, factory(env), seed=seed)
    updates = first["ledger"]["learner_updates"]
    budget = env.unwrapped.budget.learner_updates
    if updates != budget:
        failures.append(f"the episode ran {updates} learner updates, the budget is {budget}")
    if first["actions"] != second["actions"]:
        failures.append(f"seed {seed} gives other actions on a second run: the designer is not deterministic "
                        "given its seed (draw from the seed reset() passes, not from global RNGs)")
    _raise_if(f"designer {type(designer).__name__}", failures)


def check_value_estimator(estimator: Any) -> None:
    """Check a value estimator (a custom ``reward=``) against the :class:`~vpt_gym.value.ValueEstimator`
    contract.

    Checks: the declared attributes exist with their types; ``reward_range`` is ordered; the reward of a
    typical update, of a zero update and of a non-finite one is a finite float inside ``reward_range`` (a
    reward never propagates NaN or inf into an agent's return).

    Raises:
        ConformanceError: listing every failed check.
    """
    from vpt_gym.value import ValueEstimator

    missing = missing_members(estimator, ValueEstimator)
    _raise_if(type(estimator).__name__, [f"missing ValueEstimator member {m!r}" for m in missing])
    failures: list[str] = []
    for flag in ("needs_probe_loss", "needs_probe_metric", "needs_standard_gradient"):
        if not isinstance(getattr(estimator, flag), bool):
            failures.append(f"{flag} must be a bool, got {getattr(estimator, flag)!r}")
    low, high = estimator.reward_range
    if not low <= high:
        failures.append(f"reward_range must be (low, high) with low <= high, got {estimator.reward_range}")
    for label, outcome in _outcomes().items():
        r = estimator.reward(outcome)
        if not (isinstance(r, (float, int)) and math.isfinite(r) and low <= r <= high):
            failures.append(f"reward of a {label} update is {r!r}, not a finite float in {estimator.reward_range}")
    _raise_if(type(estimator).__name__, failures)


def _outcomes() -> dict[str, Any]:
    """A typical, a zero and a non-finite update, with every field an estimator may read filled in."""
    from vpt_gym.value import GradientStats, UpdateOutcome

    nan = float("nan")
    return {
        "typical": UpdateOutcome(stats=GradientStats(dot=0.1, alignment=0.01, cosine=0.2, g_pre_norm=1.0,
                                                     g_down_norm=0.5, loss=2.0),
                                 probe_loss_before=2.0, probe_loss_after=1.99, metric_before=0.5, metric_after=0.52,
                                 standard_alignment=0.005, preconditioned=0.02, step_value=0.015),
        "zero": UpdateOutcome(stats=GradientStats(dot=0.0, alignment=0.0, cosine=0.0, g_pre_norm=0.0,
                                                  g_down_norm=0.0, loss=2.0),
                              probe_loss_before=2.0, probe_loss_after=2.0, metric_before=0.5, metric_after=0.5,
                              standard_alignment=0.0, preconditioned=0.0, step_value=0.0),
        "non-finite": UpdateOutcome(stats=GradientStats(dot=nan, alignment=nan, cosine=nan, g_pre_norm=nan,
                                                        g_down_norm=nan, loss=nan),
                                    probe_loss_before=2.0, probe_loss_after=nan, metric_before=0.5, metric_after=nan,
                                    standard_alignment=nan, preconditioned=nan, step_value=nan),
    }
