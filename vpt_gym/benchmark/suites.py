"""Benchmark suites: versioned TOML files parsed into frozen, validated dataclasses.

A suite fixes everything a leaderboard comparison must hold equal: the env ids and their presets, the
learner-update budget per env (the matched budget of V-Pretraining, arXiv 2601.22108 §4), the designers,
the seeds and the primary metric per env. File format (``benchmarks/suites/tiny.toml``)::

    name = "tiny"
    version = 1
    description = "..."
    seeds = [0, 1, 2]
    designers = ["fixed", "random", "ucb1"]          # plain names, or tables (below)

    [[designers]]                                      # alternatively: one table per designer
    name = "greedy"                                    # a key of vpt_gym.agents.DESIGNERS, "sb3", or FILE.py:Class
    label = "greedy"                                   # the leaderboard name (default: name)
    kwargs = { }                                       # constructor keywords
    envs = ["vpt/Toy-Alignment-v0"]                    # restrict to these envs (default: all)
    train = { algo = "ppo", timesteps = 4096, seed = 1000 }   # sb3 only: trained before the episodes

    [[envs]]
    id = "vpt/Toy-Alignment-v0"
    budget = 64                                        # learner updates per episode (the matched budget)
    metric = "eval_loss"                               # key of info["eval"]
    higher_is_better = false
    kwargs = { }                                       # gymnasium.make keywords (preset), not "budget"

An unknown key anywhere is an error (a typo must not silently change a benchmark). A suite is checked whole
when it is loaded, before any episode runs: each env's ``metric`` against the keys that env reports, its
``kwargs`` against the env's keywords (and ``size``/``reward`` against its presets and reward modes), each
designer's ``kwargs`` against its constructor and a user class against the Designer protocol. Every problem
found is one message naming its entry (``envs[0] (vpt/Toy-Alignment-v0): ...``), all raised together as a
:class:`SuiteError`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SUITE_KEYS = {"name", "version", "description", "seeds", "designers", "envs"}
_ENV_KEYS = {"id", "budget", "metric", "higher_is_better", "kwargs"}
_DESIGNER_KEYS = {"name", "label", "kwargs", "envs", "train"}
_TRAIN_KEYS = {"algo", "timesteps", "seed", "hyperparameters"}


class SuiteError(ValueError):
    """Every problem of a suite file, one message per entry (``errors``); ``str()`` joins them by newlines."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(self.errors))


def _unknown(where: str, keys: Mapping[str, Any], accepted: set[str]) -> None:
    extra = sorted(set(keys) - accepted)
    if extra:
        raise ValueError(f"{where + ': ' if where else ''}unknown key(s) {extra}; accepted: {sorted(accepted)}")


def _int(where: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where} must be an integer >= {low}, got {value!r}")
    return value


