"""Reward validity: does an env's reward rank tasks the way they really move the held-out loss?

Three measurements, each a pure function of an env (``benchmarks/reward_validity.py`` is the CLI):

- **counterfactual credit** (:func:`counterfactual_credit`): along a random-policy episode, at chosen states
  the env branches once per task (:meth:`~vpt_gym.envs.task_design.TaskDesignEnv.counterfactual`: a copy of
  the learner's weights, optimizer state, BatchNorm statistics, EMA teacher and centre takes that task's real
  update), and the realized drop of the eval split's loss (``feedback.eval_loss``) is compared with each
  reward mode's value of the same update: Spearman across tasks, and whether the reward's argmax is the
  realized argmax.
- **one-step calibration** (:func:`calibration`): over every update of a random-policy episode, Pearson and
  the least-squares slope of the realized drop against each reward mode.
- **policy ranking** (:func:`policy_ranking`): every fixed-task policy over several seeds; Spearman of the
  mean return (per mode) against the final held-out loss (signed so that agreement is positive).

Reward modes read from one branch's :class:`~vpt_gym.value.UpdateOutcome`: ``alignment``, ``cosine``,
``preconditioned``, ``step_value`` (the first-order value of the step taken), ``advantage`` (alignment minus
the standard task's, from the standard task's branch) and ``value_gain`` (probe-loss drop).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import gymnasium as gym
import numpy as np

from vpt_gym.core import HeldOutLoss
from vpt_gym.envs import ENV_IDS, is_eval_metric
from vpt_gym.value import UpdateOutcome

if TYPE_CHECKING:
    from vpt_gym.envs.task_design import TaskDesignEnv

MODES = ("alignment", "cosine", "preconditioned", "step_value", "advantage", "value_gain")
"""Reward modes the report scores (``metric_gain`` is left out: a pass rate on a few probe problems)."""


def rank(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties averaged (``scipy.stats.rankdata(method="average")``), float64 [n]."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sorted_a = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation in [-1, 1]; NaN when either input is constant or has < 2 entries."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.clip(np.corrcoef(a, b)[0, 1], -1.0, 1.0))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the tie-averaged ranks) in [-1, 1]; NaN when undefined."""
    return pearson(rank(x), rank(y))


def slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Least-squares slope of y on x; NaN when x is constant."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    var = float(((a - a.mean()) ** 2).sum())
    return float(((a - a.mean()) * (b - b.mean())).sum() / var) if var > 0 else math.nan


def mode_values(outcome: UpdateOutcome, standard: UpdateOutcome | None) -> dict[str, float]:
    """Each reward mode's value of one update (NaN where the outcome lacks what a mode reads)."""
    stats = outcome.stats
    nan = math.nan
    gain = (outcome.probe_loss_before - outcome.probe_loss_after
            if outcome.probe_loss_before is not None and outcome.probe_loss_after is not None else nan)
    return {
        "alignment": stats.alignment,
        "cosine": stats.cosine,
        "preconditioned": nan if outcome.preconditioned is None else outcome.preconditioned,
        "step_value": nan if outcome.step_value is None else outcome.step_value,
        "advantage": nan if standard is None else stats.alignment - standard.stats.alignment,
        "value_gain": gain,
    }


def _task_design_env(env: gym.Env) -> TaskDesignEnv:
    """``env.unwrapped``: a TaskDesignEnv (``gym.Env.unwrapped`` is typed as the base Env)."""
    return cast("TaskDesignEnv", env.unwrapped)


def _eval_loss(env: gym.Env) -> Callable[[Any], float]:
    feedback = _task_design_env(env).feedback
    if not isinstance(feedback, HeldOutLoss):
        raise TypeError(f"{type(feedback).__name__} has no eval_loss(learner): reward validity needs a held-out loss")
    return feedback.eval_loss


def candidate_actions(space: gym.Space, standard: Any, grid_points: int, seed: int = 0) -> list[Any]:
    """The actions branched on: every menu index of a ``Discrete`` space; for a ``Box`` the standard action
    and ``grid_points - 1`` points drawn uniformly from the box with ``numpy.random.default_rng(seed)``.

    Raises:
        ValueError: ``grid_points`` < 5 for a ``Box``, or another kind of space.
    """
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.start + i) for i in range(space.n)]
    if isinstance(space, gym.spaces.Box):
        if grid_points < 5:
            raise ValueError(f"grid_points must be >= 5 for a Box action space, got {grid_points}")
        rng = np.random.default_rng(seed)
        points = [np.asarray(standard, dtype=space.dtype)]
        points += [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(grid_points - 1)]
        return points
    raise ValueError(f"reward validity supports Discrete and Box action spaces, got {space}")


