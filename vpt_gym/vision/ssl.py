"""The vision SSL learner: a student backbone + head, an EMA teacher, DINO (or SimCLR) loss.

DINO (Caron et al., ICCV 2021, §3.1 and Algorithm 1): the student sees all crops, the teacher (an
exponential moving average of the student, no gradient) sees the two global crops; the teacher's output is
centred (c <- m c + (1 - m) mean(teacher logits)) and sharpened (temperature tau_t < tau_s), and the loss is
the cross-entropy H(P_t(x_i), P_s(x_j)) averaged over pairs of different crops i (global) and j (any).
SimCLR (Chen et al., ICML 2020, Eq. 1): NT-Xent over the two global crops' normalized projections.

The learner implements :class:`~vpt_gym.core.Learner` by composition with
:class:`~vpt_gym.learners.TorchLearner` (theta_0 snapshot of student, teacher and centre, AdamW state,
alignment subset S). The teacher update and the centre update happen in :meth:`SSLLearner.apply_update`,
after the optimizer step, from the *last* forward (the update's). BatchNorm running statistics are updated
only by applied updates: look-ahead forwards and the feedback gradient never change them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vpt_gym.learners import TorchLearner

OBJECTIVES = ("dino", "simclr")
"""Accepted SSL objectives."""


@dataclass(frozen=True, kw_only=True, eq=False)
class SSLView:
    """The views a task builds from a pretraining batch.

    Attributes:
        global_views: shape [G, B, C, S, S], float32, normalized (G = 2 global crops).
        local_views: shape [L, B, C, s, s], float32, normalized, or None (no local crops).
        num_examples: B.
        num_tokens: 0 (images are not tokens).
    """

    global_views: torch.Tensor
    local_views: torch.Tensor | None
    num_examples: int
    num_tokens: int = 0


@dataclass(frozen=True, kw_only=True, eq=False)
class SSLOutputs:
    """The learner's outputs on a view.

    Attributes:
        loss: the SSL loss, scalar float32 with graph (nats for DINO and SimCLR).
        teacher_mean: mean teacher logits over the global crops, shape [K], detached (DINO), or None.
    """

    loss: torch.Tensor
    teacher_mean: torch.Tensor | None


class ProjectionHead(nn.Module):
    """DINO head: MLP D -> H -> H -> P (GELU), l2-normalize, linear P -> K prototypes (no bias).

    Returns ``(logits [B, K], z [B, P] unit-norm)``; SimCLR uses ``z``.
    """

    def __init__(self, dim: int, hidden: int, bottleneck: int, out_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, bottleneck))
        self.last = nn.Linear(bottleneck, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = F.normalize(self.mlp(x), dim=-1)
        return F.linear(z, F.normalize(self.last.weight, dim=-1)), z


class SSLModel(nn.Module):
    """Student (backbone + head), teacher (a frozen copy, EMA-updated) and the DINO centre buffer.

    Args:
        backbone: a module mapping images to ``(cls [B, D], dense [B, D, h, w])`` with ``.dim`` and
            ``.alignment_prefixes(blocks)``.
        head_hidden / bottleneck / out_dim: the projection head (K = ``out_dim`` prototypes).
        make_teacher: build the EMA teacher (False for SimCLR: no teacher parameters).
    """

    # nn.Module attributes, declared for the type checker: the backbones are duck-typed (see Args).
    student_backbone: Any
    teacher_backbone: Any
    teacher_head: Any
    center: torch.Tensor

    def __init__(self, backbone: nn.Module, *, head_hidden: int, bottleneck: int, out_dim: int,
                 make_teacher: bool = True) -> None:
        super().__init__()
        import copy

        self.student_backbone = backbone
        self.student_head = ProjectionHead(self.student_backbone.dim, head_hidden, bottleneck, out_dim)
        self.teacher_backbone = copy.deepcopy(backbone) if make_teacher else None
        self.teacher_head = copy.deepcopy(self.student_head) if make_teacher else None
        if make_teacher:
            for p in list(self.teacher_backbone.parameters()) + list(self.teacher_head.parameters()):
                p.requires_grad_(False)
        self.register_buffer("center", torch.zeros(out_dim))

    def student(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, K], z [B, P]) of the student."""
        return self.student_head(self.student_backbone(images)[0])

    def teacher(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher logits [B, K] (no gradient)."""
        with torch.no_grad():
            return self.teacher_head(self.teacher_backbone(images)[0])[0]


def dino_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, center: torch.Tensor, *,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO cross-entropy between the centred, sharpened teacher and the student over pairs of crops.

    Source: Caron et al. 2021, Eq. (1)-(3) and Algorithm 1:
    L = mean over (i global, j any crop, j != i) of -sum_k P_t(i)_k log P_s(j)_k,
    P_t = softmax((t - c) / tau_t), P_s = softmax(s / tau_s).

    Args:
        student_logits: shape [V, B, K] (the first G crops are the global ones), float32.
        teacher_logits: shape [G, B, K], float32, detached.
        center: shape [K], float32.
        student_temp / teacher_temp: tau_s, tau_t > 0.

    Returns:
        Scalar float32 (nats), >= 0.
    """
    targets = torch.softmax((teacher_logits - center) / teacher_temp, dim=-1)
    log_probs = torch.log_softmax(student_logits / student_temp, dim=-1)
    total, pairs = student_logits.new_zeros(()), 0
    for i in range(targets.shape[0]):
        for j in range(log_probs.shape[0]):
            if i != j:
                total = total - (targets[i] * log_probs[j]).sum(-1).mean()
                pairs += 1
    return total / pairs


def simclr_loss(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over two views: z of shape [2, B, P] (unit-norm); positives are the other view of an image.

    Source: Chen et al. 2020 (SimCLR), Eq. (1), averaged over the 2B anchors.

    Returns:
        Scalar float32 (nats), >= 0.
    """
    _, b, _ = z.shape
    flat = z.reshape(2 * b, -1)
    sim = flat @ flat.T / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _bn_modules(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _get_bn(modules: list[nn.Module]) -> list[torch.Tensor]:
    return [getattr(m, name) for m in modules for name in _BN_BUFFERS]


def _set_bn(modules: list[nn.Module], tensors: list[torch.Tensor]) -> None:
    """Rebind the BatchNorm buffers (no in-place write: autograd may hold the old tensors)."""
    it = iter(tensors)
    for m in modules:
        for name in _BN_BUFFERS:
            setattr(m, name, next(it))


class SSLLearner:
    """A DINO / SimCLR learner implementing :class:`~vpt_gym.core.Learner`.

    Args:
        model: the :class:`SSLModel`; its current weights (student, teacher, centre) are theta_0.
        objective: ``"dino"`` or ``"simclr"``.
        lr: AdamW learning rate eta > 0.
        alignment_blocks: S = the student backbone's last ``alignment_blocks`` blocks (+ final norm).
        device: torch device.
        teacher_momentum: EMA momentum m of the teacher, in [0, 1] (DINO: 0.996; short episodes use less).
        center_momentum: momentum of the centre, in [0, 1] (DINO: 0.9).
        student_temp / teacher_temp: DINO temperatures (0.1 / 0.04); simclr_temp: NT-Xent temperature.
        weight_decay: AdamW weight decay; max_grad_norm: gradient clipping (DINO: 3.0).

    Raises:
        ValueError: unknown objective, momentum outside [0, 1], temperature <= 0, alignment_blocks outside
            [1, num_blocks], or a SimCLR objective with a model that has a teacher (and vice versa).
    """

    def __init__(self, model: SSLModel, *, objective: str = "dino", lr: float, alignment_blocks: int = 2,
                 device: str | torch.device = "cpu", teacher_momentum: float = 0.99, center_momentum: float = 0.9,
                 student_temp: float = 0.1, teacher_temp: float = 0.04, simclr_temp: float = 0.2,
                 weight_decay: float = 0.0, max_grad_norm: float | None = 3.0) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective={objective!r} is not accepted; choose one of {OBJECTIVES}")
        if (objective == "dino") != (model.teacher_backbone is not None):
            needs = "with" if objective == "dino" else "without"
            raise ValueError(f"objective={objective!r} needs a model {needs} a teacher")
        for name, value in (("teacher_momentum", teacher_momentum), ("center_momentum", center_momentum)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must be in [0, 1]")
        for name, value in (("student_temp", student_temp), ("teacher_temp", teacher_temp),
                            ("simclr_temp", simclr_temp)):
            if not value > 0:
                raise ValueError(f"{name}={value} must be > 0")
        blocks = model.student_backbone.num_blocks
        if (isinstance(alignment_blocks, bool) or not isinstance(alignment_blocks, int)
                or not 1 <= alignment_blocks <= blocks):
            raise ValueError(f"alignment_blocks={alignment_blocks!r} must be an integer in [1, {blocks}]")
        prefixes = [f"student_backbone.{p}" for p in model.student_backbone.alignment_prefixes(alignment_blocks)]
        model.train()
        if model.teacher_backbone is not None:
            model.teacher_backbone.eval()
            model.teacher_head.eval()
        self._inner = TorchLearner(model, forward_fn=self._forward, lr=lr, optimizer="adamw",
                                   weight_decay=weight_decay, max_grad_norm=max_grad_norm, alignment=prefixes,
                                   device=device)
        self.model = model
        self.objective = objective
        self.teacher_momentum = float(teacher_momentum)
        self.center_momentum = float(center_momentum)
        self.student_temp, self.teacher_temp = float(student_temp), float(teacher_temp)
        self.simclr_temp = float(simclr_temp)
        self._student_bn = _bn_modules(model.student_backbone)
        self._pending_bn: list[torch.Tensor] | None = None
        self._pending_center: torch.Tensor | None = None

    # protocol attributes, delegated
    @property
    def module(self) -> nn.Module:
        """The :class:`SSLModel` (student, teacher, centre)."""
        return self._inner.module

    @property
    def device(self) -> torch.device:
        return self._inner.device

    @property
    def lr(self) -> float:
        return self._inner.lr

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._inner.optimizer

    @property
    def alignment_names(self) -> list[str]:
        return self._inner.alignment_names

    @property
    def num_parameters(self) -> int:
        return self._inner.num_parameters

    @property
    def num_alignment_parameters(self) -> int:
        return self._inner.num_alignment_parameters

    def alignment_parameters(self) -> list[torch.Tensor]:
        """S: the last blocks (+ final norm) of the student backbone."""
        return self._inner.alignment_parameters()

    def reset(self, generator: torch.Generator | None = None) -> None:
        """Restore student, teacher, centre, BatchNorm statistics and the AdamW state bit-for-bit."""
        self._inner.reset(generator)
        self._pending_bn = self._pending_center = None

    def _forward(self, model: SSLModel, view: SSLView) -> SSLOutputs:
        device = self.device
        saved = [b.clone() for b in _get_bn(self._student_bn)]
        g = view.global_views.to(device)
        num_global, b = g.shape[:2]
        crops = [g.flatten(0, 1)]
        if view.local_views is not None and self.objective == "dino":
            crops.append(view.local_views.to(device).flatten(0, 1))
        outs = [model.student(c) for c in crops]
        teacher_mean = None
        if self.objective == "dino":
            student_logits = torch.cat([o[0].reshape(-1, b, o[0].shape[-1]) for o in outs], dim=0)
            teacher = model.teacher(crops[0]).reshape(num_global, b, -1)
            loss = dino_loss(student_logits, teacher, model.center, student_temp=self.student_temp,
                             teacher_temp=self.teacher_temp)
            teacher_mean = teacher.mean(dim=(0, 1))
        else:
            loss = simclr_loss(outs[0][1].reshape(num_global, b, -1)[:2], self.simclr_temp)
        if saved:  # keep the running statistics of this forward for apply_update, restore the current ones
            self._pending_bn = _get_bn(self._student_bn)
            _set_bn(self._student_bn, saved)
        self._pending_center = teacher_mean
        return SSLOutputs(loss=loss, teacher_mean=teacher_mean)

    def forward(self, view: SSLView) -> SSLOutputs:
        """SSL loss on the view's crops (student in train mode; teacher in eval mode, no gradient)."""
        return self._inner.forward(view)

    def backward(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Backpropagate ``loss`` into the student; return g_pre,S (live ``.grad`` of S)."""
        return self._inner.backward(loss)

    def grad_only_on_subset(self):
        """Context: parameters outside S do not require grad (a feedback forward builds no graph below S)."""
        return self._inner.grad_only_on_subset()

    def subset_gradient(self, loss: torch.Tensor, *, retain_graph: bool = False) -> list[torch.Tensor]:
        """Gradient of ``loss`` on S only (``.grad`` untouched)."""
        return self._inner.subset_gradient(loss, retain_graph=retain_graph)

    @torch.no_grad()
    def apply_update(self) -> None:
        """AdamW step, then commit the update forward's BatchNorm statistics, the EMA teacher and the centre.

        Source: Caron et al. 2021, Algorithm 1: theta_t <- m theta_t + (1 - m) theta_s;
        c <- m_c c + (1 - m_c) mean(teacher logits).
        """
        self._inner.apply_update()
        if self._pending_bn is not None:
            _set_bn(self._student_bn, self._pending_bn)
            self._pending_bn = None
        model = self.model
        if self.objective != "dino":
            return
        m = self.teacher_momentum
        for student, teacher in ((model.student_backbone, model.teacher_backbone),
                                 (model.student_head, model.teacher_head)):
            for ps, pt in zip(student.parameters(), teacher.parameters(), strict=True):
                pt.mul_(m).add_(ps.detach(), alpha=1.0 - m)
            for bs, bt in zip(student.buffers(), teacher.buffers(), strict=True):
                if bt.is_floating_point():
                    bt.mul_(m).add_(bs, alpha=1.0 - m)
                else:
                    bt.copy_(bs)
        if self._pending_center is not None:
            model.center.mul_(self.center_momentum).add_(self._pending_center, alpha=1.0 - self.center_momentum)

    def preconditioner(self) -> list[torch.Tensor] | None:
        """AdamW's preconditioner on S (see :meth:`vpt_gym.learners.TorchLearner.preconditioner`)."""
        return self._inner.preconditioner()

    def snapshot(self) -> dict[str, Any]:
        """Student, teacher, centre, BatchNorm statistics, AdamW state and the pending forward's statistics."""
        return {"inner": self._inner.snapshot(), "pending_bn": self._pending_bn, "pending_center": self._pending_center}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot` bit-for-bit."""
        self._inner.restore(snapshot["inner"])
        self._pending_bn, self._pending_center = snapshot["pending_bn"], snapshot["pending_center"]

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Student backbone features for probes, with BatchNorm in eval mode (running statistics used, never
        updated) and gradient enabled as the caller's mode says; the teacher is not touched.

        Args:
            images: shape [B, C, S, S], float32, normalized.

        Returns:
            (cls [B, D], dense [B, D, h, w]), float32, learner device.
        """
        backbone = self.model.student_backbone
        was_training = backbone.training
        backbone.eval()
        try:
            return backbone(images.to(self.device))
        finally:
            backbone.train(was_training)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The module's current weights (student, teacher, centre)."""
        return self.module.state_dict()