def _str(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a table, got {value!r}")
    return dict(value)


@dataclass(frozen=True, kw_only=True)
class EnvEntry:
    """One env of a suite.

    Attributes:
        id: a registered ``vpt/...`` id.
        budget: learner updates per episode, >= 1 (the matched budget: equal for every designer).
        metric: the primary metric, a key of ``info["eval"]`` at episode end.
        higher_is_better: direction of ``metric``.
        kwargs: ``gymnasium.make`` keywords (the preset; ``budget`` is set from :attr:`budget`).
    """

    id: str
    budget: int
    metric: str
    higher_is_better: bool
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from vpt_gym.envs import ENV_IDS

        if self.id not in ENV_IDS:
            raise ValueError(f"env id {self.id!r} is not registered; accepted: {sorted(ENV_IDS)}")
        spec = ENV_IDS[self.id]
        problems = []
        for check in (self._check_values, self._check_kwargs):
            try:
                check(spec)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))

    def _check_values(self, spec: Mapping[str, Any]) -> None:
        from vpt_gym.envs import is_eval_metric

        _int("budget", self.budget, 1)
        _str("metric", self.metric)
        if not is_eval_metric(self.id, self.metric):
            raise ValueError(f"metric {self.metric!r} is not reported by {self.id}; accepted: "
                             f"{list(spec['eval_metrics'])}")
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"higher_is_better must be true or false, got {self.higher_is_better!r}")

    def _check_kwargs(self, spec: Mapping[str, Any]) -> None:
        from vpt_gym.envs import check_env_kwargs, env_keywords

        problems = []
        if "budget" in self.kwargs:
            problems.append("set the budget with the 'budget' key, not inside kwargs")
        try:
            accepted = env_keywords(self.id)
        except ImportError:  # an extra is missing: building the env will say which
            accepted = None
        unknown = sorted(set(self.kwargs) - set(accepted) - {"budget"}) if accepted is not None else []
        if unknown and accepted is not None:
            problems.append(f"kwargs {unknown} are not keywords of {self.id}; accepted: "
                            f"{[k for k in accepted if k != 'budget']}")
        if accepted is not None:
            try:  # plain values of the wrong type (a string for a number, ...)
                check_env_kwargs(self.id, {k: v for k, v in self.kwargs.items() if k in accepted})
            except ValueError as exc:
                problems.append(str(exc))
        for key, choices in (("size", spec["presets"]), ("reward", spec["rewards"])):
            if key in self.kwargs and self.kwargs[key] not in choices:
                problems.append(f"kwargs {key}={self.kwargs[key]!r} is not accepted by {self.id}; accepted: "
                                f"{list(choices)}")
        if problems:
            raise ValueError("; ".join(problems))

    def make_kwargs(self) -> dict[str, Any]:
        """The ``gymnasium.make`` keywords of an episode: ``kwargs`` plus ``budget``."""
        return {**dict(self.kwargs), "budget": self.budget}


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """How an SB3 designer is trained before a suite's episodes (:func:`vpt_gym.agents.sb3.train`).

    Attributes:
        algo: a key of :data:`vpt_gym.agents.sb3.ALGOS`.
        timesteps: training decisions, >= 1.
        seed: training seed, >= 0 (must not be one of the suite's evaluation seeds).
        hyperparameters: overrides of the preset's hyperparameters.
    """

    algo: str
    timesteps: int
    seed: int
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _str("train.algo", self.algo)
        _int("train.timesteps", self.timesteps, 1)
        _int("train.seed", self.seed, 0)


@dataclass(frozen=True, kw_only=True)
class DesignerEntry:
    """One designer of a suite.

    Attributes:
        name: a key of :data:`vpt_gym.agents.DESIGNERS`, ``"sb3"`` (with :attr:`train`), or your own class as
            ``FILE.py:ClassName`` (path relative to the working directory) or ``package.module:ClassName``.
        label: the name on the leaderboard (unique in the suite).
        kwargs: constructor keywords.
        envs: the env ids this designer runs on (empty: all of the suite's).
        train: for ``sb3``: how the agent is trained before the episodes.
    """

    name: str
    label: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    envs: tuple[str, ...] = ()
    train: TrainSpec | None = None

    def __post_init__(self) -> None:
        from vpt_gym.agents import DESIGNERS

        _str("designer name", self.name)
        _str(f"designer {self.name}: label", self.label)
        if self.name == "sb3":
            if self.train is None:
                raise ValueError("name 'sb3' needs a train table (algo, timesteps, seed)")
        elif ":" not in self.name and self.name not in DESIGNERS:
            raise ValueError(f"unknown designer {self.name!r}; accepted: {sorted(DESIGNERS)}, 'sb3' (with a train "
                             "table) or your own class as FILE.py:ClassName")
        elif self.train is not None:
            raise ValueError("a train table is only accepted with name 'sb3'")
        from vpt_gym.agents import check_designer

        try:  # FILE.py:ClassName / module:ClassName are imported here: fail at load, not mid-run
            check_designer(self.name, self.kwargs)
        except (FileNotFoundError, ImportError) as exc:
            raise ValueError(str(exc)) from exc
        except ValueError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's file failed to import (SyntaxError, NameError, ...)
            raise ValueError(f"designer {self.name!r} cannot be loaded: {type(exc).__name__}: {exc}") from exc

    def runs_on(self, env_id: str) -> bool:
        """Whether this designer runs on ``env_id``."""
        return not self.envs or env_id in self.envs


