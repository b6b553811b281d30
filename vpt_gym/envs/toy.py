"""``vpt/Toy-Alignment-v0``: a closed-form learner whose K data sources drift in and out of alignment.

The learner is a point theta in R^d trained by plain SGD on squared losses, so every quantity of the
V-Pretraining value has a closed form and the optimal one-step designer is computable
(:func:`oracle_action`). Thousands of steps per second on a CPU: the env for testing designers and agents.

Model (all vectors in R^d, d = ``dim``):
    downstream optimum      theta*                       (fixed per env, from ``world_seed``)
    source k target         c_k(phi) = theta* + R [cos(phi + 2 pi k/K) e1 + sin(phi + 2 pi k/K) e2] + B b
                            with b = cos(beta) e1 + sin(beta) e2 a fixed unit bias shared by every source
    pretraining loss        L_k(theta; x) = 1/(2n) sum_i |theta - x_i|^2,  x_i = c_k(phi) + sigma eps_i
    standard task           the mixture: sample i drawn from source (i mod K)
    downstream loss         L_down(theta) = 1/2 |theta - theta*|^2 (feedback batches: noisy copies of theta*)
    drift                   phi_{t+1} = phi_t + omega + N(0, phase_noise^2)
The rotating parts cancel in the mixture, which therefore converges to theta* + B b (L_down -> B^2/2 plus
noise), as does a uniformly random designer. A designer that reads the phase phi of the next batch can pick
the source whose rotating part points against the bias and pull theta toward theta* (for R >= B and K >= 4
some source is always within 45 degrees of -b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from vpt_gym.budget import Budget
from vpt_gym.core import FeedbackSet, Learner, PretrainStream, Task
from vpt_gym.envs.factory import card, keyword_signature, require_user_parts
from vpt_gym.envs.task_design import TaskDesignEnv
from vpt_gym.envs.task_design.env import check_feedback_momentum
from vpt_gym.learners import TorchLearner
from vpt_gym.value import ValueEstimator


@dataclass(frozen=True, kw_only=True)
class ToyConfig:
    """Configuration of the toy world.

    Attributes:
        dim: d >= 2, dimension of theta.
        num_sources: K >= 2 data sources.
        radius: R >= 0, magnitude of the rotating (drifting) source offset.
        bias: B >= 0, magnitude of the fixed bias b shared by every source (a unit vector in span(e1, e2)).
        noise: sigma >= 0, per-sample noise of pretraining data.
        feedback_noise: >= 0, per-sample noise of feedback data around theta*.
        batch_size: n >= 1 samples per pretraining batch.
        feedback_batch_size: >= 1 samples per feedback batch.
        omega: phase drift per learner update (radians).
        phase_noise: >= 0 std of the phase drift noise (radians).
        lr: SGD step size eta in (0, 1].
        tolerance: > 0, a coordinate counts as solved when |theta_i - theta*_i| < tolerance (the metric).
        world_seed: >= 0, seed of theta*, b_k and theta_0 (fixed world; episodes are seeded separately).

    Raises:
        ValueError: any value outside its range.
    """

    dim: int = 8
    num_sources: int = 4
    radius: float = 1.5
    bias: float = 1.0
    noise: float = 0.5
    feedback_noise: float = 0.1
    batch_size: int = 16
    feedback_batch_size: int = 16
    omega: float = 2 * math.pi / 64
    phase_noise: float = 0.05
    lr: float = 0.1
    tolerance: float = 0.25
    world_seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "dim": self.dim >= 2,
            "num_sources": self.num_sources >= 2,
            "radius": self.radius >= 0,
            "bias": self.bias >= 0,
            "noise": self.noise >= 0,
            "feedback_noise": self.feedback_noise >= 0,
            "batch_size": self.batch_size >= 1,
            "feedback_batch_size": self.feedback_batch_size >= 1,
            "phase_noise": self.phase_noise >= 0,
            "lr": 0 < self.lr <= 1,
            "tolerance": self.tolerance > 0,
            "world_seed": self.world_seed >= 0,
        }
        ranges = {"dim": ">= 2", "num_sources": ">= 2", "batch_size": ">= 1", "feedback_batch_size": ">= 1",
                  "lr": "(0, 1]", "tolerance": "> 0", "world_seed": ">= 0"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is outside its range {ranges.get(name, '>= 0')}")


class ToyWorld:
    """The fixed geometry of the toy: theta*, the drift plane basis e1/e2 and the bias b (float64, CPU)."""

    def __init__(self, config: ToyConfig) -> None:
        g = torch.Generator().manual_seed(config.world_seed)
        d = config.dim
        self.config = config
        self.theta_star = torch.randn(d, generator=g, dtype=torch.float64)
        basis, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
        self.e1, self.e2 = basis[:, 0], basis[:, 1]
        beta = float(torch.rand((), generator=g, dtype=torch.float64)) * 2 * math.pi
        self.bias_direction = math.cos(beta) * self.e1 + math.sin(beta) * self.e2
        self.theta0 = self.theta_star + 2.0 * torch.randn(d, generator=g, dtype=torch.float64)
        self._angles = 2 * math.pi * torch.arange(config.num_sources, dtype=torch.float64) / config.num_sources
        self._fixed = self.theta_star + config.bias * self.bias_direction

    def targets(self, phase: float) -> torch.Tensor:
        """Source targets c_k(phi), shape [K, d], float64."""
        angles = self._angles + phase
        rot = torch.cos(angles)[:, None] * self.e1 + torch.sin(angles)[:, None] * self.e2
        return self._fixed + self.config.radius * rot


@dataclass(frozen=True)
class ToyBatch:
    """A toy pretraining batch: the drift phase, the source targets c_k(phase) [K, d] and the per-sample
    noise eps [n, d] (float64)."""

    phase: float
    targets: torch.Tensor
    eps: torch.Tensor
    num_examples: int
    num_tokens: int = 0


class _Point(nn.Module):
    def __init__(self, theta0: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta0.clone())


def _theta(learner: Learner) -> torch.Tensor:
    """The toy learner's parameter vector theta (the module is a :class:`_Point`)."""
    return cast(_Point, learner.module).theta


