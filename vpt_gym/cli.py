"""The ``vpt-gym`` command line: one small function per subcommand."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

CARD_HEADINGS = ("Description", "Action Space", "Observation Space", "Reward", "Episode End", "Budget", "Arguments",
                 "Raises", "Version History")
"""The sections of an env card (the Gymnasium card headings), in the order ``vpt-gym list --markdown`` renders."""
_LIST_SECTIONS = ("Arguments", "Raises", "Version History")


def _md(text: str) -> str:
    """Docstring markup to Markdown: ``x`` and :role:`~a.b` become `x` and `a.b`."""
    text = re.sub(r":(?:class|func|data|meth|mod|attr|obj):`~?([^`]+)`", r"``\1``", text)
    return text.replace("``", "`")


def parse_card(doc: str) -> tuple[str, dict[str, list[str]]]:
    """(summary line, {heading: lines dedented to the heading's body}) of an env factory's docstring.

    Raises:
        ValueError: the docstring lacks one of :data:`CARD_HEADINGS` (the message names them).
    """
    import inspect

    lines = inspect.cleandoc(doc).splitlines()
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines[1:]:
        if line.rstrip(":") in CARD_HEADINGS and line.endswith(":") and not line.startswith(" "):
            current = sections.setdefault(line[:-1], [])
        elif current is not None:
            current.append(line[4:] if line.startswith("    ") else line.strip())
    missing = [h for h in CARD_HEADINGS if h not in sections]
    if missing:
        raise ValueError(f"env card {lines[0]!r} lacks the heading(s) {missing}")
    return lines[0], sections


def render_card(env_id: str, doc: str) -> str:
    """One env card as Markdown: a ``<details>`` block with the card's sections in :data:`CARD_HEADINGS` order."""
    summary, sections = parse_card(doc)
    title = re.sub(r"`([^`]+)`", r"<code>\1</code>", _md(summary).removeprefix(f"Build `{env_id}`: "))
    out = [f"<details><summary><code>{env_id}</code>: {title}</summary>", ""]
    for heading in CARD_HEADINGS:
        body = sections[heading]
        while body and not body[-1].strip():
            body.pop()
        out += [f"**{heading}**", ""]
        if heading in _LIST_SECTIONS:
            items: list[str] = []
            for line in body:
                if not line.strip():
                    continue
                if line.startswith(" ") and items:
                    items[-1] += " " + line.strip()
                else:
                    items.append(line.strip())
            out += [f"- {_md(item)}" for item in items]
        else:
            out += [_md(line.strip()) if not line.startswith("|") else _md(line) for line in body]
        out.append("")
    out.append("</details>")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table() -> str:
    """The env table of ``vpt-gym list --markdown``: one row per registered id."""
    from vpt_gym.envs import ENV_IDS

    rows = ["| id | learner | task menu (action) | feedback | reward modes | presets | CPU ms/step |",
            "|---|---|---|---|---|---|---|"]
    for env_id, spec in ENV_IDS.items():
        presets = ", ".join(f"`{p}`" for p in spec["presets"]) or "-"
        rewards = ", ".join(f"`{r}`" for r in spec["rewards"])
        cost = ", ".join(f"{k} {v:g}" if k != "default" else f"{v:g}" for k, v in spec["cpu_step_ms"].items())
        rows.append(f"| `{env_id}` | {_cell(spec['learner'])} | {_cell(spec['tasks'])} | {_cell(spec['reward'])} | "
                    f"{rewards} | {presets} | {cost} |")
    return "\n".join(rows)


def render_markdown() -> str:
    """``vpt-gym list --markdown``: the env table, then every env's card rendered from its factory docstring."""
    import importlib

    from vpt_gym.envs import ENV_IDS

    parts = [markdown_table(), "",
             "CPU ms/step: mean wall-clock time of one `env.step` (fixed designer, `alignment` reward, feedback "
             "period 8, one torch thread); see `vpt_gym.envs.ENV_IDS`. Every env accepts every reward mode; "
             "the first is the default.", ""]
    for env_id, spec in ENV_IDS.items():
        module, _, name = spec["entry_point"].partition(":")
        factory = getattr(importlib.import_module(module), name)
        parts += [render_card(env_id, factory.__doc__ or ""), ""]
    return "\n".join(parts).rstrip() + "\n"


README_BEGIN = "<!-- BEGIN vpt-gym list --markdown -->\n"
README_END = "<!-- END vpt-gym list --markdown -->"


def update_readme(path: str | Path) -> None:
    """Replace the text between :data:`README_BEGIN` and :data:`README_END` in ``path`` by
    :func:`render_markdown` (how README.md's env section is regenerated).

    Raises:
        ValueError: ``path`` lacks the two markers.
    """
    target = Path(path)
    text = target.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{target} lacks the markers {README_BEGIN.strip()!r} ... {README_END!r}")
    begin, end = text.index(README_BEGIN) + len(README_BEGIN), text.index(README_END)
    target.write_text(text[:begin] + render_markdown() + text[end:], encoding="utf-8")


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered id with its learner, task menu and reward, one line each (or ``--markdown``)."""
    from vpt_gym.envs import ENV_IDS

    if args.markdown:
        print(render_markdown(), end="")
        return 0
    for env_id, spec in ENV_IDS.items():
        print(f"{env_id}  learner: {spec['learner']}; tasks: {spec['tasks']}; reward: {spec['reward']}")
    return 0


_OPTION_KEYWORDS = {"budget": "--budget", "reward": "--reward", "size": "--size", "device": "--device",
                    "data": "--data", "model": "--model"}
"""Env keywords that have their own option (``--set`` refuses them)."""


def set_overrides(env_id: str, pairs: Sequence[str]) -> dict:
    """``--set KEY=VALUE`` pairs as ``gymnasium.make`` keywords (VALUE is JSON, else a string), checked
    against the env's keywords before anything is built.

    Raises:
        SystemExit: a pair without ``=``, a keyword the env does not take (the message lists them), or one with
            its own option.
    """
    from vpt_gym.envs import env_keywords

    accepted = env_keywords(env_id)
    overrides: dict = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --set takes KEY=VALUE, got {pair!r}")
        if key in _OPTION_KEYWORDS:
            raise SystemExit(f"error: --set {key}=...: use {_OPTION_KEYWORDS[key]}")
        if key not in accepted:
            raise SystemExit(f"error: --set {key}=...: {env_id} has no keyword {key!r}; accepted: "
                             f"{[k for k in accepted if k not in _OPTION_KEYWORDS]}")
        try:
            overrides[key] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key] = raw
    return overrides


def _env_kwargs(args: argparse.Namespace) -> dict:
    kwargs: dict = {"budget": args.budget, "reward": args.reward}
    if not args.env_id.startswith("vpt/Toy-"):
        kwargs.update(size=args.size, device="auto" if args.device is None else args.device)
        if args.data is not None:  # a folder (made absolute), or a built-in data name (vision: mnist5k, digits)
            folder = Path(args.data).expanduser()
            kwargs["data"] = str(folder.resolve()) if folder.exists() else args.data
        if args.model is not None:
            kwargs["model"] = args.model
    elif args.data is not None or args.model is not None or args.size is not None or args.device is not None:
        raise SystemExit(f"error: --data/--model/--size/--device do not apply to the toy env {args.env_id} (it has "
                         "no data or model and runs on the CPU); drop them")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    kwargs.update(set_overrides(args.env_id, args.set))
    return kwargs


def theta0_eval(env) -> dict[str, float]:
    """The held-out eval of the base checkpoint theta_0 (the reference an episode's ``eval`` improves on).

    Resets ``env`` (so call it after the episode: the reset restores theta_0 bit-for-bit) and runs the eval
    split on the learner as it is; the same numbers for every designer and seed of an env configuration.
    """
    import torch

    base = env.unwrapped
    base.reset(seed=0)
    with torch.no_grad():
        return {k: float(v) for k, v in base.feedback.evaluate(base.learner).items()}


THREADS_NOTE = ("note: {threads} torch threads (torch's default here); a CPU rerun reproduces this result bitwise "
                "only with the same count: --threads {threads} (`vpt-gym bench` rows record theirs in torch_threads)")
"""Printed on stderr by ``run``/``train`` without ``--threads`` when torch uses more than one thread."""


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[int]:
    """Within the block torch uses ``threads`` CPU threads (its current count for ``None``); yields the count
    and restores the previous one on exit.

    Raises:
        SystemExit: ``threads`` < 1.
    """
    from vpt_gym.utils import torch_threads

    if threads is not None and threads < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {threads}")
    with torch_threads(threads) as count:
        yield count


def cmd_run(args: argparse.Namespace) -> int:
    """Run one episode of a designer and print/write its result."""
    import gymnasium as gym

    import vpt_gym  # noqa: F401  (registers the ids)
    from vpt_gym.agents import DESIGNERS, load_designer_class, make_designer
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.atomic import write_json_atomic
    from vpt_gym.runner import run_episode

    if args.env_id not in ENV_IDS:
        raise SystemExit(f"error: unknown env id {args.env_id!r}; registered: {sorted(ENV_IDS)}")
    if args.designer not in DESIGNERS and ":" not in args.designer:
        raise SystemExit(f"error: unknown designer {args.designer!r}; accepted: {sorted(DESIGNERS)}, sb3:RUN_DIR (a "
                         "model saved by `vpt-gym train`) or your own class as FILE.py:ClassName")
    if ":" in args.designer and not args.designer.startswith("sb3:"):
        try:  # import the user's designer file before the (slow) env build
            load_designer_class(args.designer)
        except (ValueError, FileNotFoundError, ImportError) as exc:
            raise SystemExit(f"error: {exc}") from exc
    if args.budget is not None and args.budget < 1:
        raise SystemExit(f"error: --budget must be >= 1, got {args.budget}")
    if args.out is not None and Path(args.out).is_dir():
        raise SystemExit(f"error: --out {args.out} is a folder; give a file path such as results/result.json")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _torch_threads(args.threads) as threads:
        try:
            env = gym.make(args.env_id, **_env_kwargs(args))
            designer = make_designer(args.designer, env)
        except (ValueError, FileNotFoundError, ImportError, TypeError) as exc:
            raise SystemExit(f"error: {exc}") from exc
        result = run_episode(env, designer, seed=args.seed, progress=not args.no_progress)
        if not args.no_reference:
            result["eval_theta0"] = theta0_eval(env)
        env.close()
    result["env_kwargs"] = _env_kwargs(args)
    keys = ("env_id", "designer", "seed", "return", "eval", "eval_theta0", "ledger", "feedback_source", "diverged",
            "wall_clock_s", "torch_threads")
    summary = {k: result[k] for k in keys if k in result}
    print(json.dumps(summary, indent=2))
    if "eval_theta0" in result:
        pairs = [f"{k} {v:.6g} (theta_0 {result['eval_theta0'][k]:.6g})" for k, v in result["eval"].items()
                 if isinstance(v, (int, float)) and k in result["eval_theta0"]]
        print("eval after the episode vs the base checkpoint: " + ", ".join(pairs), file=sys.stderr)
    if args.threads is None and threads > 1:
        print(THREADS_NOTE.format(threads=threads), file=sys.stderr)
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
    with _torch_threads(args.threads) as threads:
        try:
            with contextlib.redirect_stdout(sys.stderr):  # SB3's rich progress bar; stdout is the JSON summary
                out = train(args.env_id, args.algo, args.timesteps, args.seed, args.out, env_kwargs=env_kwargs,
                            progress=not args.no_progress, normalize=not args.no_normalize, overrides=overrides)
        except (ValueError, FileNotFoundError, ImportError) as exc:
            raise SystemExit(f"error: {exc}") from exc
    print(json.dumps({"run_dir": str(out), "designer": f"sb3:{out}", "env_id": args.env_id, "algo": args.algo,
                      "timesteps": args.timesteps, "seed": args.seed, "env_kwargs": env_kwargs,
                      "torch_threads": threads}, indent=2))
    if args.threads is None and threads > 1:
        print(THREADS_NOTE.format(threads=threads), file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark suite (resumable) into a results JSONL file."""
    import signal

    from vpt_gym.benchmark.runner import run_suite
    from vpt_gym.benchmark.suites import SuiteError, load_suite

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def interrupted(signum, frame):  # SIGTERM (`kill`) takes the same path as Ctrl-C: stop workers, keep rows
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        suite = load_suite(args.suite)
        designers = args.designers
        if args.add_designer:
            before = {d.label for d in suite.designers}
            suite = suite.with_designers(args.add_designer)
            if designers is not None:
                designers = [*designers, *(d.label for d in suite.designers if d.label not in before)]
        rows = run_suite(suite, args.out, designers=designers, seeds=args.seeds, workers=args.workers,
                         backend=args.backend, torch_threads=args.threads, progress=not args.no_progress,
                         reuse=args.reuse, envs=args.envs)
    except SuiteError as exc:  # every problem of the suite file, one line each
        raise SystemExit("\n".join(f"error: {line}" for line in exc.errors)) from exc
    except (ValueError, FileNotFoundError, ImportError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    except KeyboardInterrupt:
        from vpt_gym.benchmark.results import read_rows

        done = len(read_rows(args.out)) if Path(args.out).is_file() else 0
        print(f"interrupted: {args.out} holds {done} finished episodes; rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
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
                                   command=args.command_note, reps=args.reps, plots_subdir=args.plots_dir)
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
        try:
            report = validate_row(rows[i])
        except ValueError as exc:
            raise SystemExit(f"error: row {i}: {exc}") from exc
        r = rows[i]
        status = "ok" if report["ok"] else "MISMATCH"
        print(f"row {i}: {r['env_id']} {r['designer']} seed {r['seed']}: {status} ({report['mode']}, "
              f"tolerance {report['tolerance']}, torch threads {report['torch_threads']})")
        if "torch_threads" not in r:
            print(f"  note: the row does not record its torch thread count; replayed with {report['torch_threads']}: "
                  "a CPU replay is bitwise only at the count the row ran with", file=sys.stderr)
        for key, (recorded, replayed) in report["mismatches"].items():
            print(f"  {key}: recorded {recorded}, replayed {replayed}")
        if report.get("hint"):
            print(f"  why: {report['hint']}")
        failed += not report["ok"]
    return 1 if failed else 0


def _add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """The env id and the ``gymnasium.make`` options shared by ``run`` and ``train`` (see :func:`_env_kwargs`)."""
    from vpt_gym.envs import REWARD_MODES

    parser.add_argument("env_id", help="a registered id, e.g. vpt/LM-SoftTargets-v0")
    parser.add_argument("--budget", type=int, default=None, help="learner updates per episode (default: preset)")
    parser.add_argument("--reward", default=None,
                        help=f"{' | '.join(REWARD_MODES)} (default: the env's, `vpt-gym list`)")
    parser.add_argument("--size", default=None, choices=["tiny", "small", "paper"],
                        help="preset of the LM and vision envs (default tiny)")
    parser.add_argument("--data", default=None, help="LM envs: folder with gsm8k/ (default $VPT_GYM_DATA, else the "
                        "hub when online, else the embedded reasoning-gym default); vision envs: mnist5k (default), "
                        "digits, or an ImageFolder path")
    parser.add_argument("--model", default=None, help="size=paper: local path or hub id of a causal LM")
    parser.add_argument("--device", default=None, help="learner device: auto (default: CUDA when available) | cpu | "
                        "cuda; not for the toy env, which runs on the CPU")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other gymnasium.make keyword of the env (repeatable; VALUE is JSON, else a string), "
                        "e.g. --set eval_items=16 --set feedback_period=4")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's, about the "
                        "cores); a CPU rerun is bitwise only with the same count (a bench row's torch_threads)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vpt-gym``."""
    from vpt_gym.agents.sb3 import ALGOS  # names only: SB3 itself is imported by `train`

    parser = argparse.ArgumentParser(prog="vpt-gym",
                                     description="Task-design environments for (continued) pretraining.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list registered env ids")
    listing.add_argument("--markdown", action="store_true",
                         help="print the README's env table and env cards (rendered from the env docstrings)")
    listing.set_defaults(func=cmd_list)
    run = sub.add_parser("run", help="run one episode of a designer")
    _add_env_arguments(run)
    run.add_argument("--designer", default="fixed", help="designer name (default: fixed), sb3:RUN_DIR for a "
                     "model saved by `vpt-gym train`, or your own class as FILE.py:ClassName")
    run.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    run.add_argument("--out", default=None, help="write the full result (with action log) as JSON here")
    run.add_argument("--no-reference", action="store_true", help="skip eval_theta0, the eval of the base "
                     "checkpoint theta_0 printed beside the final eval (one more eval pass)")
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
    bench.add_argument("--add-designer", action="append", default=[], metavar="[LABEL=]NAME",
                       help="also run this designer at the suite's budgets and seeds (repeatable): a designer name, "
                       "or your own class as FILE.py:ClassName or package.module:ClassName")
    bench.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds of the suite")
    bench.add_argument("--envs", nargs="+", default=None, help="only these env ids of the suite")
    bench.add_argument("--workers", type=int, default=1, help="episodes at once (default 1: in this process)")
    bench.add_argument("--backend", default="local", choices=["local", "ray"],
                       help="local worker processes, or Ray tasks (RAY_ADDRESS, else a local Ray instance)")
    bench.add_argument("--threads", type=int, default=None, help="torch threads per episode (default cores/workers)")
    bench.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    bench.add_argument("--reuse", default=None, metavar="OLD.jsonl",
                       help="results of an earlier version of the suite: rows of episodes this version defines "
                            "identically are copied (relabelled, with reused_from) instead of run again")
    bench.set_defaults(func=cmd_bench)
    board = sub.add_parser("leaderboard", help="render LEADERBOARD.md and plots from a results file")
    board.add_argument("results", help="results JSONL written by `vpt-gym bench`")
    board.add_argument("--out", default="leaderboard", help="output folder (default ./leaderboard)")
    board.add_argument("--no-plots", action="store_true", help="tables only")
    board.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per interval (default 2000)")
    board.add_argument("--plots-dir", default="", help="write the PNGs into this subfolder of --out (default: --out)")
    board.add_argument("--command-note", default=None, help="the command that regenerates the results (shown)")
    board.set_defaults(func=cmd_leaderboard)
    validate = sub.add_parser("validate", help="replay rows of a results file and check their eval metrics",
                              description="Replay rows of a results file and check their eval metrics. Each row "
                              "is replayed with the torch thread count it recorded (torch_threads), as a bitwise "
                              "CPU replay needs; there is no --threads option.")
    validate.add_argument("results", help="results JSONL written by `vpt-gym bench`")
    validate.add_argument("--row", type=int, default=None, help="only this row (0-based; default: all)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vpt-gym`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C before a subcommand handles it (e.g. while importing torch)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