@dataclass(frozen=True, kw_only=True)
class Suite:
    """A frozen benchmark configuration (see the module docstring for the file format).

    Attributes:
        name, version, description: identity of the suite (``version`` >= 1; bump it on any change).
        seeds: evaluation episode seeds (distinct integers >= 0).
        designers: the designers compared.
        envs: the envs, each with its matched budget and primary metric.
        path: the file it was read from (``None`` when built in code).
    """

    name: str
    version: int
    description: str = ""
    seeds: tuple[int, ...]
    designers: tuple[DesignerEntry, ...]
    envs: tuple[EnvEntry, ...]
    path: str | None = None

    def __post_init__(self) -> None:
        _str("suite name", self.name)
        _int(f"suite {self.name}: version", self.version, 1)
        if not self.seeds:
            raise ValueError(f"suite {self.name}: seeds is empty")
        for s in self.seeds:
            _int(f"suite {self.name}: seed", s, 0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"suite {self.name}: seeds {list(self.seeds)} repeat a value")
        if not self.designers or not self.envs:
            raise ValueError(f"suite {self.name}: needs at least one designer and one env")
        labels = [d.label for d in self.designers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"suite {self.name}: designer labels {labels} repeat a value")
        ids = [e.id for e in self.envs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"suite {self.name}: env ids {ids} repeat a value")
        for d in self.designers:
            unknown = set(d.envs) - set(ids)
            if unknown:
                raise ValueError(f"designer {d.label!r} names envs {sorted(unknown)} that are not in the suite {ids}")
            if d.train is not None and d.train.seed in self.seeds:
                raise ValueError(f"designer {d.label!r}: train seed {d.train.seed} is an evaluation seed "
                                 f"{list(self.seeds)}; train on seeds the leaderboard does not use")

    def with_designers(self, specs: Sequence[str]) -> Suite:
        """This suite plus designers given as ``NAME`` or ``LABEL=NAME`` (``vpt-gym bench --add-designer``).

        ``NAME`` is anything :class:`DesignerEntry` accepts (e.g. ``my_designer.py:MyDesigner``); the label
        defaults to ``NAME``. The suite's envs, budgets and seeds are unchanged, so the added designer is
        compared with the suite's designers at the matched budget.

        Raises:
            ValueError: a bad spec, an unknown designer, or a label already in the suite.
        """
        added = []
        for spec in specs:
            label, sep, name = spec.partition("=")
            if not sep:
                label, name = spec, spec
            added.append(DesignerEntry(name=_str("--add-designer name", name), label=_str("--add-designer label",
                                                                                          label)))
        return replace(self, designers=self.designers + tuple(added))

    def env(self, env_id: str) -> EnvEntry:
        """The entry of ``env_id``. Raises ``KeyError`` naming the suite's ids."""
        for e in self.envs:
            if e.id == env_id:
                return e
        raise KeyError(f"{env_id!r} is not in suite {self.name!r}: {[e.id for e in self.envs]}")

    def designer(self, label: str) -> DesignerEntry:
        """The designer labelled ``label``. Raises ``KeyError`` naming the suite's labels."""
        for d in self.designers:
            if d.label == label:
                return d
        raise KeyError(f"designer {label!r} is not in suite {self.name!r}: {[d.label for d in self.designers]}")

    def config_hash(self, env_id: str, label: str, data_identity: str | None = None) -> str:
        """Hash (16 hex) of everything that defines an episode's configuration except the seed.

        ``data_identity`` (:func:`data_identity` of the data folder the episode reads, e.g. ``$VPT_GYM_DATA``)
        enters the hash when given, so rows run on other data are never taken for finished ones. A user
        designer (``FILE.py:ClassName`` or ``module:ClassName``) enters with the SHA-256 of its source file
        (:func:`designer_source_identity`), so editing the file makes its rows unfinished again.
        """
        env, designer = self.env(env_id), self.designer(label)
        blob = {"suite": self.name, "version": self.version, "env": asdict(env), "designer": asdict(designer)}
        if data_identity is not None:
            blob["data"] = data_identity
        source = designer_source_identity(designer.name)
        if source is not None:
            blob["designer_source"] = source
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def designer_source_identity(name: str) -> str | None:
    """SHA-256 (16 hex) of the source file of a user designer ``FILE.py:ClassName`` (path relative to the
    working directory) or ``package.module:ClassName``; ``None`` for built-in names, ``sb3`` and sources
    without a readable file (their code is versioned with the package or recorded elsewhere)."""
    source, sep, _ = name.rpartition(":")
    if not sep or not source:
        return None
    if source.endswith(".py"):
        path: Path | None = Path(source).expanduser()
    else:
        import importlib.util

        try:
            spec = importlib.util.find_spec(source)
        except (ImportError, ValueError):
            return None
        path = Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def data_identity(folder: str | Path | None) -> str:
    """A machine-independent identity of a data folder: SHA-256 (16 hex) over the sorted relative paths and
    sizes of its files (``"none"`` without a folder: the envs' embedded or hub defaults)."""
    if folder is None:
        return "none"
    root = Path(folder)
    entries = sorted(f"{p.relative_to(root).as_posix()}:{p.stat().st_size}" for p in root.rglob("*") if p.is_file())
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def _designer(raw: Any) -> DesignerEntry:
    """One ``designers`` item (messages are prefixed with the entry by :func:`parse_suite`)."""
    if isinstance(raw, str):
        return DesignerEntry(name=raw, label=raw)
    table = _table("the entry", raw)
    _unknown("", table, _DESIGNER_KEYS)
    name = _str("name", table.get("name"))
    train = None
    if "train" in table:
        spec = _table("train", table["train"])
        _unknown("train", spec, _TRAIN_KEYS)
        missing = {"algo", "timesteps", "seed"} - set(spec)
        if missing:
            raise ValueError(f"train is missing {sorted(missing)}")
        train = TrainSpec(algo=spec["algo"], timesteps=spec["timesteps"], seed=spec["seed"],
                          hyperparameters=_table("train.hyperparameters", spec.get("hyperparameters", {})))
    envs = table.get("envs", [])
    if not isinstance(envs, list) or not all(isinstance(e, str) for e in envs):
        raise ValueError(f"envs must be a list of env ids, got {envs!r}")
    return DesignerEntry(name=name, label=table.get("label", name), kwargs=_table("kwargs", table.get("kwargs", {})),
                         envs=tuple(envs), train=train)


