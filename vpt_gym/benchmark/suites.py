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

An unknown key anywhere is an error (a typo must not silently change a benchmark).
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_SUITE_KEYS = {"name", "version", "description", "seeds", "designers", "envs"}
_ENV_KEYS = {"id", "budget", "metric", "higher_is_better", "kwargs"}
_DESIGNER_KEYS = {"name", "label", "kwargs", "envs", "train"}
_TRAIN_KEYS = {"algo", "timesteps", "seed", "hyperparameters"}


def _unknown(where: str, keys: Mapping[str, Any], accepted: set[str]) -> None:
    extra = sorted(set(keys) - accepted)
    if extra:
        raise ValueError(f"{where}: unknown key(s) {extra}; accepted: {sorted(accepted)}")


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
        _int(f"env {self.id}: budget", self.budget, 1)
        _str(f"env {self.id}: metric", self.metric)
        if not isinstance(self.higher_is_better, bool):
            raise ValueError(f"env {self.id}: higher_is_better must be true or false, got {self.higher_is_better!r}")
        if "budget" in self.kwargs:
            raise ValueError(f"env {self.id}: set the budget with the 'budget' key, not inside kwargs")

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
                raise ValueError(f"designer {self.label!r}: name 'sb3' needs a train table (algo, timesteps, seed)")
        elif ":" in self.name and not self.name.startswith("sb3:"):
            from vpt_gym.agents import load_designer_class

            load_designer_class(self.name)  # FILE.py:ClassName / module:ClassName: fail at load, not mid-run
        elif self.name not in DESIGNERS:
            raise ValueError(f"unknown designer {self.name!r}; accepted: {sorted(DESIGNERS)}, 'sb3' (with a train "
                             "table) or your own class as FILE.py:ClassName")
        elif self.train is not None:
            raise ValueError(f"designer {self.label!r}: a train table is only accepted with name 'sb3'")

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


def _designer(index: int, raw: Any) -> DesignerEntry:
    if isinstance(raw, str):
        return DesignerEntry(name=raw, label=raw)
    table = _table(f"designers[{index}]", raw)
    _unknown(f"designers[{index}]", table, _DESIGNER_KEYS)
    name = _str(f"designers[{index}].name", table.get("name"))
    train = None
    if "train" in table:
        spec = _table(f"designer {name}: train", table["train"])
        _unknown(f"designer {name}: train", spec, _TRAIN_KEYS)
        missing = {"algo", "timesteps", "seed"} - set(spec)
        if missing:
            raise ValueError(f"designer {name}: train is missing {sorted(missing)}")
        train = TrainSpec(algo=spec["algo"], timesteps=spec["timesteps"], seed=spec["seed"],
                          hyperparameters=_table(f"designer {name}: train.hyperparameters",
                                                 spec.get("hyperparameters", {})))
    envs = table.get("envs", [])
    if not isinstance(envs, list) or not all(isinstance(e, str) for e in envs):
        raise ValueError(f"designer {name}: envs must be a list of env ids, got {envs!r}")
    return DesignerEntry(name=name, label=table.get("label", name), kwargs=_table(f"designer {name}: kwargs",
                         table.get("kwargs", {})), envs=tuple(envs), train=train)


def _env(index: int, raw: Any) -> EnvEntry:
    table = _table(f"envs[{index}]", raw)
    _unknown(f"envs[{index}]", table, _ENV_KEYS)
    missing = {"id", "budget", "metric", "higher_is_better"} - set(table)
    if missing:
        raise ValueError(f"envs[{index}] is missing {sorted(missing)}")
    return EnvEntry(id=table["id"], budget=table["budget"], metric=table["metric"],
                    higher_is_better=table["higher_is_better"], kwargs=_table(f"envs[{index}].kwargs",
                                                                              table.get("kwargs", {})))


def parse_suite(data: Mapping[str, Any], path: str | None = None) -> Suite:
    """A :class:`Suite` from a parsed TOML document.

    Raises:
        ValueError: an unknown or missing key, or a value outside its accepted range (the message names it).
    """
    _unknown("suite", data, _SUITE_KEYS)
    missing = {"name", "version", "seeds", "designers", "envs"} - set(data)
    if missing:
        raise ValueError(f"suite is missing {sorted(missing)}")
    for key in ("seeds", "designers", "envs"):
        if not isinstance(data[key], list):
            raise ValueError(f"suite {key} must be a list, got {data[key]!r}")
    return Suite(
        name=data["name"],
        version=data["version"],
        description=str(data.get("description", "")),
        seeds=tuple(data["seeds"]),
        designers=tuple(_designer(i, d) for i, d in enumerate(data["designers"])),
        envs=tuple(_env(i, e) for i, e in enumerate(data["envs"])),
        path=path,
    )


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite TOML file.

    Raises:
        FileNotFoundError: no such file. ValueError: invalid TOML or an invalid suite (see :func:`parse_suite`).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"suite file {str(p)!r} does not exist (suites ship in benchmarks/suites/)")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"suite file {str(p)!r} is not valid TOML: {exc}") from exc
    return parse_suite(data, path=str(p))
