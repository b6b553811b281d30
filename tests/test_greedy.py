"""Greedy look-ahead: the env's look-ahead hook and the greedy designer."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import vpt_gym  # noqa: F401
from vpt_gym.agents import GreedyDesigner, make_designer
from vpt_gym.envs.toy import oracle_action
from vpt_gym.runner import run_episode


class _OracleDesigner:
    name = "oracle"

    def __init__(self, env):
        self.env = env

    def reset(self, seed=None):
        return None

    def act(self, observation, info):
        return oracle_action(self.env)

    def observe(self, *args):
        return None


def test_lookahead_values_match_the_hand_computation_and_the_reward():
    env = gym.make("vpt/Toy-Alignment-v0", budget=16)
    base = env.unwrapped
    env.reset(seed=4)
    env.step(2)
    theta = base.learner.module.theta.detach().clone()
    g_down = base.g_down[0]
    before = base.ledger.lookahead_backward
    values = base.lookahead_values()
    assert base.ledger.lookahead_backward == before + base.action_space.n
    for a, task in enumerate(base.task_space.tasks):
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        assert values[a] == pytest.approx(base.learner.lr * float(g_down @ g_pre), rel=1e-12)
    assert torch.equal(base.learner.module.theta.detach(), theta)  # the look-ahead changed nothing
    best = int(np.argmax(values))
    _, reward, _, _, info = env.step(best)
    assert reward == pytest.approx(values[best], rel=1e-12) and info["alignment"] == pytest.approx(values[best])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_reaches_the_oracle_return_and_beats_random_at_matched_budget(seed):
    env = gym.make("vpt/Toy-Alignment-v0", budget=256)
    greedy = run_episode(env, make_designer("greedy", env), seed=seed)
    oracle = run_episode(env, _OracleDesigner(env.unwrapped), seed=seed)
    random = run_episode(env, make_designer("random", env), seed=seed)
    assert greedy["return"] >= 0.95 * oracle["return"]
    assert greedy["return"] > random["return"] + 5.0
    for row in (greedy, oracle, random):
        assert row["ledger"]["learner_updates"] == 256
    assert greedy["ledger"]["lookahead_backward"] == 256 * env.action_space.n
    assert oracle["ledger"]["lookahead_backward"] == random["ledger"]["lookahead_backward"] == 0


def test_greedy_on_a_box_space_uses_a_grid_and_is_charged():
    env = gym.make("vpt/LM-SoftTargetsContinuous-v0", size="tiny", budget=2, eval_items=1, max_new_tokens=4)
    designer = GreedyDesigner(env, grid_points=3)
    assert len(designer.candidates) == 9
    row = run_episode(env, designer, seed=0)
    # the soft-target menu is linear in its targets: one forward-mode pass values all 9 candidates
    assert row["ledger"]["lookahead_forward"] == 2 and row["ledger"]["lookahead_backward"] == 0
    assert row["ledger"]["learner_updates"] == 2
    env.unwrapped.forward_mode_lookahead = False
    row = run_episode(env, designer, seed=0)
    assert row["ledger"]["lookahead_backward"] == 2 * 9 and row["ledger"]["lookahead_forward"] == 0


def test_forward_mode_lookahead_equals_per_task_backward_on_the_lm_env():
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=4, eval_items=1, max_new_tokens=4)
    base = env.unwrapped
    env.reset(seed=3)
    env.step(1)
    fast = base.lookahead_values()
    base.forward_mode_lookahead = False
    slow = base.lookahead_values()
    assert base.ledger.lookahead_forward == 1 and base.ledger.lookahead_backward == base.action_space.n
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-7 * np.abs(slow).max())


def test_lookahead_needs_a_running_episode_and_valid_actions():
    env = gym.make("vpt/Toy-Alignment-v0", budget=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.lookahead_values()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.unwrapped.lookahead_values([0, 99])
    with pytest.raises(ValueError, match="grid_points"):
        GreedyDesigner(env, grid_points=1)


def test_cosine_lookahead_matches_the_hand_computation_and_the_reward():
    """value="cosine": cos(g_down, g_pre(task)) from each task's gradient, = the cosine reward of the task taken."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=16, reward="cosine")
    base = env.unwrapped
    env.reset(seed=5)
    env.step(1)
    theta, g_down = base.learner.module.theta.detach().clone(), base.g_down[0]
    values = base.lookahead_values()  # the env's reward is cosine: the look-ahead follows it
    for a, task in enumerate(base.task_space.tasks):
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        expected = float(g_down @ g_pre) / float(torch.linalg.vector_norm(g_down) * torch.linalg.vector_norm(g_pre))
        assert values[a] == pytest.approx(expected, rel=1e-9)
    best = int(np.argmax(values))
    _, reward, _, _, info = env.step(best)
    assert reward == pytest.approx(values[best], rel=1e-9)


