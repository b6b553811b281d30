"""The registry of vpt_gym environment ids (``gymnasium.make("vpt/...")``).

Importing this module only registers ids (entry points are strings: nothing heavy is imported).
Each id is a preset of components composed by :class:`vpt_gym.envs.task_design.TaskDesignEnv`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from typing import Any

import gymnasium

REWARD_MODES: tuple[str, ...] = ("alignment", "cosine", "value_gain", "metric_gain", "advantage")
"""The ``reward=`` names every env accepts (default first); :data:`vpt_gym.value.VALUE_ESTIMATORS` holds them."""
SIZE_PRESETS: tuple[str, ...] = ("tiny", "small", "paper")
"""The ``size=`` presets of the LM and vision envs (the toy env has none)."""

ENV_IDS: dict[str, dict[str, Any]] = {
    "vpt/Toy-Alignment-v0": {
        "entry_point": "vpt_gym.envs.toy:make_toy_env",
        "learner": "closed-form point in R^8, SGD",
        "tasks": "Discrete(5): mixture (standard) | source_0..source_3 (drifting alignment)",
        "reward": "alignment (eta g_down.g_pre, analytic feedback)",
        "presets": (), "rewards": REWARD_MODES, "cpu_step_ms": {"default": 0.9},
        "keywords_of": "vpt_gym.envs.toy:ToyConfig",
        "eval_metrics": ("eval_loss", "eval_solved_fraction"),
        "reads_data": False,
        "smoke_kwargs": {"budget": 32},
    },
    "vpt/LM-SoftTargets-v0": {
        "entry_point": "vpt_gym.envs.lm:make_soft_targets_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Discrete(7): one_hot (standard) | uniform top-64 smoothing | self top-64 distillation, alpha in {0.1, 0.25, 0.5}",
        "reward": "alignment with GSM8K solution-NLL feedback",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 17, "small": 160},
        "keywords_of": "vpt_gym.envs.lm:_make_lm_env",
        "eval_metrics": ("eval_nll", "eval_pass@1", "eval_items"),
        "reads_data": True,
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8},
    },
    "vpt/LM-SoftTargetsContinuous-v0": {
        "entry_point": "vpt_gym.envs.lm:make_soft_targets_continuous_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Box([-1,1]^2) -> self top-64 distillation gate alpha in [0, 0.5], temperature in [0.25, 4]",
        "reward": "alignment with GSM8K solution-NLL feedback",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 17, "small": 180},
        "keywords_of": "vpt_gym.envs.lm:_make_lm_env",
        "eval_metrics": ("eval_nll", "eval_pass@1", "eval_items"),
        "reads_data": True,
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8},
    },
    "vpt/LM-Domains-v0": {
        "entry_point": "vpt_gym.envs.lm_domains:make_domains_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Discrete(4): uniform mixture (standard) | only_math | only_code | only_prose (data domain of the update)",
        "reward": "alignment with multitask feedback: GSM8K solution NLL + held-out stdlib code NLL (optional domain-matched)",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 17, "small": 180},
        "keywords_of": "vpt_gym.envs.lm_domains:_make_domains_env",
        "eval_metrics": ("eval_nll", "gsm8k/eval_nll", "gsm8k/eval_pass@1", "gsm8k/eval_items", "code/eval_nll",
                         "code/eval_items"), "eval_metric_pattern": r"[^/]+/eval_[\w@]+",
        "reads_data": True,
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    },
    "vpt/LM-DomainsContinuous-v0": {
        "entry_point": "vpt_gym.envs.lm_domains:make_domains_continuous_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Box([-1,1]^3) -> domain mixture softmax(3a) over math | code | prose",
        "reward": "alignment with multitask feedback: GSM8K solution NLL + held-out stdlib code NLL (optional domain-matched)",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 17, "small": 180},
        "keywords_of": "vpt_gym.envs.lm_domains:_make_domains_env",
        "eval_metrics": ("eval_nll", "gsm8k/eval_nll", "gsm8k/eval_pass@1", "gsm8k/eval_items", "code/eval_nll",
                         "code/eval_items"), "eval_metric_pattern": r"[^/]+/eval_[\w@]+",
        "reads_data": True,
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    },
    "vpt/SSL-Augment-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_augment_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Discrete(6): dino_standard (standard) | weak | tight_crops | strong_color | heavy_blur | crop_only",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 21, "small": 440},
        "keywords_of": "vpt_gym.envs.vision:_make_ssl_env",
        "eval_metrics": ("probe_accuracy", "probe_loss", "eval_images", "miou", "pixel_accuracy", "seg_loss"),
        "reads_data": False,
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
    "vpt/SSL-Mask-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_mask_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Discrete(13): no_mask (standard) | keep-mask {random, block, centre, grid} x keep {0.4, 0.55, 0.7}, blur fill",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 21, "small": 450},
        "keywords_of": "vpt_gym.envs.vision:_make_ssl_env",
        "eval_metrics": ("probe_accuracy", "probe_loss", "eval_images", "miou", "pixel_accuracy", "seg_loss"),
        "reads_data": False,
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
    "vpt/SSL-MaskContinuous-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_mask_continuous_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Box([-1,1]^2) -> random keep-mask keep ratio in [0.25, 1], blur sigma in [0.5, 4] px",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "presets": SIZE_PRESETS, "rewards": REWARD_MODES, "cpu_step_ms": {"tiny": 21, "small": 550},
        "keywords_of": "vpt_gym.envs.vision:_make_ssl_env",
        "eval_metrics": ("probe_accuracy", "probe_loss", "eval_images", "miou", "pixel_accuracy", "seg_loss"),
        "reads_data": False,
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
}
"""Registered ids: entry point, one-line descriptions of learner, task menu and reward (``vpt-gym list``),
``presets`` (``size=`` values), ``rewards`` (accepted ``reward=`` names), ``cpu_step_ms``, ``keywords_of``
(the callable whose keyword parameters the factory's ``**kwargs`` forwards to; see :func:`env_keywords`),
``eval_metrics`` (the keys of ``info["eval"]`` with the default arguments; ``eval_metric_pattern``: a regex of
further keys some arguments add), ``reads_data`` (whether the env reads the data folder ``$VPT_GYM_DATA``) and
``smoke_kwargs``, the cheapest configuration (used by the contract tests over every id).

``cpu_step_ms`` maps a preset to the mean wall-clock milliseconds of one ``env.step`` on a CPU: fixed designer,
``reward="alignment"``, ``feedback_period=8`` (so g_down refreshes included), one torch thread, reset and the
end-of-episode eval excluded; the better of two episodes (tiny: 16 updates, small: 24; toy: 64) on a shared
2-core x86 machine (torch 2.14 CPU). Indicative only; ``benchmarks/overhead.py`` measures the breakdown."""

OBSERVATION_BASE_ROWS = """\
        | 0 | ``budget_remaining`` | learner-update budget left, fraction of T | [0, 1] | - |
        | 1 | ``ema_pretrain_loss`` | EMA of the pretraining loss of the chosen tasks | [0, 1e3] | learner loss |
        | 2 | ``ema_feedback_loss`` | EMA of L_down, updated at each g_down refresh | [0, 1e3] | feedback loss |
        | 3 | ``ema_log10_g_pre_norm`` | EMA of log10 of the norm of g_pre on S | [-30, 30] | log10 |
        | 4 | ``log10_g_down_norm`` | log10 of the norm of the current g_down on S | [-30, 30] | log10 |
        | 5 | ``ema_cosine`` | EMA of cos(g_down, g_pre) on S | [-1, 1] | - |"""
"""Rows 0-5 of every env card's Observation Space table (``TaskDesignEnv`` base features; EMA decay 0.9,
starting at the first measurement; a zero norm reads as -30). Env cards insert them at ``$BASE_ROWS``."""


def card(doc: str | None) -> str:
    """An env factory's docstring with ``$BASE_ROWS`` replaced by :data:`OBSERVATION_BASE_ROWS`."""
    return (doc or "").replace("        $BASE_ROWS", OBSERVATION_BASE_ROWS)


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def env_keywords(env_id: str) -> tuple[str, ...]:
    """The ``gymnasium.make`` keywords ``env_id`` accepts, sorted: the factory's named keyword parameters and
    those of :data:`ENV_IDS` ``keywords_of`` (the builder its ``**kwargs`` goes to; parameters without a
    default there are set by the factory itself).

    Raises:
        KeyError: ``env_id`` is not registered. ImportError: the env's module (or an extra) cannot be imported.
    """
    import inspect

    spec = ENV_IDS[env_id]
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in inspect.signature(_load(spec["entry_point"])).parameters.values() if p.kind in keyword}
    if "keywords_of" in spec:
        names |= {p.name for p in inspect.signature(_load(spec["keywords_of"])).parameters.values()
                  if p.kind in keyword and p.default is not inspect.Parameter.empty}
    return tuple(sorted(names))