class ToyStream:
    """Drifting-phase pretraining stream (implements ``PretrainStream``)."""

    def __init__(self, world: ToyWorld) -> None:
        self.world = world

    def reset(self, generator: torch.Generator) -> None:
        self._g = generator
        self._phase = float(torch.rand((), generator=generator, dtype=torch.float64)) * 2 * math.pi

    def next_batch(self) -> ToyBatch:
        c = self.world.config
        eps = torch.randn(c.batch_size, c.dim, generator=self._g, dtype=torch.float64)
        batch = ToyBatch(phase=self._phase, targets=self.world.targets(self._phase), eps=eps,
                         num_examples=c.batch_size)
        drift = c.omega + c.phase_noise * float(torch.randn((), generator=self._g, dtype=torch.float64))
        self._phase = (self._phase + drift) % (2 * math.pi)
        return batch


class ToyTaskSpace:
    """Menu: ``mixture`` (the standard task: all sources evenly) and ``source_k`` for k < K."""

    descriptor_names = ("cos_phase", "sin_phase")
    descriptor_low = np.array([-1.0, -1.0])
    descriptor_high = np.array([1.0, 1.0])
    standard_action = 0

    def __init__(self, world: ToyWorld) -> None:
        self.world = world
        k = world.config.num_sources
        self.tasks = [Task(name="mixture", family="mixture")] + [
            Task(name=f"source_{i}", family="source", params={"source": i}) for i in range(k)
        ]
        self.action_space = spaces.Discrete(k + 1)
        self._mixture_rows = torch.arange(world.config.batch_size) % k

    def reset(self, generator: torch.Generator) -> None:
        return None

    def task(self, action: int) -> Task:
        return self.tasks[int(action)]

    def menu_index(self, action: int) -> int:
        return int(action)

    def samples(self, batch: ToyBatch, task: Task) -> torch.Tensor:
        """The pretraining samples x [n, d] (float64) that ``task`` makes of ``batch``."""
        c = self.world.config
        if task.family == "mixture":
            means = batch.targets[self._mixture_rows[: batch.num_examples]]
        else:
            means = batch.targets[int(task.params["source"])].expand(batch.num_examples, -1)
        return means + c.noise * batch.eps

    def loss(self, batch: ToyBatch, outputs: torch.Tensor, task: Task) -> torch.Tensor:
        x = self.samples(batch, task)
        return 0.5 * ((outputs[None, :] - x) ** 2).sum(dim=1).mean()

    def describe(self, batch: ToyBatch, outputs: torch.Tensor) -> np.ndarray:
        return np.array([math.cos(batch.phase), math.sin(batch.phase)])


