"""What the suite adds to a pretraining step: env step vs a plain training loop of the same learner.

For each reward and feedback period, two copies of the env are built from the same cached resources; one is
driven as a plain pretraining loop (sample batch, task view, forward, standard-task loss, backward, optimizer
step: no feedback, no alignment, no observation), the other steps the fixed designer through the env.
Steps of the two alternate (plain, env, plain, env, ...), so background load hits both alike, and both see
the same batches (same data seed). Reported per step: medians, the ratio env/plain, and where the env's time
goes (learner forward/backward/update, feedback gradient, alignment, observation, probe). Then the greedy
look-ahead over K soft-target tasks (K = 1, 4, 16) vs a single-task env step, with the forward-mode pass and
with one backward per task. Peak memory of each loop is measured in a fresh child process (CUDA: peak
allocated; CPU: peak RSS growth over the process after the env is built).

Usage:
    python benchmarks/overhead.py --env lm --size small            # ratio table, greedy K sweep, memory
    python benchmarks/overhead.py --env vision --size small
    python benchmarks/overhead.py --env lm --device cuda --dtype bfloat16 --json overhead.json
    python benchmarks/overhead.py --env lm --feedback-periods 1 --rewards alignment --set feedback_batch_size=4
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import multiprocessing
import resource
import statistics
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import vpt_gym  # noqa: F401

ENV_OF = {"lm": "vpt/LM-SoftTargets-v1", "lm-v0": "vpt/LM-SoftTargets-v0", "domains": "vpt/LM-Domains-v1",
          "vision": "vpt/SSL-Augment-v1", "simclr": "vpt/SSL-Augment-v2", "simclr-v3": "vpt/SSL-Augment-v3",
          "mask": "vpt/SSL-Mask-v1"}
"""``--env`` aliases (``lm-v0`` the published v0 LM; ``vision`` the DINO SSL-Augment-v1, ``simclr`` its v2,
``simclr-v3`` v2 plus the keep-mask tasks)."""
SOFT_TARGET_ENVS = ("lm", "lm-v0")
"""Aliases whose look-ahead sweep is the 17-task soft-target menu (the others time one candidate)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


DTYPE: str | None = None
"""``--dtype`` (LM envs only): weights and activations of the learner; None keeps the preset's."""
ENV_KWARGS: dict[str, Any] = {}
"""``--set KEY=VALUE`` env keywords (e.g. ``feedback_batch_size=4``), given to every env built here."""


def make_env(env_id: str, size: str, device: str, reward: str, period: int, budget: int, **extra: Any):
    if DTYPE is not None and env_id.startswith("vpt/LM-"):
        extra.setdefault("dtype", DTYPE)
    extra = {**ENV_KWARGS, **extra}
    env = gym.make(env_id, size=size, budget=budget, device=device, reward=reward, feedback_period=period,
                   **extra).unwrapped
    env.evaluate_at_end = False
    return env


RESERVED = ("size", "budget", "device", "reward", "feedback_period", "dtype")
"""Env keywords the script sets itself (through its own options); ``--set`` may not override them."""