def is_eval_metric(env_id: str, metric: str) -> bool:
    """Whether ``metric`` is a key of ``env_id``'s ``info["eval"]`` (:data:`ENV_IDS` ``eval_metrics`` or
    ``eval_metric_pattern``). Raises ``KeyError`` for an unregistered id."""
    import re

    spec = ENV_IDS[env_id]
    pattern = spec.get("eval_metric_pattern")
    return metric in spec["eval_metrics"] or (pattern is not None and re.fullmatch(pattern, metric) is not None)


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

    In a process forked from one that built an env before (Gymnasium's ``AsyncVectorEnv`` with the default
    ``fork`` context builds one in the parent first), torch is set to one thread before the factory runs, so
    the worker never enters the OpenMP pool it inherited without threads (which would block forever; see
    :func:`safe_start_method`). Workers started with ``forkserver`` or ``spawn`` keep their thread setting.

    Args:
        target: ``"module:function"`` of the env factory (:data:`ENV_IDS` ``entry_point``).
    """

    def __init__(self, target: str) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"EntryPoint({self.target!r})"

    def __call__(self, **kwargs: Any) -> gymnasium.Env:
        global _BUILT_IN_PID
        import torch

        pid = os.getpid()
        if _BUILT_IN_PID is not None and _BUILT_IN_PID != pid and torch.get_num_threads() > 1:
            torch.set_num_threads(1)  # a forked worker: OpenMP's pool did not survive fork()
        env = _load(self.target)(**kwargs)
        _BUILT_IN_PID = pid
        return env


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` with Gymnasium (idempotent), each with an :class:`EntryPoint`."""
    for env_id, spec in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=EntryPoint(spec["entry_point"]), disable_env_checker=False)


def __getattr__(name: str) -> Any:
    if name == "TaskDesignEnv":
        from vpt_gym.envs.task_design import TaskDesignEnv

        return TaskDesignEnv
    raise AttributeError(name)
