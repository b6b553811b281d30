"""Forward-mode look-ahead through the alignment subset S only (docs/ARCHITECTURE.md §7, issue "Performance").

The tangent of the value direction (g_down) is nonzero only on S, the last blocks of the learner. A JVP of
the whole model would carry zero tangents through every block below S and recompute their primal forward.
:class:`TailForward` instead records, during the learner's own forward on the pending batch, the detached
hidden state entering the first block of S (and the arguments the model passed to it); the JVP then runs
only that block, the blocks after it, the final norm and the output head. Same result (the identity is
exact: the lower blocks do not depend on S), at the cost of the tail instead of the whole model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vpt_gym.learners import find_blocks

FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm")
"""Attribute names of the final norm after the block list (GPT-2, Llama/Qwen, OPT, ...)."""


class _Tail(nn.Module):
    """Blocks ``start..`` of ``model``, then its final norm and output head, as one module (for functional_call)."""

    def __init__(self, model: nn.Module, blocks: nn.ModuleList, start: int, norm: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.m = model  # registered, so functional_call substitutes S by the model's own parameter names
        self._blocks, self._start, self._norm, self._head = [blocks], start, [norm], [head]

    def forward(self, hidden: torch.Tensor, rest: tuple, kwargs: dict) -> torch.Tensor:
        """The final hidden state [batch, seq, d_model] (after the final norm, before the head)."""
        for block in self._blocks[0][self._start:]:
            out = block(hidden, *rest, **kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return self._norm[0](hidden)


LOW_PRECISION = (torch.bfloat16, torch.float16)
"""Dtypes whose forward-mode look-ahead runs on a float32 copy: forward-mode AD of CUDA's layer norm returns
float32 tangents for bf16 inputs, which the next bf16 matmul rejects (seen on an H200, torch 2.11)."""


def float32_weights(module: nn.Module, skip: Any = (), prefixes: tuple[str, ...] | None = None
                    ) -> dict[str, torch.Tensor]:
    """float32 copies of ``module``'s floating parameters and buffers, by their names in ``module``.

    Args:
        module: the model. skip: names to leave out (e.g. S, whose float32 primals the caller passes).
        prefixes: only names starting with one of these (``None``: all).

    Returns:
        name -> detached float32 tensor, for ``torch.func.functional_call``.
    """
    named = list(module.named_parameters()) + list(module.named_buffers())
    return {n: t.detach().float() for n, t in named
            if t.is_floating_point() and n not in skip and (prefixes is None or n.startswith(prefixes))}


def _upcast(value: Any) -> Any:
    """``value`` with every bf16/fp16 tensor (also inside tuples, lists and dicts) cast to float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype in LOW_PRECISION else value
    if isinstance(value, (tuple, list)):
        return type(value)(_upcast(v) for v in value)
    if isinstance(value, dict):
        return {k: _upcast(v) for k, v in value.items()}
    return value


