"""The ``vpt-gym`` command line: one small function per subcommand."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Sequence


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered id with its learner, task menu and reward, one line each."""
    from vpt_gym.envs import ENV_IDS

    for env_id, spec in ENV_IDS.items():
        print(f"{env_id}  learner: {spec['learner']}; tasks: {spec['tasks']}; reward: {spec['reward']}")
    return 0


def _env_kwargs(args: argparse.Namespace) -> dict:
    kwargs: dict = {"budget": args.budget, "reward": args.reward}
    if not args.env_id.startswith("vpt/Toy-"):
        kwargs.update(size=args.size, device=args.device)
        if args.data is not None:
            kwargs["data"] = str(Path(args.data).expanduser().resolve())
        if args.model is not None:
            kwargs["model"] = args.model
    elif args.data is not None or args.model is not None or args.size is not None:
        raise SystemExit(f"error: --data/--model/--size do not apply to the toy env {args.env_id} (it has no data "
                         "or model); drop them")
    return {k: v for k, v in kwargs.items() if v is not None}


def cmd_run(args: argparse.Namespace) -> int:
    """Run one episode of a designer and print/write its result."""
    import gymnasium as gym

    import vpt_gym  # noqa: F401  (registers the ids)
    from vpt_gym.agents import DESIGNERS, make_designer
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.runner import run_episode, write_json_atomic

    if args.env_id not in ENV_IDS:
        raise SystemExit(f"error: unknown env id {args.env_id!r}; registered: {sorted(ENV_IDS)}")
    if args.designer not in DESIGNERS and not args.designer.startswith("sb3:"):
        raise SystemExit(f"error: unknown designer {args.designer!r}; accepted: {sorted(DESIGNERS)} or sb3:RUN_DIR")
    if args.budget is not None and args.budget < 1:
        raise SystemExit(f"error: --budget must be >= 1, got {args.budget}")
    if args.out is not None and Path(args.out).is_dir():
        raise SystemExit(f"error: --out {args.out} is a folder; give a file path such as results/result.json")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        env = gym.make(args.env_id, **_env_kwargs(args))
        designer = make_designer(args.designer, env)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    result = run_episode(env, designer, seed=args.seed, progress=not args.no_progress)
    result["env_kwargs"] = _env_kwargs(args)
    summary = {k: result[k] for k in ("env_id", "designer", "seed", "return", "eval", "ledger", "feedback_source",
                                       "diverged", "wall_clock_s")}
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _hyperparameter_overrides(pairs: Sequence[str]) -> dict:
    """``["gamma=0.9", "policy_kwargs={\"net_arch\": [32, 32]}"]`` -> a dict; values are JSON, else strings."""
    overrides: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --hyperparameter takes KEY=VALUE, got {pair!r}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    """Train a Stable-Baselines3 designer and save its run folder (model.zip, config.json, ...)."""
    from vpt_gym.agents.sb3 import train
    from vpt_gym.envs import ENV_IDS

    if args.env_id not in ENV_IDS:
        raise SystemExit(f"error: unknown env id {args.env_id!r}; registered: {sorted(ENV_IDS)}")
    if args.budget is not None and args.budget < 1:
        raise SystemExit(f"error: --budget must be >= 1, got {args.budget}")
    if (Path(args.out) / "model.zip").exists() and not args.force:
        raise SystemExit(f"error: {args.out} already holds a trained model; choose another --out or pass --force")
    overrides = _hyperparameter_overrides(args.hyperparameter)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    env_kwargs = _env_kwargs(args)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # SB3's rich progress bar; stdout is the JSON summary
            out = train(args.env_id, args.algo, args.timesteps, args.seed, args.out, env_kwargs=env_kwargs,
                        progress=not args.no_progress, normalize=not args.no_normalize, overrides=overrides)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(json.dumps({"run_dir": str(out), "designer": f"sb3:{out}", "env_id": args.env_id, "algo": args.algo,
                      "timesteps": args.timesteps, "seed": args.seed, "env_kwargs": env_kwargs}, indent=2))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark suite (resumable) into a results JSONL file."""
    from vpt_gym.benchmark.runner import run_suite
    from vpt_gym.benchmark.suites import load_suite

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        suite = load_suite(args.suite)
        rows = run_suite(suite, args.out, designers=args.designers, seeds=args.seeds, workers=args.workers,
                         backend=args.backend, torch_threads=args.threads, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, ImportError, KeyError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(f"{len(rows)} episodes written to {args.out}; render with: vpt-gym leaderboard {args.out} --out DIR",
          file=sys.stderr)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """Render LEADERBOARD.md and plots from a results file."""
    from vpt_gym.benchmark.leaderboard import write_leaderboard
    from vpt_gym.benchmark.results import read_rows

    try:
        if not Path(args.results).is_file():
            raise FileNotFoundError(f"results file {args.results!r} does not exist; run `vpt-gym bench` first")
        rows = read_rows(args.results)
        target = write_leaderboard(rows, args.out, source=Path(args.results).name, plots=not args.no_plots,
                                   command=args.command_note, reps=args.reps)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(target.read_text())
    print(f"wrote {target}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Replay rows of a results file and check their eval metrics; exit 1 on a mismatch."""
    from vpt_gym.benchmark.results import read_rows
    from vpt_gym.benchmark.validate import validate_row

    rows = read_rows(args.results) if Path(args.results).is_file() else None
    if not rows:
        raise SystemExit(f"error: results file {args.results!r} is missing or empty")
    indices = range(len(rows)) if args.row is None else [args.row]
    for i in indices:
        if not 0 <= i < len(rows):
            raise SystemExit(f"error: --row {i} is outside 0..{len(rows) - 1}")
    failed = 0
    for i in indices:
        report = validate_row(rows[i])
        r = rows[i]
        status = "ok" if report["ok"] else "MISMATCH"
        print(f"row {i}: {r['env_id']} {r['designer']} seed {r['seed']}: {status} ({report['mode']}, "
              f"tolerance {report['tolerance']})")
        for key, (recorded, replayed) in report["mismatches"].items():
            print(f"  {key}: recorded {recorded}, replayed {replayed}")
        failed += not report["ok"]
    return 1 if failed else 0


