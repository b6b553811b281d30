"""Bandit task designers: convergence on a stationary Gaussian bandit, robustness, seeding, masks, toy episodes."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.agents import DESIGNERS, make_designer
from vpt_gym.agents.bandits import (
    DiscountedUCBDesigner,
    EpsilonGreedyDesigner,
    EXP3Designer,
    RewardNormalizer,
    RoundRobinDesigner,
    ThompsonSamplingDesigner,
    UCB1Designer,
)
from vpt_gym.runner import run_episode

BANDITS = ("round_robin", "epsilon_greedy", "ucb1", "exp3", "thompson", "discounted_ucb")
LEARNING = tuple(n for n in BANDITS if n != "round_robin")
# Small-scale arms (alignment rewards are ~1e-3 on the toy): the normalizing designers must be scale-free.
ARM_MEANS = (0.2e-3, 0.5e-3, 1.0e-3, 0.0)
ARM_NOISE = 0.25e-3
BEST_ARM = 2  # not the standard action 0, so a bias toward index 0 cannot pass
PULLS = 2000
SEEDS = (0, 1, 2, 3, 4)


class FakeStationaryBandit(gym.Env):
    """Discrete(4) Gaussian arms with fixed means; masked actions run ``standard_action`` like TaskDesignEnv."""

    metadata = {"render_modes": []}

    def __init__(self, means: tuple[float, ...] = ARM_MEANS, noise: float = ARM_NOISE) -> None:
        self.means = np.asarray(means, dtype=np.float64)
        self.noise = float(noise)
        self.action_space = gym.spaces.Discrete(len(means))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.standard_action = 0
        self.mask = np.ones(len(means), dtype=bool)
        self._rng = np.random.default_rng(0)

    def action_masks(self) -> np.ndarray:
        return self.mask.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        masked = not self.mask[int(action)]
        arm = self.standard_action if masked else int(action)
        reward = float(self.means[arm] + self.noise * self._rng.standard_normal())
        return np.zeros(1, np.float32), reward, False, False, {"masked_action": masked}


class FakeBoxEnv(gym.Env):
    """A continuous action space, which the bandits must refuse."""

    def __init__(self) -> None:
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)


def play(designer: Any, env: FakeStationaryBandit, *, seed: int, pulls: int = PULLS) -> np.ndarray:
    """``pulls`` act/step/observe rounds from ``designer.reset(seed)``; the action log, shape [pulls], int."""
    designer.reset(seed)
    obs, info = env.reset(seed=seed + 1000)
    actions = []
    for _ in range(pulls):
        action = designer.act(obs, info)
        obs, reward, terminated, truncated, info = env.step(action)
        designer.observe(action, reward, obs, terminated, truncated, info)
        actions.append(action)
    return np.asarray(actions)


# Minimum over SEEDS of the best-arm share in pulls 1001..2000 (uniform play: 0.25). Each bound sits below
# what the algorithm's exploration leaves possible and what was measured (20 seeds, see the report):
#   epsilon_greedy (eps=0.1): at most 0.9 + 0.1/4 = 0.925 once the greedy arm is right; measured >= 0.90.
#   exp3 (gamma=0.1): the uniform mixture caps it at 0.925 too; measured >= 0.89.
#   ucb1 (c=1): rewards are min-max mapped to [0, 1], gaps ~0.19 of the range -> O(log t / gap^2) pulls of
#       the runners-up; measured >= 0.83.
#   thompson: measured >= 0.99.
#   discounted_ucb at discount 0.999 (memory ~1000 pulls): measured >= 0.67.
#   discounted_ucb at its default 0.99: the discounted counts saturate at 1/(1-0.99) = 100, so exploration
#       never decays (it is built to track drifting arms); measured >= 0.43, asserted well above uniform.
THRESHOLDS = {
    ("epsilon_greedy", ()): 0.8,
    ("exp3", ()): 0.8,
    ("ucb1", ()): 0.7,
    ("thompson", ()): 0.9,
    ("discounted_ucb", (("discount", 0.999),)): 0.6,
    ("discounted_ucb", ()): 0.35,
}


@pytest.mark.parametrize(("name", "kwargs"), list(THRESHOLDS), ids=lambda v: str(v) if v else "defaults")
def test_best_arm_share_on_stationary_bandit(name: str, kwargs: tuple) -> None:
    env = FakeStationaryBandit()
    designer = DESIGNERS[name](env, **dict(kwargs))
    shares = [float(np.mean(play(designer, env, seed=s)[PULLS // 2:] == BEST_ARM)) for s in SEEDS]
    assert min(shares) > THRESHOLDS[(name, kwargs)], f"{name}{kwargs}: best-arm shares {shares}"


def test_round_robin_cycles_the_menu_and_skips_masked() -> None:
    env = FakeStationaryBandit()
    designer = RoundRobinDesigner(env)
    assert play(designer, env, seed=0, pulls=9).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    env.mask[2] = False
    assert play(designer, env, seed=0, pulls=7).tolist() == [0, 1, 3, 0, 1, 3, 0]


def test_exp3_survives_extreme_and_non_finite_rewards() -> None:
    env = FakeStationaryBandit()
    designer = EXP3Designer(env, gamma=0.1)
    designer.reset(0)
    rewards = [1e30, -1e30, math.inf, math.nan, -math.inf, 1.7e308, -1.7e308, 1e-30, 0.0] * 50
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for reward in rewards:
            action = designer.act(np.zeros(1), {})
            p = designer.probabilities
            assert np.all(np.isfinite(p)) and abs(p.sum() - 1.0) < 1e-12
            assert p.min() >= 0.1 / 4 - 1e-12  # the uniform mixture gamma / K
            designer.observe(action, reward, np.zeros(1), False, False, {})
        final = designer.distribution(np.ones(4, dtype=bool))
    assert np.all(np.isfinite(final)) and abs(final.sum() - 1.0) < 1e-12
    assert designer.skipped_rewards == 3 * 50
    assert designer.counts.sum() == 6 * 50


def test_exp3_log_weights_beyond_exp_overflow() -> None:
    # gamma = 0.9 and a best arm paying the top of a fixed range: its log-weight grows ~ gamma / K per pull,
    # past log(float64 max) ~ 709 within 5,000 pulls; without the log-sum-exp shift w = exp(log w) = inf.
    env = FakeStationaryBandit(means=(0.0, 0.0, 1.0, 0.0), noise=0.0)
    designer = EXP3Designer(env, gamma=0.9, reward_scale=(0.0, 1.0))
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        play(designer, env, seed=0, pulls=5000)
        p = designer.distribution(np.ones(4, dtype=bool))
    assert designer.gamma / 4 * designer.estimates[BEST_ARM] > 800  # log-weight of the best arm
    assert np.all(np.isfinite(p)) and p[BEST_ARM] == pytest.approx(0.1 + 0.9 / 4)


@pytest.mark.parametrize("name", BANDITS)
def test_non_finite_rewards_are_skipped_and_counted(name: str) -> None:
    env = FakeStationaryBandit()
    clean, dirty = DESIGNERS[name](env), DESIGNERS[name](env)
    rng = np.random.default_rng(5)
    clean.reset(3)
    dirty.reset(3)
    for _ in range(200):
        a_clean, a_dirty = clean.act(np.zeros(1), {}), dirty.act(np.zeros(1), {})
        assert a_clean == a_dirty
        reward = float(ARM_MEANS[a_clean] + ARM_NOISE * rng.standard_normal())
        clean.observe(a_clean, reward, np.zeros(1), False, False, {})
        dirty.observe(a_dirty, reward, np.zeros(1), False, False, {})
        for bad in (math.nan, math.inf, -math.inf):  # the rule: no statistic moves, the skip is counted
            dirty.observe(a_dirty, bad, np.zeros(1), False, False, {})
    assert dirty.skipped_rewards == 600 and clean.skipped_rewards == 0
    assert np.array_equal(dirty.counts, clean.counts)


@pytest.mark.parametrize("name", BANDITS)
def test_same_seed_same_actions_and_reset_clears_statistics(name: str) -> None:
    env = FakeStationaryBandit()
    first = play(DESIGNERS[name](env), env, seed=11, pulls=300)
    reused = DESIGNERS[name](env)
    play(reused, env, seed=99, pulls=300)  # another episode first: its statistics must not leak
    assert np.array_equal(play(reused, env, seed=11, pulls=300), first)
    assert reused.counts.sum() == 300 and reused.skipped_rewards == 0


@pytest.mark.parametrize("name", BANDITS)
def test_masked_actions_are_never_chosen(name: str) -> None:
    env = FakeStationaryBandit()
    env.mask[BEST_ARM] = False
    designer = DESIGNERS[name](env)
    actions = play(designer, env, seed=0, pulls=500)
    assert BEST_ARM not in actions and designer.masked_rewards == 0
    assert set(actions.tolist()) <= {0, 1, 3}
    env.mask[:] = False
    assert designer.act(np.zeros(1), {}) == env.standard_action  # nothing valid: the env's standard task


@pytest.mark.parametrize("name", LEARNING)
def test_observe_credits_the_given_action_not_a_masked_one(name: str) -> None:
    env = FakeStationaryBandit()
    designer = DESIGNERS[name](env)
    designer.reset(0)
    chosen = designer.act(np.zeros(1), {})
    other = (chosen + 1) % 4
    designer.observe(other, 1e-3, np.zeros(1), False, False, {})
    assert designer.counts[other] == 1 and designer.counts.sum() == 1
    designer.observe(chosen, 1e-3, np.zeros(1), False, False, {"masked_action": True})
    assert designer.masked_rewards == 1 and designer.counts.sum() == 1
    with pytest.raises(ValueError, match="outside the action space"):
        designer.observe(7, 0.0, np.zeros(1), False, False, {})


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (EpsilonGreedyDesigner, {"epsilon": -0.1}),
        (EpsilonGreedyDesigner, {"epsilon": 1.5}),
        (EpsilonGreedyDesigner, {"epsilon": "0.1"}),
        (EpsilonGreedyDesigner, {"initial_value": math.nan}),
        (EpsilonGreedyDesigner, {"initial_value": 2.0}),
        (EpsilonGreedyDesigner, {"reward_window": 0}),
        (ThompsonSamplingDesigner, {"reward_window": 2.5}),
        (UCB1Designer, {"c": -1.0}),
        (UCB1Designer, {"c": math.inf}),
        (UCB1Designer, {"reward_scale": "max"}),
        (UCB1Designer, {"reward_scale": 0.0}),
        (UCB1Designer, {"reward_scale": (1.0, 1.0)}),
        (EXP3Designer, {"gamma": 0.0}),
        (EXP3Designer, {"gamma": 1.01}),
        (EXP3Designer, {"gamma": True}),
        (ThompsonSamplingDesigner, {"prior_count": 0.0}),
        (ThompsonSamplingDesigner, {"prior_shape": -1.0}),
        (ThompsonSamplingDesigner, {"prior_rate": math.inf}),
        (ThompsonSamplingDesigner, {"prior_mean": math.nan}),
        (DiscountedUCBDesigner, {"discount": 1.0}),
        (DiscountedUCBDesigner, {"discount": 0.0}),
        (DiscountedUCBDesigner, {"xi": 0.0}),
        (DiscountedUCBDesigner, {"reward_scale": (2.0, math.inf)}),
    ],
)
def test_bad_hyperparameters_raise(cls: type, kwargs: dict) -> None:
    (key, value), = kwargs.items()
    with pytest.raises(ValueError, match=key) as err:
        cls(FakeStationaryBandit(), **kwargs)
    assert repr(value) in str(err.value)


@pytest.mark.parametrize("name", BANDITS)
def test_non_discrete_action_space_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="Discrete action space.*Box"):
        DESIGNERS[name](FakeBoxEnv())


def test_reward_normalizer_maps_each_reward_by_the_recent_range() -> None:
    norm = RewardNormalizer("running", window=3)
    mapped = [norm.update(r) for r in (0.0, 2.0, -1.0, 8.0, 2.0, 2.0, 2.0)]
    # (x, u) by hand: window [0] -> empty range; [0, 2]; [0, 2, -1]; [2, -1, 8]; [-1, 8, 2]; [8, 2, 2]; [2, 2, 2]
    expected = [(0.5, 0.0), (1.0, 1.0), (0.0, -0.5), (1.0, 1.0), (1 / 3, 0.25), (0.0, 0.25), (0.5, 1.0)]
    assert mapped == [pytest.approx(e) for e in expected]
    fixed = RewardNormalizer((-1.0, 3.0))
    assert fixed.update(10.0) == (1.0, 1.0)  # clipped to 3
    assert fixed.update(-1.0) == pytest.approx((0.0, -1 / 3)) and fixed.update(1.0) == pytest.approx((0.5, 1 / 3))
    assert RewardNormalizer(2.0).fixed == (-2.0, 2.0)
    huge = RewardNormalizer()
    with np.errstate(over="raise", invalid="raise"):
        assert huge.update(-1.7e308) == (0.5, -1.0) and huge.update(1.7e308) == (1.0, 1.0)
    for bad in (0, 1.5, True, 2_000_000):
        with pytest.raises(ValueError, match=rf"reward_window={bad!r} .*\[1, 1000000\]"):
            RewardNormalizer(window=bad)


BURST = range(5000, 5100)


def burst_reward(t: int, action: int, sign: float) -> float:
    """Issue 15's input: 1e3 for arm 0, else 0; in rounds 5,000-5,099 +-1e9 for arm 0 and -+1e9 otherwise
    (``sign`` = +1 is the issue's input, -1 the mirrored burst that punishes arm 0)."""
    if t in BURST:
        return sign * 1e9 if action == 0 else -sign * 1e9
    return 1e3 if action == 0 else 0.0


# Share of arm 0 in rounds 8,000-9,999 (uniform: 0.2). Before the running range forgot outliers, the issue's
# input gave exp3 0.28, ucb1 0.00 and discounted_ucb 0.20; measured after: epsilon_greedy 0.92, ucb1 0.996,
# exp3 0.92, thompson 1.00, discounted_ucb 0.75 (both signs).
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["issue", "mirrored"])
@pytest.mark.parametrize("name", LEARNING)
def test_bandits_keep_learning_after_a_reward_burst(name: str, sign: float) -> None:
    env = gym.make("vpt/Toy-Alignment-v0", budget=64)
    obs, info = env.reset(seed=0)
    designer = make_designer(name, env)
    designer.reset(seed=0)
    late = np.zeros(env.action_space.n, dtype=np.int64)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        for t in range(10_000):
            action = designer.act(obs, info)
            if name == "exp3":
                assert designer.probabilities.min() >= designer.gamma / env.action_space.n - 1e-12
            designer.observe(action, burst_reward(t, action, sign), obs, False, False, info)
            if t >= 8000:
                late[action] += 1
    env.close()
    assert int(np.argmax(late)) == 0 and late[0] / late.sum() > 0.6, f"{name}: pulls in rounds 8000-9999 {late}"
    if name in ("epsilon_greedy", "exp3"):  # exploration that never decays is still there
        assert late.min() > 0, late
    state = [v for v in vars(designer).values() if isinstance(v, np.ndarray)]
    assert state and all(np.all(np.isfinite(v)) for v in state)


