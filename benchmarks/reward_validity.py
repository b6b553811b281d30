"""Reward validity report: does each reward mode rank tasks the way they really move the held-out loss?

For each env id (at a preset and config), along random-policy episodes (``vpt_gym.benchmark.validity``):

(a) counterfactual credit: at ``--states`` states per seed the learner (weights, optimizer state, BatchNorm
    statistics, EMA teacher and centre) is copied once per task, each copy takes that task's real update on
    the pending batch, and the realized drop of the eval split's loss (``feedback.eval_loss``: GSM8K test
    solution NLL, held-out window NLL, the probe heads' loss on held-out images, the toy's exact L_down) is
    compared with each reward mode's value of the same update: mean Spearman across tasks, and how often
    the mode's best task is the realized best. Continuous variants branch on the standard action plus
    ``--grid - 1`` points drawn uniformly in the box.
(b) one-step calibration: over every ``--calibrate-every``-th update of the same episodes, Pearson and the
    least-squares slope of the realized drop against each mode.
(c) policy ranking: every fixed-task policy x ``--policy-seeds`` seeds; Spearman of the mean return (per
    mode) against the final held-out loss (negated, so agreement is positive) and against the primary eval
    metric the leaderboard ranks by (``--metric``; default the env's first eval metric, the small suite's:
    ``eval_nll`` or ``probe_accuracy``; none for the toy, whose metric is the eval loss), and how the two
    final measures agree.

The branching restores the env exactly: the episode continues bit-for-bit as without it (CPU; tested).

Cost (2-core CPU, one thread): the whole report takes up to about an hour per learner env at ``small`` (the
policy ranking is most of it); the counterfactual part alone (``--no-policies --no-calibration``, 2 seeds)
5-11 minutes; the toy's full report seconds.

Usage:
    python benchmarks/reward_validity.py --env vpt/LM-SoftTargets-v1 --size small --json validity_lm.json
    python benchmarks/reward_validity.py --env all --size small --policy-seeds 3
    python benchmarks/reward_validity.py --env vpt/LM-SoftTargets-v0 --set feedback_batch_size=64 --no-policies
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import gymnasium as gym
import torch

import vpt_gym  # noqa: F401  (registers the envs)
from vpt_gym.atomic import write_text_atomic
from vpt_gym.benchmark.validity import MODES, counterfactual_credit, policy_ranking
from vpt_gym.cli import set_overrides
from vpt_gym.envs import ENV_IDS, is_eval_metric

HIGHER_IS_BETTER = ("accuracy", "pass@1", "miou", "solved_fraction")
"""Suffixes of eval metrics where larger is better (accuracies, Pass@1, mIoU); losses and NLLs are lower-better."""
COUNTS = ("eval_images", "eval_items")
"""Suffixes of ``info["eval"]`` keys that count eval examples (not a quality: refused as ``--metric``)."""


def primary_metric(env_id: str, metric: str | None) -> tuple[str, bool] | None:
    """``(metric, higher_is_better)`` for policy ranking (c): ``metric``, else the env's first eval metric
    (None without ``metric`` for an id outside :data:`vpt_gym.envs.ENV_IDS`, or one whose first metric is the
    ``eval_loss`` that (c) ranks by anyway: the toy).

    Raises:
        ValueError: ``metric`` is not an eval metric of ``env_id`` (the accepted ones are named), or counts
            eval examples (``eval_images``, ``eval_items``).
    """
    if metric is not None and metric.endswith(COUNTS):
        raise ValueError(f"--metric {metric!r} is a count of eval examples, not a quality; give a loss, NLL, "
                         "accuracy, Pass@1 or mIoU")
    if env_id not in ENV_IDS:  # not one of ours: only a named metric, checked at the first episode end
        return (metric, metric.endswith(HIGHER_IS_BETTER)) if metric else None
    if metric is None and ENV_IDS[env_id].eval_metrics[0] == "eval_loss":
        return None  # the toy: its primary metric is the eval loss (c) already ranks by
    name = metric or ENV_IDS[env_id].eval_metrics[0]
    accepted = [m for m in ENV_IDS[env_id].eval_metrics if not m.endswith(COUNTS)]
    if not is_eval_metric(env_id, name):
        raise ValueError(f"--metric {name!r} is not an eval metric of {env_id}; accepted: {accepted}")
    return name, name.endswith(HIGHER_IS_BETTER)

def _current_versions() -> tuple[str, ...]:
    """Every registered id whose family has no newer version (``vpt/X-v0`` is left out when ``vpt/X-v1`` exists)."""
    from vpt_gym.envs import ENV_IDS, latest_version

    return tuple(e for e in ENV_IDS if latest_version(e) == e)


ALL_ENVS = _current_versions()
"""The ids ``--env all`` covers: the current version of every registered family member."""


def env_factory(env_id: str, size: str, budget: int | None, extra: dict[str, Any]):
    kwargs = dict(extra)
    if not env_id.startswith("vpt/Toy"):
        kwargs.setdefault("size", size)
        kwargs.setdefault("device", "cpu")
    if budget is not None:
        kwargs["budget"] = budget

    def make() -> gym.Env:
        return gym.make(env_id, **kwargs)

    return make, kwargs


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def table(report: dict[str, Any]) -> str:
    credit = report.get("counterfactual", {}).get("summary", {})
    calib = report.get("counterfactual", {}).get("calibration", {})
    policies = dict(report.get("policy_ranking", {}).get("spearman", {}))
    ranking = report.get("policy_ranking", {})
    by_metric = dict(ranking.get("spearman_metric", {}))
    if "reward" in policies:  # the env's own reward (step's), scored along the policies: shown under its mode
        own = str(report.get("kwargs", {}).get("reward") or ENV_IDS[report["env_id"]].rewards[0])
        for scores in (policies, by_metric):
            if "reward" in scores:
                scores.setdefault(own, scores["reward"])
    metric = ranking.get("metric", "metric")
    lines = ["| reward mode | mean Spearman (counterfactual) | best task found | calibration Pearson | slope | "
             f"policy ranking vs eval loss | policy ranking vs {metric} |", "|---|---:|---:|---:|---:|---:|---:|"]
    extra = [m for m in policies if m not in MODES and m != "reward"]
    for m in (*MODES, *extra):  # a reward outside MODES (e.g. --reward metric_gain) shows its policy ranking only
        c = credit.get(m, {"mean_spearman": math.nan, "best_found": "n/a", "states": 0})
        cal = calib.get(m, {})
        found = f"{c['best_found']} of {c['states']}" if c["states"] else "n/a"
        lines.append(f"| `{m}` | {fmt(c['mean_spearman'])} | {found} | "
                     f"{fmt(cal.get('pearson', math.nan))} | {fmt(cal.get('slope', math.nan), 3)} | "
                     f"{fmt(policies[m]) if m in policies else 'n/a'} | "
                     f"{fmt(by_metric[m]) if m in by_metric else 'n/a'} |")
    if "eval_loss_vs_metric" in ranking:
        lines.append(f"\nFinal eval loss vs final {metric} across the fixed-task policies: Spearman "
                     f"{fmt(ranking['eval_loss_vs_metric'])} (1: the two measures order the policies alike).")
    return "\n".join(lines)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default where its help does not give it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--env", nargs="+", default=["vpt/LM-SoftTargets-v1"],
                        help=f"env ids, or 'all' (the current version of every family member: {', '.join(ALL_ENVS)})")
    parser.add_argument("--size", default="small", help="preset of the learner envs: tiny | small | paper")
    parser.add_argument("--budget", type=int, default=None, help="learner updates per episode (default: preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="random-policy episode seeds (>= 2)")
    parser.add_argument("--states", type=int, default=6, help="branching states per seed (>= 6 for a claim)")
    parser.add_argument("--first-state", type=int, default=5, help="learner updates before the first state")
    parser.add_argument("--grid", type=int, default=5, help="candidate actions of a Box variant (>= 5)")
    parser.add_argument("--policy-seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds per fixed-task policy (policy ranking)")
    parser.add_argument("--policy-budget", type=int, default=None,
                        help="learner updates per fixed-policy episode (default: --budget, else the preset's)")
    parser.add_argument("--no-calibration", action="store_true", help="skip (b): branching along the episode")
    parser.add_argument("--calibrate-every", type=int, default=4,
                        help="(b) branches every N-th update (each branch costs an eval-split loss)")
    parser.add_argument("--no-policies", action="store_true", help="skip (c): the fixed-task policies")
    parser.add_argument("--no-counterfactual", action="store_true",
                        help="skip (a) and (b): only the policy ranking (c)")
    parser.add_argument("--metric", default=None,
                        help="(c) also ranks the policies by this eval metric at episode end (default: the env's "
                             "first: eval_nll or probe_accuracy; the toy's is its eval loss, so none); 'none' skips it")
    parser.add_argument("--no-probe", action="store_true", help="skip the probe loss per branch (value_gain)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: bitwise reruns)")
    parser.add_argument("--reward", default=None,
                        help="the env's own reward (default: the env's), scored along the policies in (c) as 'reward'")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="env keyword for every env (VALUE is JSON, else a string), e.g. feedback_batch_size=64, "
                             "lr=1e-4")
    parser.add_argument("--json", default=None, help="write the full report (every state and policy) here")
    args = parser.parse_args(argv)
    envs = list(ALL_ENVS) if args.env == ["all"] else args.env
    unknown = [e for e in envs if e not in gym.registry]
    if unknown:
        registered = sorted(k for k in gym.registry if k.startswith("vpt/"))
        parser.error(f"unknown env ids {unknown}; registered: {registered}")
    if args.states < 1 or args.grid < 5 or not args.seeds or args.threads < 1 or args.calibrate_every < 1:
        parser.error(f"need --states >= 1, --grid >= 5, one seed or more, --threads >= 1 and --calibrate-every >= 1; "
                     f"got {args.states}, {args.grid}, {args.seeds}, {args.threads}, {args.calibrate_every}")
    if args.no_counterfactual and args.no_policies:
        parser.error("--no-counterfactual with --no-policies leaves nothing to measure")
    metrics: dict[str, tuple[str, bool] | None] = {}
    for env_id in envs:  # checked before any env is built
        try:
            metrics[env_id] = None if args.metric == "none" else primary_metric(env_id, args.metric)
        except ValueError as error:
            parser.error(str(error))
    if args.json and os.path.isdir(args.json):
        parser.error(f"--json {args.json!r} is a folder; give a file path")
    torch.set_num_threads(args.threads)
    reports = []
    extras = {env_id: set_overrides(env_id, args.set) for env_id in envs}  # checked before any env is built
    if args.reward is not None:
        for env_id in envs:
            if args.reward not in ENV_IDS[env_id].rewards:
                parser.error(f"--reward {args.reward!r} is not accepted by {env_id}: {list(ENV_IDS[env_id].rewards)}")
            extras[env_id]["reward"] = args.reward
    for env_id in envs:
        extra = extras[env_id]
        make, kwargs = env_factory(env_id, args.size, args.budget, extra)
        started = time.perf_counter()
        print(f"## {env_id}  {json.dumps(kwargs, sort_keys=True)}", flush=True)
        report: dict[str, Any] = {"env_id": env_id, "kwargs": kwargs, "seeds": args.seeds, "states": args.states}
        if not args.no_counterfactual:
            report["counterfactual"] = counterfactual_credit(
                make, seeds=args.seeds, num_states=args.states, first_state=args.first_state, grid_points=args.grid,
                probe=not args.no_probe, calibrate=not args.no_calibration, calibrate_every=args.calibrate_every,
                progress=lambda line: print(line, file=sys.stderr, flush=True))
        if not args.no_policies:
            make_policy_env = make
            if args.policy_budget is not None:
                make_policy_env, _ = env_factory(env_id, args.size, args.policy_budget, extra)
                report["policy_budget"] = args.policy_budget
            metric = metrics[env_id]
            report["policy_ranking"] = policy_ranking(
                make_policy_env, seeds=args.policy_seeds, grid_points=args.grid,
                metric=None if metric is None else metric[0], higher_is_better=True if metric is None else metric[1])
        report["wall_clock_s"] = time.perf_counter() - started
        print(table(report), flush=True)
        print(f"({report['wall_clock_s']:.0f} s)\n", flush=True)
        reports.append(report)
    if args.json:
        write_text_atomic(args.json, json.dumps({"argv": sys.argv[1:], "reports": reports}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