def _add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """The env id and the ``gymnasium.make`` options shared by ``run`` and ``train`` (see :func:`_env_kwargs`)."""
    parser.add_argument("env_id", help="a registered id, e.g. vpt/LM-SoftTargets-v0")
    parser.add_argument("--budget", type=int, default=None, help="learner updates per episode (default: preset)")
    parser.add_argument("--reward", default=None, help="alignment | cosine | value_gain | metric_gain | advantage")
    parser.add_argument("--size", default=None, choices=["tiny", "small", "paper"], help="LM preset (default tiny)")
    parser.add_argument("--data", default=None, help="data folder with gsm8k/ (default $VPT_GYM_DATA, else the hub "
                        "when online, else the embedded reasoning-gym default)")
    parser.add_argument("--model", default=None, help="size=paper: local path or hub id of a causal LM")
    parser.add_argument("--device", default="auto", help="learner device: auto | cpu | cuda")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vpt-gym``."""
    from vpt_gym.agents.sb3 import ALGOS  # names only: SB3 itself is imported by `train`

    parser = argparse.ArgumentParser(prog="vpt-gym", description="Task-design environments for (continued) pretraining.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registered env ids").set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run one episode of a designer")
    _add_env_arguments(run)
    run.add_argument("--designer", default="fixed", help="designer name (default: fixed), or sb3:RUN_DIR for a "
                     "model saved by `vpt-gym train`")
    run.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    run.add_argument("--out", default=None, help="write the full result (with action log) as JSON here")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(func=cmd_run)
    train = sub.add_parser("train", help="train a Stable-Baselines3 designer (needs vpt-gym[sb3])")
    _add_env_arguments(train)
    train.add_argument("--algo", default="ppo", choices=sorted(ALGOS),
                       help="SB3 algorithm with the presets of vpt_gym.agents.sb3.ALGOS (default ppo)")
    train.add_argument("--timesteps", type=int, required=True,
                       help="decisions to train for (>= 1; on-policy algos round up to whole rollouts)")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--out", required=True, help="run folder: model.zip, config.json, vecnormalize.pkl, tb/")
    train.add_argument("--hyperparameter", action="append", default=[], metavar="KEY=VALUE",
                       help="override a preset hyperparameter (repeatable; VALUE is JSON), e.g. gamma=0.9")
    train.add_argument("--no-normalize", action="store_true", help="no VecNormalize of observations and rewards")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--force", action="store_true", help="overwrite a run folder that already holds a model")
    train.set_defaults(func=cmd_train)
    bench = sub.add_parser("bench", help="run a benchmark suite into a results JSONL file (resumable)")
    bench.add_argument("suite", help="suite TOML file, e.g. benchmarks/suites/tiny.toml")
    bench.add_argument("--out", required=True, help="results JSONL file (appended; finished rows are skipped)")
    bench.add_argument("--designers", nargs="+", default=None, help="only these designer labels of the suite")
    bench.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds of the suite")
    bench.add_argument("--workers", type=int, default=1, help="episodes at once (default 1: in this process)")
    bench.add_argument("--backend", default="local", choices=["local", "ray"],
                       help="local worker processes, or Ray tasks (RAY_ADDRESS, else a local Ray instance)")
    bench.add_argument("--threads", type=int, default=None, help="torch threads per episode (default cores/workers)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.set_defaults(func=cmd_bench)
    board = sub.add_parser("leaderboard", help="render LEADERBOARD.md and plots from a results file")
    board.add_argument("results", help="results JSONL written by `vpt-gym bench`")
    board.add_argument("--out", default="leaderboard", help="output folder (default ./leaderboard)")
    board.add_argument("--no-plots", action="store_true", help="tables only")
    board.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    board.add_argument("--command-note", default=None, help="the command that regenerates the results (shown)")
    board.set_defaults(func=cmd_leaderboard)
    validate = sub.add_parser("validate", help="replay rows of a results file and check their eval metrics")
    validate.add_argument("results", help="results JSONL written by `vpt-gym bench`")
    validate.add_argument("--row", type=int, default=None, help="only this row (0-based; default: all)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vpt-gym`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
