"""Multi-armed bandit task designers: each task of a ``Discrete`` menu is an arm, the reward is the env's.

Every designer here is built as ``Cls(env, **hyperparameters)`` (so the class itself is the
``factory(env)`` of :data:`vpt_gym.agents.DESIGNERS`) and shares these rules:

Action space:
    ``Discrete(n, start)`` only; arm ``i`` is action ``start + i``. Any other space raises ``ValueError``.
Masks:
    Each :meth:`act` reads ``env.unwrapped.action_masks()`` (all arms valid when the env has none) and only
    ever returns an unmasked action. If every action is masked it returns ``env.unwrapped.standard_action``
    (the task the env runs for a masked action anyway).
Episodes:
    :meth:`reset` reseeds the private ``numpy.random.Generator`` (the only source of randomness; no global
    RNG) and clears every statistic: a designer reused across episodes starts each one from its prior.
    Before the first :meth:`reset` the generator is ``default_rng(0)``.
Observations:
    :meth:`observe` credits the reward to the ``action`` argument (not to the last action :meth:`act`
    returned), so a caller may override the designer's choice. Two kinds of transitions update nothing:

    - ``info["masked_action"]`` is True: the env ran its standard task instead of ``action``, so the reward
      belongs to neither ``action`` nor (for importance-weighted EXP3) to an arm with a known choice
      probability. Counted in ``masked_rewards``.
    - a non-finite reward (``nan``, ``±inf``): counted in ``skipped_rewards``; statistics stay as they were.
Reward normalization (``reward_scale``, ``reward_window``; every learning bandit):
    The alignment reward is unbounded and its scale varies by orders of magnitude across envs and, on the
    LM envs, between g_down refreshes of one episode, while UCB and EXP3 assume rewards in [0, 1]. Each
    finite reward ``r`` is mapped once, when it is observed, and only the mapped value enters the
    statistics (nothing is re-expressed later):

    - ``x = (r - lo) / (hi - lo)`` in [0, 1] (UCB1, EXP3, discounted UCB; ``x = 1/2`` while ``hi == lo``);
    - ``u = r / max|r|`` in [-1, 1] (ε-greedy, Thompson sampling: no shift, so 0 stays "zero reward").

    ``reward_scale="running"`` (default): ``lo``, ``hi`` and ``max|r|`` are taken over the last
    ``reward_window`` finite rewards (default 256), ``r`` itself included. An outlier burst therefore
    counts at most 1 per reward in the statistics, and ``reward_window`` rewards after it has passed,
    ordinary rewards are resolved again (with an episode-long range they became indistinguishable, and
    EXP3, UCB1 and discounted UCB stopped learning). ``reward_scale=s > 0`` fixes the range to ``[-s, s]``,
    ``reward_scale=(low, high)`` to ``[low, high]``; rewards outside are clipped. Everything is computed in
    units of the range's largest magnitude, so any finite reward, ``±1e30`` or ``±1.7e308`` included,
    never overflows or warns.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "DiscountedUCBDesigner",
    "EXP3Designer",
    "EpsilonGreedyDesigner",
    "RewardNormalizer",
    "RoundRobinDesigner",
    "ThompsonSamplingDesigner",
    "UCB1Designer",
]


class RewardNormalizer:
    """Maps each reward, when observed, into [0, 1] and [-1, 1] by a recent or fixed range (module doc).

    Args:
        reward_scale: ``"running"`` (the range of the last ``window`` finite rewards), a positive finite
            float ``s`` (range ``[-s, s]``), or a ``(low, high)`` pair of finite floats with ``low < high``.
        window: finite rewards the running range covers, an integer in [1, 1_000_000].

    Attributes:
        fixed: the fixed ``(low, high)`` range, or ``None`` for the running one.

    Raises:
        ValueError: any other ``reward_scale`` or ``window``.
    """

    def __init__(self, reward_scale: str | float | tuple[float, float] = "running", window: int = 256) -> None:
        accepted = "accepted: 'running', a float s > 0, or a (low, high) pair of finite floats with low < high"
        if isinstance(reward_scale, str):
            if reward_scale != "running":
                raise ValueError(f"reward_scale={reward_scale!r} is not valid; {accepted}")
            self.fixed: tuple[float, float] | None = None
        elif isinstance(reward_scale, (tuple, list)) and len(reward_scale) == 2:
            low, high = (float(v) for v in reward_scale)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"reward_scale={reward_scale!r} is not valid; {accepted}")
            self.fixed = (low, high)
        elif isinstance(reward_scale, (int, float)) and not isinstance(reward_scale, bool):
            s = float(reward_scale)
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"reward_scale={reward_scale!r} is not valid; {accepted}")
            self.fixed = (-s, s)
        else:
            raise ValueError(f"reward_scale={reward_scale!r} is not valid; {accepted}")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= 1_000_000:
            raise ValueError(f"reward_window={window!r} is outside its range: an integer in [1, 1000000]")
        self.window = int(window)
        self.reset()

    def reset(self) -> None:
        """Forget the running range (a fixed range is kept)."""
        self._recent: collections.deque[float] = collections.deque(maxlen=self.window)

    def update(self, reward: float) -> tuple[float, float]:
        """Record a finite reward and map it.

        Returns:
            ``(x, u)``: ``x`` in [0, 1] (min-max map of the range) and ``u`` in [-1, 1] (``r`` over the
            range's largest magnitude; 0 when that is 0).
        """
        if self.fixed is not None:
            low, high = self.fixed
            reward = min(max(reward, low), high)
        else:
            self._recent.append(reward)
            low, high = min(self._recent), max(self._recent)
        scale = max(abs(low), abs(high))
        if scale == 0.0:
            return 0.5, 0.0
        r, lo, hi = reward / scale, low / scale, high / scale  # in [-1, 1]: no overflow
        x = 0.5 if hi == lo else (r - lo) / (hi - lo)
        return min(max(x, 0.0), 1.0), r


class _BanditDesigner:
    """Shared machinery: Discrete check, masks, private RNG, the masked / non-finite reward rules.

    Subclasses implement ``_reset_statistics()``, ``_select(valid) -> arm`` and ``_update(arm, reward)``.
    """

    name = "bandit"

    def __init__(self, env: gym.Env) -> None:
        space = env.action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(f"{type(self).__name__} needs a Discrete action space (a task menu), got {space!r}")
        self.env = env
        self.num_arms = int(space.n)
        self.start = int(space.start)
        self.standard_action = int(getattr(env.unwrapped, "standard_action", self.start))
        self._rng = np.random.default_rng(0)
        self._clear()

    def _clear(self) -> None:
        self.counts = np.zeros(self.num_arms, dtype=np.int64)
        """Updates credited per arm this episode (finite, unmasked rewards), shape [K], int64."""
        self.skipped_rewards = 0
        """Non-finite rewards ignored this episode."""
        self.masked_rewards = 0
        """Rewards ignored this episode because the env ran the standard task (``info["masked_action"]``)."""
        self._reset_statistics()

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: reseed the private generator with ``seed`` and clear every statistic."""
        self._rng = np.random.default_rng(seed)
        self._clear()

    def valid_arms(self) -> np.ndarray:
        """Unmasked arms now, shape [K], bool (all True when the env has no ``action_masks``)."""
        masks = getattr(self.env.unwrapped, "action_masks", None)
        if masks is None:
            return np.ones(self.num_arms, dtype=bool)
        valid = np.asarray(masks(), dtype=bool).reshape(-1)
        if valid.shape != (self.num_arms,):
            raise ValueError(f"action_masks() has shape {valid.shape}; the action space needs ({self.num_arms},)")
        return valid

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> int:
        """An unmasked action (the standard action when every action is masked)."""
        valid = self.valid_arms()
        if not valid.any():
            return self.standard_action
        return self.start + int(self._select(valid))

    def observe(self, action: Any, reward: float, observation: np.ndarray, terminated: bool, truncated: bool,
                info: dict[str, Any]) -> None:
        """Credit ``reward`` to ``action`` unless the env masked it or the reward is non-finite (module doc).

        Raises:
            ValueError: ``action`` is not an action of the Discrete space.
        """
        arm = int(np.asarray(action).reshape(())) - self.start
        if not 0 <= arm < self.num_arms:
            raise ValueError(f"action {action!r} is outside the action space (accepted: "
                             f"{self.start}..{self.start + self.num_arms - 1})")
        if info.get("masked_action", False):
            self.masked_rewards += 1
            return
        reward = float(reward)
        if not math.isfinite(reward):
            self.skipped_rewards += 1
            return
        self.counts[arm] += 1
        self._update(arm, reward)

    def _argmax(self, values: np.ndarray, valid: np.ndarray) -> int:
        """Index of the largest value among valid arms, ties broken uniformly by the private generator."""
        masked = np.where(valid, values, -np.inf)
        best = np.flatnonzero(masked == masked.max())
        return int(best[0] if best.size == 1 else self._rng.choice(best))

    # subclass hooks
    def _reset_statistics(self) -> None:
        return None

    def _select(self, valid: np.ndarray) -> int:
        raise NotImplementedError

    def _update(self, arm: int, reward: float) -> None:
        return None


def _check(name: str, value: Any, ok: Callable[[float], bool], accepted: str) -> float:
    """``float(value)`` if it is a real number (not a bool) satisfying ``ok``, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not ok(float(value)):
        raise ValueError(f"{name}={value!r} is outside its range {accepted}")
    return float(value)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """``numerator / denominator`` elementwise, ``empty`` where the denominator is 0 (no warnings)."""
    out = np.full(np.broadcast(numerator, denominator).shape, empty, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


class RoundRobinDesigner(_BanditDesigner):
    """Cycles the task menu in index order, skipping masked tasks; ignores rewards.

    The first action of an episode is the first unmasked arm; then the next unmasked arm after the last one
    chosen (wrapping around). A uniform-coverage baseline for the learning bandits.

    Raises:
        ValueError: a non-``Discrete`` action space.
    """

    name = "round_robin"

    def _reset_statistics(self) -> None:
        self._last = -1

    def _select(self, valid: np.ndarray) -> int:
        order = (self._last + 1 + np.arange(self.num_arms)) % self.num_arms
        self._last = int(order[valid[order]][0])
        return self._last


class EpsilonGreedyDesigner(_BanditDesigner):
    """ε-greedy on sample-average action values.

    With probability ``epsilon`` a uniformly random unmasked task, otherwise the unmasked task with the
    largest sample average of its scaled rewards u = r / (recent max |r|) in [-1, 1] (module docstring;
    ties at random; untried tasks have value ``initial_value``). Averages use the incremental rule
    Q <- Q (1 - 1/n) + u / n, a convex combination that never overflows.

    Source: Sutton & Barto, Reinforcement Learning: An Introduction (2nd ed. 2018), §2.2-2.4 (ε-greedy,
    sample averages, incremental implementation).

    Args:
        env: the env (``Discrete`` action space).
        epsilon: exploration probability in [0, 1].
        initial_value: Q_1 of every task in scaled-reward units, in [-1, 1] (0: "zero reward").
        reward_scale: ``"running"``, ``s > 0`` or ``(low, high)`` (module docstring).
        reward_window: rewards the running scale covers, in [1, 1_000_000] (module docstring).

    Raises:
        ValueError: ``epsilon`` or ``initial_value`` outside [0, 1] / [-1, 1], a bad ``reward_scale`` or
            ``reward_window``, or a non-``Discrete`` space.
    """

    name = "epsilon_greedy"

    def __init__(self, env: gym.Env, *, epsilon: float = 0.1, initial_value: float = 0.0,
                 reward_scale: str | float | tuple[float, float] = "running", reward_window: int = 256) -> None:
        self.epsilon = _check("epsilon", epsilon, lambda v: 0.0 <= v <= 1.0, "[0, 1]")
        self.initial_value = _check("initial_value", initial_value, lambda v: -1.0 <= v <= 1.0, "[-1, 1]")
        self.normalizer = RewardNormalizer(reward_scale, reward_window)
        super().__init__(env)

    def _reset_statistics(self) -> None:
        self.normalizer.reset()
        self.values = np.full(self.num_arms, self.initial_value)
        """Sample-average scaled reward u per arm, shape [K], float64, in [-1, 1]."""

    def _select(self, valid: np.ndarray) -> int:
        if self._rng.random() < self.epsilon:
            return int(self._rng.choice(np.flatnonzero(valid)))
        return self._argmax(self.values, valid)

    def _update(self, arm: int, reward: float) -> None:
        _, u = self.normalizer.update(reward)
        n = self.counts[arm]
        self.values[arm] = self.values[arm] * (1.0 - 1.0 / n) + u / n


class UCB1Designer(_BanditDesigner):
    """UCB1: each unmasked task once, then the largest x̄_i + c · sqrt(2 ln t / n_i).

    x̄_i is the mean reward of task i mapped to [0, 1] (UCB1 assumes rewards in [0, 1]; see
    ``reward_scale`` in the module docstring), n_i its number of updates, t the total number of updates.
    Untried tasks are taken first (ties at random).

    Source: Auer, Cesa-Bianchi & Fischer, "Finite-time Analysis of the Multiarmed Bandit Problem", Machine
    Learning 47 (2002), Fig. 1 (UCB1; ``c = 1`` is the paper's index).

    Args:
        env: the env (``Discrete`` action space).
        c: exploration coefficient >= 0 (0 is greedy).
        reward_scale: ``"running"``, ``s > 0`` or ``(low, high)`` (module docstring).
        reward_window: rewards the running range covers, in [1, 1_000_000] (module docstring).

    Raises:
        ValueError: ``c`` negative or non-finite, a bad ``reward_scale`` or ``reward_window``, or a
            non-``Discrete`` space.
    """

    name = "ucb1"

    def __init__(self, env: gym.Env, *, c: float = 1.0, reward_scale: str | float | tuple[float, float] = "running",
                 reward_window: int = 256) -> None:
        self.c = _check("c", c, lambda v: 0.0 <= v < math.inf, "[0, inf)")
        self.normalizer = RewardNormalizer(reward_scale, reward_window)
        super().__init__(env)

    def _reset_statistics(self) -> None:
        self.normalizer.reset()
        self._mean_x = np.zeros(self.num_arms)  # sample mean of the mapped rewards x in [0, 1]

    def _select(self, valid: np.ndarray) -> int:
        untried = valid & (self.counts == 0)
        if untried.any():
            return self._argmax(np.zeros(self.num_arms), untried)
        t = self.counts.sum()
        bonus = np.sqrt(_safe_divide(np.full(self.num_arms, 2.0 * math.log(t)), self.counts, math.inf))
        return self._argmax(self._mean_x + self.c * bonus, valid)

    def _update(self, arm: int, reward: float) -> None:
        x, _ = self.normalizer.update(reward)
        n = self.counts[arm]
        self._mean_x[arm] = self._mean_x[arm] * (1.0 - 1.0 / n) + x / n


class EXP3Designer(_BanditDesigner):
    """EXP3: exponential weights on importance-weighted reward estimates, mixed with uniform exploration.

    With K unmasked tasks, p_i = (1 - γ) w_i / Σ_j w_j + γ / K over unmasked tasks (0 for masked ones) and
    log w_i = (γ / n) Σ_t x̂_i(t), n = menu size, x̂_i(t) = x_t / p_i(t) when task i was chosen at t and 0
    otherwise, x_t the reward mapped to [0, 1] when observed (EXP3 assumes bounded rewards, chosen by an
    adversary: a map that moves with the recent range is such a sequence; ``reward_scale`` in the module
    docstring). Probabilities are a softmax of the log-weights computed with the log-sum-exp shift, so no
    reward, however large, overflows or yields NaN. ``probabilities`` holds the last distribution sampled.

    The importance weight uses the probability the *given* action had in the last :meth:`act`; when
    ``observe`` gets an action that distribution gave probability 0 (or no :meth:`act` came since the last
    ``observe``), it uses the current distribution over the whole menu (every task has p >= γ / n there).

    Source: Auer, Cesa-Bianchi, Freund & Schapire, "The Nonstochastic Multiarmed Bandit Problem", SIAM J.
    Comput. 32(1) (2002), Fig. 1 (Exp3). Used for online data mixing by Albalak et al., "Efficient Online
    Data Mixing for Language Model Pre-Training" (2023, ODM).

    Args:
        env: the env (``Discrete`` action space).
        gamma: exploration rate in (0, 1].
        reward_scale: ``"running"``, ``s > 0`` or ``(low, high)`` (module docstring).
        reward_window: rewards the running range covers, in [1, 1_000_000] (module docstring).

    Raises:
        ValueError: ``gamma`` outside (0, 1], a bad ``reward_scale`` or ``reward_window``, or a
            non-``Discrete`` space.
    """

    name = "exp3"

    def __init__(self, env: gym.Env, *, gamma: float = 0.1,
                 reward_scale: str | float | tuple[float, float] = "running", reward_window: int = 256) -> None:
        self.gamma = _check("gamma", gamma, lambda v: 0.0 < v <= 1.0, "(0, 1]")
        self.normalizer = RewardNormalizer(reward_scale, reward_window)
        super().__init__(env)

    def _reset_statistics(self) -> None:
        self.normalizer.reset()
        self.estimates = np.zeros(self.num_arms)
        """Σ_t x̂_i(t), the importance-weighted sums of mapped rewards, shape [K], float64, >= 0."""
        self.probabilities = np.zeros(self.num_arms)
        """The distribution of the last :meth:`act`, shape [K], float64 (zeros before the first)."""

    def distribution(self, valid: np.ndarray) -> np.ndarray:
        """The EXP3 distribution over arms for the ``valid`` mask, shape [K], float64, sums to 1."""
        log_w = np.where(valid, (self.gamma / self.num_arms) * self.estimates, -np.inf)
        log_w = log_w - log_w[valid].max()
        w = np.exp(log_w)
        k = int(valid.sum())
        p = (1.0 - self.gamma) * w / w.sum() + np.where(valid, self.gamma / k, 0.0)
        return p / p.sum()

    def _select(self, valid: np.ndarray) -> int:
        self.probabilities = self.distribution(valid)
        return int(self._rng.choice(self.num_arms, p=self.probabilities))

    def _update(self, arm: int, reward: float) -> None:
        p = self.probabilities[arm]
        if not p > 0:  # not sampled by the last act(): the current distribution over the whole menu
            p = self.distribution(np.ones(self.num_arms, dtype=bool))[arm]
        x, _ = self.normalizer.update(reward)
        self.estimates[arm] += x / p
        self.probabilities = np.zeros(self.num_arms)


class ThompsonSamplingDesigner(_BanditDesigner):
    """Gaussian Thompson sampling with an independent Normal-Inverse-Gamma posterior per task.

    Model per task, on the scaled reward u = r / (recent max |r|, or the fixed scale) in [-1, 1], mapped
    when observed (module docstring):
    u ~ N(μ, σ²), prior σ² ~ InvGamma(``prior_shape``, ``prior_rate``), μ | σ² ~ N(``prior_mean``,
    σ² / ``prior_count``). Defaults (0, 1, 1, 0.25): prior mean "zero reward" worth one pseudo-observation,
    prior noise scale ~ half the largest reward seen (rewards are scaled into [-1, 1]). Each decision draws
    σ² then μ from every unmasked task's posterior and takes the largest μ. Posterior (n rewards, mean ū,
    sum of squared deviations S): κ = κ0 + n, m = (κ0 m0 + n ū) / κ, α = α0 + n / 2,
    β = β0 + S / 2 + κ0 n (ū - m0)² / (2 κ). Sufficient statistics use Welford's update (overflow-free).

    Source: Russo, Van Roy, Kazerouni, Osband & Wen, "A Tutorial on Thompson Sampling" (2018), Alg. 2 with
    a Gaussian model; Agrawal & Goyal, "Further Optimal Regret Bounds for Thompson Sampling" (AISTATS 2013,
    Gaussian priors); conjugate update: Murphy, "Conjugate Bayesian analysis of the Gaussian distribution"
    (2007), §6 (Normal-Inverse-Gamma).

    Args:
        env: the env (``Discrete`` action space).
        prior_mean: m0, finite (scaled-reward unit).
        prior_count: κ0 > 0 pseudo-observations behind ``prior_mean``.
        prior_shape: α0 > 0.
        prior_rate: β0 > 0 (scaled-reward unit squared).
        reward_scale: ``"running"``, ``s > 0`` or ``(low, high)`` (module docstring).
        reward_window: rewards the running scale covers, in [1, 1_000_000] (module docstring).

    Raises:
        ValueError: a prior parameter outside its range, a bad ``reward_scale`` or ``reward_window``, or a
            non-``Discrete`` space.
    """

    name = "thompson"

    def __init__(self, env: gym.Env, *, prior_mean: float = 0.0, prior_count: float = 1.0, prior_shape: float = 1.0,
                 prior_rate: float = 0.25, reward_scale: str | float | tuple[float, float] = "running",
                 reward_window: int = 256) -> None:
        positive = lambda v: 0.0 < v < math.inf  # noqa: E731
        self.prior_mean = _check("prior_mean", prior_mean, math.isfinite, "finite")
        self.prior_count = _check("prior_count", prior_count, positive, "(0, inf)")
        self.prior_shape = _check("prior_shape", prior_shape, positive, "(0, inf)")
        self.prior_rate = _check("prior_rate", prior_rate, positive, "(0, inf)")
        self.normalizer = RewardNormalizer(reward_scale, reward_window)
        super().__init__(env)

    def _reset_statistics(self) -> None:
        self.normalizer.reset()
        self._mean_u = np.zeros(self.num_arms)
        self._sq_dev_u = np.zeros(self.num_arms)

    def posterior(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-task posterior ``(m, κ, α, β)``, each shape [K], float64 (scaled-reward units)."""
        n = self.counts.astype(np.float64)
        kappa = self.prior_count + n
        m = (self.prior_count * self.prior_mean + n * self._mean_u) / kappa
        alpha = self.prior_shape + n / 2.0
        beta = (self.prior_rate + self._sq_dev_u / 2.0
                + self.prior_count * n * (self._mean_u - self.prior_mean) ** 2 / (2.0 * kappa))
        return m, kappa, alpha, beta

    def _select(self, valid: np.ndarray) -> int:
        m, kappa, alpha, beta = self.posterior()
        variance = beta / np.maximum(self._rng.gamma(alpha), np.finfo(np.float64).tiny)
        mu = m + np.sqrt(variance / kappa) * self._rng.standard_normal(self.num_arms)
        return self._argmax(mu, valid)

    def _update(self, arm: int, reward: float) -> None:
        _, u = self.normalizer.update(reward)
        n = self.counts[arm]
        delta = u - self._mean_u[arm]
        self._mean_u[arm] = self._mean_u[arm] * (1.0 - 1.0 / n) + u / n
        self._sq_dev_u[arm] += delta * (u - self._mean_u[arm])


class DiscountedUCBDesigner(_BanditDesigner):
    """Discounted UCB (D-UCB) for non-stationary rewards: UCB on exponentially discounted statistics.

    With discount γ, N_i = Σ_s γ^(t-s) 1{task i at s}, x̄_i = Σ_s γ^(t-s) x_s 1{task i at s} / N_i (rewards
    mapped to [0, 1], so the reward bound B = 1; ``reward_scale`` in the module docstring) and
    n = Σ_i N_i, the index is x̄_i + 2 B sqrt(ξ log n / N_i). Untried tasks are taken first (ties at random).
    The task values in continued pretraining drift as the learner moves, which is what the discount tracks
    (effective memory ~ 1 / (1 - γ) updates). The discount is applied once per credited update (skipped
    and masked rewards do not advance it).

    Source: Garivier & Moulines, "On Upper-Confidence Bound Policies for Switching Bandit Problems" (ALT
    2011; arXiv 0805.3415), the D-UCB policy and its padding c_t(γ, i); the analysis takes ξ > 1/2.

    Args:
        env: the env (``Discrete`` action space).
        discount: γ in (0, 1).
        xi: ξ > 0, exploration constant (default 0.6, just above the analysis' 1/2).
        reward_scale: ``"running"``, ``s > 0`` or ``(low, high)`` (module docstring).
        reward_window: rewards the running range covers, in [1, 1_000_000] (module docstring).

    Raises:
        ValueError: ``discount`` outside (0, 1), ``xi`` not positive, a bad ``reward_scale`` or
            ``reward_window``, or a non-``Discrete`` space.
    """

    name = "discounted_ucb"

    def __init__(self, env: gym.Env, *, discount: float = 0.99, xi: float = 0.6,
                 reward_scale: str | float | tuple[float, float] = "running", reward_window: int = 256) -> None:
        self.discount = _check("discount", discount, lambda v: 0.0 < v < 1.0, "(0, 1)")
        self.xi = _check("xi", xi, lambda v: 0.0 < v < math.inf, "(0, inf)")
        self.normalizer = RewardNormalizer(reward_scale, reward_window)
        super().__init__(env)

    def _reset_statistics(self) -> None:
        self.normalizer.reset()
        self._discounted_counts = np.zeros(self.num_arms)
        self._discounted_x = np.zeros(self.num_arms)

    def _select(self, valid: np.ndarray) -> int:
        untried = valid & (self._discounted_counts == 0)
        if untried.any():
            return self._argmax(np.zeros(self.num_arms), untried)
        n_total = self._discounted_counts.sum()
        mean_x = _safe_divide(self._discounted_x, self._discounted_counts, 0.0)
        log_n = np.full(self.num_arms, self.xi * max(math.log(n_total), 0.0))
        padding = 2.0 * np.sqrt(_safe_divide(log_n, self._discounted_counts, math.inf))
        return self._argmax(mean_x + padding, valid)

    def _update(self, arm: int, reward: float) -> None:
        x, _ = self.normalizer.update(reward)
        self._discounted_counts *= self.discount
        self._discounted_x *= self.discount
        self._discounted_counts[arm] += 1.0
        self._discounted_x[arm] += x
