"""The ``vpt-gym`` command line: one small function per subcommand."""

from __future__ import annotations

import argparse
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
    if args.env_id.startswith("vpt/LM-"):
        kwargs.update(size=args.size, device=args.device)
        if args.data is not None:
            kwargs["data"] = str(Path(args.data).expanduser().resolve())
        if args.model is not None:
            kwargs["model"] = args.model
    elif args.data is not None or args.model is not None or args.size is not None:
        raise SystemExit(f"error: --data/--model/--size apply to vpt/LM-* envs only, not {args.env_id}")
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
    if args.designer not in DESIGNERS:
        raise SystemExit(f"error: unknown designer {args.designer!r}; accepted: {sorted(DESIGNERS)}")
    if args.budget is not None and args.budget < 1:
        raise SystemExit(f"error: --budget must be >= 1, got {args.budget}")
    if args.out is not None and Path(args.out).is_dir():
        raise SystemExit(f"error: --out {args.out} is a folder; give a file path such as results/result.json")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        env = gym.make(args.env_id, **_env_kwargs(args))
        designer = make_designer(args.designer, env)
    except (ValueError, FileNotFoundError) as exc:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vpt-gym``."""
    parser = argparse.ArgumentParser(prog="vpt-gym", description="Task-design environments for (continued) pretraining.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list registered env ids").set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run one episode of a designer")
    run.add_argument("env_id", help="a registered id, e.g. vpt/LM-SoftTargets-v0")
    run.add_argument("--designer", default="fixed", help="designer name (default: fixed)")
    run.add_argument("--budget", type=int, default=None, help="learner updates per episode (default: preset)")
    run.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    run.add_argument("--reward", default=None, help="alignment | cosine | value_gain | metric_gain | advantage")
    run.add_argument("--size", default=None, choices=["tiny", "small", "paper"], help="LM preset (default tiny)")
    run.add_argument("--data", default=None, help="data folder with gsm8k/ (default $VPT_GYM_DATA, else the hub when online, "
                     "else the embedded reasoning-gym default)")
    run.add_argument("--model", default=None, help="size=paper: local path or hub id of a causal LM")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda")
    run.add_argument("--out", default=None, help="write the full result (with action log) as JSON here")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vpt-gym`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