def parse_env_kwargs(items: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """``["feedback_batch_size=4", ...]`` -> ``{"feedback_batch_size": 4}`` (values read as Python literals,
    else kept as strings); a malformed item is a usage error naming it."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--set {item!r}: expected KEY=VALUE with KEY a keyword name")
        if key in RESERVED:
            parser.error(f"--set {key}=...: use the script's own option for {key!r} (--{key.replace('_', '-')})")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def plain_step(env) -> None:
    """One plain pretraining update of ``env``'s learner on the pending batch (standard task), then the next
    batch of its stream becomes pending: the batch order of the env's own steps (tested bitwise)."""
    learner, task_space = env.learner, env.task_space
    standard = task_space.task(env.standard_action)
    batch, env.pending.batch = env.pending.batch, env.stream.next_batch()
    if getattr(task_space, "task_dependent_forward", False):
        batch = task_space.materialize(batch, standard)
    loss = task_space.loss(batch, learner.forward(batch), standard)
    learner.backward(loss)
    learner.apply_update()
    float(loss.detach())  # the one host sync a training loop does for logging


class Breakdown:
    """Wall-clock per labelled call, accumulated by wrapping bound methods / module functions (benchmark only)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.depth = 0

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if self.depth:  # count only the outermost labelled call
                return original(*args, **kwargs)
            self.depth += 1
            _sync(self.device)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _sync(self.device)
                self.seconds[label] += time.perf_counter() - start
                self.depth -= 1

        setattr(owner, name, timed)


def instrument(env) -> Breakdown:
    import vpt_gym.envs.task_design.env as td

    device = env.learner.device
    b = Breakdown(device)
    b.wrap(env.learner, "forward", "learner forward")
    b.wrap(env.learner, "backward", "learner backward")
    b.wrap(env.learner, "apply_update", "learner update")
    b.wrap(env.task_space, "describe", "batch descriptors")
    b.wrap(env.feedback_gradient, "refresh", "feedback gradient")
    b.wrap(env.probe, "outcome", "reward probe")
    b.wrap(env, "_observation", "observation")
    b.wrap(td, "gradient_stats", "alignment")
    return b


def measure(args, reward: str, period: int) -> dict[str, Any]:
    total = args.steps + args.warmup
    env_id = ENV_OF[args.env]
    plain_env = make_env(env_id, args.size, args.device, reward, period, total + 1)
    stepped_env = make_env(env_id, args.size, args.device, reward, period, 2 * total + 1)
    device = plain_env.learner.device
    plain_env.reset(seed=0)
    stepped_env.reset(seed=0)
    # The breakdown synchronises around every labelled call. On CPU that costs nothing, so it is taken during
    # the timed steps; on CUDA it would break the asynchronous launch queue, so the timed steps run
    # uninstrumented and the breakdown comes from further steps of the same env afterwards.
    breakdown = instrument(stepped_env) if device.type != "cuda" else None
    plain, stepped = [], []
    for i in range(total):
        if i == args.warmup and breakdown is not None:
            breakdown.seconds.clear()
        _sync(device)
        start = time.perf_counter()
        plain_step(plain_env)
        _sync(device)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        stepped_env.step(stepped_env.standard_action)
        _sync(device)
        stepped.append(time.perf_counter() - start)
    summary = summarize(plain, stepped, args.warmup)
    instrumented_mean = statistics.mean(stepped[args.warmup:])
    if breakdown is None:
        breakdown = instrument(stepped_env)
        start = time.perf_counter()
        for _ in range(args.steps):
            stepped_env.step(stepped_env.standard_action)
        _sync(device)
        instrumented_mean = (time.perf_counter() - start) / args.steps
    parts = {k: v / args.steps for k, v in sorted(breakdown.seconds.items())}
    parts["other"] = max(instrumented_mean - sum(parts.values()), 0.0)
    return {"reward": reward, "feedback_period": period, **summary,
            "env_breakdown_ms": {k: v * 1e3 for k, v in parts.items()}}


def summarize(plain: list[float], stepped: list[float], warmup: int) -> dict[str, float]:
    """Medians and means (ms) of the per-step seconds after ``warmup`` steps, and their ratios env / plain."""
    p, e = statistics.median(plain[warmup:]), statistics.median(stepped[warmup:])
    pm, em = statistics.mean(plain[warmup:]), statistics.mean(stepped[warmup:])
    return {"plain_median_ms": p * 1e3, "env_median_ms": e * 1e3, "ratio_median": e / p,
            "plain_mean_ms": pm * 1e3, "env_mean_ms": em * 1e3, "ratio_mean": em / pm}


def measure_task_dependent_lookahead(args) -> list[dict[str, Any]]:
    """Per-candidate look-ahead cost of a task-dependent family (vision): forward + backward vs forward mode."""
    env = make_env(ENV_OF[args.env], args.size, args.device, "alignment", 8, 4 * (args.steps + args.warmup) + 1)
    device = env.learner.device
    env.reset(seed=0)
    n = min(3, env.action_space.n)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(max(args.steps // 4, 3) + 1):
        for label, per_task in (("step", None), ("backward", False), ("jvp", True)):
            _sync(device)
            start = time.perf_counter()
            if per_task is None:
                env.step(env.standard_action)
            else:
                env.forward_mode_per_task = per_task
                env.lookahead_values(list(range(n)))
            _sync(device)
            if r:
                times[label].append((time.perf_counter() - start) / (1 if per_task is None else n))
    step = statistics.median(times["step"])
    return [{"K": 1, "candidates": n, "lookahead": mode, "median_ms": statistics.median(times[mode]) * 1e3,
             "ratio_vs_step": statistics.median(times[mode]) / step} for mode in ("backward", "jvp")]


def measure_lookahead(args) -> list[dict[str, Any]]:
    """Greedy look-ahead over the first K tasks of a 17-task soft-target menu + the step, vs the step alone."""
    if args.env not in SOFT_TARGET_ENVS:
        return measure_task_dependent_lookahead(args)
    alphas = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)  # menu: one_hot + 8 uniform + 8 self = 17 tasks
    ks = [k for k in args.lookahead_k if k <= 17]
    rounds = args.steps + args.warmup
    env = make_env(ENV_OF[args.env], args.size, args.device, "alignment", 8, rounds * (1 + 2 * len(ks)) + 1,
                   alphas=alphas)
    device = env.learner.device
    env.reset(seed=0)
    times: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(rounds):
        for label, k, forward_mode in [("step", 0, True)] + [(f"K={k} jvp", k, True) for k in ks] + \
                                      [(f"K={k} backward", k, False) for k in ks]:
            env.forward_mode_lookahead = forward_mode
            _sync(device)
            start = time.perf_counter()
            action = env.standard_action
            if k:
                values = env.lookahead_values(list(range(k)))
                action = int(np.argmax(values))
            env.step(action)
            _sync(device)
            if r >= args.warmup:
                times[label].append(time.perf_counter() - start)
    step = statistics.median(times["step"])
    out = []
    for k in ks:
        for mode in ("jvp", "backward"):
            t = statistics.median(times[f"K={k} {mode}"])
            out.append({"K": k, "lookahead": mode, "median_ms": t * 1e3, "ratio_vs_step": t / step})
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def _peak_child(env_id: str, size: str, device: str, mode: str, period: int, steps: int, dtype: str | None,
                env_kwargs: dict[str, Any], queue) -> None:
    import threading

    global DTYPE
    DTYPE = dtype  # a spawned child does not inherit the parent's --dtype and --set
    ENV_KWARGS.update(env_kwargs)

    torch.set_num_threads(1)
    env = make_env(env_id, size, device, "alignment", period, steps + 1)
    env.reset(seed=0)
    dev = env.learner.device
    peak = {"rss": 0}
    stop = threading.Event()

    def sample() -> None:  # CPU: the resident set, sampled every millisecond during the loop
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], _rss_bytes())
            stop.wait(0.001)

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _rss_bytes()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
    for _ in range(steps):
        plain_step(env) if mode == "plain" else env.step(env.standard_action)
    if dev.type == "cuda":
        top = torch.cuda.max_memory_allocated(dev)
    else:
        stop.set()
        sampler.join()
        top = max(peak["rss"], _rss_bytes())
    queue.put({"base_bytes": int(base), "peak_bytes": int(top)})


def measure_memory(args) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = {}
    period = min(args.feedback_periods)  # the most frequent feedback refresh: the env's worst case
    for mode in ("plain", "env"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_child, args=(ENV_OF[args.env], args.size, args.device, mode, period, 12,
                                                     args.dtype, ENV_KWARGS, queue))
        proc.start()
        out[mode] = queue.get()
        proc.join()
    kind = "cuda peak allocated" if args.device == "cuda" else "peak RSS (sampled each ms)"
    return {"kind": kind, "feedback_period": period, "plain": out["plain"], "env": out["env"],
            **memory_ratios(out["plain"], out["env"])}


def memory_ratios(plain: dict[str, int], env: dict[str, int]) -> dict[str, float]:
    """env / plain of the peak bytes, and of the growth over the built env (peak - base, at least 1 byte)."""
    growth = {m: max(v["peak_bytes"] - v["base_bytes"], 1) for m, v in (("plain", plain), ("env", env))}
    return {"ratio_peak": env["peak_bytes"] / plain["peak_bytes"], "ratio_growth": growth["env"] / growth["plain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", choices=sorted(ENV_OF), default="lm",
                        help=", ".join(f"{k} = {v}" for k, v in ENV_OF.items()))
    parser.add_argument("--size", default="small", help="preset: tiny | small | paper")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per setting (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"],
                        help="LM learner weights/activations (default: the preset's; vision is float32)")
    parser.add_argument("--rewards", nargs="+", default=["alignment", "cosine", "value_gain"],
                        help="reward modes to time, one table row each (with each feedback period)")
    parser.add_argument("--feedback-periods", nargs="+", type=int, default=[1, 8],
                        help="g_down refresh periods (decisions) to time")
    parser.add_argument("--lookahead-k", nargs="+", type=int, default=[1, 4, 16],
                        help="menu sizes K of the greedy look-ahead sweep (rows 'jvp' = forward mode, "
                             "'backward' = one backward per task)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an env keyword for every env built, e.g. --set feedback_batch_size=4 (LM envs); "
                             "VALUE is read as a Python literal, else kept as a string; repeatable")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    global DTYPE
    DTYPE = args.dtype
    ENV_KWARGS.clear()
    ENV_KWARGS.update(parse_env_kwargs(args.set, parser))
    probe = make_env(ENV_OF[args.env], args.size, args.device, args.rewards[0], args.feedback_periods[0], 2)
    learner = probe.learner
    info = {"env_id": ENV_OF[args.env], "size": args.size, "device": str(learner.device),
            "dtype": str(next(learner.module.parameters()).dtype).removeprefix("torch."),
            "torch_threads": torch.get_num_threads(), "params": learner.num_parameters,
            "alignment_params": learner.num_alignment_parameters, "steps": args.steps}
    del probe, learner
    print(f"{info['env_id']} size={args.size} device={info['device']} dtype={info['dtype']} "
          f"params={info['params']:,} (S: {info['alignment_params']:,}) threads={info['torch_threads']} "
          f"steps={args.steps} env keywords {ENV_KWARGS or '{}'}")
    print(f"{'reward':<15}{'period':>7}{'plain ms':>10}{'env ms':>10}{'ratio':>8}{'mean ratio':>12}   "
          "env time (ms/step)")
    rows = []
    for period in args.feedback_periods:
        for reward in args.rewards:  # each row printed as soon as it is measured
            r = measure(args, reward, period)
            rows.append(r)
            parts = ", ".join(f"{k} {v:.1f}" for k, v in r["env_breakdown_ms"].items() if v >= 0.05)
            print(f"{r['reward']:<15}{r['feedback_period']:>7}{r['plain_median_ms']:>10.2f}"
                  f"{r['env_median_ms']:>10.2f}{r['ratio_median']:>8.3f}{r['ratio_mean']:>12.3f}   {parts}", flush=True)
    lookahead = measure_lookahead(args)
    if lookahead:
        print("greedy look-ahead over K soft-target tasks + the step, vs a single-task env step (median):"
              if args.env in SOFT_TARGET_ENVS else "look-ahead per candidate task (no step), vs an env step (median):")
        for r in lookahead:
            label = f"K={r['K']:<3}" if "candidates" not in r else f"per candidate (mean of {r['candidates']})"
            print(f"  {label} {r['lookahead']:<9} {r['median_ms']:8.2f} ms   ratio {r['ratio_vs_step']:.3f}")
    memory = None if args.no_memory else measure_memory(args)
    if memory:
        print(f"memory ({memory['kind']}, feedback_period {memory['feedback_period']}): env/plain peak "
              f"{memory['ratio_peak']:.3f}, growth over the built env {memory['ratio_growth']:.3f} "
              f"({(memory['env']['peak_bytes'] - memory['env']['base_bytes']) / 2**20:.1f} MiB vs "
              f"{(memory['plain']['peak_bytes'] - memory['plain']['base_bytes']) / 2**20:.1f} MiB)")
    result = {**info, "env_kwargs": ENV_KWARGS, "rows": rows, "lookahead": lookahead, "memory": memory}
    if args.json:
        from vpt_gym.runner import write_json_atomic

        write_json_atomic(args.json, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
