"""The registry of vpt_gym environment ids (``gymnasium.make("vpt/...")``).

Importing this module only registers ids (entry points are strings: nothing heavy is imported).
Each id is a preset of components composed by :class:`vpt_gym.envs.task_design.TaskDesignEnv`.
"""

from __future__ import annotations

from typing import Any

import gymnasium

ENV_IDS: dict[str, dict[str, Any]] = {
    "vpt/Toy-Alignment-v0": {
        "entry_point": "vpt_gym.envs.toy:make_toy_env",
        "learner": "closed-form point in R^8, SGD",
        "tasks": "Discrete(5): mixture (standard) | source_0..source_3 (drifting alignment)",
        "reward": "alignment (eta g_down.g_pre, analytic feedback)",
        "smoke_kwargs": {"budget": 32},
    },
    "vpt/LM-SoftTargets-v0": {
        "entry_point": "vpt_gym.envs.lm:make_soft_targets_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Discrete(7): one_hot (standard) | uniform top-64 smoothing | self top-64 distillation, alpha in {0.1, 0.25, 0.5}",
        "reward": "alignment with GSM8K solution-NLL feedback",
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8},
    },
    "vpt/LM-SoftTargetsContinuous-v0": {
        "entry_point": "vpt_gym.envs.lm:make_soft_targets_continuous_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Box([-1,1]^2) -> self top-64 distillation gate alpha in [0, 0.5], temperature in [0.25, 4]",
        "reward": "alignment with GSM8K solution-NLL feedback",
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8},
    },
    "vpt/LM-Domains-v0": {
        "entry_point": "vpt_gym.envs.lm_domains:make_domains_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Discrete(4): uniform mixture (standard) | only_math | only_code | only_prose (data domain of the update)",
        "reward": "alignment with multitask feedback: GSM8K solution NLL + held-out stdlib code NLL (optional domain-matched)",
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    },
    "vpt/LM-DomainsContinuous-v0": {
        "entry_point": "vpt_gym.envs.lm_domains:make_domains_continuous_env",
        "learner": "transformers causal LM (GPT-2 config; tiny/small/paper), AdamW",
        "tasks": "Box([-1,1]^3) -> domain mixture softmax(3a) over math | code | prose",
        "reward": "alignment with multitask feedback: GSM8K solution NLL + held-out stdlib code NLL (optional domain-matched)",
        "smoke_kwargs": {"size": "tiny", "budget": 8, "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    },
    "vpt/SSL-Augment-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_augment_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Discrete(6): dino_standard (standard) | weak | tight_crops | strong_color | heavy_blur | crop_only",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
    "vpt/SSL-Mask-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_mask_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Discrete(13): no_mask (standard) | keep-mask {random, block, centre, grid} x keep {0.4, 0.55, 0.7}, blur fill",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
    "vpt/SSL-MaskContinuous-v0": {
        "entry_point": "vpt_gym.envs.vision:make_ssl_mask_continuous_env",
        "learner": "torchvision ViT student + EMA teacher, DINO (or SimCLR) loss, AdamW (tiny/small/paper)",
        "tasks": "Box([-1,1]^2) -> random keep-mask keep ratio in [0.25, 1], blur sigma in [0.5, 4] px",
        "reward": "alignment with probe-head feedback (classification CE + pixelwise segmentation CE) on real MNIST",
        "smoke_kwargs": {"size": "tiny", "budget": 8},
    },
}
"""Registered ids: entry point, one-line descriptions of learner, task menu and reward (``vpt-gym list``),
and ``smoke_kwargs``, the cheapest configuration (used by the contract tests over every id)."""


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` with Gymnasium (idempotent)."""
    for env_id, spec in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=spec["entry_point"], disable_env_checker=False)


def __getattr__(name: str) -> Any:
    if name == "TaskDesignEnv":
        from vpt_gym.envs.task_design import TaskDesignEnv

        return TaskDesignEnv
    raise AttributeError(name)