@dataclass(frozen=True, kw_only=True)
class StateCredit:
    """Counterfactual credit at one state: per task, the realized drop and each mode's value.

    Attributes:
        seed / update: episode seed and learner updates done before the state.
        tasks: task names, one per branch. realized: eval-loss drop per branch (before - after; > 0 = better).
        values: mode -> value per branch. spearman: mode -> Spearman(value, realized) across branches.
        best_found: mode -> whether the mode's argmax branch is the realized argmax.
    """

    seed: int
    update: int
    tasks: list[str]
    realized: list[float]
    values: dict[str, list[float]]
    spearman: dict[str, float]
    best_found: dict[str, bool]


def _credit(env: gym.Env, actions: Sequence[Any], standard_index: int, measure: Callable[[Any], float],
            seed: int, probe: bool) -> StateCredit:
    base = _task_design_env(env)
    before, branches = base.counterfactual(actions, measure=measure, probe_loss=probe)
    standard = branches[standard_index].outcome
    realized = [before - b.measured if b.outcome is not None else -math.inf for b in branches]
    values: dict[str, list[float]] = {m: [] for m in MODES}
    for b in branches:
        row = mode_values(b.outcome, standard) if b.outcome is not None else dict.fromkeys(MODES, -math.inf)
        for m in MODES:
            values[m].append(float(row[m]))
    best = int(np.argmax(realized))
    return StateCredit(
        seed=seed, update=int(base.ledger.learner_updates), tasks=[b.task for b in branches], realized=realized,
        values=values,
        spearman={m: spearman(v, realized) for m, v in values.items()},
        best_found={m: bool(np.all(np.isfinite(v))) and int(np.argmax(v)) == best for m, v in values.items()},
    )


