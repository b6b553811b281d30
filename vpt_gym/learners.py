"""A generic PyTorch learner: module + optimizer + theta_0 snapshot + alignment subset S."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import torch
from torch import nn

OPTIMIZERS = ("adamw", "sgd")


def find_blocks(module: nn.Module) -> tuple[str, nn.ModuleList]:
    """The transformer-block stack of a model: its largest ``nn.ModuleList`` (GPT-2 ``transformer.h``,
    Llama/Qwen ``model.layers``, torchvision ViT ``encoder.layers``).

    Returns:
        (qualified name, the ModuleList).

    Raises:
        ValueError: the model has no ``nn.ModuleList``.
    """
    best: tuple[str, nn.ModuleList] | None = None
    for name, sub in module.named_modules():
        if isinstance(sub, nn.ModuleList) and (best is None or len(sub) > len(best[1])):
            best = (name, sub)
    if best is None:
        raise ValueError(f"{type(module).__name__} has no nn.ModuleList of blocks; pass alignment='all' or names")
    return best


def select_alignment_parameters(module: nn.Module, alignment: str | int | Sequence[str]) -> list[str]:
    """Names of the parameters in the alignment subset S (V-Pretraining v2 Eq. 28: the last layers).

    Args:
        module: the model.
        alignment: ``"all"``; an int n >= 1 = the last n blocks of :func:`find_blocks`; ``"lastN"`` (e.g.
            ``"last2"``); or a sequence of parameter-name prefixes.

    Returns:
        Parameter names (order of ``named_parameters``), non-empty.

    Raises:
        ValueError: n outside [1, num_blocks], or prefixes that match no parameter.
    """
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    if isinstance(alignment, str) and alignment == "all":
        return names
    if isinstance(alignment, str) and alignment.startswith("last") and alignment[4:].isdigit():
        alignment = int(alignment[4:])
    if isinstance(alignment, int) and not isinstance(alignment, bool):
        prefix, blocks = find_blocks(module)
        if not 1 <= alignment <= len(blocks):
            raise ValueError(f"alignment={alignment} blocks is outside [1, {len(blocks)}] for this model")
        prefixes = [f"{prefix}.{i}." for i in range(len(blocks) - alignment, len(blocks))]
    elif isinstance(alignment, str):
        raise ValueError(f"alignment must be 'all', 'lastN', an int or name prefixes, got {alignment!r}")
    else:
        prefixes = list(cast(Sequence[str], alignment))
    chosen = [n for n in names if any(n.startswith(p) for p in prefixes)]
    if not chosen:
        raise ValueError(f"alignment prefixes {prefixes!r} match no trainable parameter")
    return chosen


class TorchLearner:
    """A ``torch.nn.Module`` with its optimizer, an in-memory theta_0 snapshot and an alignment subset S.

    Implements the :class:`~vpt_gym.core.Learner` protocol.

    Args:
        module: the model; it is moved to ``device``. Its current weights are theta_0.
        forward_fn: ``forward_fn(module, batch) -> outputs`` (e.g. logits [batch, seq, vocab]).
        lr: learning rate eta > 0.
        optimizer: ``"adamw"`` (betas 0.9/0.95, the LM default) or ``"sgd"`` (plain, no momentum).
        weight_decay: >= 0 (AdamW decoupled decay).
        max_grad_norm: clip the full gradient to this norm before the step (None: no clipping). g_pre used
            for the value is the unclipped gradient.
        alignment: the subset S, see :func:`select_alignment_parameters`.
        device: torch device for the module.

    Raises:
        ValueError: lr <= 0, unknown optimizer, negative weight_decay, max_grad_norm <= 0, bad alignment.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        forward_fn: Callable[[Any, Any], Any],
        lr: float,
        optimizer: str = "adamw",
        weight_decay: float = 0.0,
        max_grad_norm: float | None = None,
        alignment: str | int | Sequence[str] = "all",
        device: str | torch.device = "cpu",
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {max_grad_norm!r}")
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.forward_fn = forward_fn
        self.lr = float(lr)
        self.max_grad_norm = max_grad_norm
        self.alignment_names = select_alignment_parameters(self.module, alignment)
        named = dict(self.module.named_parameters())
        self._subset = [named[n] for n in self.alignment_names]
        self._params = [p for p in self.module.parameters() if p.requires_grad]
        if optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(
                self._params, lr=self.lr, betas=(0.9, 0.95), weight_decay=weight_decay
            )
        else:
            self.optimizer = torch.optim.SGD(self._params, lr=self.lr, weight_decay=weight_decay)
        self.num_parameters = sum(p.numel() for p in self._params)
        self.num_alignment_parameters = sum(p.numel() for p in self._subset)
        self._theta0 = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self._optimizer0 = copy.deepcopy(self.optimizer.state_dict())

    def alignment_parameters(self) -> list[torch.Tensor]:
        """The parameters of S, in ``alignment_names`` order."""
        return list(self._subset)

    def reset(self, generator: torch.Generator | None = None) -> None:
        """Restore theta_0 and the optimizer state bit-for-bit; clear gradients."""
        with torch.no_grad():
            self.module.load_state_dict(self._theta0)
        self.optimizer.load_state_dict(copy.deepcopy(self._optimizer0))
        self.optimizer.zero_grad(set_to_none=True)

    def forward(self, batch: Any) -> Any:
        """``forward_fn(module, batch)`` with autograd enabled."""
        return self.forward_fn(self.module, batch)

    def backward(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Backpropagate ``loss`` into ``.grad`` of all parameters; return g_pre,S (live ``.grad`` of S)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return [p.grad if p.grad is not None else torch.zeros_like(p) for p in self._subset]

    def subset_gradient(self, loss: torch.Tensor, *, retain_graph: bool = False) -> list[torch.Tensor]:
        """Gradient of ``loss`` w.r.t. S only; ``.grad`` untouched. List of [*param_shape_i] tensors."""
        grads = torch.autograd.grad(loss, self._subset, retain_graph=retain_graph, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self._subset, strict=True)]

    @contextlib.contextmanager
    def grad_only_on_subset(self) -> Iterator[None]:
        """Within the block, parameters outside S do not require grad, so a forward builds no autograd graph
        below S and a backward (e.g. for g_down) stops at S. Restored on exit, also on error."""
        subset = {id(p) for p in self._subset}
        others = [p for p in self._params if id(p) not in subset]
        for p in others:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in others:
                p.requires_grad_(True)

    def apply_update(self) -> None:
        """Clip (if configured) and take one optimizer step."""
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.max_grad_norm)
        self.optimizer.step()

    def preconditioner(self) -> list[torch.Tensor] | None:
        """AdamW's diagonal preconditioner on S at the optimizer's current state: ``1 / (sqrt(v_hat) + eps)``.

        ``v_hat = exp_avg_sq / (1 - beta2 ** step)`` is the bias-corrected second moment of the last step
        (right after :meth:`apply_update` it includes that update's gradient). Source: V-Pretraining v2
        App. B.4 (first-order value of a preconditioned step); Kingma & Ba 2015, Algorithm 1.

        Returns:
            tensors shaped like S (``alignment_parameters()`` order), float32 or the parameter dtype, learner
            device; ``None`` for SGD (P = identity) or before the first AdamW step (no second moment yet).
        """
        if not isinstance(self.optimizer, torch.optim.AdamW):
            return None
        group = self.optimizer.param_groups[0]
        beta2, eps = float(group["betas"][1]), float(group["eps"])
        out = []
        for p in self._subset:
            state = self.optimizer.state.get(p)
            if not state or "exp_avg_sq" not in state:
                return None
            step = float(state["step"])
            v_hat = state["exp_avg_sq"] / (1.0 - beta2**step)
            out.append(1.0 / (v_hat.sqrt() + eps))
        return out

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of everything an update changes: weights and buffers (``state_dict``: BatchNorm
        statistics, an EMA teacher and a centre included) and the optimizer state. See :meth:`restore`."""
        return {"module": {k: v.detach().clone() for k, v in self.module.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot` bit-for-bit (the snapshot stays reusable); gradients are cleared."""
        with torch.no_grad():
            self.module.load_state_dict(snapshot["module"])
        self.optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's current weights (for saving with safetensors)."""
        return self.module.state_dict()
