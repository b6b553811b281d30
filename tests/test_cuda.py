"""The CUDA path: every learner env on a GPU, bf16 LM learners, CPU/GPU agreement, forward-mode look-ahead.

Marked ``gpu``: deselected by the default run, skipped without a CUDA device. Run with ``pytest -m gpu``.
Tolerances: CUDA kernels (TF32 matmuls off by default in torch, atomics in some backward kernels) are not
bitwise equal to the CPU's, so CPU/GPU comparisons use relative tolerances; same-device, same-seed runs are
compared at 1e-5.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import vpt_gym  # noqa: F401
from vpt_gym.agents import make_designer
from vpt_gym.runner import run_episode

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SMALL = {"budget": 4, "feedback_period": 2}
ENVS = {
    "vpt/LM-SoftTargets-v0": {"eval_items": 2, "max_new_tokens": 8},
    "vpt/LM-SoftTargetsContinuous-v0": {"eval_items": 2, "max_new_tokens": 8},
    "vpt/LM-Domains-v0": {"eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    "vpt/LM-DomainsContinuous-v0": {"eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4},
    "vpt/SSL-Augment-v0": {},
    "vpt/SSL-Mask-v0": {},
    "vpt/SSL-MaskContinuous-v0": {},
}


def _episode(env_id: str, device: str, seed: int = 0, **extra) -> dict:
    env = gym.make(env_id, size="tiny", device=device, **SMALL, **ENVS[env_id], **extra)
    return run_episode(env, make_designer("fixed", env), seed=seed)


@pytest.mark.parametrize("env_id", sorted(ENVS))
def test_env_runs_on_cuda_and_matches_the_cpu(env_id: str) -> None:
    env = gym.make(env_id, size="tiny", device="cuda", **SMALL, **ENVS[env_id])
    base = env.unwrapped
    assert all(p.device.type == "cuda" for p in base.learner.module.parameters())
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert all(g.device.type == "cuda" for g in base.g_down)
    action = base.standard_action
    obs, reward, *_ = env.step(action)
    assert env.observation_space.contains(obs) and math.isfinite(reward)
    cuda, cpu = _episode(env_id, "cuda"), _episode(env_id, "cpu")
    assert cuda["ledger"] == cpu["ledger"]
    assert cuda["actions"] == cpu["actions"]
    for key, value in cpu["eval"].items():  # losses to 2e-3; a rate may flip an item near a decision boundary
        counted = any(word in key for word in ("accuracy", "pass@", "miou"))
        assert cuda["eval"][key] == pytest.approx(value, rel=2e-3, abs=0.05 if counted else 2e-3), key


@pytest.mark.parametrize("env_id", ["vpt/LM-SoftTargets-v0", "vpt/SSL-Mask-v0"])
def test_same_seed_same_episode_on_cuda(env_id: str) -> None:
    """Same seed, same device: equal within the relative 1e-3 that ``vpt-gym validate`` allows on a GPU (the
    attention backward kernels accumulate with atomics, so CUDA runs need not be bitwise equal)."""
    first, second = _episode(env_id, "cuda", seed=5), _episode(env_id, "cuda", seed=5)
    assert first["actions"] == second["actions"]
    assert second["return"] == pytest.approx(first["return"], rel=1e-3, abs=1e-9)
    for key, value in first["eval"].items():
        assert second["eval"][key] == pytest.approx(value, rel=1e-3, abs=1e-6), key


def test_bf16_lm_learner_on_cuda() -> None:
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", device="cuda", dtype="bfloat16", **SMALL,
                   **ENVS["vpt/LM-SoftTargets-v0"])
    base = env.unwrapped
    assert {p.dtype for p in base.learner.module.parameters()} == {torch.bfloat16}
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in range(3)]
    assert all(math.isfinite(r) for r in rewards)
    values = base.lookahead_values()
    assert values.dtype == np.float64 and np.isfinite(values).all()
    fp32 = _episode("vpt/LM-SoftTargets-v0", "cuda")
    bf16 = run_episode(env, make_designer("fixed", env), seed=0)
    assert bf16["eval"]["eval_nll"] == pytest.approx(fp32["eval"]["eval_nll"], rel=2e-2)


def test_forward_mode_lookahead_equals_per_task_backward_on_cuda() -> None:
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", device="cuda", **SMALL,
                   **ENVS["vpt/LM-SoftTargets-v0"]).unwrapped
    env.reset(seed=1)
    env.forward_mode_lookahead = True
    jvp = env.lookahead_values()
    env.forward_mode_lookahead = False
    backward = env.lookahead_values()
    scale = np.abs(backward).max()
    assert scale > 0
    np.testing.assert_allclose(jvp, backward, rtol=0, atol=1e-4 * scale)


def test_value_gain_reward_on_cuda() -> None:
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", device="cuda", reward="value_gain", **SMALL,
                   **ENVS["vpt/LM-SoftTargets-v0"])
    env.reset(seed=0)
    reward = env.step(0)[1]
    assert math.isfinite(reward) and reward != 0.0


def test_paper_preset_on_cuda_is_bf16_and_looks_ahead(local_checkpoint) -> None:
    """The paper preset's path (from_pretrained of a local checkpoint) on a GPU: bf16 by default, forward-mode
    look-ahead through the tail in float32, finite rewards, an eval at the end."""
    env = gym.make("vpt/LM-SoftTargets-v0", size="paper", model=str(local_checkpoint), device="cuda", budget=3,
                   feedback_period=1, eval_items=2, max_new_tokens=8)
    base = env.unwrapped
    assert {p.dtype for p in base.learner.module.parameters()} == {torch.bfloat16}
    env.reset(seed=0)
    values = base.lookahead_values()
    assert np.isfinite(values).all() and len(values) == env.action_space.n
    for _ in range(3):
        obs, reward, terminated, _, info = env.step(int(np.argmax(base.lookahead_values())))
        assert math.isfinite(reward)
    assert terminated and math.isfinite(info["eval"]["eval_nll"])


def test_varying_length_forwards_avoid_cudnn_attention() -> None:
    """Feedback and generation forwards (new sequence lengths each call) exclude cuDNN attention, which plans
    per shape; the setting is scoped to the block."""
    from vpt_gym.lm.feedback import varying_length_attention

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with varying_length_attention(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
