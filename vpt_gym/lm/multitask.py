"""Multitask feedback of ``vpt/LM-Domains-v0``: several downstream tasks with weights omega.

``L_down = sum_j omega_j L_j``, so ``g_down = sum_j omega_j g_j`` (V-Pretraining v2 multitask feedback). The
tasks are the GSM8K solution NLL (:class:`~vpt_gym.lm.feedback.GSM8KFeedback`) and held-out next-token NLL
on a text domain's held-out windows (:class:`HeldoutNLLFeedback`, e.g. standard-library code or prose). With
``domain_matched=True`` the env pairs each pretraining domain with its own feedback task (see
:meth:`MultitaskFeedback.matched_weights`). Every task keeps disjoint feedback and eval splits; the eval
report lists every task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vpt_gym.core import FeedbackSet, FeedbackValidation, HeldOutLoss, Learner, Task
from vpt_gym.utils import check_int, inference_mode


@dataclass(frozen=True, kw_only=True, eq=False)
class WindowBatch:
    """Held-out token windows.

    Attributes:
        input_ids: shape [B, L], int64, CPU.
        indices: shape [B], int64; rows of the feedback split.
        num_examples: B. num_tokens: B * L.
    """

    input_ids: torch.Tensor
    indices: torch.Tensor
    num_examples: int
    num_tokens: int


def window_nll(module: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of token windows: ``logits[:, :-1]`` predict ``input_ids[:, 1:]``.

    Args:
        module: causal LM returning ``.logits`` [B, L, V].
        input_ids: shape [B, L], int64, on the module's device.

    Returns:
        Scalar float32 (differentiable), nats per predicted token, >= 0.
    """
    logits = module(input_ids=input_ids).logits[:, :-1]
    return F.cross_entropy(logits.flatten(0, 1).float(), input_ids[:, 1:].flatten())


class HeldoutNLLFeedback:
    """Feedback set of held-out text windows of one domain: next-token NLL as L_down.

    Implements :class:`~vpt_gym.core.FeedbackSet`. Feedback and eval windows come from disjoint held-out
    documents (see :func:`vpt_gym.lm.domains.tokenize_domains`) that never appear in a pretraining batch.

    Attributes:
        source: where the windows came from. metric_name: ``"neg_nll"`` (higher is better).
        feedback_windows / eval_windows: the feedback split [N, L] and the used eval windows [eval_items, L'].

    Args:
        feedback: feedback windows, shape [N, L], int64 (N >= 1, L >= 2).
        eval: eval windows, shape [M, L'], int64 (M >= 1).
        batch_size: windows per ``sample_batch``, in [1, N].
        probe_size: windows in the episode's probe batch, in [1, N].
        eval_items: leading eval windows used by ``evaluate``, in [1, M].
        source: non-empty description.

    Raises:
        ValueError: any argument outside its range.
    """

    metric_name = "neg_nll"

    def __init__(self, *, feedback: torch.Tensor, eval: torch.Tensor, batch_size: int = 8,  # noqa: A002
                 probe_size: int = 8, eval_items: int = 64, source: str) -> None:
        for name, windows in (("feedback", feedback), ("eval", eval)):
            shape = tuple(windows.shape) if isinstance(windows, torch.Tensor) else ()
            if len(shape) != 2 or shape[0] < 1 or shape[1] < 2:
                raise ValueError(f"{name} must be an int64 tensor [num_windows >= 1, length >= 2], got "
                                 f"{getattr(windows, 'shape', type(windows).__name__)}")
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, got {source!r}")
        self.num_feedback = int(feedback.shape[0])
        self.batch_size = check_int("batch_size", batch_size, 1, self.num_feedback)
        self.probe_size = check_int("probe_size", probe_size, 1, self.num_feedback)
        self.eval_items = check_int("eval_items", eval_items, 1, int(eval.shape[0]))
        self.source = source
        self.feedback_windows = feedback.to(torch.int64)
        self.eval_windows = eval[: self.eval_items].to(torch.int64)
        self._generator: torch.Generator | None = None
        self._probe: WindowBatch | None = None

    def _batch(self, indices: torch.Tensor) -> WindowBatch:
        ids = self.feedback_windows[indices]
        return WindowBatch(input_ids=ids, indices=indices.clone(), num_examples=int(ids.shape[0]),
                           num_tokens=int(ids.numel()))

    def reset(self, generator: torch.Generator) -> None:
        """Keep ``generator`` for sampling; the probe is ``randperm(N, generator)[:probe_size]``."""
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self._generator = generator
        self._probe = self._batch(torch.randperm(self.num_feedback, generator=generator)[: self.probe_size])

    def sample_batch(self) -> WindowBatch:
        """``batch_size`` distinct random feedback windows. Raises: RuntimeError before :meth:`reset`."""
        if self._generator is None:
            raise RuntimeError("HeldoutNLLFeedback.reset(generator) must be called before sampling")
        return self._batch(torch.randperm(self.num_feedback, generator=self._generator)[: self.batch_size])

    def probe_batch(self) -> WindowBatch:
        """The episode's fixed probe batch. Raises: RuntimeError before :meth:`reset`."""
        if self._probe is None:
            raise RuntimeError("HeldoutNLLFeedback.reset(generator) must be called before probe_batch()")
        return self._probe

    def loss(self, learner: Learner, batch: WindowBatch) -> torch.Tensor:
        """L_down: mean next-token NLL of the windows (:func:`window_nll`), scalar float32, nats/token."""
        return window_nll(learner.module, batch.input_ids.to(learner.device))

    def metric(self, learner: Learner, batch: WindowBatch) -> float:
        """Negative mean NLL of the batch (nats/token, <= 0; higher is better), without gradients."""
        with inference_mode(learner.module):
            return -float(self.loss(learner, batch))

    def eval_loss(self, learner: Learner) -> float:
        """Mean next-token NLL over the first ``eval_items`` eval windows (nats/token): ``eval_nll``."""
        return self.evaluate(learner)["eval_nll"]

    def validation_score(self, learner: Learner) -> float:
        """Minus the mean next-token NLL over every feedback window (nats/token, <= 0; higher is better): the
        eval measure on the feedback split, the eval split unread (:class:`~vpt_gym.core.FeedbackValidation`)."""
        return -self._windows_nll(learner, self.feedback_windows)

    def evaluate(self, learner: Learner) -> dict[str, float]:
        """``{"eval_nll": mean NLL over the first eval_items eval windows (nats/token), "eval_items": M}``."""
        return {"eval_nll": self._windows_nll(learner, self.eval_windows), "eval_items": float(self.eval_items)}

    @staticmethod
    def _windows_nll(learner: Learner, windows: torch.Tensor) -> float:
        """Token-mean next-token NLL (nats/token) of ``windows`` [N, L], 16 windows per no-grad forward."""
        total, count = 0.0, 0
        with inference_mode(learner.module):
            for start in range(0, int(windows.shape[0]), 16):
                ids = windows[start : start + 16]
                total += float(window_nll(learner.module, ids.to(learner.device))) * ids[:, 1:].numel()
                count += ids[:, 1:].numel()
        return total / count


