"""How many labelled images must a feedback metric see to rank an SSL env's tasks as the leaderboard does?

The small suite ranks SSL designers by ``probe_accuracy``: fresh probe heads fit on the whole feedback split
(``ProbeFeedback.evaluate``: Adam, the preset's ``eval_fit_steps``) and scored on the eval split. A reward can
only aim at that metric if something it can afford per update ranks the tasks the same way. This script runs
every fixed-task policy x ``--seeds`` (the env's defaults, ``--budget`` updates), keeps the final ``cls``
features of the feedback and eval splits, and computes on the first n feedback images (one fixed permutation;
n in ``--sizes``):

- ``ridge_loo``: minus the closed-form leave-one-out squared error of a ridge probe on standardized features
  (``vpt_gym.vision.feedback.ridge_loo_error``, the env's ``probe_metric="ridge_loo"`` value);
- ``ridge_loo_accuracy``: the accuracy of the same leave-one-out ridge predictions (argmax);
- ``twofold_accuracy``: the leaderboard probe's recipe fit on one half of the n images, scored on the other,
  both ways, averaged (what a reward measuring n labelled images could compute, with no eval split);
- ``heldout_accuracy``: the leaderboard probe's recipe fit on the n images, scored on the whole eval split (at
  n = the feedback split, this *is* ``probe_accuracy``; checked against the episode's own eval).

For each metric and n: Spearman across the tasks against the final ``probe_accuracy`` (seed means; and per
seed; None / n/a where a side is constant). Features are cached per (env, config, seed, task) in
``--cache``, so seeds can run in separate processes and a last call with every seed only reads them.

Measured for the README ("Reward validity", SSL-Augment-v1).

Usage:
    python benchmarks/probe_resolution.py --env vpt/SSL-Augment-v1 --seeds 0 1 --cache feats/
    python benchmarks/probe_resolution.py --env vpt/SSL-Augment-v1 --seeds 2 --cache feats/
    python benchmarks/probe_resolution.py --env vpt/SSL-Augment-v1 --seeds 0 1 2 --cache feats/ --json res.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

METRICS = ("ridge_loo", "ridge_loo_accuracy", "twofold_accuracy", "heldout_accuracy")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--env", default="vpt/SSL-Augment-v1", help="an SSL env id with a Discrete menu")
    p.add_argument("--size", default="small", help="preset (tiny | small)")
    p.add_argument("--budget", type=int, default=None, help="learner updates per episode (default: the preset's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="episode seeds (>= 1 of them)")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1000],
                   help="labelled images each metric sees (each in [4, feedback split size]; capped at it)")
    p.add_argument("--ridge", type=float, default=1.0, help="relative ridge penalty of the ridge metrics (> 0)")
    p.add_argument("--cache", type=Path, default=None, help="directory for the final features (reused)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--json", type=Path, default=None, help="also write the report here")
    return p


def _check(args: argparse.Namespace) -> None:
    """Validate before any work. Raises SystemExit naming the bad value and the accepted range."""
    import vpt_gym  # noqa: F401  (registers the ids)
    from vpt_gym.envs import ENV_IDS

    if args.env not in ENV_IDS or not args.env.startswith("vpt/SSL-") or ENV_IDS[args.env]["action"] != "discrete":
        menus = sorted(e for e, s in ENV_IDS.items() if e.startswith("vpt/SSL-") and s["action"] == "discrete")
        raise SystemExit(f"--env {args.env!r} is not an SSL id with a task menu; choose one of {menus}")
    if args.size not in ENV_IDS[args.env]["presets"]:
        raise SystemExit(f"--size {args.size!r} is not a preset of {args.env}: {ENV_IDS[args.env]['presets']}")
    if args.budget is not None and args.budget < 1:
        raise SystemExit(f"--budget must be >= 1, got {args.budget}")
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"--seeds must be distinct, got {args.seeds}")
    if any(n < 4 for n in args.sizes):
        raise SystemExit(f"--sizes must each be >= 4 (two folds of >= 2 images), got {args.sizes}")
    if not args.ridge > 0:
        raise SystemExit(f"--ridge must be > 0, got {args.ridge}")
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    for path, what in ((args.json, "--json"), (args.cache, "--cache")):
        if path is not None and path.exists() and (path.is_dir() != (what == "--cache")):
            raise SystemExit(f"{what} {path} must be a {'directory' if what == '--cache' else 'file'}")


def ridge_loo_accuracy(features: torch.Tensor, labels: torch.Tensor, num_classes: int, ridge: float) -> float:
    """Accuracy of the leave-one-out predictions of the ridge probe of ``ridge_loo_error`` (same standardization
    and penalty): the prediction for example i without it is Y_i - R_i / (1 - H_ii) (PRESS), its argmax the
    class. features [n, d] float, labels [n] int64; returns a fraction in [0, 1]."""
    n = int(features.shape[0])
    z = features.detach().double()
    z = (z - z.mean(dim=0)) / z.std(dim=0, correction=0).clamp_min(1e-12)
    x = torch.cat([z, torch.ones(n, 1, dtype=torch.float64)], 1)
    y = F.one_hot(labels, num_classes).double()
    gram = x.T @ x
    kappa = ridge * float(torch.trace(gram)) / gram.shape[0]
    hat = x @ torch.linalg.solve(gram + kappa * torch.eye(gram.shape[0], dtype=torch.float64), x.T)
    loo = y - (y - hat @ y) / (1.0 - torch.diagonal(hat))[:, None]
    return float((loo.argmax(1) == labels).double().mean())


def probe_accuracy(train: torch.Tensor, train_labels: torch.Tensor, test: torch.Tensor, test_labels: torch.Tensor,
                   num_classes: int, *, steps: int, lr: float) -> float:
    """The leaderboard probe's recipe (``ProbeHeads`` + ``fit_heads``: standardized features, zero init,
    ``steps`` full-batch Adam steps at ``lr``) fit on ``train`` [n, d], accuracy on ``test`` [m, d]."""
    from vpt_gym.vision.feedback import ProbeHeads, fit_heads

    heads = ProbeHeads(train.shape[1], num_classes, 0)
    fit_heads(heads, train, train[:, :, None, None], train_labels, None, steps=steps, lr=lr)
    with torch.no_grad():
        return float((heads.classify(test).argmax(-1) == test_labels).float().mean())


def metrics_at(feats: dict[str, torch.Tensor], n: int, order: torch.Tensor, num_classes: int, *, ridge: float,
               steps: int, lr: float) -> dict[str, float]:
    """The four metrics of the module doc on the first ``n`` images of ``order`` (a permutation of the feedback
    split)."""
    from vpt_gym.vision.feedback import ridge_loo_error

    idx = order[:n]
    x, y = feats["feedback"][idx], feats["feedback_labels"][idx]
    half = n // 2
    folds = [(slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))]
    twofold = float(np.mean([probe_accuracy(x[a], y[a], x[b], y[b], num_classes, steps=steps, lr=lr)
                             for a, b in folds]))
    return {
        "ridge_loo": -ridge_loo_error(x, y, num_classes, ridge=ridge),
        "ridge_loo_accuracy": ridge_loo_accuracy(x, y, num_classes, ridge),
        "twofold_accuracy": twofold,
        "heldout_accuracy": probe_accuracy(x, y, feats["eval"], feats["eval_labels"], num_classes,
                                           steps=steps, lr=lr),
    }


def _cache_path(cache: Path, env_id: str, kwargs: dict[str, Any], seed: int, task: str) -> Path:
    key = hashlib.sha256(json.dumps([env_id, kwargs], sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"{env_id.replace('/', '_')}_{key}_seed{seed}_{task}.pt"


def final_features(env_id: str, kwargs: dict[str, Any], seed: int, action: int,
                   cache: Path | None) -> dict[str, Any]:
    """Run the always-``action`` episode and return its final cls features of both splits, labels and eval."""
    import gymnasium as gym

    env = gym.make(env_id, **kwargs)
    base = env.unwrapped
    task = base.task_space.tasks[action].name
    path = None if cache is None else _cache_path(cache, env_id, kwargs, seed, task)
    if path is not None and path.exists():
        return torch.load(path)
    env.reset(seed=seed)
    done, info = False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    fb = base.feedback
    with torch.no_grad():
        feedback, _ = fb._features(base.learner, fb._fb_images)
        evaluation, _ = fb._features(base.learner, fb._eval_images)
    out = {"task": task, "eval": evaluation.cpu(), "feedback": feedback.cpu(), "feedback_labels": fb._feedback.labels,
           "eval_labels": fb._eval.labels, "num_classes": fb.num_classes, "probe_accuracy":
           info["eval"]["probe_accuracy"], "fit_steps": fb.eval_fit_steps, "head_lr": fb.head_lr}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(out, tmp)
        tmp.replace(path)  # never a half-written cache entry
    return out


def _spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho, rounded; None where it is undefined (a constant input)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b)[0]), 3)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parser().parse_args(argv)
    _check(args)
    torch.set_num_threads(args.threads)
    import gymnasium as gym

    start = time.perf_counter()
    kwargs: dict[str, Any] = {"size": args.size, "device": "cpu"}
    if args.budget is not None:
        kwargs["budget"] = args.budget
    tasks = [t.name for t in gym.make(args.env, **kwargs).unwrapped.task_space.tasks]
    rows: dict[str, dict[str, Any]] = {t: {"probe_accuracy": [], "metrics": {}} for t in tasks}
    for seed in args.seeds:
        for action, task in enumerate(tasks):
            feats = final_features(args.env, kwargs, seed, action, args.cache)
            order = torch.randperm(len(feats["feedback_labels"]), generator=torch.Generator().manual_seed(seed))
            rows[task]["probe_accuracy"].append(feats["probe_accuracy"])
            for n in sorted(set(min(n, len(order)) for n in args.sizes)):
                values = metrics_at(feats, n, order, feats["num_classes"], ridge=args.ridge,
                                    steps=feats["fit_steps"], lr=feats["head_lr"])
                for name, value in values.items():
                    rows[task]["metrics"].setdefault(f"{name}@{n}", []).append(value)
            print(f"seed {seed} {task}: probe_accuracy {feats['probe_accuracy']:.3f}", flush=True)
    accuracy = [float(np.mean(rows[t]["probe_accuracy"])) for t in tasks]
    summary = {}
    for key in rows[tasks[0]]["metrics"]:
        values = [rows[t]["metrics"][key] for t in tasks]
        summary[key] = {
            "spearman_seed_means": _spearman(accuracy, [float(np.mean(v)) for v in values]),
            "spearman_per_seed": [_spearman([rows[t]["probe_accuracy"][j] for t in tasks], [v[j] for v in values])
                                  for j in range(len(args.seeds))],
            "seed_means": {t: round(float(np.mean(v)), 4) for t, v in zip(tasks, values, strict=True)},
        }
    report = {"argv": argv, "env_id": args.env, "kwargs": kwargs, "seeds": args.seeds, "ridge": args.ridge,
              "probe_accuracy": {t: round(a, 4) for t, a in zip(tasks, accuracy, strict=True)},
              "rows": rows, "summary": summary, "wall_clock_s": round(time.perf_counter() - start, 1)}
    print(table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.json)
    return report


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per metric, one column per n: Spearman (seed means) against probe_accuracy."""
    sizes = sorted({int(k.split("@")[1]) for k in report["summary"]})
    lines = [f"## {report['env_id']} {json.dumps(report['kwargs'], sort_keys=True)} seeds {report['seeds']}",
             "final probe_accuracy (seed means): " + ", ".join(f"{t} {a:.3f}"
                                                               for t, a in report["probe_accuracy"].items()),
             "", "| metric | " + " | ".join(f"n = {n}" for n in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for name in METRICS:
        cells = [report["summary"][f"{name}@{n}"]["spearman_seed_means"] for n in sizes]
        lines.append(f"| `{name}` | " + " | ".join("n/a" if c is None else f"{c:+.2f}" for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