class TailForward:
    """The LM learner's ``forward_fn``, recording the input of the first block of S for the tail JVP.

    Use as ``TorchLearner(forward_fn=TailForward.wrap(...))``; see :meth:`attach`. Only the learner's
    forward records (feedback and eval forwards call the module directly and leave the record alone).

    Attributes:
        last: ``(logits, hidden [batch, seq, d_model] detached, positional args, keyword args)`` of the last
            learner forward, or ``None``.
    """

    forward_fn: Callable[[nn.Module, Any], Any]  # the wrapped forward, set by attach()
    _pending: tuple[torch.Tensor, tuple, dict] | None  # set by the pre-hook during a recording forward

    def __init__(self, model: nn.Module, alignment_names: Sequence[str]) -> None:
        prefix, blocks = find_blocks(model)
        indices = set()
        for name in alignment_names:
            head = f"{prefix}."
            if not name.startswith(head):
                raise ValueError(f"alignment parameter {name!r} is outside the block list {prefix!r}")
            indices.add(int(name[len(head):].split(".", 1)[0]))
        parent = model.get_submodule(prefix.rsplit(".", 1)[0]) if "." in prefix else model
        norm = next((getattr(parent, n) for n in FINAL_NORM_NAMES if isinstance(getattr(parent, n, None), nn.Module)),
                    None)
        head_module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None  # type: ignore[operator]  # HF method
        if norm is None or not isinstance(head_module, nn.Linear):
            raise ValueError(f"{type(model).__name__}: no final norm ({FINAL_NORM_NAMES}) or linear output head")
        if getattr(getattr(model, "config", None), "final_logit_softcapping", None):
            raise ValueError(f"{type(model).__name__}: soft-capped logits are not a linear head")
        self.head_weight = head_module.weight  # [vocab, d_model]; logits = hidden @ W^T (+ bias, no tangent)
        self.start = min(indices)
        norm_name = next(n for n, m in model.named_modules() if m is norm)
        self._tail_prefixes = tuple(f"{prefix}.{i}." for i in range(self.start, len(blocks))) + (f"{norm_name}.",)
        self.tail = _Tail(model, blocks, self.start, norm, head_module)
        self.last: tuple | None = None
        self._armed = False
        blocks[self.start].register_forward_pre_hook(self._record, with_kwargs=True)

    @classmethod
    def attach(cls, learner: Any) -> bool:
        """Make ``learner`` (a TorchLearner of a causal LM) record tail inputs; False where S is not a tail of
        blocks (e.g. ``alignment="all"`` includes the embeddings), so the full-model JVP is used."""
        try:
            capture = cls(learner.module, learner.alignment_names)
        except (ValueError, AttributeError, TypeError):
            return False
        capture.forward_fn = learner.forward_fn
        learner.forward_fn = capture
        return True

    def _record(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._armed and args and isinstance(args[0], torch.Tensor):
            self._pending = (args[0].detach(), tuple(args[1:]), dict(kwargs))

    def __call__(self, module: nn.Module, batch: Any) -> Any:
        if not torch.is_grad_enabled():  # eval, or a forward-mode look-ahead (no_grad + jvp): nothing to record
            return self.forward_fn(module, batch)
        self._armed, self._pending = True, None
        try:
            out = self.forward_fn(module, batch)
        finally:
            self._armed = False
        self.last = None if self._pending is None else (out, *self._pending)
        return out

    def log_prob_jvp(self, outputs: torch.Tensor, candidates: torch.Tensor, subset: dict[str, torch.Tensor],
                     tangent: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """D[b, t, k] = tangent . grad_S log p(C[b, t, k] | ctx) through the tail only; ``None`` when
        ``outputs`` is not the output of the last learner forward (then use the full-model JVP).

        Args:
            outputs: logits [batch, seq, vocab] of the learner forward to differentiate.
            candidates: [batch, seq - 1, K] int64.
            subset: name -> parameter of S. tangent: tensors shaped like ``subset``'s values.

        Returns:
            [batch, seq - 1, K], float32 (float64 for a float64 model), or ``None``.
        """
        from torch.func import functional_call, jvp
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if self.last is None or self.last[0] is not outputs:
            return None
        _, hidden, rest, kwargs = self.last
        names = list(subset)
        primals = tuple(subset[n].detach() for n in names)
        fixed: dict[str, torch.Tensor] = {}
        if any(p.dtype in LOW_PRECISION for p in primals):  # the JVP runs on a float32 copy of the tail
            primals = tuple(p.float() for p in primals)
            fixed = {f"m.{n}": t for n, t in float32_weights(self.tail.m, subset, self._tail_prefixes).items()}
            hidden, rest, kwargs = _upcast(hidden), _upcast(rest), _upcast(kwargs)
        tangents = tuple(t.detach().to(p.dtype) for t, p in zip(tangent, primals, strict=True))

        def final_hidden(*params: torch.Tensor) -> torch.Tensor:
            weights = {**fixed, **{f"m.{n}": p for n, p in zip(names, params, strict=True)}}
            return functional_call(self.tail, weights, (hidden, rest, kwargs))

        with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # the tangent of the final hidden state (torch's jvp stub also allows the has_aux 3-tuple)
            _, hidden_dot = jvp(final_hidden, primals, tangents)  # type: ignore[misc]
            # the head is linear and not in S: tangent of the logits = hidden_dot W^T, and of the log-probs
            # d log p_c = dl_c - sum_v p_v dl_v (p from the learner's own forward, no recompute over the vocab)
            precise = torch.float64 if outputs.dtype == torch.float64 else torch.float32
            logits_dot = F.linear(hidden_dot[:, :-1].to(precise), self.head_weight.detach().to(precise))
            probs = torch.softmax(outputs.detach()[:, :-1].to(precise), dim=-1)
            derivative = logits_dot.gather(-1, candidates) - (probs * logits_dot).sum(-1, keepdim=True)
        return derivative
