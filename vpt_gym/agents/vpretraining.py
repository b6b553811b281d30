"""The paper's differentiable task designer for soft next-token targets (V-Pretraining v2, Algorithm 1).

A small transformer reads the context and the true next token y_t and outputs, per position, a distribution
r_t over the candidate set C_t (the learner's top-K with y_t forced in) and a gate alpha_t in [0, alpha_max];
the target is q_t = (1 - alpha_t) onehot(y_t) + alpha_t r_t (v2 Eq. 14-15). Every ``meta_period`` learner
updates the designer takes one gradient step on the meta-objective

    J(phi) = -g_down,S . g_pre,S(q_phi)          (g_down stop-gradiented; v2 Algorithm 1)

whose gradient is the mixed second derivative of the pretraining loss contracted with g_down. Because the
soft-target loss is linear in q, g_down . g_pre(q) = -mean_t sum_k q_t(k) D_t(k) with
D_t(k) = g_down . grad_S log p_theta(C_t(k) | ctx_t), so J(phi) = mean_t sum_k q_phi,t(k) D_t(k) with D from
one forward-mode pass (:meth:`TaskDesignEnv.value_derivative`); dJ/dphi is then exact. The learner then
steps on the detached targets of the same batch through the env's differentiable-task hook (``step(Task)``).
The learner never receives grad L_down: D is computed with detached learner parameters.

Control (the paper's "random feedback" ablation): ``feedback="random"`` replaces g_down by a random direction
of the same norm, drawn per meta update from the designer's own generator.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from vpt_gym.core import Task
from vpt_gym.lm.soft_targets import GIVEN_TARGETS, SoftTargetTaskSpace, candidate_set


class TargetDesignerNet(nn.Module):
    """The designer network: a small causal transformer over the context plus the true next token.

    Args:
        vocab_size: V of the learner's tokenizer.
        context_length: longest sequence (positions).
        width: model width d (default 32).
        layers: transformer layers (default 1).
        heads: attention heads (default 2).
        alpha_max: upper bound of the gate (paper: 0.5).
        alpha_init: initial gate value in (0, alpha_max) (default 0.05: start near one-hot).

    Shapes:
        forward(input_ids [B, T] int64, gold [B, T-1] int64, candidates [B, T-1, K] int64)
        -> (r [B, T-1, K] float32 rows summing to 1, alpha [B, T-1, 1] float32 in [0, alpha_max]).
    """

    def __init__(self, *, vocab_size: int, context_length: int, width: int = 32, layers: int = 1, heads: int = 2,
                 alpha_max: float = 0.5, alpha_init: float = 0.05) -> None:
        super().__init__()
        if not 0 < alpha_init < alpha_max <= 1:
            raise ValueError(f"need 0 < alpha_init < alpha_max <= 1, got alpha_init={alpha_init}, "
                             f"alpha_max={alpha_max}")
        if width % heads:
            raise ValueError(f"width={width} must be divisible by heads={heads}")
        self.alpha_max = alpha_max
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(context_length, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.query = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width))
        self.gate = nn.Linear(2 * width, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.constant_(self.gate.bias, math.log(alpha_init / (alpha_max - alpha_init)))

    def forward(self, input_ids: torch.Tensor, gold: torch.Tensor,
                candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq = input_ids.shape[1] - 1
        pos = torch.arange(seq, device=input_ids.device)
        x = self.embed(input_ids[:, :-1]) + self.position(pos)
        mask = nn.Transformer.generate_square_subsequent_mask(seq, device=input_ids.device)
        h = self.encoder(x, mask=mask, is_causal=True)
        features = torch.cat([h, self.embed(gold)], dim=-1)
        scores = torch.einsum("btd,btkd->btk", self.query(features), self.embed(candidates)) / math.sqrt(h.shape[-1])
        return torch.softmax(scores, dim=-1), self.alpha_max * torch.sigmoid(self.gate(features))


class VPretrainingDesigner:
    """V-Pretraining's learned soft-target designer (v2 Algorithm 1) for the LM soft-target envs.

    Args:
        env: a ``vpt/LM-SoftTargets*`` env (its task space must be a :class:`SoftTargetTaskSpace`).
        meta_period: r, learner updates between meta updates (paper: 8), >= 1.
        lr: Adam learning rate of the designer, > 0.
        width, layers, heads: designer network size.
        alpha_max: gate bound (paper: 0.5; default: the env's).
        feedback: ``"true"`` (g_down) or ``"random"`` (same-norm random direction: the paper's control).

    Each meta update divides D by its mean absolute value before the Adam step, so the step size does not
    depend on the scale of the losses (the direction of dJ/dphi is unchanged); ``meta_losses`` records the
    unscaled J per meta update.

    Ledger: each meta update costs one forward-mode learner pass (``lookahead_forward``) and one designer
    forward + backward; every decision costs one designer forward (``designer_forward``).

    Raises:
        ValueError: an env without soft-target task space, or hyperparameters out of range.
    """

    def __init__(self, env: gym.Env, *, meta_period: int = 8, lr: float = 1e-3, width: int = 32, layers: int = 1,
                 heads: int = 2, alpha_max: float | None = None, feedback: str = "true") -> None:
        base: Any = env.unwrapped  # a TaskDesignEnv (gym.Env.unwrapped is typed as the base Env)
        if not isinstance(getattr(base, "task_space", None), SoftTargetTaskSpace):
            kind = type(getattr(base, "task_space", None)).__name__
            raise ValueError(f"VPretrainingDesigner needs a soft-target LM env, got {kind}")
        if meta_period < 1:
            raise ValueError(f"meta_period must be >= 1, got {meta_period}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if feedback not in ("true", "random"):
            raise ValueError(f"feedback must be 'true' or 'random', got {feedback!r}")
        self.env = base
        self.meta_period = meta_period
        self.lr = lr
        self.feedback = feedback
        self.name = "vpretraining" if feedback == "true" else "vpretraining_random_feedback"
        module = base.learner.module
        config = module.config
        self._net_kwargs: dict[str, Any] = dict(
            vocab_size=int(config.vocab_size),
            context_length=int(getattr(config, "n_positions", 0) or config.max_position_embeddings),
            width=width, layers=layers, heads=heads,
            alpha_max=float(alpha_max if alpha_max is not None else base.task_space.alpha_max),
        )
        self.top_k = base.task_space.top_k
        self.meta_losses: list[float] = []
        self.reset(0)

    def reset(self, seed: int | None = None) -> None:
        """Fresh designer network and optimizer, initialized from ``seed`` (never the global RNG)."""
        seed = 0 if seed is None else int(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = TargetDesignerNet(**self._net_kwargs).to(self.env.learner.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self._generator = torch.Generator(device="cpu").manual_seed(seed + 1)
        self._decisions = 0
        self.meta_losses = []

    def _targets(self, input_ids: torch.Tensor, gold: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        r, alpha = self.net(input_ids, gold, cand)
        onehot = (cand == gold[..., None]).float()
        return (1.0 - alpha) * onehot + alpha * r

    def _random_direction(self) -> list[torch.Tensor]:
        g_down = self.env.g_down
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in g_down))
        noise = [torch.randn(g.shape, generator=self._generator, dtype=torch.float64) for g in g_down]
        noise_norm = math.sqrt(sum(float((n**2).sum()) for n in noise))
        return [(n * (norm / noise_norm)).to(g.device, g.dtype) for n, g in zip(noise, g_down, strict=True)]

    def meta_objective(self, input_ids: torch.Tensor, gold: torch.Tensor, cand: torch.Tensor,
                       derivative: torch.Tensor) -> torch.Tensor:
        """J(phi) = mean_t sum_k q_phi D = -g_down . g_pre(q_phi) (scalar, differentiable in phi only)."""
        return (self._targets(input_ids, gold, cand) * derivative.detach()).sum(-1).mean()

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Task:
        env = self.env
        batch, outputs = env.pending_batch, env.pending_outputs
        input_ids = batch.input_ids.to(env.learner.device)
        gold = input_ids[:, 1:]
        if self._decisions % self.meta_period == 0:
            tangent = None if self.feedback == "true" else self._random_direction()
            cand, derivative = env.value_derivative(tangent)
            scale = float(derivative.abs().mean()) + 1e-12
            loss = self.meta_objective(input_ids, gold, cand, derivative / scale)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            env.charge(designer_forward=1, designer_backward=1)
            self.meta_losses.append(float(loss.detach()) * scale)
        else:
            cand = candidate_set(outputs[:, :-1], gold, self.top_k)
        with torch.no_grad():
            q = self._targets(input_ids, gold, cand)
        env.charge(designer_forward=1)
        self._decisions += 1
        return Task(name=self.name, family=GIVEN_TARGETS, params={"candidates": cand, "q": q})

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None
