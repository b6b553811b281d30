"""Step time of an LM env vs a plain pretraining loop of the same learner on the same batches.

Prints per-step medians and their ratio (env / plain), measured in one process, plus a JSON line.
Usage: python benchmarks/overhead.py [--size small] [--steps 40] [--device auto] [--reward alignment]
       [--feedback-period 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium as gym
import torch

import vpt_gym  # noqa: F401


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env-id", default="vpt/LM-SoftTargets-v0")
    parser.add_argument("--size", default="small")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reward", default="alignment")
    parser.add_argument("--feedback-period", type=int, default=8)
    args = parser.parse_args()
    total = args.steps + args.warmup
    env = gym.make(args.env_id, size=args.size, budget=total, device=args.device, reward=args.reward,
                   feedback_period=args.feedback_period).unwrapped
    learner, task_space, stream = env.learner, env.task_space, env.stream
    device = learner.device
    standard = task_space.task(env.standard_action)

    # (a) plain pretraining loop: same learner, same batches (same data seed), one-hot task
    env.reset(seed=0)
    batches = [stream.next_batch() for _ in range(total)]
    learner.reset()
    plain = []
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        loss = task_space.loss(batch, learner.forward(batch), standard)
        learner.backward(loss)
        learner.apply_update()
        float(loss.detach())
        _sync(device)
        plain.append(time.perf_counter() - start)

    # (b) the env stepping the fixed designer (standard task)
    env.evaluate_at_end = False
    env.reset(seed=0)
    stepped = []
    for _ in range(total):
        _sync(device)
        start = time.perf_counter()
        env.step(env.standard_action)
        _sync(device)
        stepped.append(time.perf_counter() - start)

    p = statistics.median(plain[args.warmup:])
    e = statistics.median(stepped[args.warmup:])
    pm = statistics.mean(plain[args.warmup:])
    em = statistics.mean(stepped[args.warmup:])
    row = {"env_id": args.env_id, "size": args.size, "device": str(device), "reward": args.reward,
           "feedback_period": args.feedback_period, "steps": args.steps, "plain_median_s": p, "env_median_s": e,
           "ratio_median": e / p, "plain_mean_s": pm, "env_mean_s": em, "ratio_mean": em / pm,
           "params": learner.num_parameters, "alignment_params": learner.num_alignment_parameters}
    print(f"{args.env_id} size={args.size} device={device} reward={args.reward} feedback_period={args.feedback_period}")
    print(f"  plain step median {p * 1e3:8.2f} ms   env step median {e * 1e3:8.2f} ms   ratio {e / p:.3f}")
    print(f"  plain step mean   {pm * 1e3:8.2f} ms   env step mean   {em * 1e3:8.2f} ms   ratio {em / pm:.3f}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