@dataclass(frozen=True)
class ToyFeedbackBatch:
    """Noisy copies y [m, d] of theta* (float64)."""

    y: torch.Tensor
    num_examples: int
    num_tokens: int = 0


class ToyFeedback:
    """Analytic feedback: L_down on noisy copies of theta*; eval = the exact L_down (implements FeedbackSet)."""

    metric_name = "solved_fraction"

    def __init__(self, world: ToyWorld) -> None:
        self.world = world
        self.source = "analytic:toy"

    def reset(self, generator: torch.Generator) -> None:
        self._g = generator
        self._probe = self.sample_batch()

    def sample_batch(self) -> ToyFeedbackBatch:
        c = self.world.config
        eps = torch.randn(c.feedback_batch_size, c.dim, generator=self._g, dtype=torch.float64)
        return ToyFeedbackBatch(y=self.world.theta_star + c.feedback_noise * eps, num_examples=c.feedback_batch_size)

    def probe_batch(self) -> ToyFeedbackBatch:
        return self._probe

    def loss(self, learner: Learner, batch: ToyFeedbackBatch) -> torch.Tensor:
        theta = _theta(learner)
        return 0.5 * ((theta[None, :] - batch.y) ** 2).sum(dim=1).mean()

    def metric(self, learner: Learner, batch: ToyFeedbackBatch) -> float:
        """Fraction of coordinates within ``tolerance`` of the probe mean, in [0, 1]."""
        target = batch.y.mean(dim=0)
        return float(((_theta(learner).detach() - target).abs() < self.world.config.tolerance).double().mean())

    def eval_loss(self, learner: Learner) -> float:
        """The exact L_down = 1/2 |theta - theta*|^2 (``eval_loss`` of :meth:`evaluate`)."""
        return self.evaluate(learner)["eval_loss"]

    def evaluate(self, learner: Learner) -> dict[str, float]:
        """Exact held-out metrics: ``eval_loss`` = 1/2 |theta - theta*|^2 and ``eval_solved_fraction``."""
        diff = _theta(learner).detach() - self.world.theta_star
        return {
            "eval_loss": float(0.5 * (diff**2).sum()),
            "eval_solved_fraction": float((diff.abs() < self.world.config.tolerance).double().mean()),
        }


