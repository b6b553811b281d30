"""The registry of vpt_gym environment ids (``gymnasium.make("vpt/...")``).

Importing this module only registers ids (entry points are strings: nothing heavy is imported).
Each id is a preset of components composed by :class:`vpt_gym.envs.task_design.TaskDesignEnv`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium

from vpt_gym.envs.factory import OBSERVATION_BASE_ROWS as OBSERVATION_BASE_ROWS
from vpt_gym.envs.factory import card as card
from vpt_gym.envs.factory import keyword_signature as keyword_signature
from vpt_gym.envs.factory import require_user_parts as require_user_parts

REWARD_MODES: tuple[str, ...] = ("alignment", "cosine", "value_gain", "metric_gain", "advantage", "preconditioned")
"""The ``reward=`` names every env accepts (default first); :data:`vpt_gym.value.VALUE_ESTIMATORS` holds them."""
PRECONDITIONED_FIRST: tuple[str, ...] = ("preconditioned",) + tuple(m for m in REWARD_MODES if m != "preconditioned")
""":data:`REWARD_MODES` with ``preconditioned`` (the default of the ``-v1`` LM ids) first."""
VALUE_GAIN_FIRST: tuple[str, ...] = ("value_gain",) + tuple(m for m in REWARD_MODES if m != "value_gain")
""":data:`REWARD_MODES` with ``value_gain`` (the default of the ``-v1`` SSL ids) first."""
SIZE_PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
"""The ``size=`` presets of the LM and vision envs (the toy env has none)."""

ACTION_KINDS: tuple[str, ...] = ("discrete", "box")
"""The action-space kinds of a registered id: ``"discrete"`` (a task menu, ``Discrete(K)``), ``"box"`` (a
continuous family, ``Box``)."""


@dataclass(frozen=True, kw_only=True)
class EnvSpec(Mapping[str, Any]):
    """The registry record of one env id (:data:`ENV_IDS`); a read-only mapping of its fields as well.

    Attributes:
        entry_point: ``"module:function"`` of the env factory.
        learner, tasks, reward: one-line descriptions (``vpt-gym list``).
        action: the action space's kind, one of :data:`ACTION_KINDS`.
        presets: the ``size=`` values (empty: the env has none).
        rewards: the accepted ``reward=`` names, the default first.
        cpu_step_ms: preset -> mean wall-clock ms of one ``env.step`` on a CPU (see :data:`ENV_IDS`).
        eval_metrics: the keys of ``info["eval"]`` with the default arguments.
        eval_metric_pattern: a regex of further ``info["eval"]`` keys some arguments add (None: none).
        reads_data: whether the env reads the data folder ``$VPT_GYM_DATA``.
        smoke_kwargs: the cheapest configuration (the contract tests over every id use it).

    Raises:
        ValueError: at construction, an ``action`` outside :data:`ACTION_KINDS` or an empty ``rewards``.
    """

    entry_point: str
    learner: str
    tasks: str
    action: Literal["discrete", "box"]
    reward: str
    presets: tuple[str, ...]
    rewards: tuple[str, ...]
    cpu_step_ms: Mapping[str, float]
    eval_metrics: tuple[str, ...]
    eval_metric_pattern: str | None = None
    reads_data: bool
    smoke_kwargs: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.action not in ACTION_KINDS:
            raise ValueError(f"action={self.action!r} is not accepted; choose one of {ACTION_KINDS}")
        if not self.rewards:
            raise ValueError(f"rewards must name at least one reward mode, got {self.rewards!r}")

    def __getitem__(self, key: str) -> Any:
        if key not in _ENV_SPEC_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_ENV_SPEC_FIELDS)

    def __len__(self) -> int:
        return len(_ENV_SPEC_FIELDS)


_ENV_SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EnvSpec))

_LM_SOFT_TARGETS: dict[str, Any] = {
    "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
    "presets": SIZE_PRESETS,
    "eval_metrics": ("eval_nll", "eval_pass@1", "eval_items"),
    "reads_data": True,
    "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8},
}
"""Registry fields the four LM-SoftTargets ids (v0, v1, each Discrete and Box) share."""
_SOFT_MENU = ("Discrete(7): one_hot (standard) | uniform top-64 smoothing | self top-64 distillation, alpha in "
              "{0.1, 0.25, 0.5}")
_SOFT_BOX = "Box([-1,1]^2) -> self top-64 distillation gate alpha in [0, 0.5], temperature in [0.25, 4]"
_V1_REWARD = ("preconditioned (AdamW-aware) value with GSM8K solution-NLL feedback; procedural math + prose "
              "stream (no GSM8K text)")
_LM_DOMAINS: dict[str, Any] = {
    "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
    "presets": SIZE_PRESETS, "cpu_step_ms": {"tiny": 17, "small": 180},
    "eval_metrics": ("eval_nll", "gsm8k/eval_nll", "gsm8k/eval_pass@1", "gsm8k/eval_items", "code/eval_nll",
                     "code/eval_items"), "eval_metric_pattern": r"[^/]+/eval_[\w@]+",
    "reads_data": True,
    "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
}
"""Registry fields the four LM-Domains ids (v0, v1, each Discrete and Box) share."""
_DOMAIN_MENU = ("Discrete(4): uniform mixture (standard) | only_math | only_code | only_prose (data domain of the "
                "update)")
_DOMAIN_BOX = "Box([-1,1]^3) -> domain mixture softmax(3a) over math | code | prose"
_DOMAINS_V0_REWARD = ("alignment with multitask feedback: GSM8K solution NLL + held-out stdlib code NLL (optional "
                      "domain-matched)")
_DOMAINS_V1_REWARD = ("preconditioned (AdamW-aware) value with multitask feedback: GSM8K solution NLL + held-out "
                      "stdlib code NLL; procedural math domain (no GSM8K text)")
_SSL: dict[str, Any] = {
    "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
    "presets": SIZE_PRESETS,
    "eval_metrics": ("probe_accuracy", "probe_loss", "eval_images", "miou", "pixel_accuracy", "seg_loss"),
    "reads_data": False,
    "smoke_kwargs": {"size": "tiny", "budget": 8},
}
"""Registry fields the eight SSL ids (v0, v1 of SSL-Augment, SSL-Mask, SSL-MaskContinuous; SSL-Augment-v2, v3)
share."""
_AUGMENT_MENU = "Discrete(6): dino_standard (standard) | weak | tight_crops | strong_color | heavy_blur | crop_only"
_AUGMENT_MASK_MENU = (_AUGMENT_MENU.replace("Discrete(6)", "Discrete(10)")
                      + " | keep-mask {random, block} x keep {0.4, 0.55} on dino_standard, blur fill")
_MASK_MENU = ("Discrete(13): no_mask (standard) | keep-mask {random, block, centre, grid} x keep {0.4, 0.55, 0.7}, "
              "blur fill")
_MASK_BOX = "Box([-1,1]^2) -> random keep-mask keep ratio in [0.25, 1], blur sigma in [0.5, 4] px"
_SSL_V0_REWARD = "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST"
_SSL_V1_REWARD = ("value_gain (measured probe-loss drop) with probe-head feedback (classification CE + pixelwise "
                  "segmentation CE) on real MNIST")

ENV_IDS: dict[str, EnvSpec] = {
    "vpt/Toy-Alignment-v0": EnvSpec(
        entry_point="vpt_gym.envs.toy:make_toy_env",
        learner="closed-form point in R^8, SGD",
        tasks="Discrete(5): mixture (standard) | source_0..source_3 (drifting alignment)",
        action="discrete", reward="alignment (eta g_down.g_pre, analytic feedback)",
        presets=(), rewards=REWARD_MODES, cpu_step_ms={"default": 0.9},
        eval_metrics=("eval_loss", "eval_solved_fraction"),
        reads_data=False,
        smoke_kwargs={"budget": 32},
    ),
    "vpt/LM-SoftTargets-v0": EnvSpec(
        **_LM_SOFT_TARGETS, entry_point="vpt_gym.envs.lm:make_soft_targets_env", tasks=_SOFT_MENU,
        action="discrete", reward="alignment with GSM8K solution-NLL feedback", rewards=REWARD_MODES,
        cpu_step_ms={"tiny": 17, "small": 160},
    ),
    "vpt/LM-SoftTargetsContinuous-v0": EnvSpec(
        **_LM_SOFT_TARGETS, entry_point="vpt_gym.envs.lm:make_soft_targets_continuous_env", tasks=_SOFT_BOX,
        action="box", reward="alignment with GSM8K solution-NLL feedback", rewards=REWARD_MODES,
        cpu_step_ms={"tiny": 17, "small": 180},
    ),
    "vpt/LM-SoftTargets-v1": EnvSpec(
        **_LM_SOFT_TARGETS, entry_point="vpt_gym.envs.lm:make_soft_targets_env_v1", tasks=_SOFT_MENU,
        action="discrete", reward=_V1_REWARD, rewards=PRECONDITIONED_FIRST,
        cpu_step_ms={"tiny": 17, "small": 160},
    ),
    "vpt/LM-SoftTargetsContinuous-v1": EnvSpec(
        **_LM_SOFT_TARGETS, entry_point="vpt_gym.envs.lm:make_soft_targets_continuous_env_v1", tasks=_SOFT_BOX,
        action="box", reward=_V1_REWARD, rewards=PRECONDITIONED_FIRST,
        cpu_step_ms={"tiny": 17, "small": 180},
    ),
    "vpt/LM-Domains-v0": EnvSpec(
        **_LM_DOMAINS, entry_point="vpt_gym.envs.lm_domains:make_domains_env", tasks=_DOMAIN_MENU,
        action="discrete", reward=_DOMAINS_V0_REWARD, rewards=REWARD_MODES,
    ),
    "vpt/LM-DomainsContinuous-v0": EnvSpec(
        **_LM_DOMAINS, entry_point="vpt_gym.envs.lm_domains:make_domains_continuous_env", tasks=_DOMAIN_BOX,
        action="box", reward=_DOMAINS_V0_REWARD, rewards=REWARD_MODES,
    ),
    "vpt/LM-Domains-v1": EnvSpec(
        **_LM_DOMAINS, entry_point="vpt_gym.envs.lm_domains:make_domains_env_v1", tasks=_DOMAIN_MENU,
        action="discrete", reward=_DOMAINS_V1_REWARD, rewards=PRECONDITIONED_FIRST,
    ),
    "vpt/LM-DomainsContinuous-v1": EnvSpec(
        **_LM_DOMAINS, entry_point="vpt_gym.envs.lm_domains:make_domains_continuous_env_v1", tasks=_DOMAIN_BOX,
        action="box", reward=_DOMAINS_V1_REWARD, rewards=PRECONDITIONED_FIRST,
    ),
    "vpt/SSL-Augment-v0": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_augment_env", tasks=_AUGMENT_MENU,
        action="discrete", reward=_SSL_V0_REWARD, rewards=REWARD_MODES,
        cpu_step_ms={"tiny": 21, "small": 440},
    ),
    "vpt/SSL-Mask-v0": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_mask_env", tasks=_MASK_MENU,
        action="discrete", reward=_SSL_V0_REWARD, rewards=REWARD_MODES,
        cpu_step_ms={"tiny": 21, "small": 450},
    ),
    "vpt/SSL-MaskContinuous-v0": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_mask_continuous_env", tasks=_MASK_BOX,
        action="box", reward=_SSL_V0_REWARD, rewards=REWARD_MODES,
        cpu_step_ms={"tiny": 21, "small": 550},
    ),
    "vpt/SSL-Augment-v1": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_augment_env_v1", tasks=_AUGMENT_MENU,
        action="discrete", reward=_SSL_V1_REWARD, rewards=VALUE_GAIN_FIRST,
        cpu_step_ms={"tiny": 21, "small": 440},
    ),
    "vpt/SSL-Mask-v1": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_mask_env_v1", tasks=_MASK_MENU,
        action="discrete", reward=_SSL_V1_REWARD, rewards=VALUE_GAIN_FIRST,
        cpu_step_ms={"tiny": 21, "small": 450},
    ),
    "vpt/SSL-MaskContinuous-v1": EnvSpec(
        **_SSL, entry_point="vpt_gym.envs.vision:make_ssl_mask_continuous_env_v1", tasks=_MASK_BOX,
        action="box", reward=_SSL_V1_REWARD, rewards=VALUE_GAIN_FIRST,
        cpu_step_ms={"tiny": 21, "small": 550},
    ),
    "vpt/SSL-Augment-v2": EnvSpec(
        **{**_SSL, "learner": "torchvision ViT, SimCLR loss (or DINO + EMA teacher), AdamW; a 300-step SimCLR base at "
                              "small"},
        entry_point="vpt_gym.envs.vision:make_ssl_augment_env_v2", tasks=_AUGMENT_MENU,
        action="discrete", reward=_SSL_V1_REWARD, rewards=VALUE_GAIN_FIRST,
        # measured on an Intel Xeon host (tiny 12.0, small 245.8 ms; v1 there: 14.5, 345.0) and scaled by
        # v1's ratio to the machine of the other entries: no local crops and no teacher make v2's step cheaper
        cpu_step_ms={"tiny": 17, "small": 310},
    ),
    "vpt/SSL-Augment-v3": EnvSpec(
        **{**_SSL, "learner": "torchvision ViT, SimCLR loss (or DINO + EMA teacher), AdamW; a 300-step SimCLR base at "
                              "small"},
        entry_point="vpt_gym.envs.vision:make_ssl_augment_env_v3", tasks=_AUGMENT_MASK_MENU,
        action="discrete", reward=_SSL_V1_REWARD, rewards=VALUE_GAIN_FIRST,
        cpu_step_ms={"tiny": 17, "small": 310},  # v2's: the same learner and step; a mask adds one blur per view
    ),
}
"""Registered ids, each an :class:`EnvSpec` (a frozen record, readable as a mapping too): entry point, one-line
descriptions of learner, task menu and reward (``vpt-gym list``), ``action`` (the action space's kind:
``"discrete"`` for a task menu, ``"box"`` for a continuous family),
``presets`` (``size=`` values), ``rewards`` (accepted ``reward=`` names), ``cpu_step_ms``,
``eval_metrics`` (the keys of ``info["eval"]`` with the default arguments; ``eval_metric_pattern``: a regex of
further keys some arguments add), ``reads_data`` (whether the env reads the data folder ``$VPT_GYM_DATA``) and
``smoke_kwargs``, the cheapest configuration (used by the contract tests over every id).

