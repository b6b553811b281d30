"""Leaderboard plots (matplotlib, Agg): loss curves with CI bands, task-choice heatmaps, aggregate intervals.

Every figure is written atomically (temp file + rename) without a timestamp, so the same results file gives
the same PNG bytes with the same library versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vpt_gym.benchmark.results import group_rows

MAX_TASKS_IN_HEATMAP = 24
"""Envs whose rows name more distinct tasks (e.g. continuous action spaces) get no heatmap."""
BUDGET_BINS = 16
"""Columns of the task-choice heatmap (equal slices of the budget)."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("leaderboard plots need matplotlib: pip install 'vpt-gym[bench]'") from exc
    return plt


def _save(fig, path: Path) -> None:
    from vpt_gym.atomic import atomic_target

    with atomic_target(path, suffix=".png") as tmp:  # matplotlib picks the format from the suffix
        fig.savefig(tmp, dpi=100, metadata={"Software": None}, bbox_inches="tight")


def mean_with_band(curves: np.ndarray, reps: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs and a 95% percentile-bootstrap band, per step.

    Args:
        curves: shape [runs, steps], float.

    Returns:
        (mean [steps], low [steps], high [steps]); with one run the band is the curve itself.
    """
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, mean, mean
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, curves.shape[0], size=(reps, curves.shape[0]))
    boot = curves[idx].mean(axis=1)  # [reps, steps]
    return mean, np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)


def _slug(env_id: str) -> str:
    return env_id.replace("/", "_")


def plot_curves(per_designer: dict[str, list[dict]], env_id: str, path: Path) -> None:
    """Feedback loss and pretraining loss vs learner updates (mean over seeds, 95% bootstrap band)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = sorted(per_designer)
    palette = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for index, label in enumerate(labels):
        rows = [r for r in per_designer[label] if r.get("trajectory")]
        if not rows:
            continue
        steps = min(len(r["trajectory"]["learner_updates"]) for r in rows)
        x = np.asarray(rows[0]["trajectory"]["learner_updates"][:steps])
        for ax, key in zip(axes, ("feedback_loss", "pretrain_loss"), strict=True):
            y = np.asarray([[np.nan if v is None else v for v in r["trajectory"][key][:steps]] for r in rows], float)
            mean, low, high = mean_with_band(y)
            (line,) = ax.plot(x, mean, label=label, linewidth=1.2, color=palette(index % palette.N))
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    for ax, title in zip(axes, ("feedback loss L_down (last g_down refresh)", "pretraining loss"), strict=True):
        ax.set_xlabel("learner updates")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(env_id, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_task_heatmap(per_designer: dict[str, list[dict]], env_id: str, path: Path) -> bool:
    """Task-choice frequency over the budget, one panel per designer; False (no file) for > 24 tasks."""
    tasks = sorted({t for rows in per_designer.values() for r in rows for t in r.get("tasks", [])})
    if not tasks or len(tasks) > MAX_TASKS_IN_HEATMAP:
        return False
    plt = _pyplot()
    labels = sorted(per_designer)
    fig, axes = plt.subplots(1, len(labels), figsize=(2.4 * len(labels) + 1.5, 0.28 * len(tasks) + 1.4),
                             squeeze=False, sharey=True)
    index = {t: i for i, t in enumerate(tasks)}
    image = None
    for ax, label in zip(axes[0], labels, strict=True):
        freq = np.zeros((len(tasks), BUDGET_BINS))
        for r in per_designer[label]:
            n = len(r["tasks"])
            for step, t in enumerate(r["tasks"]):
                freq[index[t], min(step * BUDGET_BINS // max(n, 1), BUDGET_BINS - 1)] += 1
        freq /= np.maximum(freq.sum(axis=0, keepdims=True), 1)
        image = ax.imshow(freq, aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
        ax.set_title(label, fontsize=8)
        ax.set_xticks([0, BUDGET_BINS - 1], ["start", "end"], fontsize=7)
    axes[0][0].set_yticks(range(len(tasks)), tasks, fontsize=7)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.02, label="share of decisions")
    fig.suptitle(f"{env_id}: task choice over the budget", fontsize=10, y=1.0 + 0.35 / fig.get_figheight())
    _save(fig, path)
    plt.close(fig)
    return True


def plot_aggregate(env_boards: Sequence[Any], path: Path) -> bool:
    """rliable interval plot of each designer's improvement over the baseline, one column per env."""
    from rliable import plot_utils

    envs = [b for b in env_boards if any(d.improvement is not None for d in b.designers)]
    if not envs:
        return False
    labels = sorted({d.designer for b in envs for d in b.designers if d.improvement is not None})
    labels = [lab for lab in labels if all(any(d.designer == lab and d.improvement is not None for d in b.designers)
                                           for b in envs)]
    if not labels:
        return False
    points, intervals = {}, {}
    for lab in labels:
        stats = [next(d for d in b.designers if d.designer == lab) for b in envs]
        points[lab] = np.asarray([s.improvement for s in stats])
        intervals[lab] = np.asarray([[s.improvement_ci[0] for s in stats], [s.improvement_ci[1] for s in stats]])
    plt = _pyplot()
    fig, _ = plot_utils.plot_interval_estimates(points, intervals, metric_names=[b.env_id for b in envs],
                                                algorithms=labels, xlabel="Δ vs fixed (IQM, > 0 is better)",
                                                subfigure_width=4.0, row_height=0.45,
                                                xlabel_y_coordinate=-0.6 / max(len(labels), 2))
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, max(height, 2.2))  # few designers: keep the panels readable
    for ax, board in zip(fig.axes, envs, strict=False):
        ax.set_title(board.env_id.split("/")[-1], fontsize=11)
    _save(fig, path)
    plt.close(fig)
    return True


def write_plots(rows: Sequence[dict[str, Any]], env_boards: Sequence[Any], out: Path,
                subdir: str = "") -> dict[str, list[str]]:
    """Write every plot under ``out / subdir``; returns ``{env_id: [png paths relative to out]}`` (``""``:
    the aggregate plot)."""
    grouped = group_rows(rows)
    folder = out / subdir if subdir else out
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{subdir.strip('/')}/" if subdir else ""
    written: dict[str, list[str]] = {}
    for env_id in sorted(grouped):
        names = []
        curves = folder / f"{_slug(env_id)}_curves.png"
        plot_curves(grouped[env_id], env_id, curves)
        names.append(prefix + curves.name)
        heat = folder / f"{_slug(env_id)}_tasks.png"
        if plot_task_heatmap(grouped[env_id], env_id, heat):
            names.append(prefix + heat.name)
        written[env_id] = names
    aggregate = folder / "aggregate.png"
    if plot_aggregate(env_boards, aggregate):
        written[""] = [prefix + aggregate.name]
    return written