def test_thompson_posterior_known_answer() -> None:
    designer = ThompsonSamplingDesigner(FakeStationaryBandit())
    designer.reset(0)
    for _ in range(2):
        designer.observe(1, 5.0, np.zeros(1), False, False, {})  # scaled reward u = 5 / 5 = 1, twice
    m, kappa, alpha, beta = designer.posterior()
    # kappa = 1 + 2, m = 2 * 1 / 3, alpha = 1 + 1, beta = 0.25 + 0 + 1 * 2 * 1^2 / (2 * 3)
    assert (m[1], kappa[1], alpha[1]) == pytest.approx((2 / 3, 3.0, 2.0))
    assert beta[1] == pytest.approx(0.25 + 1 / 3)
    assert (m[0], kappa[0], alpha[0], beta[0]) == (0.0, 1.0, 1.0, 0.25)  # untouched arm: the prior


@pytest.mark.parametrize("name", BANDITS)
def test_full_toy_episode(name: str) -> None:
    env = gym.make("vpt/Toy-Alignment-v0", budget=128)
    try:
        designer = make_designer(name, env)
        result = run_episode(env, designer, seed=0)
    finally:
        env.close()
    assert result["designer"] == name
    assert result["ledger"]["learner_updates"] == 128
    assert len(result["actions"]) == 128 and set(result["actions"]) <= set(range(env.action_space.n))
    assert math.isfinite(result["return"]) and designer.skipped_rewards == 0
    if name != "round_robin":
        assert designer.counts.sum() == 128