``cpu_step_ms`` maps a preset to the mean wall-clock milliseconds of one ``env.step`` on a CPU: fixed designer,
``reward="alignment"``, ``feedback_period=8`` (so g_down refreshes included), one torch thread, reset and the
end-of-episode eval excluded; the better of two episodes (tiny: 16 updates, small: 24; toy: 64) on a shared
2-core x86 machine (torch 2.14 CPU). Indicative only; ``benchmarks/overhead.py`` measures the breakdown."""

def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def env_keywords(env_id: str) -> tuple[str, ...]:
    """The ``gymnasium.make`` keywords ``env_id`` accepts, sorted: the named keyword parameters of its factory's
    signature (:func:`~vpt_gym.envs.factory.keyword_signature`).

    Raises:
        KeyError: ``env_id`` is not registered. ImportError: the env's module (or an extra) cannot be imported.
    """
    return tuple(sorted(_keyword_hints(env_id)))


@functools.cache
def _keyword_hints(env_id: str) -> dict[str, Any]:
    """``{keyword: type annotation}`` of :func:`env_keywords`, resolved where the keyword is declared (the
    factory's ``keyword_sources``: its builder, a config dataclass); ``Any`` where an annotation does not
    resolve."""
    import inspect
    import typing

    factory = _load(ENV_IDS[env_id].entry_point)
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    resolved: dict[str, Any] = {}
    for source in reversed((factory, *getattr(factory, "keyword_sources", ()))):
        try:
            resolved.update(typing.get_type_hints(source))
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: no type check for it
            pass
    return {p.name: resolved.get(p.name, Any) for p in inspect.signature(factory).parameters.values()
            if p.kind in keyword}


_PLAIN = (bool, int, float, str, list, tuple, dict, type(None))
"""Values a keyword check judges: what TOML, JSON and the command line produce (and numpy scalars). Other
objects (a ``ValueEstimator`` for ``reward``, a ``torch.device``, a config object) go to the factory as
they are."""


def _matches(value: Any, hint: Any) -> bool:
    """Whether a plain ``value`` fits the annotation ``hint`` (``float``: a finite real; lists for tuples)."""
    import collections.abc
    import numbers
    import types
    import typing

    import numpy as np

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, (bool, np.bool_)):
        return False
    if hint is int:
        return isinstance(value, numbers.Integral)
    if hint is float:
        return isinstance(value, numbers.Real) and math.isfinite(float(value))
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            return False
        element = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else Any
        return all(_matches(v, element) for v in value)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        key, item = args if len(args) == 2 else (Any, Any)
        return all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not know: the factory decides


def _describe(hint: Any) -> str:
    """What an annotation accepts, in words (``int | None`` -> ``an integer or None``)."""
    import collections.abc
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string", type(None): "None"}
    if hint in names:
        return names[hint]
    if origin in (tuple, list, collections.abc.Sequence):
        element = _describe(args[0]).removeprefix("an ").removeprefix("a ") if args else "value"
        return f"a list of {element}s"
    if origin in (dict, collections.abc.Mapping):
        return "a table"
    return getattr(hint, "__name__", str(hint))


def _mismatch(env_id: str, kwargs: dict[str, Any], *, only_non_finite: bool = False) -> str | None:
    """The message for the first plain value of ``kwargs`` whose type its keyword's annotation does not allow
    (with ``only_non_finite``: the first NaN/inf where a finite number is allowed), else ``None``."""
    import numbers

    import numpy as np

    hints = _keyword_hints(env_id)
    for name, value in kwargs.items():
        if name == "reward" or name not in hints or not isinstance(value, (*_PLAIN, np.generic)):
            continue  # reward= also takes a ValueEstimator; the factory names the accepted ones
        if only_non_finite and not (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                                    and not math.isfinite(float(value))):
            continue
        if not _matches(value, hints[name]):
            return (f"{name}={value!r} is not accepted by {env_id}: {name} takes {_describe(hints[name])} (see its "
                    "env card)")
    return None


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Check ``gymnasium.make`` keywords of ``env_id`` without building it: every keyword is one of
    :func:`env_keywords`, and every plain value (numbers, strings, lists, tables, None) has the keyword's
    annotated type (a ``float`` must be finite). Ranges are the factory's to check.

    Raises:
        ValueError: an unknown keyword (names the accepted ones) or a value of the wrong type (names the
            value and what the keyword takes).
    """
    hints = _keyword_hints(env_id)
    unknown = sorted(set(kwargs) - set(hints))
    if unknown:
        raise ValueError(f"{env_id} has no keyword(s) {unknown}; accepted: {sorted(hints)}")
    message = _mismatch(env_id, kwargs)
    if message is not None:
        raise ValueError(message)


def is_eval_metric(env_id: str, metric: str) -> bool:
    """Whether ``metric`` is a key of ``env_id``'s ``info["eval"]`` (:data:`ENV_IDS` ``eval_metrics`` or
    ``eval_metric_pattern``). Raises ``KeyError`` for an unregistered id."""
    import re

    spec = ENV_IDS[env_id]
    pattern = spec.get("eval_metric_pattern")
    return metric in spec["eval_metrics"] or (pattern is not None and re.fullmatch(pattern, metric) is not None)


def latest_version(env_id: str) -> str:
    """The newest registered version of ``env_id``'s family (``env_id`` itself when none is newer), e.g.
    ``"vpt/SSL-Augment-v3"`` for ``"vpt/SSL-Augment-v1"``: Gymnasium's own answer
    (``find_highest_version``), the id that ``gymnasium.make(env_id)``'s out-of-date warning names.

    Raises:
        KeyError: ``env_id`` is not in :data:`ENV_IDS`.
    """
    from gymnasium.envs.registration import find_highest_version, get_env_id, parse_env_id

    if env_id not in ENV_IDS:
        raise KeyError(f"{env_id!r} is not a vpt_gym env id; registered: {sorted(ENV_IDS)}")
    register_envs()
    namespace, name, _ = parse_env_id(env_id)
    return get_env_id(namespace, name, find_highest_version(namespace, name))


def safe_start_method() -> str:
    """The ``multiprocessing`` start method for env worker processes: ``"forkserver"`` where available, else
    ``"spawn"`` (pass it as ``gym.make_vec(..., vector_kwargs={"context": safe_start_method()})``).

    ``fork`` is not safe once torch has run a parallel CPU op (or a LAPACK call such as ``torch.linalg.qr``)
    with more than one thread: the forked child inherits OpenMP's thread pool without its threads, and its
    first parallel op waits for them forever.
    """
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


_BUILT_IN_PID: int | None = None
"""The process id that last built an env through :class:`EntryPoint` (``None``: none built here yet)."""


class EntryPoint:
    """The Gymnasium entry point of a registered id: imports its factory lazily and calls it.

    Keywords are checked (:func:`check_env_kwargs`): unknown ones and NaN/inf numbers before the factory
    runs (its own checks name the accepted ranges), values of a type the keyword's annotation does not allow
    when the factory fails on them or after it took them, always as a ``ValueError`` and before any learner
    update. In a process forked from one that built an env before (Gymnasium's ``AsyncVectorEnv`` with the default
    ``fork`` context builds one in the parent first), torch is set to one thread before the factory runs, so
    the worker never enters the OpenMP pool it inherited without threads (which would block forever; see
    :func:`safe_start_method`). Workers started with ``forkserver`` or ``spawn`` keep their thread setting.

    Args:
        env_id: the registered id.
        target: ``"module:function"`` of the env factory (:data:`ENV_IDS` ``entry_point``).
    """

    def __init__(self, env_id: str, target: str) -> None:
        self.env_id = env_id
        self.target = target

    def __repr__(self) -> str:
        return f"EntryPoint({self.env_id!r}, {self.target!r})"

    def __call__(self, **kwargs: Any) -> gymnasium.Env:
        global _BUILT_IN_PID
        import torch

        hints = _keyword_hints(self.env_id)
        unknown = sorted(set(kwargs) - set(hints))
        if unknown:
            raise ValueError(f"{self.env_id} has no keyword(s) {unknown}; accepted: {sorted(hints)}")
        non_finite = _mismatch(self.env_id, kwargs, only_non_finite=True)
        if non_finite is not None:  # factories compare numbers with their ranges; NaN passes many comparisons
            raise ValueError(non_finite)
        pid = os.getpid()
        if _BUILT_IN_PID is not None and _BUILT_IN_PID != pid and torch.get_num_threads() > 1:
            torch.set_num_threads(1)  # a forked worker: OpenMP's pool did not survive fork()
        try:
            env = _load(self.target)(**kwargs)  # its own checks name the ranges (budget >= 1, ...)
        except ValueError:
            raise
        except Exception as exc:  # a value of the wrong type failing deep inside the build
            message = _mismatch(self.env_id, kwargs)
            if message is not None:
                raise ValueError(message) from exc
            raise
        message = _mismatch(self.env_id, kwargs)
        if message is not None:  # the factory took a value its signature does not (e.g. 2.5 for an int)
            env.close()
            raise ValueError(message)
        _BUILT_IN_PID = pid
        return env


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` with Gymnasium (idempotent), each with an :class:`EntryPoint`."""
    for env_id, spec in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=EntryPoint(env_id, spec["entry_point"]),
                               disable_env_checker=False)


def __getattr__(name: str) -> Any:
    if name == "TaskDesignEnv":
        from vpt_gym.envs.task_design import TaskDesignEnv

        return TaskDesignEnv
    raise AttributeError(name)
