"""The benchmark runner: every (env, designer, seed) episode of a suite, resumable, local or on Ray.

Episodes are plain data (:class:`EpisodeSpec`), run by :func:`run_spec` in the main process, in local
worker processes (``spawn``/``forkserver``; torch threads set per worker) or as Ray tasks. Only the main
process writes the results file, one atomic line per finished episode (:mod:`vpt_gym.benchmark.results`);
a rerun skips every finished row, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vpt_gym.benchmark.results import append_row, read_rows, repair, row_key
from vpt_gym.benchmark.suites import DesignerEntry, Suite
from vpt_gym.envs import safe_start_method

log = logging.getLogger(__name__)
BACKENDS = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class EpisodeSpec:
    """Everything needed to run one benchmark episode in any process (picklable plain data).

    Attributes:
        suite, suite_version, config_hash: the suite identity (see :meth:`Suite.config_hash`).
        env_id, env_kwargs, budget, metric, higher_is_better: the env entry.
        designer: the leaderboard label; designer_name / designer_kwargs: how it is built
            (``sb3:RUN_DIR`` for a trained SB3 agent); designer_config: its suite entry (for the row).
        seed: the episode seed.
        torch_threads: ``torch.set_num_threads`` in the process that runs the episode (>= 1).
        data, data_identity: for an env that reads the data folder (:data:`~vpt_gym.envs.ENV_IDS`
            ``reads_data``): ``$VPT_GYM_DATA`` made absolute (or ``None``) and its identity
            (:func:`~vpt_gym.benchmark.suites.data_identity`), and the episode runs with exactly this folder;
            for any other env ``None`` and ``"none"`` (the folder is not part of the episode).
    """

    suite: str
    suite_version: int
    config_hash: str
    env_id: str
    env_kwargs: Mapping[str, Any]
    budget: int
    metric: str
    higher_is_better: bool
    designer: str
    designer_name: str
    designer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    designer_config: Mapping[str, Any] = field(default_factory=dict)
    seed: int
    torch_threads: int = 1
    data: str | None = None
    data_identity: str = "none"

    def key(self) -> tuple:
        return (self.suite, self.env_id, self.designer, self.seed, self.config_hash)


def run_spec(spec: EpisodeSpec) -> dict[str, Any]:
    """Run one episode and return its results row (JSON-safe).

    The row holds the episode identity (suite, env id, designer label and config, seed, config hash), the
    package and torch versions, the primary metric's value, ``eval``, ``return``, the full ``ledger``, the
    action log (``actions``, ``tasks``), the per-decision ``trajectory``, ``wall_clock_s`` and ``cpu_s`` of the
    episode, and ``build_s``: the wall-clock seconds of building the env and the designer before it, reported
    apart (the first episode of a process builds or loads the base checkpoint, tokenizer and data there).
    """
    import time

    import gymnasium as gym
    import torch

    import vpt_gym  # noqa: F401  (registers the ids in a fresh worker)
    from vpt_gym.agents import make_designer
    from vpt_gym.runner import run_episode
    from vpt_gym.utils import torch_threads

    with torch_threads(spec.torch_threads), data_environment(spec.data):
        start = time.perf_counter()
        env = gym.make(spec.env_id, **dict(spec.env_kwargs))
        try:
            designer = make_designer(spec.designer_name, env, **dict(spec.designer_kwargs))
            build_s = time.perf_counter() - start
            result = run_episode(env, designer, seed=spec.seed)
            result["build_s"] = build_s
            learner = getattr(env.unwrapped, "learner", None)
            result["device"] = str(getattr(learner, "device", "cpu"))
        finally:
            env.close()
    row = {k: v for k, v in asdict(spec).items() if k not in ("designer_kwargs",)}
    row.update(result)
    row["designer"] = spec.designer  # the label (run_episode reports the designer's own name)
    row["designer_kwargs"] = dict(spec.designer_kwargs)
    row["metric_value"] = result["eval"].get(spec.metric)
    row["torch_version"] = torch.__version__
    return row


@contextlib.contextmanager
def data_environment(data: str | None) -> Iterator[None]:
    """Within the block, ``$VPT_GYM_DATA`` is ``data`` (unset for ``None``); restored on exit."""
    from vpt_gym.lm.corpus import DATA_ENV_VAR

    previous = os.environ.get(DATA_ENV_VAR)
    if data is None:
        os.environ.pop(DATA_ENV_VAR, None)
    else:
        os.environ[DATA_ENV_VAR] = data
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(DATA_ENV_VAR, None)
        else:
            os.environ[DATA_ENV_VAR] = previous


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Cancel pending episodes and terminate the worker processes (their episodes are lost; rows written
    so far stay, and a rerun resumes)."""
    processes = list(getattr(pool, "_processes", {}).values())  # no public handle on the workers
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


