"""Soft next-token targets: the task family of ``vpt/LM-SoftTargets-v0`` (V-Pretraining v2 §2, Eq. 14-15).

For position t with gold token y_t, the candidate set C_t is the learner's top-K tokens with the gold token
forced in (it replaces the K-th candidate when absent), so |C_t| = K and y_t is in C_t. The target is

    q_t = (1 - alpha) * onehot(y_t) + alpha * r_t,     r_t a distribution on C_t,   alpha in [0, alpha_max]

with r_t uniform on C_t (uniform top-K smoothing) or the learner's own probabilities on C_t at temperature
tau, renormalized and detached (self top-K distillation). The loss is the cross-entropy
L = -(1/N) sum_t sum_v q_t(v) log p_theta(v | ctx_t) over the N predicted positions; alpha = 0 is one-hot
next-token prediction (the standard task).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from vpt_gym.core import Task
from vpt_gym.lm.stream import TokenBatch

TEMPERATURE_RANGE = (0.25, 4.0)
"""Temperature range of the continuous variant (log-uniform mapping of action[1] in [-1, 1])."""


def candidate_set(logits: torch.Tensor, gold: torch.Tensor, top_k: int) -> torch.Tensor:
    """C_t: the top-K ids of ``logits`` with the gold id forced in (replacing the K-th when absent).

    Args:
        logits: shape [batch, seq, vocab], any float dtype.
        gold: shape [batch, seq], int64.
        top_k: K in [1, vocab].

    Returns:
        shape [batch, seq, K], int64; ``gold`` is in every row.
    """
    ids = logits.detach().topk(top_k, dim=-1).indices
    present = (ids == gold[..., None]).any(dim=-1)
    last = torch.where(present, ids[..., -1], gold)
    return torch.cat([ids[..., :-1], last[..., None]], dim=-1)


def soft_targets(
    logits: torch.Tensor, gold: torch.Tensor, *, family: str, alpha: float, top_k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target q_t restricted to C_t (V-Pretraining v2 Eq. 14-15).

    Args:
        logits: shape [batch, seq, vocab] (predicting ``gold``).
        gold: shape [batch, seq], int64.
        family: ``"one_hot"``, ``"uniform"`` or ``"self_distill"``.
        alpha: gate in [0, 1].
        top_k: K.
        temperature: tau > 0 (self distillation only).

    Returns:
        (candidates [batch, seq, K] int64, q [batch, seq, K] float32); q >= 0, sums to 1 over K, detached.

    Raises:
        ValueError: unknown family, alpha outside [0, 1], temperature <= 0.
    """
    if family not in ("one_hot", "uniform", "self_distill"):
        raise ValueError(f"unknown soft-target family {family!r}; accepted: one_hot, uniform, self_distill")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    cand = candidate_set(logits, gold, top_k)
    onehot = (cand == gold[..., None]).float()
    if family == "one_hot" or alpha == 0.0:
        return cand, onehot
    if family == "uniform":
        r = torch.full_like(onehot, 1.0 / top_k)
    else:
        r = torch.softmax(logits.detach().float().gather(-1, cand) / temperature, dim=-1)
    return cand, (1.0 - alpha) * onehot + alpha * r


