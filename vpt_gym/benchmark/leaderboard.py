"""Leaderboard statistics and ``LEADERBOARD.md`` from a results file (pure functions + one writer).

Per env, each designer's primary eval metric over seeds is summarized by the interquartile mean (IQM) with
a 95% stratified-bootstrap confidence interval, the paired improvement over the fixed-task baseline (same
seeds) with its interval, and the probability of improvement, all computed with ``rliable``
(Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021). Extra compute comes from
the ledger. Designers whose learner-update budgets differ are never ranked together: that raises.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vpt_gym.benchmark.results import group_rows

BASELINE = "fixed"
"""The matched-budget baseline: standard pretraining (the env's standard task every decision)."""
BOOTSTRAP_REPS = 2000
"""Bootstrap resamples per interval (rliable's stratified bootstrap, fixed ``RandomState(0)``)."""
EXTRA_FIELDS = ("lookahead_forward", "lookahead_backward", "designer_forward", "designer_backward")
"""Ledger fields a designer spends beyond the env's own passes (flagged on the leaderboard)."""
PASS_WEIGHTS = {f"{part}_{kind}": weight for part in ("learner", "feedback", "lookahead", "designer")
                for kind, weight in (("forward", 1 / 3), ("backward", 2 / 3))}
"""Learner-step equivalents of one ledger pass: a learner step is one forward and one backward, and a
backward costs about twice a forward (the usual FLOP count), so a forward is 1/3 of a step and a backward
2/3. Passes are counted whatever their batch, so this is a pass count, not a FLOP measurement; the median
wall-clock and CPU seconds beside it are the measured cost."""


def step_equivalents(ledger: dict[str, Any]) -> float:
    """Every pass of an episode's ledger in learner-step equivalents (:data:`PASS_WEIGHTS`).

    Example: 200 updates (200 learner forwards and backwards) plus 25 g_down refreshes (25 feedback forwards
    and backwards) and 200 look-ahead backwards give 200 + 25 + 200 * 2/3 = 358.3 learner steps.
    """
    return float(sum(weight * int(ledger.get(field, 0)) for field, weight in PASS_WEIGHTS.items()))


def _rliable():
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError as exc:
        raise ImportError("the leaderboard needs rliable: pip install 'vpt-gym[bench]'") from exc
    return rly, metrics


def _seeded_bootstraps(rly):
    """rliable's stratified bootstraps, drawing resample indices from their own seeded generator.

    rliable 1.2.0 draws the indices with ``np.random.choice`` (numpy's global RNG) although it accepts a
    ``random_state``; these subclasses use the generator that ``random_state`` sets, so intervals are
    reproducible without touching the global RNG. Only ``task_bootstrap=False`` (rliable's default) is used.
    """

    class SeededStratifiedBootstrap(rly.StratifiedBootstrap):
        def update_indices(self):
            indices = self.generator.choice(self._num_items, self._args_shape, replace=True)
            return (indices, *self._strata_indices)

    class SeededStratifiedIndependentBootstrap(rly.StratifiedIndependentBootstrap):
        def _get_indices(self, num_runs, array_shape, strata_indices):
            return (self.generator.choice(num_runs, array_shape, replace=True), *strata_indices)

    return SeededStratifiedBootstrap, SeededStratifiedIndependentBootstrap


@dataclass(frozen=True)
class DesignerStats:
    """One designer on one env (metric in its own unit; ``improvement`` > 0 means better than the baseline).

    ``ci`` fields are (low, high) of the 95% stratified-bootstrap interval; ``None`` where undefined (the
    baseline itself, or fewer than two shared seeds). ``step_equivalents_per_update``: every ledger pass in
    learner steps (:func:`step_equivalents`) per learner update, over all the designer's episodes.
    """

    designer: str
    seeds: tuple[int, ...]
    scores: tuple[float, ...]
    iqm: float
    iqm_ci: tuple[float, float]
    improvement: float | None
    improvement_ci: tuple[float, float] | None
    prob_improvement: float | None
    prob_improvement_ci: tuple[float, float] | None
    extra_passes_per_update: float
    learner_updates: int
    diverged: int
    wall_clock_s: float
    cpu_s: float = float("nan")
    build_s: float = float("nan")
    step_equivalents_per_update: float = float("nan")


@dataclass(frozen=True)
class EnvBoard:
    """The ranked designers of one env (best first); ``data``: where its feedback data came from (one line,
    :func:`describe_data`)."""

    env_id: str
    metric: str
    higher_is_better: bool
    budget: int
    suite: str
    suite_version: int
    designers: tuple[DesignerStats, ...]
    data: str = ""
    cpu_models: tuple[tuple[str, int], ...] = ()
    """``(CPU model, rows)`` pairs, most rows first (``"not recorded"`` for rows without ``cpu_model``): a CPU
    row replays bitwise only on its CPU model."""


def describe_data(feedback_source: str | None, identity: str | None) -> str:
    """Where an env's feedback data came from, for the leaderboard (machine-independent: no paths).

    Args:
        feedback_source: the rows' ``feedback_source`` (``"gsm8k:<dir>"``, ``"hub:openai/gsm8k"``,
            ``"embedded:reasoning_gym.gsm_symbolic"``, ``"analytic:toy"``, ...).
        identity: the rows' ``data_identity`` (the data folder's content identity), or ``None``/``"none"``.
    """
    source = str(feedback_source)
    kind = source.split(":", 1)[0]
    if kind == "gsm8k":
        folder = f", folder identity `{identity}`" if identity not in (None, "none") else ""
        return f"GSM8K from a data folder (`VPT_GYM_DATA`/`--data`{folder})"
    if kind == "hub":
        return f"GSM8K from the Hugging Face hub (`{source}`)"
    if kind == "embedded":
        return f"the embedded reasoning-gym problems (`{source}`), not GSM8K"
    return f"`{source}`"


def _interval(rly, func, scores: dict[str, Any], reps: int) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Point estimate and 95% percentile interval per key, as ``rly.get_interval_estimates`` computes them
    (stratified bootstrap over runs; a list value = independent samples), with a fixed ``RandomState(0)``."""
    single, independent = _seeded_bootstraps(rly)
    points, intervals = {}, {}
    for key in sorted(scores):
        value = scores[key]
        with warnings.catch_warnings():  # arch deprecates random_state in favour of generator=; same RNG
            warnings.simplefilter("ignore", FutureWarning)
            if isinstance(value, np.ndarray):
                bootstrap, point = single(value, random_state=np.random.RandomState(0)), func(value)
            else:
                bootstrap, point = independent(*value, random_state=np.random.RandomState(0)), func(*value)
        ci = bootstrap.conf_int(func, reps=reps, size=0.95, method="percentile")
        points[key] = float(np.asarray(point).ravel()[0])
        intervals[key] = (float(np.asarray(ci)[0].ravel()[0]), float(np.asarray(ci)[1].ravel()[0]))
    return points, intervals


def _median(rows: Sequence[dict], key: str) -> float:
    """Median of ``key`` over ``rows`` (NaN when a row lacks it: results written before it was recorded)."""
    return float(np.median([float("nan") if r.get(key) is None else float(r[key]) for r in rows]))


def _max(rows: Sequence[dict], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    return max(values) if values else float("nan")


def _check_budgets(env_id: str, per_designer: dict[str, list[dict]]) -> int:
    budgets = {label: sorted({int(r["budget"]) for r in rows}) for label, rows in per_designer.items()}
    flat = {b for bs in budgets.values() for b in bs}
    if len(flat) != 1:
        raise ValueError(f"{env_id}: refusing to rank designers with different learner-update budgets {budgets}; "
                         "a leaderboard compares designers at a matched budget")
    budget = flat.pop()
    for label, rows in per_designer.items():
        for r in rows:
            spent = int(r["ledger"]["learner_updates"])
            if spent != budget and not r.get("diverged"):
                raise ValueError(f"{env_id}: designer {label!r} seed {r['seed']} spent {spent} learner updates, "
                                 f"not the budget {budget}")
    return budget


def _check_theta0(env_id: str, per_designer: dict[str, list[dict]]) -> None:
    """Rows of one seed must start from the same weights theta_0 (where they record it): a base checkpoint
    built on another CPU model differs in its last bits and moves the final metric by more than most
    designers' gaps (README "Put it on the leaderboard"), so rows from two hosts are not comparable.

    Raises:
        ValueError: two rows of one seed record different ``theta0`` fingerprints (names the seed, the
            fingerprints and their CPU models).
    """
    by_seed: dict[int, dict[str, set[str]]] = {}
    for rows in per_designer.values():
        for r in rows:
            if r.get("theta0"):
                by_seed.setdefault(int(r["seed"]), {}).setdefault(str(r["theta0"]), set()).add(
                    str(r.get("cpu_model", "an unrecorded CPU model")))
    for seed, fingerprints in sorted(by_seed.items()):
        if len(fingerprints) > 1:
            found = "; ".join(f"{fp} (on {', '.join(sorted(models))})" for fp, models in sorted(fingerprints.items()))
            raise ValueError(f"{env_id}: refusing to rank rows of seed {seed} that start from different weights "
                             f"theta_0: {found}; run every designer of a results file on one CPU model")


def env_board(env_id: str, per_designer: dict[str, list[dict]], *, reps: int = BOOTSTRAP_REPS) -> EnvBoard:
    """Statistics of one env's rows (``{designer label: rows}``), ranked by IQM (best first).

    Raises:
        ValueError: budgets differ between rows, a row spent another number of updates than the budget, rows
            disagree on the metric or its direction, a row lacks the primary metric, or rows of one seed start
            from different theta_0.
        ImportError: rliable is not installed.
    """
    rly, metrics = _rliable()
    budget = _check_budgets(env_id, per_designer)
    sources = sorted({str(r.get("feedback_source")) for rows in per_designer.values() for r in rows})
    if len(sources) > 1:
        raise ValueError(f"{env_id}: refusing to rank rows run on different feedback data {sources}; keep one "
                         "VPT_GYM_DATA per results file")
    _check_theta0(env_id, per_designer)
    first = next(iter(per_designer.values()))[0]
    identities = sorted({str(r.get("data_identity")) for rows in per_designer.values() for r in rows})
    data = describe_data(sources[0], identities[0] if len(identities) == 1 else None)
    metric, higher = first["metric"], bool(first["higher_is_better"])
    sign = 1.0 if higher else -1.0
    scores: dict[str, np.ndarray] = {}
    seeds: dict[str, list[int]] = {}
    for label, rows in sorted(per_designer.items()):
        for r in rows:
            if r["metric"] != metric or bool(r["higher_is_better"]) != higher:
                raise ValueError(f"{env_id}: rows disagree on the primary metric ({metric!r} vs {r['metric']!r})")
            if r.get("metric_value") is None or not math.isfinite(float(r["metric_value"])):
                raise ValueError(f"{env_id}: designer {label!r} seed {r['seed']} has no finite {metric!r}")
        seeds[label] = [int(r["seed"]) for r in rows]
        scores[label] = np.asarray([[float(r["metric_value"])] for r in rows])  # runs x tasks (1 task)
    iqm_func = lambda x: np.array([metrics.aggregate_iqm(x)])  # noqa: E731
    iqm, iqm_ci = _interval(rly, iqm_func, scores, reps)
    improvement: dict[str, float] = {}
    improvement_ci: dict[str, tuple[float, float]] = {}
    poi: dict[str, float] = {}
    poi_ci: dict[str, tuple[float, float]] = {}
    if BASELINE in scores:
        diffs, pairs = {}, {}
        for label in scores:
            if label == BASELINE:
                continue
            shared = sorted(set(seeds[label]) & set(seeds[BASELINE]))
            if len(shared) < 2:
                continue
            x = np.asarray([[scores[label][seeds[label].index(s), 0]] for s in shared])
            y = np.asarray([[scores[BASELINE][seeds[BASELINE].index(s), 0]] for s in shared])
            diffs[label] = sign * (x - y)
            pairs[label] = [sign * x, sign * y]
        if diffs:
            improvement, improvement_ci = _interval(rly, iqm_func, diffs, reps)
            poi_func = lambda x, y: np.array([metrics.probability_of_improvement(x, y)])  # noqa: E731
            poi, poi_ci = _interval(rly, poi_func, pairs, reps)
    stats = []
    for label, rows in per_designer.items():
        updates = sum(int(r["ledger"]["learner_updates"]) for r in rows)
        extra = sum(sum(int(r["ledger"].get(f, 0)) for f in EXTRA_FIELDS) for r in rows)
        stats.append(DesignerStats(
            designer=label, seeds=tuple(seeds[label]), scores=tuple(float(v) for v in scores[label][:, 0]),
            iqm=iqm[label], iqm_ci=iqm_ci[label], improvement=improvement.get(label),
            improvement_ci=improvement_ci.get(label), prob_improvement=poi.get(label),
            prob_improvement_ci=poi_ci.get(label),
            extra_passes_per_update=extra / max(updates, 1),
            step_equivalents_per_update=sum(step_equivalents(r["ledger"]) for r in rows) / max(updates, 1),
            learner_updates=budget, diverged=sum(bool(r.get("diverged")) for r in rows),
            wall_clock_s=_median(rows, "wall_clock_s"), cpu_s=_median(rows, "cpu_s"),
            build_s=_max(rows, "build_s")))
    stats.sort(key=lambda s: (-sign * s.iqm, s.designer))
    models = Counter(str(r.get("cpu_model") or "not recorded") for rows in per_designer.values() for r in rows)
    return EnvBoard(env_id=env_id, metric=metric, higher_is_better=higher, budget=budget, suite=first["suite"],
                    suite_version=int(first["suite_version"]), designers=tuple(stats), data=data,
                    cpu_models=tuple(sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))))


def boards(rows: Sequence[dict[str, Any]], *, reps: int = BOOTSTRAP_REPS) -> list[EnvBoard]:
    """One :class:`EnvBoard` per env of ``rows`` (sorted by env id); ``reps`` bootstrap resamples per interval.

    Raises:
        ValueError: no rows; rows of several suites mixed in one file; ``reps`` < 100; see :func:`env_board`.
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 100:
        raise ValueError(f"reps must be an integer >= 100, got {reps!r}")
    if not rows:
        raise ValueError("the results file has no rows; run `vpt-gym bench SUITE --out FILE` first")
    suites = sorted({(r["suite"], int(r["suite_version"])) for r in rows})
    if len(suites) > 1:
        raise ValueError(f"the results mix suites {suites}; rank one suite per leaderboard")
    grouped = group_rows(rows)
    return [env_board(env_id, grouped[env_id], reps=reps) for env_id in sorted(grouped)]


def _fmt(x: float | None, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _fmt_s(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:.1f}"


def _fmt_ci(point: float | None, ci: tuple[float, float] | None, digits: int = 4) -> str:
    if point is None:
        return "–"
    if ci is None:
        return _fmt(point, digits)
    return f"{point:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _cpu_models_note(board: EnvBoard) -> list[str]:
    """Which CPU models the rows ran on (a CPU row replays bitwise only on its own model)."""
    if not board.cpu_models:
        return []
    ran = ", ".join(f"{model} ({n} row{'' if n == 1 else 's'})" for model, n in board.cpu_models)
    return [f"CPU model of the rows: {ran}; `vpt-gym validate` replays a CPU row bitwise on its own model."]


def _superseded_note(env_id: str) -> list[str]:
    """A line saying that ``env_id`` has a newer registered version (none for the newest or an unknown id)."""
    from vpt_gym.envs import ENV_IDS, latest_version

    newest = latest_version(env_id) if env_id in ENV_IDS else env_id
    if newest == env_id:
        return []
    return [f"Superseded by `{newest}`, the family's current version (`gymnasium.make` warns that `{env_id}` "
            f"is out of date); its rows stay published so that they keep validating by replay."]


def render_markdown(env_boards: Sequence[EnvBoard], *, source: str, plots: dict[str, list[str]] | None = None,
                    command: str | None = None, reps: int = BOOTSTRAP_REPS) -> str:
    """``LEADERBOARD.md`` text for ``env_boards`` (deterministic: no dates, sorted, fixed bootstrap seed)."""
    from vpt_gym import __version__

    b0 = env_boards[0]
    lines = [
        f"# Leaderboard — suite `{b0.suite}` (version {b0.suite_version})",
        "",
        f"From `{source}`, rendered by vpt-gym {__version__}" + (f" with `{command}`." if command else "."),
        "",
        f"Every designer spends the same learner-update budget per env (checked). Scores are the primary eval "
        f"metric on the held-out eval split at episode end, one episode per seed. **IQM**: interquartile mean "
        f"over seeds with a 95% stratified-bootstrap confidence interval ({reps} resamples, "
        f"rliable). **Δ vs {BASELINE}**: IQM of the paired per-seed difference to the fixed-task baseline "
        f"(standard pretraining), signed so that > 0 is better. **P(>{BASELINE})**: probability of improvement "
        f"over the baseline. **Extra passes**: designer look-ahead and designer-network passes per learner "
        f"update (0 = no compute beyond the env's own). **Compute / update**: every pass of the ledger (learner, "
        f"feedback, look-ahead, designer) in learner-step equivalents per learner update (a forward 1/3 of a "
        f"step, a backward 2/3): the compute-matched view of the same budget. **Wall-clock** and **CPU s**: "
        f"medians per episode, without building the env (CPU seconds are not inflated by other processes on "
        f"shared cores); the one-time builds (base checkpoint, tokenizer, data: the first episode of each worker "
        f"process) are reported below each table.",
        "",
    ]
    for board in env_boards:
        direction = "higher is better" if board.higher_is_better else "lower is better"
        n_seeds = max(len(d.seeds) for d in board.designers)
        lines += [f"## {board.env_id}", "",
                  f"Metric `{board.metric}` ({direction}); budget {board.budget} learner updates; "
                  f"up to {n_seeds} seeds.",
                  *_superseded_note(board.env_id),
                  f"Feedback data: {board.data}.",
                  *_cpu_models_note(board),
                  "",
                  f"| rank | designer | IQM {board.metric} [95% CI] | Δ vs {BASELINE} [95% CI] | "
                  f"P(>{BASELINE}) [95% CI] | extra passes / update | compute / update | seeds | diverged | "
                  f"median wall-clock s | median CPU s |",
                  "|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for rank, d in enumerate(board.designers, start=1):
            lines.append(
                f"| {rank} | {d.designer} | {_fmt_ci(d.iqm, d.iqm_ci)} | {_fmt_ci(d.improvement, d.improvement_ci)} | "
                f"{_fmt_ci(d.prob_improvement, d.prob_improvement_ci, 2)} | {d.extra_passes_per_update:.2f} | "
                f"{d.step_equivalents_per_update:.2f} | {len(d.seeds)} | {d.diverged} | {d.wall_clock_s:.1f} | "
                f"{_fmt_s(d.cpu_s)} |")
        lines.append("")
        built = [d for d in board.designers if math.isfinite(d.build_s)]
        if built:
            top = max(built, key=lambda d: d.build_s)
            lines += [f"Env and designer builds, not in the times above: at most {top.build_s:.1f} s per episode "
                      f"({top.designer}'s; the first episode of a worker process builds or loads the base checkpoint "
                      "and data, and a designer's own one-time work, such as select_fixed's run selection, is part "
                      "of its build).", ""]
        for path in (plots or {}).get(board.env_id, []):
            lines += [f"![{Path(path).stem}]({path})", ""]
    for path in (plots or {}).get("", []):
        lines += [f"![{Path(path).stem}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_leaderboard(rows: Sequence[dict[str, Any]], out_dir: str | Path, *, source: str, plots: bool = True,
                      command: str | None = None, reps: int = BOOTSTRAP_REPS, plots_subdir: str = "") -> Path:
    """Write ``out_dir/LEADERBOARD.md`` (and PNG plots next to it, or in ``out_dir/plots_subdir``) atomically;
    returns the markdown path.

    Raises:
        ValueError: see :func:`boards`. ImportError: rliable (or, with ``plots``, matplotlib) missing.
    """
    from vpt_gym.atomic import write_text_atomic

    env_boards = boards(rows, reps=reps)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for LEADERBOARD.md and its plots")
    out.mkdir(parents=True, exist_ok=True)
    plot_paths: dict[str, list[str]] = {}
    if plots:
        from vpt_gym.benchmark.plots import write_plots

        plot_paths = write_plots(rows, env_boards, out, plots_subdir)
    text = render_markdown(env_boards, source=source, plots=plot_paths, command=command, reps=reps)
    target = out / "LEADERBOARD.md"
    write_text_atomic(target, text)
    return target