def _notice_data_fallback(todo: Sequence[EpisodeSpec]) -> bool:
    """Say once, here, when episodes will read the embedded default instead of GSM8K (no data folder, no
    hub); returns whether the workers should stay quiet about it."""
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.lm.corpus import hub_possible, notice_embedded_fallback

    if any(ENV_IDS[s.env_id]["reads_data"] and s.data is None for s in todo) and not hub_possible():
        notice_embedded_fallback()
        return True
    return False


def _worker_init(threads: int, quiet_data_notice: bool = False) -> None:
    import signal
    import threading

    import torch
    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the main process decides
    # tqdm's default lock holds a multiprocessing RLock, a named semaphore; a worker terminated mid-episode
    # (Ctrl-C, kill) never unlinks it and the resource tracker warns of leaked semaphores. Workers show no
    # bars, so a thread lock is all they need.
    tqdm.set_lock(threading.RLock())

    torch.set_num_threads(threads)
    if quiet_data_notice:  # the main process has said it once for the whole run
        from vpt_gym.lm.corpus import notice_embedded_fallback

        notice_embedded_fallback(emit=False)


def _sb3_run_dir(out: Path, designer: DesignerEntry, env_id: str) -> Path:
    slug = env_id.replace("/", "_")
    return out.parent / f"{out.stem}.agents" / designer.label / slug


def _train_sb3(suite: Suite, designer: DesignerEntry, env_id: str, out: Path, progress: bool,
               threads: int = 1) -> Path:
    """Train (once) the SB3 agent of ``designer`` on ``env_id`` with ``threads`` torch threads (the episodes'
    count, so training beside running workers does not take more cores than asked); a finished run folder is
    reused."""
    import json

    from vpt_gym.agents.sb3 import train
    from vpt_gym.utils import torch_threads

    assert designer.train is not None
    folder = _sb3_run_dir(out, designer, env_id)
    env_kwargs = suite.env(env_id).make_kwargs()
    config = folder / "config.json"
    if config.is_file():
        saved = json.loads(config.read_text())
        if (saved.get("algo"), saved.get("timesteps"), saved.get("seed"), saved.get("env_kwargs")) == (
                designer.train.algo, designer.train.timesteps, designer.train.seed, env_kwargs):
            return folder
    log.info("training %s (%s, %d decisions, %d torch threads) on %s", designer.label, designer.train.algo,
             designer.train.timesteps, threads, env_id)
    with torch_threads(threads):
        return train(env_id, designer.train.algo, designer.train.timesteps, designer.train.seed, folder,
                     env_kwargs=env_kwargs, progress=progress, overrides=dict(designer.train.hyperparameters))


