"""The ``paper`` preset's real loading code (``from_pretrained(path)``), exercised on a local checkpoint folder."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import vpt_gym  # noqa: F401


def test_paper_preset_loads_a_local_checkpoint_and_runs(local_checkpoint):
    env = gym.make("vpt/LM-SoftTargets-v0", size="paper", model=str(local_checkpoint), device="cpu", budget=2,
                   eval_items=2, max_new_tokens=8, feedback_period=1)
    base = env.unwrapped
    assert base.learner.module.config.n_positions == 64
    assert base.stream.seq_len == 64  # the preset's 512 is capped by the model's context
    assert base.feedback.eos_id == 0
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(1)
        assert math.isfinite(reward)
    assert terminated and info["ledger"]["learner_updates"] == 2
    assert 0.0 <= info["eval"]["eval_pass@1"] <= 1.0 and np.isfinite(info["eval"]["eval_nll"])


def test_paper_preset_needs_a_model():
    with pytest.raises(ValueError, match="model="):
        gym.make("vpt/LM-SoftTargets-v0", size="paper", device="cpu")


def test_tiny_preset_rejects_a_model_argument():
    with pytest.raises(ValueError, match="only used by size='paper'"):
        gym.make("vpt/LM-SoftTargets-v0", size="tiny", model="some/model")


def test_domains_paper_preset_loads_the_same_checkpoint_through_the_shared_loader(local_checkpoint):
    """LM-Domains' paper path uses the same loading code (tokenizer, eos, context length) as LM-SoftTargets."""
    from vpt_gym.lm.model import load_pretrained_tokenizer, pretrained_context_length

    tokenizer, eos = load_pretrained_tokenizer(str(local_checkpoint))
    assert eos == 0 and pretrained_context_length(str(local_checkpoint)) == 64  # the checkpoint's n_positions
    env = gym.make("vpt/LM-Domains-v1", size="paper", model=str(local_checkpoint), device="cpu", budget=2,
                   eval_items=2, max_new_tokens=8, feedback_period=1)
    base = env.unwrapped
    assert base.stream.seq_len == 64 and base.learner.module.config.n_positions == 64
    assert base.feedback.tasks["gsm8k"].tokenizer.to_str() == tokenizer.to_str()
    env.reset(seed=0)
    for _ in range(2):
        _, reward, terminated, _, info = env.step(0)
        assert math.isfinite(reward)
    assert terminated and np.isfinite(info["eval"]["eval_nll"])