def counterfactual_credit(make_env: Callable[[], gym.Env], *, seeds: Sequence[int], num_states: int = 6,
                          first_state: int = 5, grid_points: int = 5, probe: bool = True,
                          calibrate: bool = True, calibrate_every: int = 1,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Counterfactual credit (and, with ``calibrate``, one-step calibration) along random-policy episodes.

    Per seed: ``reset(seed=seed)``, a uniformly random policy (``numpy.random.default_rng(seed)``; Discrete:
    menu indices, Box: uniform in the box) for the whole budget. At ``num_states`` updates evenly spaced in
    [first_state, budget - 2] the env branches on every candidate action (:func:`candidate_actions`); with
    ``calibrate``, every ``calibrate_every``-th update branches on the chosen and the standard action, so
    that the update's reward modes and its realized eval-loss drop are recorded (the branch of the chosen
    action IS the real update: the same values, bitwise on CPU). The env's episode is unchanged by the
    branching.

    Args:
        make_env: builds the env (called once).
        seeds: episode seeds (>= 1).
        num_states: states per seed with full branching, >= 1.
        first_state: the first such state (learner updates done), >= 0.
        grid_points: candidate actions of a ``Box`` space, >= 5.
        probe: also measure the probe loss per branch (the ``value_gain`` mode; one feedback forward each).
        calibrate: also branch along the episode for the calibration.
        calibrate_every: calibration branching period in updates, >= 1.
        progress: called with a one-line summary after each branching state (e.g. ``print``).

    Returns:
        ``{"states": [StateCredit as dict], "summary": {mode: {"mean_spearman", "best_found", "states"}},
        "calibration": {mode: {"pearson", "slope", "updates"}} (with ``calibrate``)}``.

    Raises:
        ValueError: an empty ``seeds``, ``num_states`` < 1, ``first_state`` < 0 or a budget too short.
    """
    _check_credit_args(seeds, num_states, first_state, calibrate_every)
    env = make_env()
    base = _task_design_env(env)
    base.evaluate_at_end = False
    budget = base.budget.learner_updates // base.budget.updates_per_decision
    if budget - 2 < first_state:
        raise ValueError(f"the episode has {budget} decisions: first_state={first_state} leaves no state to branch on")
    measure = _eval_loss(env)
    at = sorted({int(round(x)) for x in np.linspace(first_state, budget - 2, num_states)})
    space = env.action_space
    states: list[StateCredit] = []
    pairs: dict[str, list[float]] = {m: [] for m in MODES}
    realized_all: list[float] = []
    for seed in seeds:
        env.reset(seed=int(seed))
        rng = np.random.default_rng(int(seed))
        actions = candidate_actions(space, base.standard_action, grid_points, seed=int(seed))
        standard_index = 0 if not isinstance(space, gym.spaces.Discrete) else int(base.standard_action)
        for t in range(budget):
            action = _random_action(space, rng)
            credit = None
            if t in at:
                credit = _credit(env, actions, standard_index, measure, int(seed), probe)
                states.append(credit)
                if progress is not None:
                    rho = credit.spearman
                    progress(f"seed {seed} update {t}: Spearman " + ", ".join(f"{m} {rho[m]:.2f}" for m in MODES))
            if calibrate and t % calibrate_every == 0:
                _record_calibration(base, action, credit, measure, probe, pairs, realized_all)
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    env.close()
    out: dict[str, Any] = {"states": [s.__dict__ for s in states], "summary": _credit_summary(states)}
    if calibrate:
        out["calibration"] = _calibration_summary(pairs, realized_all)
    return out


def _check_credit_args(seeds: Sequence[int], num_states: int, first_state: int, calibrate_every: int) -> None:
    """The argument checks of :func:`counterfactual_credit` that need no env."""
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    if num_states < 1 or first_state < 0 or calibrate_every < 1:
        raise ValueError(f"num_states and calibrate_every must be >= 1 and first_state >= 0, got {num_states}, "
                         f"{calibrate_every}, {first_state}")


def _random_action(space: gym.Space, rng: np.random.Generator) -> Any:
    """One action of the uniformly random policy: a menu index (Discrete) or a uniform point of the Box."""
    if isinstance(space, gym.spaces.Discrete):
        return int(rng.integers(space.n))
    assert isinstance(space, gym.spaces.Box)  # candidate_actions has already rejected other spaces
    return rng.uniform(space.low, space.high).astype(space.dtype)


def _record_calibration(base: TaskDesignEnv, action: Any, credit: StateCredit | None,
                        measure: Callable[[Any], float], probe: bool, pairs: dict[str, list[float]],
                        realized_all: list[float]) -> None:
    """Append the reward modes (to ``pairs``) and the realized drop (to ``realized_all``) of the update of
    ``action`` at the current state; nothing when that update diverged."""
    if credit is not None and isinstance(action, int):
        # the full branching already holds the chosen action's update (the same values, bitwise)
        if math.isfinite(credit.realized[action]):
            for m in MODES:
                pairs[m].append(credit.values[m][action])
            realized_all.append(credit.realized[action])
        return
    before, (chosen, std) = base.counterfactual([action, base.standard_action], measure=measure, probe_loss=probe)
    if chosen.outcome is not None:
        row = mode_values(chosen.outcome, std.outcome)
        for m in MODES:
            pairs[m].append(row[m])
        realized_all.append(before - chosen.measured)


def _credit_summary(states: Sequence[StateCredit]) -> dict[str, dict[str, Any]]:
    """Per mode: the mean finite Spearman over ``states``, how many found the best task, how many states."""
    summary = {}
    for m in MODES:
        rhos = [s.spearman[m] for s in states if math.isfinite(s.spearman[m])]
        summary[m] = {"mean_spearman": float(np.mean(rhos)) if rhos else math.nan,
                      "best_found": sum(s.best_found[m] for s in states), "states": len(states)}
    return summary


def _calibration_summary(pairs: dict[str, list[float]], realized_all: list[float]) -> dict[str, dict[str, Any]]:
    """Per mode: Pearson, slope and means of the realized drop against the mode's value (finite values only)."""
    calibration = {}
    for m in MODES:
        x = np.asarray(pairs[m], dtype=np.float64)
        y = np.asarray(realized_all, dtype=np.float64)
        ok = np.isfinite(x)
        calibration[m] = {"pearson": pearson(x[ok], y[ok]), "slope": slope(x[ok], y[ok]),
                          "updates": int(ok.sum()), "mean_value": float(x[ok].mean()) if ok.any() else math.nan,
                          "mean_realized": float(y[ok].mean()) if ok.any() else math.nan}
    return calibration