def plan(suite: Suite, *, designers: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
         torch_threads: int = 1, envs: Sequence[str] | None = None) -> list[EpisodeSpec]:
    """The episodes of ``suite`` (optionally a subset of env ids / designer labels / seeds), in a fixed order:
    env by env (suite order), then designer, then seed.

    SB3 designers get ``designer_name = "sb3:<run dir>"`` filled in by :func:`run_suite` after training.

    Raises:
        ValueError: an env id, designer label or seed that is not in the suite; ``torch_threads`` < 1.
    """
    if torch_threads < 1:
        raise ValueError(f"torch_threads must be >= 1, got {torch_threads}")
    env_ids = [e.id for e in suite.envs]
    unknown_envs = sorted(set(envs or ()) - set(env_ids))
    if unknown_envs:
        raise ValueError(f"envs {unknown_envs} are not in suite {suite.name!r}; accepted: {env_ids}")
    labels = [d.label for d in suite.designers]
    chosen = list(labels if designers is None else designers)
    unknown = sorted(set(chosen) - set(labels))
    if unknown:
        raise ValueError(f"designers {unknown} are not in suite {suite.name!r}; accepted: {labels}")
    seed_list = list(suite.seeds if seeds is None else seeds)
    bad = sorted(set(seed_list) - set(suite.seeds))
    if bad:
        raise ValueError(f"seeds {bad} are not in suite {suite.name!r}; accepted: {list(suite.seeds)}")
    from vpt_gym.benchmark.suites import data_identity
    from vpt_gym.envs import ENV_IDS
    from vpt_gym.lm.corpus import resolve_data_dir

    folder = resolve_data_dir(None)  # $VPT_GYM_DATA (absolute), or None: the envs' embedded/hub defaults
    identity = data_identity(folder)
    specs = []
    for env in suite.envs:
        if envs is not None and env.id not in envs:
            continue
        reads = bool(ENV_IDS[env.id]["reads_data"])  # only the data an env reads is part of its rows' identity
        for label in chosen:
            d = suite.designer(label)
            if not d.runs_on(env.id):
                continue
            for seed in seed_list:
                specs.append(EpisodeSpec(
                    suite=suite.name, suite_version=suite.version,
                    config_hash=suite.config_hash(env.id, label, identity if reads else None),
                    data=str(folder) if reads and folder is not None else None,
                    data_identity=identity if reads else "none",
                    env_id=env.id, env_kwargs=env.make_kwargs(), budget=env.budget, metric=env.metric,
                    higher_is_better=env.higher_is_better, designer=label, designer_name=d.name,
                    designer_kwargs=dict(d.kwargs), designer_config=asdict(d), seed=seed,
                    torch_threads=torch_threads))
    return specs


def finished_keys(suite: Suite, rows: Sequence[Mapping[str, Any]]) -> set[tuple]:
    """The :meth:`EpisodeSpec.key` of every episode of ``suite`` that ``rows`` already holds.

    A row of an env that does not read the data folder, written when every row's hash included the folder's
    identity, still counts: its hash is recomputed with the identity it recorded and, when it matches, the
    row stands for the episode's current (data-free) key. So published rows resume whatever
    ``$VPT_GYM_DATA`` is now.
    """
    from vpt_gym.envs import ENV_IDS

    keys = {row_key(r) for r in rows}
    env_ids = {e.id for e in suite.envs}
    labels = {d.label for d in suite.designers}
    for r in rows:
        recorded = r.get("data_identity")
        if (r.get("suite") != suite.name or r.get("env_id") not in env_ids or r.get("designer") not in labels
                or recorded in (None, "none") or ENV_IDS[r["env_id"]]["reads_data"]):
            continue
        if r.get("config_hash") == suite.config_hash(r["env_id"], r["designer"], recorded):
            keys.add((r["suite"], r["env_id"], r["designer"], r["seed"],
                      suite.config_hash(r["env_id"], r["designer"], None)))
    return keys


