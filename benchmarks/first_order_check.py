"""Is a reward's misranking the g_down estimate's fault, or the first-order approximation's? (vision envs)

Along a random-policy episode, at a few states, every task of the menu takes its real update on a copy of the
learner (``env.unwrapped.counterfactual``) and three first-order predictions of the realized drop of the
eval-split loss are ranked against it (Spearman across tasks):

- ``env g_down``: g_down,S . (theta_t - theta_t+1) with the env's own g_down (the ``step_value`` of the update);
- ``exact g_eval``: the same with the exact gradient of the eval-split loss itself (``feedback.eval_objective``,
  1,000 held-out images at small): the best any first-order value can do;
- ``probe g``: the same with the gradient on the fixed probe batch (heads not refit on it).

If ``exact g_eval`` misranks as well, no better g_down repairs a first-order reward at that preset: the update
is too large for a first-order model of the held-out loss, and a measured value (``value_gain``) is needed.
Also printed: the cosine of each gradient with g_eval, and the realized drops.

Usage:
    python benchmarks/first_order_check.py --env vpt/SSL-Augment-v0 --size small --states 5 30
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import numpy as np
import torch

import vpt_gym  # noqa: F401
from vpt_gym.benchmark.validity import spearman


def _flat_dot(a, b) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))


def _cos(a, b) -> float:
    return _flat_dot(a, b) / max((_flat_dot(a, a) * _flat_dot(b, b)) ** 0.5, 1e-30)


def _gradient(loss: torch.Tensor, subset) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, subset, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(subset, grads, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="vpt/SSL-Augment-v0", help="a vision env id (its feedback has eval_objective)")
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--states", type=int, nargs="+", default=[5, 30], help="learner updates before each state")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if min(args.states) < 0:
        parser.error(f"--states must be >= 0, got {args.states}")
    torch.set_num_threads(args.threads)
    env = gym.make(args.env, size=args.size, device="cpu", budget=max(args.states) + 2)
    base = env.unwrapped
    if not hasattr(base.feedback, "eval_objective"):
        parser.error(f"{args.env}: its feedback set has no eval_objective (vision envs only)")
    base.evaluate_at_end = False
    env.reset(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    actions = list(range(base.action_space.n))
    subset = base.learner.alignment_parameters()
    rows = []
    for t in range(max(args.states) + 1):
        if t in args.states:
            gradients = {"env g_down": [g.detach().clone() for g in base.g_down],
                         "exact g_eval": _gradient(base.feedback.eval_objective(base.learner), subset),
                         "probe g": _gradient(base.feedback.loss(base.learner, base.feedback.probe_batch()), subset)}
            before, branches = base.counterfactual(actions, measure=base.feedback.eval_loss)
            realized = np.array([before - b.measured for b in branches])
            row = {"update": t, "realized_drop": realized.round(6).tolist(), "spearman": {}, "cosine_with_g_eval": {}}
            for name, g in gradients.items():
                start, moved = base.counterfactual(
                    actions, measure=lambda learner, g=g: _flat_dot(g, learner.alignment_parameters()))
                predicted = np.array([start - b.measured for b in moved])
                row["spearman"][name] = round(spearman(predicted, realized), 3)
                row["cosine_with_g_eval"][name] = round(_cos(g, gradients["exact g_eval"]), 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
        env.step(int(rng.integers(len(actions))))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"env": args.env, "size": args.size, "seed": args.seed, "states": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
