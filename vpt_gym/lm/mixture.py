"""The data-domain task space of ``vpt/LM-Domains-*``: which domain mixture feeds the next learner update.

Each pretraining row's domain is drawn from the chosen mixture over the stream's declared text domains
(:mod:`vpt_gym.lm.domains`); the loss is one-hot next-token prediction on the task's view of the draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces

from vpt_gym.core import LOSS_CAP, Task
from vpt_gym.lm.domains import DomainDraw, check_mixture
from vpt_gym.lm.stream import TokenBatch

__all__ = ["MIXTURE", "DomainMixtureTaskSpace"]

MIXTURE = "domain_mixture"
"""Task family of every task here: ``params = {"weights": {domain: pi_d}}`` with pi on the simplex."""


class DomainMixtureTaskSpace:
    """Task menu (``Discrete``) or continuous family (``Box``) of data-domain mixtures; one-hot NTP loss.

    Discrete menu: ``uniform`` (standard, index 0: every domain 1/D), ``only_<d>`` per domain, then the named
    fixed ``mixtures``. Continuous: action a in Box([-1, 1]^D, float32), pi = softmax(logit_scale * a); the
    standard action 0 is the uniform mixture.

    Task-dependent forward (``materialize``): row i of the view takes its window in domain
    d_i = F_pi^{-1}((k_i + w_i) / D), with k_i the draw's uniform domain and w_i in [0, 1) a per-row uniform
    fixed once per draw from the task-space generator; so d_i ~ pi independently of the window position, and
    the uniform mixture gives d_i = k_i exactly (the stream of uniform domain sampling).

    Descriptors (observation, D each): ``standard_fraction_<d>`` (rows of the pending draw in d under the
    standard task, [0, 1]); ``ema_loss_<d>`` (EMA, decay ``ema_decay``, of the learner's mean next-token NLL on
    the rows of d in its updates, starting at ``initial_losses``; [0, 1e3] nats/token); ``row_fraction_<d>``
    (fraction of all trained rows that came from d, [0, 1]).

    Args:
        domain_names: the stream's domains, in order (>= 1).
        continuous: build the Box variant.
        mixtures: extra named menu mixtures (Discrete only), name -> {domain: weight} on the simplex.
        logit_scale: softmax scale of the Box variant, finite, > 0.
        initial_losses: domain -> learner NLL at theta_0 (nats/token; default 0).
        ema_decay: in [0, 1).

    Raises:
        ValueError: a bad mixture (unknown domain, non-finite, negative, not summing to 1), a name clash,
            mixtures with ``continuous``, a bad ``logit_scale`` or ``ema_decay``.
    """

    task_dependent_forward = True

    def __init__(self, *, domain_names: Sequence[str], continuous: bool = False,
                 mixtures: Mapping[str, Mapping[str, float]] | None = None, logit_scale: float = 3.0,
                 initial_losses: Mapping[str, float] | None = None, ema_decay: float = 0.9) -> None:
        names = tuple(domain_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"domain_names must be unique and non-empty, got {names}")
        if not (isinstance(logit_scale, (int, float)) and math.isfinite(logit_scale) and logit_scale > 0):
            raise ValueError(f"logit_scale must be finite and > 0, got {logit_scale!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}")
        if continuous and mixtures:
            raise ValueError(f"mixtures={dict(mixtures)} define a Discrete menu; the continuous variant takes none")
        self.domain_names = names
        self.continuous = continuous
        self.logit_scale = float(logit_scale)
        self.ema_decay = float(ema_decay)
        d = len(names)
        uniform = self._task("uniform", tuple([1.0 / d] * d))
        if continuous:
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, shape=(d,), dtype=np.float32)
            self.standard_action: Any = np.zeros(d, dtype=np.float32)
            self.tasks = [Task(name="mixture_continuous", family=MIXTURE, params={"logit_scale": self.logit_scale})]
        else:
            tasks = [uniform] + [self._task(f"only_{n}", tuple(float(m == n) for m in names)) for n in names]
            for name, weights in (mixtures or {}).items():
                if not isinstance(name, str) or not name or name in {t.name for t in tasks}:
                    raise ValueError(f"mixture name {name!r} is empty or clashes with the menu "
                                     f"{[t.name for t in tasks]}")
                tasks.append(self._task(name, check_mixture(weights, names, where=f"mixture {name!r}")))
            self.tasks = tasks
            self.action_space = spaces.Discrete(len(tasks))
            self.standard_action = 0
        self.descriptor_names = tuple(f"{kind}_{n}" for kind in ("standard_fraction", "ema_loss", "row_fraction")
                                      for n in names)
        self.descriptor_low = np.zeros(3 * d)
        self.descriptor_high = np.array([1.0] * d + [LOSS_CAP] * d + [1.0] * d)
        self.set_initial_losses(initial_losses or {})
        self._g: torch.Generator | None = None

    def set_initial_losses(self, losses: Mapping[str, float]) -> None:
        """Set the start of the per-domain loss EMAs (domain -> nats/token at theta_0; missing: 0)."""
        self._initial = np.array([float(losses.get(n, 0.0)) for n in self.domain_names])

    def _task(self, name: str, weights: tuple[float, ...]) -> Task:
        return Task(name=name, family=MIXTURE, params={"weights": dict(zip(self.domain_names, weights, strict=True))})

    # ------------------------------------------------------------------------------------------- tasks
    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: per-row mixture uniforms from ``generator``; descriptor statistics cleared."""
        self._g = generator
        self._ema = self._initial.copy()
        self._rows = np.zeros(len(self.domain_names))
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def task(self, action: Any) -> Task:
        """The task of an action (menu index, or a Box point mapped through the softmax)."""
        if not self.continuous:
            return self.tasks[int(action)]
        logits = self.logit_scale * torch.as_tensor(np.asarray(action, dtype=np.float64))
        weights = torch.softmax(logits, 0).tolist()
        name = "mix_" + "_".join(f"{n}{w:.3f}" for n, w in zip(self.domain_names, weights, strict=True))
        return self._task(name, tuple(weights))

    def menu_index(self, action: Any) -> int:
        return 0 if self.continuous else int(action)

    def accepts(self, task: Task) -> bool:
        """Whether ``task`` is a valid mixture over this space's domains (designer-built tasks)."""
        try:
            check_mixture(task.params.get("weights", {}), self.domain_names)
        except ValueError:
            return False
        return task.family == MIXTURE

    def weights(self, task: Task) -> torch.Tensor:
        """pi of ``task`` in domain order, shape [D], float64. Raises: ValueError for a bad mixture."""
        return torch.tensor(check_mixture(task.params["weights"], self.domain_names, where=f"task {task.name!r}"),
                            dtype=torch.float64)

    # ----------------------------------------------------------------------------------------- batches
    def _uniforms(self, draw: DomainDraw) -> torch.Tensor:
        if draw.mixture_uniforms is None:
            if self._g is None:
                raise RuntimeError("DomainMixtureTaskSpace.reset(generator) must be called first")
            draw.mixture_uniforms = torch.rand(draw.num_examples, generator=self._g, dtype=torch.float64)
        return draw.mixture_uniforms

    def row_domains(self, draw: DomainDraw, task: Task) -> torch.Tensor:
        """Each row's domain under ``task``, shape [batch], int64 (see the class docstring)."""
        w = self.weights(task)
        if bool(torch.all(w == w[0])):
            return draw.uniform_domain
        d = w.numel()
        v = (draw.uniform_domain.double() + self._uniforms(draw)) / d
        last = int(torch.nonzero(w > 0).max())
        return torch.searchsorted(torch.cumsum(w, 0), v, right=True).clamp(max=last)

    def materialize(self, draw: DomainDraw, task: Task) -> TokenBatch:
        """The task's view of the draw: row i = ``draw.windows[i, d_i]``; shape [batch, seq], int64."""
        domain = self.row_domains(draw, task)
        ids = draw.windows[torch.arange(draw.num_examples), domain]
        return TokenBatch(ids, domain, draw.domain_names, draw.num_examples, draw.num_tokens)

    def loss(self, view: TokenBatch, outputs: torch.Tensor, task: Task) -> torch.Tensor:
        """One-hot next-token cross-entropy, scalar float32, mean over [batch, seq - 1] positions.

        Keeps each row's detached NLL; :meth:`describe` commits the last call's rows (the update's: look-ahead
        losses come before it) into the per-domain statistics.
        """
        logits = outputs[:, :-1]
        gold = view.input_ids[:, 1:].to(logits.device)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), gold.flatten(), reduction="none").view(gold.shape)
        self._pending = (view.domain, nll.detach().mean(1).double().cpu())
        return nll.mean()

    def describe(self, draw: DomainDraw, outputs: Any = None) -> np.ndarray:
        """[standard_fraction (D), ema_loss (D), row_fraction (D)], float64 (see the class docstring)."""
        self._uniforms(draw)  # fixed once per draw, in draw order
        if self._pending is not None:
            domain, rows = self._pending
            self._pending = None
            for k in range(len(self.domain_names)):
                mask = domain == k
                if bool(mask.any()):
                    mean = float(rows[mask].mean())
                    self._ema[k] = self.ema_decay * self._ema[k] + (1 - self.ema_decay) * mean
                    self._rows[k] += int(mask.sum())
        d = len(self.domain_names)
        standard = torch.bincount(draw.uniform_domain, minlength=d).double().numpy() / draw.num_examples
        row_fraction = self._rows / self._rows.sum() if self._rows.sum() > 0 else np.zeros(d)
        return np.concatenate([standard, np.clip(self._ema, 0.0, LOSS_CAP), row_fraction])