def reuse_rows(suite: Suite, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of an earlier version of ``suite`` whose episodes this version defines identically, relabelled.

    A suite grows (a new env, a new designer) by a version bump, which makes every row of the old version
    unfinished. A row of ``rows`` is taken over when it belongs to this suite's name at another version, its
    env, designer label and seed are in ``suite``, and its config hash equals the hash that ``suite``'s own
    entries give at the row's version (so the env entry, the designer entry and the recorded data identity are
    unchanged: the episode would be the same, action for action). The copy carries this version and its config
    hash, and ``reused_from = {"suite_version": old, "config_hash": old}``; ``vpt-gym validate`` replays it like
    any row.

    Returns:
        The relabelled copies (``rows`` is not changed), in ``rows`` order.
    """
    env_ids = {e.id for e in suite.envs}
    labels = {d.label for d in suite.designers}
    out = []
    for r in rows:
        version = r.get("suite_version")
        if (r.get("suite") != suite.name or version == suite.version or r.get("env_id") not in env_ids
                or r.get("designer") not in labels or r.get("seed") not in suite.seeds
                or not isinstance(version, int) or version < 1):
            continue
        recorded = r.get("data_identity")
        identity = None if recorded in (None, "none") else recorded
        if r.get("config_hash") != replace(suite, version=version).config_hash(r["env_id"], r["designer"], identity):
            continue
        out.append({**r, "suite_version": suite.version,
                    "config_hash": suite.config_hash(r["env_id"], r["designer"], identity),
                    "reused_from": {"suite_version": version, "config_hash": r["config_hash"]}})
    return out


def _ray_runner(workers: int) -> Callable[[Sequence[EpisodeSpec], Callable[[dict], None]], None]:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--backend ray needs Ray: pip install 'vpt-gym[ray]'") from exc

    def run(specs: Sequence[EpisodeSpec], done: Callable[[dict], None]) -> None:
        started = False
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            started = True
        try:
            remote = ray.remote(num_cpus=1)(run_spec)
            pending = [remote.remote(s) for s in specs]
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                done(ray.get(ready[0]))
        finally:
            if started:
                ray.shutdown()

    return run


def run_suite(suite: Suite, out: str | Path, *, designers: Sequence[str] | None = None,
              seeds: Sequence[int] | None = None, workers: int = 1, backend: str = "local",
              torch_threads: int | None = None, progress: bool = True,
              reuse: str | Path | None = None, envs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every unfinished episode of ``suite`` and append its row to ``out`` (JSONL).

    Args:
        suite: the suite.
        out: the results file; rows already there (same suite, env, designer, seed and config hash) are
            skipped, so a rerun after a kill completes the file without duplicates.
        designers, seeds, envs: run only these designer labels / seeds / env ids of the suite (default: all).
        workers: episodes run at once, >= 1 (``1`` and backend local: in this process).
        backend: ``"local"`` (worker processes, ``forkserver`` where available else ``spawn``) or ``"ray"``
            (Ray tasks; ``RAY_ADDRESS`` selects a cluster, else a local instance with ``workers`` CPUs).
        torch_threads: torch threads per episode, and of the training of the suite's SB3 designers in this
            process (default: cores // workers, at least 1).
        progress: a tqdm bar over episodes (done / total, time left).
        reuse: a results file of an earlier version of this suite: its rows that :func:`reuse_rows` takes over
            are appended to ``out`` first (those of the planned episodes not already there), so only new
            episodes run.

    Returns:
        The rows written by this call (reused ones first), in completion order.

    Raises:
        ValueError: ``workers`` < 1, an unknown backend, envs/designers/seeds outside the suite, or ``out`` holds a
            row of the same suite name with another suite version (start a new results file).
    """
    from tqdm.auto import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
    specs = plan(suite, designers=designers, seeds=seeds, torch_threads=threads, envs=envs)
    out = Path(out)
    if reuse is not None and Path(reuse).resolve() == out.resolve():
        raise ValueError(f"reuse={str(reuse)!r} is the results file itself; give the earlier version's file")
    todo = _unfinished(suite, specs, out)
    written: list[dict[str, Any]] = []
    if reuse is not None:
        if not Path(reuse).is_file():
            raise FileNotFoundError(f"reuse={str(reuse)!r}: no such results file")
        wanted = {spec.key(): spec for spec in todo}
        for row in reuse_rows(suite, read_rows(reuse)):
            if row_key(row) in wanted:
                append_row(out, row)
                written.append(row)
                del wanted[row_key(row)]
        todo = [spec for spec in todo if spec.key() in wanted]
    quiet_workers = _notice_data_fallback(todo)
    log.info("%s: %d episodes, %d already in %s, %d to run", suite.name, len(specs), len(specs) - len(todo), out,
             len(todo))
    todo = _point_at_trained_sb3(suite, todo, out, progress, threads)
    bar = tqdm(total=len(todo), desc=f"bench {suite.name}", unit="episode", disable=not progress, file=sys.stderr)

    def done(row: dict[str, Any]) -> None:
        append_row(out, row)
        written.append(row)
        bar.set_postfix(env=row["env_id"].split("/")[-1], designer=row["designer"], seed=row["seed"], refresh=False)
        bar.update(1)

    try:
        if not todo:
            pass
        elif backend == "ray":
            _ray_runner(workers)(todo, done)
        elif workers == 1:
            for spec in todo:
                done(run_spec(spec))
        else:
            _run_in_pool(todo, done, workers=workers, threads=threads, quiet_workers=quiet_workers)
    finally:
        bar.close()
    return written