@keyword_signature(extra=ToyConfig)
def make_toy_env(
    *,
    budget: int = 256,
    updates_per_decision: int = 1,
    feedback_period: int = 8,
    reward: str | ValueEstimator = "alignment",
    feedback_momentum: float = 0.0,
    config: ToyConfig | None = None,
    feedback_set: FeedbackSet | None = None,
    stream: PretrainStream | None = None,
    **overrides: object,
) -> TaskDesignEnv:
    """Build ``vpt/Toy-Alignment-v0``: a closed-form learner whose data sources drift in and out of alignment.

    Description:
        The learner is a point theta in R^d (d = ``dim``, default 8) trained by SGD on squared losses; the
        designer picks, each decision, which of K drifting data sources (or their mixture) the next update
        trains on; the feedback set holds noisy copies of the downstream optimum theta*. Every quantity of the
        value has a closed form and the optimal one-step designer is :func:`oracle_action`, so this is the env
        for testing designers and agents: about a millisecond per step. The mixture and a random designer
        converge to theta* + B b; a designer that reads the drift phase can do better (model in the module
        docstring). Source: V-Pretraining (arXiv 2601.22108) v2 Eq. 8-9 (first-order value).

    Action Space:
        ``Discrete(K + 1)`` (K = ``num_sources``, default 4): 0 ``mixture`` (the standard task: all sources
        evenly, the matched-budget baseline), 1..K ``source_0`` .. ``source_{K-1}``.

    Observation Space:
        ``Box(float32)`` of 6 + 2(K + 1) + 2 = 18 features with the defaults; names in
        ``env.unwrapped.observation_names``:

        | index | name | feature | range | unit |
        |---|---|---|---|---|
        $BASE_ROWS
        | 6..10 | ``last_value[<task>]`` | eta g_down.g_pre at the task's last update (0 before) | [-1e6, 1e6] | loss |
        | 11..15 | ``frequency[<task>]`` | fraction of the updates so far that used each menu task | [0, 1] | - |
        | 16 | ``batch.cos_phase`` | cos of the drift phase phi of the batch the next update uses | [-1, 1] | - |
        | 17 | ``batch.sin_phase`` | sin of that phase | [-1, 1] | - |

        The learner loss is 1/(2n) sum_i |theta - x_i|^2 and L_down = 1/2 |theta - theta*|^2 (squared distance).

    Reward:
        ``alignment`` (default): eta * g_down . g_pre with g_down the gradient of L_down on a feedback batch of
        noisy copies of theta* (analytic, refreshed every ``feedback_period`` decisions); S = all of theta. Also
        ``cosine``, ``value_gain``, ``metric_gain`` (solved fraction on the probe batch), ``advantage`` and
        ``preconditioned`` (= ``alignment`` here: SGD).

    Episode End:
        ``terminated`` when the budget of learner updates is spent (or on divergence); ``info["eval"]``:
        ``eval_loss`` (exact L_down = 1/2 |theta - theta*|^2) and ``eval_solved_fraction`` (coordinates within
        ``tolerance`` of theta*).

    Budget:
        ``budget`` learner updates (default 256); the ledger counts learner and feedback passes and examples.

    Arguments:
        budget: learner updates per episode, >= 1.
        updates_per_decision: >= 1, divides ``budget``.
        feedback_period: g_down refresh period in decisions, >= 1.
        reward: value-estimator name, or a :class:`~vpt_gym.value.ValueEstimator` object.
        feedback_momentum: running average of g_down across refreshes, in [0, 1) (0: fresh only).
        feedback_set: your own :class:`~vpt_gym.core.FeedbackSet` in place of the toy's (noisy copies of theta*).
        stream: your own :class:`~vpt_gym.core.PretrainStream` of :class:`ToyBatch` batches in place of the
            drifting sources (the task space reads their phase, targets and noise).
        config: the :class:`ToyConfig` (default ``ToyConfig()``); ``overrides`` (any :class:`ToyConfig` field:
            ``dim``, ``num_sources``, ``radius``, ``bias``, ``noise``, ``lr``, ``world_seed``, ...) replace
            its fields.

    Raises:
        ValueError: bad budget, reward or config values (before anything is built).
        TypeError: a ``feedback_set`` or ``stream`` that misses members of its Protocol.

    Version History:
        v0: initial release.
    """
    require_user_parts(feedback_set=feedback_set, stream=stream)
    budget_obj = Budget.of(budget, updates_per_decision=updates_per_decision, feedback_period=feedback_period)
    check_feedback_momentum(feedback_momentum)
    base = config or ToyConfig()
    unknown = set(overrides) - set(ToyConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown toy arguments {sorted(unknown)}; accepted: {sorted(ToyConfig.__dataclass_fields__)}")
    cfg = ToyConfig(**{**base.__dict__, **overrides})
    world = ToyWorld(cfg)
    learner = TorchLearner(
        _Point(world.theta0), forward_fn=lambda m, batch: m.theta, lr=cfg.lr, optimizer="sgd", alignment="all"
    )
    return TaskDesignEnv(
        learner=learner,
        task_space=ToyTaskSpace(world),
        stream=ToyStream(world) if stream is None else stream,
        feedback=ToyFeedback(world) if feedback_set is None else feedback_set,
        budget=budget_obj,
        reward=reward,
        feedback_momentum=feedback_momentum,
    )


make_toy_env.__doc__ = card(make_toy_env.__doc__)


def oracle_action(env: TaskDesignEnv) -> int:
    """The optimal one-step designer of the toy: the task with the largest exact drop of L_down.

    With SGD, theta+ = theta - eta g and L_down(theta+) - L_down(theta) = -eta g_down.g + eta^2 |g|^2 / 2
    exactly (L_down is quadratic), with g the task's pretraining gradient on the batch the next update uses.

    Raises:
        ValueError: ``env`` is not a toy env.
    """
    base: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
    if not isinstance(base.task_space, ToyTaskSpace):
        raise ValueError(f"oracle_action needs a toy env, got task space {type(base.task_space).__name__}")
    world: ToyWorld = base.task_space.world
    theta = base.learner.module.theta.detach()
    g_down = theta - world.theta_star
    eta = base.learner.lr
    best, best_drop = 0, -math.inf
    for a, task in enumerate(base.task_space.tasks):
        g = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        drop = eta * float(g_down @ g) - 0.5 * eta**2 * float(g @ g)
        if drop > best_drop:
            best, best_drop = a, drop
    return best
