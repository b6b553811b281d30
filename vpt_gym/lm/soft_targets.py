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
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from vpt_gym.core import Task
from vpt_gym.lm.stream import TokenBatch
from vpt_gym.lm.tail import LOW_PRECISION, float32_weights

GIVEN_TARGETS = "given_targets"
"""Family of a designer-built task (the differentiable-task hook): ``params = {"candidates": C, "q": q}`` with
C [batch, seq - 1, K] int64 and q [batch, seq - 1, K] float32 (detached, rows sum to 1) for one batch."""

TEMPERATURE_RANGE = (0.25, 4.0)


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 -> float32; float32 and float64 kept (losses are never computed below float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
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
    logits: torch.Tensor, gold: torch.Tensor, *, family: str, alpha: float, top_k: int, temperature: float = 1.0,
    candidates: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target q_t restricted to C_t (V-Pretraining v2 Eq. 14-15).

    Args:
        logits: shape [batch, seq, vocab] (predicting ``gold``).
        gold: shape [batch, seq], int64.
        family: ``"one_hot"``, ``"uniform"`` or ``"self_distill"``.
        alpha: gate in [0, 1].
        top_k: K.
        temperature: tau > 0 (self distillation only).
        candidates: ``candidate_set(logits, gold, top_k)`` when the caller already has it (not recomputed).

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
    cand = candidate_set(logits, gold, top_k) if candidates is None else candidates
    onehot = (cand == gold[..., None]).to(_at_least_float32(logits).dtype)
    if family == "one_hot" or alpha == 0.0:
        return cand, onehot
    if family == "uniform":
        r = torch.full_like(onehot, 1.0 / top_k)
    else:
        r = torch.softmax(_at_least_float32(logits.detach()).gather(-1, cand) / temperature, dim=-1)
    return cand, (1.0 - alpha) * onehot + alpha * r


def log_prob_jvp(module: torch.nn.Module, input_ids: torch.Tensor, candidates: torch.Tensor,
                 subset: dict[str, torch.Tensor], tangent: Sequence[torch.Tensor]) -> torch.Tensor:
    """Directional derivative of the candidates' log-probabilities along a parameter direction on S.

    D[b, t, k] = sum_i tangent_i . d/dtheta_i log p_theta(C[b, t, k] | input_ids[b, :t+1]), for theta_i in S,
    by one forward-mode pass (``torch.func.jvp`` through ``functional_call``; tangent nonzero only on S).
    With tangent = g_down this is the D of docs/ARCHITECTURE.md §7: for any target q on C, the value is
    eta * g_down . g_pre(q) = -eta * mean_t sum_k q[b, t, k] D[b, t, k] (the soft-target loss is linear in q).

    Args:
        module: causal LM returning ``.logits`` [batch, seq, vocab].
        input_ids: shape [batch, seq], int64, on the module's device.
        candidates: shape [batch, seq - 1, K], int64 (position t predicts token t + 1).
        subset: name -> parameter of S (``named_parameters`` names).
        tangent: tensors shaped like ``subset``'s values, same order.

    Returns:
        D, shape [batch, seq - 1, K], float32 (float64 for a float64 model). No ``.grad`` is touched.
        A bf16/fp16 model is differentiated through a float32 copy of its weights (forward-mode AD of CUDA's
        layer norm returns float32 tangents for bf16 inputs, which the next bf16 matmul rejects).
    """
    from torch.func import functional_call, jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = list(subset)
    primals = tuple(subset[n].detach() for n in names)
    fixed: dict[str, torch.Tensor] = {}
    if any(p.dtype in LOW_PRECISION for p in primals):
        primals = tuple(p.float() for p in primals)
        fixed = float32_weights(module, subset)
    tangents = tuple(t.detach().to(p.dtype) for t, p in zip(tangent, primals, strict=True))

    def log_probs(*params: torch.Tensor) -> torch.Tensor:
        weights = {**fixed, **dict(zip(names, params, strict=True))}
        logits = functional_call(module, weights, (), {"input_ids": input_ids}).logits
        return F.log_softmax(_at_least_float32(logits[:, :-1]), dim=-1).gather(-1, candidates)

    # the math SDPA backend has forward-mode AD on every device (the fused CPU kernel has none)
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        _, derivative = jvp(log_probs, primals, tangents)  # type: ignore[misc]  # torch's jvp stub also allows the has_aux 3-tuple
    return derivative


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
        self._log_prob_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._candidate_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.continuous = continuous
        self.domain_names = tuple(domain_names)
        self.descriptor_names = tuple(f"fraction_{d}" for d in self.domain_names) + ("loss", "entropy")
        nd = len(self.domain_names)
        self.descriptor_low = np.zeros(nd + 2)
        self.descriptor_high = np.array([1.0] * nd + [1.0e3, math.log(vocab_size)])
        if continuous:
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
            self.standard_action: Any = np.array([-1.0, 0.0], dtype=np.float32)
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

    def accepts(self, task: Task) -> bool:
        """Whether ``task`` (a menu task or a ``given_targets`` task) can be run by this task space."""
        if task.family != GIVEN_TARGETS:
            return task.family in ("one_hot", "uniform", "self_distill")
        cand, q = task.params.get("candidates"), task.params.get("q")
        return (isinstance(cand, torch.Tensor) and isinstance(q, torch.Tensor) and cand.shape == q.shape
                and cand.ndim == 3 and not q.requires_grad)

    def targets(self, batch: TokenBatch, outputs: torch.Tensor, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """(candidates C [batch, seq - 1, K] int64, target q [batch, seq - 1, K] float32) of ``task``."""
        if task.family == GIVEN_TARGETS:
            return task.params["candidates"], task.params["q"]
        logits = outputs[:, :-1]
        gold = batch.input_ids[:, 1:].to(logits.device)
        family = "one_hot" if task.family == "one_hot" else task.family
        return soft_targets(logits, gold, family=family, alpha=float(task.params.get("alpha", 0.0)),
                            candidates=self._candidates(batch, outputs),
                            top_k=self.top_k, temperature=float(task.params.get("temperature", 1.0)))

    def value_derivative(self, learner: Any, batch: TokenBatch, outputs: torch.Tensor,
                         tangent: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, D): the candidate set of the batch and D = tangent . grad_S log p on it (:func:`log_prob_jvp`).

        Shapes [batch, seq - 1, K]; C int64, D float32. Cost: one forward-mode pass through the blocks of S,
        from the hidden state the learner's forward recorded (:class:`~vpt_gym.lm.tail.TailForward`), or of
        the whole learner when S is not a tail of its blocks.
        """
        cand = self._candidates(batch, outputs)
        subset = dict(zip(learner.alignment_names, learner.alignment_parameters(), strict=True))
        tail: Any = getattr(learner, "forward_fn", None)
        if hasattr(tail, "log_prob_jvp"):  # through S only, from the recorded hidden state entering S
            derivative = tail.log_prob_jvp(outputs, cand, subset, tangent)
            if derivative is not None:
                return cand, derivative
        return cand, log_prob_jvp(learner.module, batch.input_ids.to(learner.device), cand, subset, tangent)

    def linear_values(self, learner: Any, batch: TokenBatch, outputs: torch.Tensor,
                      g_down: Sequence[torch.Tensor], tasks: Sequence[Task]) -> np.ndarray:
        """g_down,S . g_pre,S(task) for every task from ONE forward-mode pass (cost independent of K).

        The soft-target loss is linear in its target, so g_down . g_pre(q) = -mean_t sum_k q D
        (docs/ARCHITECTURE.md §7).

        Returns:
            shape [len(tasks)], float64.
        """
        cand, derivative = self.value_derivative(learner, batch, outputs, g_down)
        gold = batch.input_ids[:, 1:].to(derivative.device)
        # q = (1 - alpha) onehot + alpha r (Eq. 14-15), so V(q) = (1 - alpha) V(onehot) + alpha V(r): the menu's
        # values need V(onehot), V(uniform) and V(softmax(l_C / tau)) once per tau, whatever K is.
        parts: dict[Any, torch.Tensor] = {"one_hot": -(derivative * (cand == gold[..., None])).sum(-1).mean()}
        values = []
        for t in tasks:
            if t.family == GIVEN_TARGETS:
                values.append(-(t.params["q"].to(derivative.device) * derivative).sum(-1).mean())
                continue
            alpha = float(t.params.get("alpha", 0.0))
            if t.family == "one_hot" or alpha == 0.0:
                values.append(parts["one_hot"])
                continue
            temperature = float(t.params.get("temperature", 1.0))
            key = "uniform" if t.family == "uniform" else ("self", temperature)
            if key not in parts:
                if key == "uniform":
                    r = torch.full_like(derivative, 1.0 / self.top_k)
                else:
                    logits = _at_least_float32(outputs[:, :-1].detach()).gather(-1, cand.to(outputs.device))
                    r = torch.softmax(logits / temperature, dim=-1).to(derivative.dtype)
                parts[key] = -(r * derivative).sum(-1).mean()
            values.append((1.0 - alpha) * parts["one_hot"] + alpha * parts[key])
        return torch.stack(values).double().cpu().numpy()

    def _candidates(self, batch: TokenBatch, outputs: torch.Tensor) -> torch.Tensor:
        """C [batch, seq - 1, top_k] of ``outputs`` (:func:`candidate_set`), computed once per forward."""
        cached = self._candidate_cache
        if cached is not None and cached[0] is outputs:
            return cached[1]
        cand = candidate_set(outputs[:, :-1], batch.input_ids[:, 1:].to(outputs.device), self.top_k)
        self._candidate_cache = (outputs, cand)
        return cand

    def _log_probs(self, outputs: torch.Tensor) -> torch.Tensor:
        """log p [batch, seq - 1, vocab] of ``outputs`` (with graph), computed once per forward and reused by
        :meth:`describe`, the update's :meth:`loss` and any look-ahead losses on the same batch."""
        cached = self._log_prob_cache
        if cached is not None and cached[0] is outputs:
            return cached[1]
        logp = F.log_softmax(_at_least_float32(outputs[:, :-1]), dim=-1)
        self._log_prob_cache = (outputs, logp)
        return logp

    def loss(self, batch: TokenBatch, outputs: torch.Tensor, task: Task) -> torch.Tensor:
        """Soft-target cross-entropy, scalar float32, mean over [batch, seq - 1] predicted positions."""
        logits = outputs[:, :-1]
        gold = batch.input_ids[:, 1:].to(logits.device)
        logp = self._log_probs(outputs)
        if task.family == GIVEN_TARGETS:
            cand, q = task.params["candidates"], task.params["q"]
            return -(q.to(logp.device) * logp.gather(-1, cand.to(logp.device))).sum(-1).mean()
        alpha = float(task.params.get("alpha", 0.0))
        if task.family == "one_hot" or alpha == 0.0:
            return -logp.gather(-1, gold[..., None]).mean()
        cand, q = soft_targets(logits, gold, family=task.family, alpha=alpha, top_k=self.top_k,
                               candidates=self._candidates(batch, outputs),
                               temperature=float(task.params.get("temperature", 1.0)))
        return -(q * logp.gather(-1, cand)).sum(-1).mean()

    def describe(self, batch: TokenBatch, outputs: torch.Tensor) -> np.ndarray:
        """[domain fractions..., mean one-hot loss (nats/token), mean entropy (nats)], float64."""
        logp = self._log_probs(outputs).detach()  # outside no_grad: the cached log p keeps its graph
        with torch.no_grad():
            gold = batch.input_ids[:, 1:].to(logp.device)
            nll = -logp.gather(-1, gold[..., None]).mean()
            entropy = -(logp.exp() * logp).sum(-1).mean()
            stats = torch.stack([nll, entropy]).cpu().double().numpy()
        return np.concatenate([batch.domain_fractions(), stats])