def normalized_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """omega normalized to sum 1.

    Raises:
        ValueError: no weights, a non-finite or negative weight (named), or an all-zero vector.
    """
    if not weights:
        raise ValueError("feedback weights are empty; give at least one task")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"feedback weight of {name!r} is {w!r}; weights must be finite and >= 0")
    total = float(sum(weights.values()))
    if not total > 0:
        raise ValueError(f"feedback weights {dict(weights)} sum to {total}; need a positive sum")
    return {n: float(w) / total for n, w in weights.items()}


@dataclass(frozen=True, kw_only=True, eq=False)
class MultitaskBatch:
    """One feedback batch per task. ``parts``: task name -> batch; counts are sums over the parts."""

    parts: Mapping[str, Any]
    num_examples: int
    num_tokens: int


class MultitaskFeedback:
    """Several feedback tasks with weights omega: ``L_down = sum_j omega_j L_j``, ``g_down = sum_j omega_j g_j``.

    Implements :class:`~vpt_gym.core.FeedbackSet`. Each task keeps its own disjoint feedback and eval splits;
    ``evaluate`` reports every task's held-out metrics under ``"<task>/<metric>"`` plus ``"eval_nll"``, the
    omega-weighted held-out NLL.

    Domain-matched alignment (``domain_matched=True``): each task j is paired with a pretraining domain
    d(j) (``matched_domains``); the env caches the per-task feedback gradients g_j at every g_down refresh and
    scores an update of mixture task pi with ``g_down(pi) = sum_j pi_{d(j)} g_j`` (:meth:`matched_weights`):
    a single-domain task is aligned with its own domain's feedback only, a domain without a feedback task
    has value 0. Source: V-Pretraining v2, multitask and domain-matched feedback (Eq. 44-46; this is our
    reading for data mixtures: the mixture weight of a domain plays the role of the domain's share of g_pre).

    Attributes:
        task_names: task names in order. weights: omega per task (normalized to sum 1).
        source / metric_name: composed from the tasks (``metric`` = sum_j omega_j metric_j).
        domain_matched: whether the env uses :meth:`matched_weights`.

    Args:
        tasks: name -> feedback set (>= 1; names ``[a-z0-9_]+``).
        weights: name -> omega >= 0, finite, same names as ``tasks``, positive sum (normalized).
        matched_domains: task name -> pretraining domain name (needed for ``domain_matched``).
        domain_matched: enable domain-matched alignment.

    Raises:
        ValueError: empty tasks, weights naming other tasks, a non-finite or negative weight, an all-zero
            weight vector, or ``domain_matched`` without a domain for every task.
    """

    def __init__(self, tasks: Mapping[str, FeedbackSet], weights: Mapping[str, float], *,
                 matched_domains: Mapping[str, str] | None = None, domain_matched: bool = False) -> None:
        if not tasks:
            raise ValueError("tasks must hold >= 1 feedback set")
        if set(weights) != set(tasks):
            raise ValueError(f"feedback weights {dict(weights)} must name exactly the tasks {sorted(tasks)}")
        normalized = normalized_weights(weights)
        self.task_names = tuple(tasks)
        self.tasks = dict(tasks)
        self.weights = {n: normalized[n] for n in self.task_names}
        self.matched_domains = dict(matched_domains or {})
        self.domain_matched = bool(domain_matched)
        if self.domain_matched and set(self.matched_domains) != set(self.task_names):
            raise ValueError(f"domain_matched needs a pretraining domain for every task {list(self.task_names)}, "
                             f"got matched_domains={self.matched_domains}")
        self.source = "; ".join(f"{n}={self.tasks[n].source}" for n in self.task_names)
        self.metric_name = "+".join(f"{self.weights[n]:.3g}*{n}.{self.tasks[n].metric_name}" for n in self.task_names)

    def reset(self, generator: torch.Generator) -> None:
        """One child generator per task, seeded from ``generator`` (in task order); resets every task."""
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        seeds = torch.randint(0, 2**62, (len(self.task_names),), generator=generator).tolist()
        for name, seed in zip(self.task_names, seeds, strict=True):
            self.tasks[name].reset(torch.Generator().manual_seed(int(seed)))

    def _compose(self, parts: dict[str, Any]) -> MultitaskBatch:
        return MultitaskBatch(parts=parts, num_examples=sum(int(b.num_examples) for b in parts.values()),
                              num_tokens=sum(int(b.num_tokens) for b in parts.values()))

    def sample_batch(self) -> MultitaskBatch:
        """A fresh feedback batch of every task."""
        return self._compose({n: self.tasks[n].sample_batch() for n in self.task_names})

    def probe_batch(self) -> MultitaskBatch:
        """The episode's fixed probe batch of every task."""
        return self._compose({n: self.tasks[n].probe_batch() for n in self.task_names})

    def task_losses(self, learner: Learner, batch: MultitaskBatch) -> dict[str, torch.Tensor]:
        """Each task's differentiable L_j on its part of ``batch`` (scalars, float32)."""
        return {n: self.tasks[n].loss(learner, batch.parts[n]) for n in self.task_names}

    def loss(self, learner: Learner, batch: MultitaskBatch) -> torch.Tensor:
        """L_down = sum_j omega_j L_j (scalar float32); its gradient is g_down = sum_j omega_j g_j."""
        losses = self.task_losses(learner, batch)
        return sum(self.weights[n] * losses[n] for n in self.task_names)  # type: ignore[return-value]

    def metric(self, learner: Learner, batch: MultitaskBatch) -> float:
        """sum_j omega_j metric_j (each task's own metric: Pass@1 in [0, 1], negative NLL, ...)."""
        return float(sum(self.weights[n] * self.tasks[n].metric(learner, batch.parts[n]) for n in self.task_names))

    def matched_weights(self, task: Task) -> dict[str, float]:
        """Domain-matched coefficients of ``task``: ``{j: pi_{d(j)}}`` with pi = ``task.params["weights"]``.

        The env's domain-matched g_down for the task is ``sum_j matched_weights(task)[j] * g_j``.

        Raises:
            ValueError: the task has no ``weights`` mapping.
        """
        mixture = task.params.get("weights")
        if not isinstance(mixture, Mapping):
            raise ValueError(f"task {task.name!r} has no mixture weights; domain-matched alignment needs them")
        return {n: float(mixture.get(self.matched_domains[n], 0.0)) for n in self.task_names}

    def _weighted(self, learner: Learner, protocol: type, method: str) -> float:
        """sum_j omega_j task_j.<method>(learner), in task order. Raises: TypeError naming a task that does not
        implement ``protocol``."""
        total = 0.0
        for name in self.task_names:
            task = self.tasks[name]
            if not isinstance(task, protocol):
                raise TypeError(f"feedback task {name!r} ({type(task).__name__}) has no {method}()")
            total += self.weights[name] * float(getattr(task, method)(learner))
        return total

    def eval_loss(self, learner: Learner) -> float:
        """sum_j omega_j eval_loss_j: the ``eval_nll`` of :meth:`evaluate` without the decoding of tasks
        that decode (GSM8K Pass@1). Raises: TypeError when a task has no ``eval_loss``."""
        return self._weighted(learner, HeldOutLoss, "eval_loss")

    def validation_score(self, learner: Learner) -> float:
        """sum_j omega_j validation_score_j (:class:`~vpt_gym.core.FeedbackValidation`; higher is better).

        Raises:
            TypeError: a task without ``validation_score`` (named).
        """
        return self._weighted(learner, FeedbackValidation, "validation_score")

    def evaluate(self, learner: Learner) -> dict[str, float]:
        """Every task's held-out metrics as ``"<task>/<key>"`` and ``"eval_nll"`` = sum_j omega_j eval_nll_j."""
        report: dict[str, float] = {}
        weighted = 0.0
        for name in self.task_names:
            for key, value in self.tasks[name].evaluate(learner).items():
                report[f"{name}/{key}"] = float(value)
            weighted += self.weights[name] * report.get(f"{name}/eval_nll", 0.0)
        report["eval_nll"] = weighted
        return report