def test_cosine_lookahead_on_the_lm_env_is_the_cosine_reward_of_each_task():
    """On the LM menu the cosine look-ahead takes one backward per task; each value is the reward that task
    gets when it is taken from the same state (the branch restores the env)."""
    env = gym.make("vpt/LM-SoftTargets-v1", size="tiny", budget=4, eval_items=1, max_new_tokens=4, reward="cosine",
                   device="cpu")
    base = env.unwrapped
    env.reset(seed=3)
    env.step(2)
    before = base.ledger.lookahead_backward
    values = base.lookahead_values()
    assert base.ledger.lookahead_backward == before + base.action_space.n
    _, branches = base.counterfactual(list(range(base.action_space.n)), measure=lambda learner: 0.0)
    realized = [b.outcome.stats.cosine for b in branches]
    np.testing.assert_allclose(values, realized, rtol=1e-5, atol=1e-7)


def test_value_gain_lookahead_is_the_probe_loss_drop_of_each_tasks_sgd_step():
    """value="value_gain" on the toy (SGD): theta' = theta - lr g_pre(task), value = L_probe(theta) - L_probe(theta')
    with L_probe = 1/2 mean_i |theta - y_i|^2 on the fixed probe batch, computed by hand; the env's value_gain reward
    of the task taken equals its look-ahead value, and the look-ahead's passes are charged."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=16, reward="value_gain")
    base = env.unwrapped
    env.reset(seed=6)
    env.step(3)
    theta = base.learner.module.theta.detach().clone()
    y = base.feedback.probe_batch().y
    ledger = dict(base.ledger.as_dict())
    values = base.lookahead_values()  # the env's reward is value_gain: the look-ahead follows it
    n = base.action_space.n

    def probe_loss(t):
        return 0.5 * float(((t[None, :] - y) ** 2).sum(dim=1).mean())

    for a, task in enumerate(base.task_space.tasks):
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        expected = probe_loss(theta) - probe_loss(theta - base.learner.lr * g_pre)
        assert values[a] == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert torch.equal(base.learner.module.theta.detach(), theta)  # the look-ahead changed nothing
    after = base.ledger.as_dict()
    assert after["lookahead_backward"] - ledger["lookahead_backward"] == n
    assert after["feedback_forward"] - ledger["feedback_forward"] == n  # the loss before is the env's cached one
    assert after["learner_updates"] == ledger["learner_updates"]
    best = int(np.argmax(values))
    _, reward, _, _, _ = env.step(best)
    assert reward == pytest.approx(values[best], rel=1e-12)


@pytest.mark.parametrize("reward", ["metric_gain", "alignment"])
def test_metric_gain_lookahead_is_the_probe_metric_change_of_each_tasks_sgd_step(reward):
    """value="metric_gain" on the toy (SGD): theta' = theta - lr g_pre(task), value = m(theta') - m(theta) with m the
    fraction of coordinates within tolerance of the probe mean, by hand; charged like value_gain (one metric before
    unless the env's reward already measures it); under the metric_gain reward the step's reward is its value."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=64, reward=reward)
    base = env.unwrapped
    env.reset(seed=1)
    for _ in range(29):  # walk toward the probe mean until some coordinates sit near the tolerance
        env.step(0)
    theta = base.learner.module.theta.detach().clone()
    target = base.feedback.probe_batch().y.mean(dim=0)
    tol = base.feedback.world.config.tolerance

    def m(t):
        return float(((t - target).abs() < tol).double().mean())

    ledger = dict(base.ledger.as_dict())
    values = base.lookahead_values(value="metric_gain")
    n = base.action_space.n
    expected = []
    for task in base.task_space.tasks:
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        expected.append(m(theta - base.learner.lr * g_pre) - m(theta))
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-12)
    assert len(set(expected)) > 1  # a state where the tasks' steps cross the tolerance differently
    assert torch.equal(base.learner.module.theta.detach(), theta)
    after = base.ledger.as_dict()
    assert after["feedback_forward"] - ledger["feedback_forward"] == n + (reward != "metric_gain")
    assert after["lookahead_backward"] - ledger["lookahead_backward"] == n
    assert after["learner_updates"] == ledger["learner_updates"]
    if reward == "metric_gain":
        assert base.lookahead_values() == pytest.approx(values, abs=0)  # the default follows the reward
        best = int(np.argmax(values))
        _, r, _, _, _ = env.step(best)
        assert r == pytest.approx(values[best], abs=1e-12)