def _unfinished(suite: Suite, specs: Sequence[EpisodeSpec], out: Path) -> list[EpisodeSpec]:
    """The specs of ``specs`` without a finished row in the results file ``out`` (repaired first).

    Raises:
        ValueError: ``out`` is a folder, or holds a row of the same suite name with another suite version.
    """
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a results file path, e.g. results.jsonl")
    dropped = repair(out)
    if dropped:
        log.warning("%s: dropped a partial last line (%d bytes) left by a killed run", out, dropped)
    existing = read_rows(out)
    for row in existing:
        if row.get("suite") == suite.name and row.get("suite_version") != suite.version:
            raise ValueError(f"{out} holds rows of suite {suite.name!r} version {row.get('suite_version')}, "
                             f"this is version {suite.version}; write to a new results file")
    finished = finished_keys(suite, existing)
    return [s for s in specs if s.key() not in finished]


def _point_at_trained_sb3(suite: Suite, todo: list[EpisodeSpec], out: Path, progress: bool,
                          threads: int = 1) -> list[EpisodeSpec]:
    """Train the suite's SB3 designers that ``todo`` needs (in this process, with ``threads`` torch threads);
    their specs then load the run folder."""
    for d in suite.designers:
        if d.train is None:
            continue
        for env in suite.envs:
            if d.runs_on(env.id) and any(s.designer == d.label and s.env_id == env.id for s in todo):
                folder = _train_sb3(suite, d, env.id, out, progress, threads)
                todo = [replace(s, designer_name=f"sb3:{folder.resolve()}")
                        if s.designer == d.label and s.env_id == env.id else s for s in todo]
    return todo


def _run_in_pool(todo: Sequence[EpisodeSpec], done: Callable[[dict[str, Any]], None], *, workers: int, threads: int,
                 quiet_workers: bool) -> None:
    """Run ``todo`` in ``workers`` local processes, calling ``done`` (in this process) on each row as it finishes.

    The first episode error cancels the episodes not yet started, keeps the rows of those still running, and is
    then raised; an interrupt (Ctrl-C, SIGTERM) stops the workers at once, keeping the rows already written.
    """
    context = multiprocessing.get_context(safe_start_method())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads, quiet_workers))
    try:
        futures: set[Future] = {pool.submit(run_spec, s) for s in todo}
        error: BaseException | None = None
        while futures:
            complete, futures = wait(futures, return_when=FIRST_COMPLETED)
            for f in complete:
                if f.cancelled():
                    continue
                try:
                    done(f.result())
                except Exception as exc:  # keep the rows of episodes still running, then raise
                    if error is None:
                        error = exc
                        for g in futures:
                            g.cancel()
        if error is not None:
            raise error
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): stop the workers now, keep the rows written
        _terminate(pool)
        raise
    else:
        pool.shutdown(wait=True)