def _env(raw: Any) -> EnvEntry:
    """One ``envs`` item (messages are prefixed with the entry by :func:`parse_suite`)."""
    table = _table("the entry", raw)
    _unknown("", table, _ENV_KEYS)
    missing = {"id", "budget", "metric", "higher_is_better"} - set(table)
    if missing:
        raise ValueError(f"entry is missing {sorted(missing)}")
    return EnvEntry(id=table["id"], budget=table["budget"], metric=table["metric"],
                    higher_is_better=table["higher_is_better"], kwargs=_table("kwargs", table.get("kwargs", {})))


def _entry_name(raw: Any, key: str) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping):
        return str(raw.get(key, raw.get("name", "?")))
    return "?"


def parse_suite(data: Mapping[str, Any], path: str | None = None) -> Suite:
    """A :class:`Suite` from a parsed TOML document, checked whole (see the module docstring).

    Raises:
        SuiteError: (a ``ValueError``) every unknown or missing key and every value outside its accepted range,
            one message per suite entry, each prefixed by ``path`` (or ``suite``) and the entry
            (``designers[2] ('mine')``, ``envs[0] (vpt/Toy-Alignment-v0)``).
    """
    where = path or "suite"
    try:
        _unknown("suite", data, _SUITE_KEYS)
        missing = {"name", "version", "seeds", "designers", "envs"} - set(data)
        if missing:
            raise ValueError(f"suite is missing {sorted(missing)}")
        for key in ("seeds", "designers", "envs"):
            if not isinstance(data[key], list):
                raise ValueError(f"suite {key} must be a list, got {data[key]!r}")
    except ValueError as exc:
        raise SuiteError([f"{where}: {exc}"]) from None
    errors: list[str] = []
    designers, envs = [], []
    for i, raw in enumerate(data["designers"]):
        try:
            designers.append(_designer(raw))
        except ValueError as exc:
            errors.append(f"{where}: designers[{i}] ({_entry_name(raw, 'label')!r}): {exc}")
    for i, raw in enumerate(data["envs"]):
        try:
            envs.append(_env(raw))
        except ValueError as exc:
            errors.append(f"{where}: envs[{i}] ({_entry_name(raw, 'id')}): {exc}")
    if errors:
        raise SuiteError(errors)
    try:
        return Suite(name=data["name"], version=data["version"], description=str(data.get("description", "")),
                     seeds=tuple(data["seeds"]), designers=tuple(designers), envs=tuple(envs), path=path)
    except ValueError as exc:
        raise SuiteError([f"{where}: {exc}"]) from None


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite TOML file.

    Raises:
        FileNotFoundError: no such file. ValueError: invalid TOML; :class:`SuiteError` (a ``ValueError``): an
            invalid suite, every problem named (see :func:`parse_suite`).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"suite file {str(p)!r} does not exist (suites ship in benchmarks/suites/)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"suite file {str(p)!r} is not valid TOML: {exc}") from exc
    return parse_suite(data, path=str(p))