def test_metric_gain_lookahead_with_the_ridge_probe_metric_is_each_tasks_reward():
    """SSL (AdamW, EMA-free SimCLR learner of v2, tiny): under reward="metric_gain", probe_metric="ridge_loo" the
    look-ahead value of every task equals the reward that task's real update then gets, taken from the same state
    on a second env with the same seed (CPU, bitwise restore)."""
    kwargs = dict(size="tiny", budget=8, reward="metric_gain", probe_metric="ridge_loo", device="cpu")
    env = gym.make("vpt/SSL-Augment-v2", **kwargs)
    env.reset(seed=1)
    env.step(0)
    values = env.unwrapped.lookahead_values()
    assert np.isfinite(values).all() and np.ptp(values) > 0
    for a in range(env.action_space.n):
        twin = gym.make("vpt/SSL-Augment-v2", **kwargs)
        twin.reset(seed=1)
        twin.step(0)
        _, r, _, _, _ = twin.step(a)
        assert r == pytest.approx(values[a], rel=1e-9, abs=1e-12)


def test_value_gain_lookahead_on_the_lm_env_is_each_tasks_value_gain_reward():
    """On the LM menu (AdamW) from an env whose reward is alignment: each look-ahead value equals the value_gain
    reward the same task earns when a value_gain env, replayed to the same state, takes it."""
    kwargs = dict(size="tiny", budget=4, eval_items=1, max_new_tokens=4, device="cpu")
    env = gym.make("vpt/LM-SoftTargets-v1", reward="alignment", **kwargs)
    base = env.unwrapped
    env.reset(seed=3)
    env.step(2)
    before = base.ledger.feedback_forward
    values = base.lookahead_values(value="value_gain")
    assert base.ledger.feedback_forward == before + base.action_space.n + 1  # + the probe loss before
    for a in (0, 6):
        other = gym.make("vpt/LM-SoftTargets-v1", reward="value_gain", **kwargs)
        other.reset(seed=3)
        other.step(2)
        _, reward, _, _, _ = other.step(a)
        assert reward == pytest.approx(values[a], rel=1e-5, abs=1e-7)


class FakeScriptedLookaheadEnv(gym.Env):
    """A fake env (unit test only) whose look-ahead returns scripted values, one row per decision."""

    def __init__(self, values, mask=None):
        self.action_space = gym.spaces.Discrete(len(values[0]))
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        self.values = [np.asarray(v, dtype=float) for v in values]
        self.mask = np.ones(self.action_space.n, dtype=bool) if mask is None else np.asarray(mask)
        self.t = 0

    def lookahead_values(self, candidates):
        assert candidates == list(range(self.action_space.n))
        v = self.values[self.t]
        self.t += 1
        return v

    def action_masks(self):
        return self.mask


def test_follow_the_leader_takes_the_argmax_of_the_running_sum_by_hand():
    # decision:   values          running sum G        FTL   greedy
    #   1       [1, 0, 0.5]     [1, 0, 0.5]          0     0
    #   2       [0, 3, 0]       [1, 3, 0.5]          1     1
    #   3       [2, 0, 0]       [3, 3, 0.5]          0 (tie: lowest index)  0
    #   4       [0, 0, 2.6]     [3, 3, 3.1]          2     2
    #   5       [0, 0.5, -1]    [3, 3.5, 2.1]        1     1
    #   6       [0.2, 0, 0.1]   [3.2, 3.5, 2.2]      1     0
    values = [[1, 0, 0.5], [0, 3, 0], [2, 0, 0], [0, 0, 2.6], [0, 0.5, -1], [0.2, 0, 0.1]]
    env = FakeScriptedLookaheadEnv(values)
    ftl = make_designer("follow_the_leader", env)
    ftl.reset(seed=0)
    assert [ftl.act(None, {}) for _ in values] == [0, 1, 0, 2, 1, 1]
    np.testing.assert_allclose(ftl.totals, [3.2, 3.5, 2.2])
    greedy = make_designer("greedy", FakeScriptedLookaheadEnv(values))
    assert [greedy.act(None, {}) for _ in values] == [0, 1, 0, 2, 1, 0]
    ftl.reset(seed=1)  # a new episode forgets the sums
    assert ftl.totals.tolist() == [0.0, 0.0, 0.0]


def test_follow_the_leader_never_takes_a_masked_task():
    env = FakeScriptedLookaheadEnv([[5, 1, 0], [5, 1, 0]], mask=[False, True, True])
    ftl = make_designer("follow_the_leader", env)
    ftl.reset()
    assert [ftl.act(None, {}), ftl.act(None, {})] == [1, 1]


def test_follow_the_leader_on_the_toy_charges_greedy_s_look_ahead():
    env = gym.make("vpt/Toy-Alignment-v0", budget=32)
    ftl = run_episode(env, make_designer("follow_the_leader", env), seed=3)
    greedy = run_episode(env, make_designer("greedy", env), seed=3)
    assert ftl["ledger"]["learner_updates"] == 32
    assert ftl["ledger"]["lookahead_backward"] == greedy["ledger"]["lookahead_backward"] == 32 * env.action_space.n