class SoftTargetTaskSpace:
    """Task menu (``Discrete``) or continuous family (``Box``) of soft next-token targets.

    Discrete menu: ``one_hot`` (standard, index 0), ``uniform_top{K}_a{alpha}`` and
    ``self_top{K}_a{alpha}_t{tau}`` for alpha in ``alphas`` and tau in ``temperatures``.

    Continuous (``continuous=True``): action in Box([-1, 1]^2, float32);
    alpha = alpha_max * (a0 + 1) / 2 in [0, alpha_max] and tau = 0.25 * 16 ** ((a1 + 1) / 2) in [0.25, 4]
    (log-uniform); the family is self top-K distillation; the standard action [-1, 0] is alpha = 0.

    Batch descriptors (observation): fraction of rows from each domain ([0, 1]), the learner's mean
    one-hot next-token loss on the batch ([0, 1e3] nats/token) and mean predictive entropy ([0, ln V] nats).

    Args:
        vocab_size: V.
        domain_names: names of the stream's domains (descriptor order).
        top_k: K in [2, V] (paper default 64).
        alphas: gate levels in (0, alpha_max].
        temperatures: self-distillation temperatures > 0.
        alpha_max: upper bound of alpha in (0, 1] (paper: 0.5).
        continuous: build the Box variant.

    Raises:
        ValueError: any argument outside its range.
    """

    def __init__(self, *, vocab_size: int, domain_names: Sequence[str], top_k: int = 64,
                 alphas: Sequence[float] = (0.1, 0.25, 0.5), temperatures: Sequence[float] = (1.0,),
                 alpha_max: float = 0.5, continuous: bool = False) -> None:
        if not 2 <= top_k <= vocab_size:
            raise ValueError(f"top_k must be in [2, vocab_size={vocab_size}], got {top_k}")
        if not 0 < alpha_max <= 1:
            raise ValueError(f"alpha_max must be in (0, 1], got {alpha_max}")
        for a in alphas:
            if not 0 < a <= alpha_max:
                raise ValueError(f"alpha {a} is outside (0, alpha_max={alpha_max}]")
        for t in temperatures:
            if not t > 0:
                raise ValueError(f"temperature {t} must be > 0")
        self.top_k = top_k
        self.alpha_max = alpha_max
        self.continuous = continuous
        self.domain_names = tuple(domain_names)
        self.descriptor_names = tuple(f"fraction_{d}" for d in self.domain_names) + ("loss", "entropy")
        nd = len(self.domain_names)
        self.descriptor_low = np.zeros(nd + 2)
        self.descriptor_high = np.array([1.0] * nd + [1.0e3, math.log(vocab_size)])
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
            self.standard_action = np.array([-1.0, 0.0], dtype=np.float32)
            self.tasks = [Task(name=f"self_top{top_k}_continuous", family="self_distill",
                               params={"alpha_max": alpha_max, "temperature_range": TEMPERATURE_RANGE})]
        else:
            tasks = [Task(name="one_hot", family="one_hot", params={"alpha": 0.0})]
            tasks += [Task(name=f"uniform_top{top_k}_a{a:g}", family="uniform", params={"alpha": float(a)})
                      for a in alphas]
            tasks += [Task(name=f"self_top{top_k}_a{a:g}_t{t:g}", family="self_distill",
                           params={"alpha": float(a), "temperature": float(t)})
                      for t in temperatures for a in alphas]
            self.tasks = tasks
            self.action_space = spaces.Discrete(len(tasks))
            self.standard_action = 0

    def reset(self, generator: torch.Generator) -> None:
        """Soft-target tasks are deterministic given the batch: nothing to seed."""
        return None

    def task(self, action) -> Task:
        """The task of an action (index, or a Box point mapped to alpha and tau)."""
        if not self.continuous:
            return self.tasks[int(action)]
        a = np.asarray(action, dtype=np.float64)
        alpha = self.alpha_max * (a[0] + 1.0) / 2.0
        lo, hi = TEMPERATURE_RANGE
        tau = lo * (hi / lo) ** ((a[1] + 1.0) / 2.0)
        return Task(name=f"self_top{self.top_k}_a{alpha:.3f}_t{tau:.3f}", family="self_distill",
                    params={"alpha": float(alpha), "temperature": float(tau)})

    def menu_index(self, action) -> int:
        return 0 if self.continuous else int(action)

    def loss(self, batch: TokenBatch, outputs: torch.Tensor, task: Task) -> torch.Tensor:
        """Soft-target cross-entropy, scalar float32, mean over [batch, seq - 1] predicted positions."""
        logits = outputs[:, :-1]
        gold = batch.input_ids[:, 1:].to(logits.device)
        logp = F.log_softmax(logits.float(), dim=-1)
        alpha = float(task.params.get("alpha", 0.0))
        if task.family == "one_hot" or alpha == 0.0:
            return -logp.gather(-1, gold[..., None]).mean()
        cand, q = soft_targets(logits, gold, family=task.family, alpha=alpha, top_k=self.top_k,
                               temperature=float(task.params.get("temperature", 1.0)))
        return -(q * logp.gather(-1, cand)).sum(-1).mean()

    def describe(self, batch: TokenBatch, outputs: torch.Tensor) -> np.ndarray:
        """[domain fractions..., mean one-hot loss (nats/token), mean entropy (nats)], float64."""
        with torch.no_grad():
            logits = outputs[:, :-1].detach().float()
            gold = batch.input_ids[:, 1:].to(logits.device)
            logp = F.log_softmax(logits, dim=-1)
            nll = -logp.gather(-1, gold[..., None]).mean()
            entropy = -(logp.exp() * logp).sum(-1).mean()
            stats = torch.stack([nll, entropy]).cpu().double().numpy()
        return np.concatenate([batch.domain_fractions(), stats])
