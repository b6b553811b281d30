"""Held-out GSM8K NLL of several designers on the small LM env, over seeds, at matched learner updates.

A plain comparison script (the leaderboard harness with interval statistics is ``vpt-gym bench``, to come).
Prints one line per episode and a summary table (mean and sample std over seeds; extra cost from the ledger),
and appends each result as a JSON line to ``--out``.

Usage: python benchmarks/designers_small.py [--designers fixed random greedy vpretraining]
       [--seeds 0 1 2 3 4] [--budget 200] [--size small] [--out results/designers_small.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import gymnasium as gym

import vpt_gym  # noqa: F401
from vpt_gym.agents import make_designer
from vpt_gym.runner import run_episode

EXTRA = ("lookahead_forward", "lookahead_backward", "designer_forward", "designer_backward")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designers", nargs="+", default=["fixed", "random", "greedy", "vpretraining"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--size", default="small")
    parser.add_argument("--env-id", default="vpt/LM-SoftTargets-v0")
    parser.add_argument("--out", default="results/designers_small.jsonl")
    args = parser.parse_args()
    env = gym.make(args.env_id, size=args.size, budget=args.budget)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {}
    for name in args.designers:
        designer = make_designer(name, env)
        for seed in args.seeds:
            row = run_episode(env, designer, seed=seed)
            rows.setdefault(name, []).append(row)
            with out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"{name:32s} seed {seed}: eval_nll {row['eval']['eval_nll']:.4f} pass@1 "
                  f"{row['eval']['eval_pass@1']:.3f} return {row['return']:.5f} {row['wall_clock_s']:.0f}s", flush=True)
    print(f"\n{'designer':32s} {'eval_nll mean':>13s} {'std':>7s} {'pass@1':>7s} {'learner upd':>11s}  extra passes/episode")
    for name, group in rows.items():
        nll = [r["eval"]["eval_nll"] for r in group]
        passes = [r["eval"]["eval_pass@1"] for r in group]
        extra = {k: group[0]["ledger"][k] for k in EXTRA if group[0]["ledger"][k]}
        std = statistics.stdev(nll) if len(nll) > 1 else 0.0
        print(f"{name:32s} {statistics.mean(nll):13.4f} {std:7.4f} {statistics.mean(passes):7.3f} "
              f"{group[0]['ledger']['learner_updates']:11d}  {extra or '-'}")


if __name__ == "__main__":
    main()