POLICY_MODES = ("alignment", "cosine", "preconditioned", "step_value")
"""Modes whose per-step value is in every step's ``info`` (one episode scores all of them)."""


def policy_ranking(make_env: Callable[[], gym.Env], *, seeds: Sequence[int], grid_points: int = 5,
                   metric: str | None = None, higher_is_better: bool = True) -> dict[str, Any]:
    """Every fixed-task policy x ``seeds``: Spearman of mean return (per mode) against the final held-out loss
    and, with ``metric``, against the primary eval metric a leaderboard ranks by.

    The returns of ``alignment``, ``cosine``, ``preconditioned`` and ``step_value`` are sums of the step
    ``info`` entries; the env's own reward is scored as ``"reward"``. The final held-out loss is
    ``feedback.eval_loss`` at episode end; its negation is ranked, so agreement is a positive Spearman. With
    ``metric`` (a key of ``info["eval"]``, e.g. ``"probe_accuracy"``: on the SSL envs the probe is refit from
    scratch, so it can order policies differently from the running probe heads' loss), the episode-end
    ``feedback.evaluate(learner)[metric]`` is ranked too, negated unless ``higher_is_better``.

    Returns:
        ``{"policies": [{"action", "task", "returns": {mode: mean}, "final_eval_loss": mean,
        "per_seed_eval_loss": [...], ("final_metric": mean, "per_seed_metric": [...])}], "spearman": {mode: rho},
        "seeds": [...], ("metric": name, "higher_is_better": bool, "spearman_metric": {mode: rho},
        "eval_loss_vs_metric": rho of the negated final eval loss against the signed metric)}``.

    Raises:
        KeyError: ``metric`` is not an eval metric of the env: before any episode for a registered id
            (:func:`vpt_gym.envs.is_eval_metric`), else at the first episode end.
    """
    env = make_env()
    if metric is not None and env.spec is not None and env.spec.id in ENV_IDS and not is_eval_metric(env.spec.id,
                                                                                                         metric):
        env.close()
        raise KeyError(f"metric {metric!r} is not an eval metric of {env.spec.id}; it reports "
                       f"{list(ENV_IDS[env.spec.id].eval_metrics)}")
    base = _task_design_env(env)
    base.evaluate_at_end = False
    measure = _eval_loss(env)
    actions = candidate_actions(env.action_space, base.standard_action, grid_points)
    rows = []
    for action in actions:
        returns: dict[str, list[float]] = {m: [] for m in (*POLICY_MODES, "reward")}
        finals, metrics = [], []
        name = ""
        for seed in seeds:
            env.reset(seed=int(seed))
            totals = dict.fromkeys(returns, 0.0)
            terminated = truncated = False
            while not (terminated or truncated):
                _, reward, terminated, truncated, info = env.step(action)
                name = info["task"]
                totals["reward"] += float(reward)
                for m in POLICY_MODES:
                    totals[m] += float(info[m])
            for m, v in totals.items():
                returns[m].append(v)
            finals.append(float(measure(base.learner)))
            if metric is not None:
                evaluated = base.feedback.evaluate(base.learner)
                if metric not in evaluated:
                    raise KeyError(f"metric {metric!r} is not reported by this env's evaluate(); it reports "
                                   f"{sorted(evaluated)}")
                metrics.append(float(evaluated[metric]))
        row = {"action": np.asarray(action).tolist(), "task": name,
               "returns": {m: float(np.mean(v)) for m, v in returns.items()},
               "final_eval_loss": float(np.mean(finals)), "per_seed_eval_loss": finals}
        if metric is not None:
            row.update(final_metric=float(np.mean(metrics)), per_seed_metric=metrics)
        rows.append(row)
    env.close()
    modes = (*POLICY_MODES, "reward")
    quality = [-r["final_eval_loss"] for r in rows]
    rho = {m: spearman([r["returns"][m] for r in rows], quality) for m in modes}
    out: dict[str, Any] = {"policies": rows, "spearman": rho, "seeds": [int(s) for s in seeds]}
    if metric is not None:
        sign = 1.0 if higher_is_better else -1.0
        score = [sign * r["final_metric"] for r in rows]
        out.update(metric=metric, higher_is_better=bool(higher_is_better),
                   spearman_metric={m: spearman([r["returns"][m] for r in rows], score) for m in modes},
                   eval_loss_vs_metric=spearman(quality, score))
    return out
