"""Look-ahead of task-dependent families: one forward-mode pass per task equals forward + backward."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from extras import env_param

import vpt_gym  # noqa: F401

CASES = [
    env_param("vpt/SSL-Mask-v0", {"size": "tiny"}),
    env_param("vpt/SSL-Augment-v0", {"size": "tiny"}),
    env_param("vpt/LM-Domains-v0", {"size": "tiny", "eval_items": 1, "max_new_tokens": 4}),
]


@pytest.mark.parametrize("env_id, kwargs", CASES)
def test_forward_mode_per_task_equals_forward_backward(env_id: str, kwargs: dict) -> None:
    results = {}
    for per_task in (True, False):
        env = gym.make(env_id, budget=4, **kwargs)
        base = env.unwrapped
        base.forward_mode_per_task = per_task
        env.reset(seed=3)
        env.step(1)
        values = base.lookahead_values()
        results[per_task] = (values, base.ledger.as_dict())
        # the look-ahead changed nothing: the next step's reward equals the look-ahead value of its task
        _, reward, *_ = env.step(2)
        assert reward == pytest.approx(values[2], rel=1e-4, abs=1e-12)
    (fast, fast_ledger), (slow, slow_ledger) = results[True], results[False]
    n = len(slow)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-6 * np.abs(slow).max())
    assert np.abs(slow).max() > 0
    assert fast_ledger["lookahead_forward"] == n and fast_ledger["lookahead_backward"] == 0
    assert slow_ledger["lookahead_forward"] == n and slow_ledger["lookahead_backward"] == n
