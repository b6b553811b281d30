"""Probe-head feedback of the vision SSL envs: L_down from lightweight heads on frozen learner features.

Two heads read the student backbone's features: a linear classifier on the global feature (cls [B, D] ->
class logits) and a linear (1x1) segmentation head on the dense map ([B, D, h, w] -> [B, K_d, h, w],
bilinearly upsampled to the image). L_down = CE(class) + CE(pixel class), the second only where the images
have a dense target. The heads are persistent within an episode (zero at ``reset``) and refit on each fresh
feedback batch (``fit_steps`` full-batch Adam steps on the detached features); then L_down is taken with
the fitted heads on the same features, so ``g_down`` flows only into the backbone (S) and costs one
forward and one backward. Features are computed with the learner's BatchNorm in eval mode (running
statistics used, never updated); the teacher is never run.
Source: V-Pretraining (arXiv 2601.22108), vision experiments: persistent lightweight heads fit on frozen
features define the feedback loss; the alignment is taken on the last blocks.

Eval (episode end, disjoint eval split): fresh heads fit on the whole feedback split (``eval_fit_steps``
steps), then ``probe_accuracy``, ``probe_loss`` and, with a dense target, ``miou`` and ``pixel_accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from vpt_gym.vision.augment import normalize, to_float
from vpt_gym.vision.data import ImageSet


@dataclass(frozen=True, kw_only=True, eq=False)
class ProbeBatch:
    """Labelled feedback images.

    Attributes:
        images: shape [B, C, S, S], float32, normalized to [-1, 1], CPU.
        labels: shape [B], int64. masks: shape [B, S, S], int64, or None.
        refit: whether :meth:`ProbeFeedback.loss` refits the heads on this batch (fresh feedback batches).
        num_examples: B. num_tokens: 0.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    refit: bool
    num_examples: int
    num_tokens: int = 0


class ProbeHeads(nn.Module):
    """Linear classification head and 1x1 segmentation head on standardized features.

    Features are standardized per channel with the mean and std of the last fit batch (buffers, constants
    for the gradient; the usual non-affine normalization before a linear probe). Weights start at zero:
    deterministic, no RNG.
    """

    cls_mean: torch.Tensor  # buffers, registered in __init__
    cls_std: torch.Tensor
    dense_mean: torch.Tensor
    dense_std: torch.Tensor
    seg: nn.Conv2d | None

    def __init__(self, dim: int, num_classes: int, num_dense_classes: int) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # the default init draws from (and would advance) the global RNG
            self.cls = nn.Linear(dim, num_classes)
            self.seg = nn.Conv2d(dim, num_dense_classes, kernel_size=1) if num_dense_classes else None
        for name in ("cls_mean", "dense_mean"):
            self.register_buffer(name, torch.zeros(dim))
        for name in ("cls_std", "dense_std"):
            self.register_buffer(name, torch.ones(dim))
        self.zero_()

    @torch.no_grad()
    def zero_(self) -> None:
        """Zero weights, identity standardization."""
        for p in self.parameters():
            p.zero_()
        self.cls_mean.zero_(), self.dense_mean.zero_(), self.cls_std.fill_(1.0), self.dense_std.fill_(1.0)

    @torch.no_grad()
    def set_standardization(self, cls: torch.Tensor, dense: torch.Tensor) -> None:
        """Per-channel mean / std (+1e-6) of features cls [B, D] and dense [B, D, h, w]."""
        self.cls_mean.copy_(cls.mean(0)), self.cls_std.copy_(cls.std(0, unbiased=False) + 1e-6)
        flat = dense.transpose(0, 1).flatten(1)
        self.dense_mean.copy_(flat.mean(1)), self.dense_std.copy_(flat.std(1, unbiased=False) + 1e-6)

    def classify(self, cls: torch.Tensor) -> torch.Tensor:
        """Class logits [B, K] from cls features [B, D]."""
        return self.cls((cls - self.cls_mean) / self.cls_std)

    def losses(self, cls: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor,
               masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(classification CE, pixel CE or None), scalars float32, nats."""
        ce = F.cross_entropy(self.classify(cls), labels)
        if self.seg is None or masks is None:
            return ce, None
        return ce, F.cross_entropy(self.segment(dense, masks.shape[-1]), masks)

    def segment(self, dense: torch.Tensor, size: int) -> torch.Tensor:
        """Pixel logits [B, K_d, size, size] from dense features [B, D, h, w]."""
        if self.seg is None:
            raise ValueError("these heads have no segmentation head (num_dense_classes=0)")
        x = (dense - self.dense_mean[:, None, None]) / self.dense_std[:, None, None]
        return F.interpolate(self.seg(x), size=(size, size), mode="bilinear", align_corners=False)


def fit_heads(heads: ProbeHeads, cls: torch.Tensor, dense: torch.Tensor, labels: torch.Tensor,
              masks: torch.Tensor | None, *, steps: int, lr: float, weight_decay: float = 1e-4) -> None:
    """Set the heads' standardization from the features, then ``steps`` full-batch Adam steps on their CE
    losses (features detached; deterministic)."""
    if steps <= 0:
        return
    cls, dense = cls.detach(), dense.detach()
    heads.set_standardization(cls, dense)
    opt = torch.optim.Adam(heads.parameters(), lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            ce, seg = heads.losses(cls, dense, labels, masks)
            loss = ce if seg is None else ce + seg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection-over-union over the classes present in ``pred`` or ``target``.

    Args:
        pred / target: int64 class maps of the same shape.
        num_classes: K_d.

    Returns:
        mIoU in [0, 1].
    """
    ious = []
    for c in range(num_classes):
        p, t = pred == c, target == c
        union = int((p | t).sum())
        if union:
            ious.append(int((p & t).sum()) / union)
    return float(sum(ious) / len(ious)) if ious else 0.0


PROBE_METRICS = ("accuracy", "ridge_loo")
"""Accepted ``probe_metric`` values of :class:`ProbeFeedback`."""


def ridge_loo_error(features: torch.Tensor, labels: torch.Tensor, num_classes: int, ridge: float = 1.0) -> float:
    """Leave-one-out squared error of a ridge probe from features to one-hot labels, in closed form.

    Each feature dimension is first standardized with the batch's mean and standard deviation (computed once on
    the whole batch and held fixed for every left-out fit; a constant dimension becomes 0), so the result is
    invariant to a per-dimension shift and positive rescaling of the features, as a trained linear probe is.
    Without it the penalty shrinks low-variance dimensions that may carry the labels: measured on
    SSL-Augment-v1, raw-feature returns ranked the fixed tasks at -0.83 against the refit probe's accuracy.
    With Z = the standardized features and X = [Z, 1] (shape [n, d + 1], float64), penalty
    kappa = ``ridge`` * trace(X^T X) / (d + 1) (computed once on the whole batch, so every left-out fit uses
    the same penalty), the hat matrix
    H = X (X^T X + kappa I)^-1 X^T and residuals R = Y - H Y of the one-hot targets Y [n, num_classes], the
    leave-one-out residual of example i is R_i / (1 - H_ii) (the PRESS identity of linear smoothers; Allen
    1974, Hastie et al. ESL §7.10). Returns mean_i ||R_i / (1 - H_ii)||^2: how linearly separable the classes
    are in these features, with no fitted head to go stale.

    Args:
        features: shape [n, d], any float dtype, n >= 2.
        labels: shape [n], int64 class indices in [0, num_classes).
        num_classes: C >= 2.
        ridge: relative penalty, > 0.

    Raises:
        ValueError: n < 2, mismatched lengths, or ridge <= 0.
    """
    n = int(features.shape[0])
    if n < 2 or labels.shape[0] != n or not ridge > 0:
        raise ValueError(f"ridge_loo_error needs n >= 2 matching labels and ridge > 0, got n={n}, "
                         f"{labels.shape[0]} labels, ridge={ridge}")
    z = features.detach().double()
    z = (z - z.mean(dim=0)) / z.std(dim=0, correction=0).clamp_min(1e-12)
    x = torch.cat([z, torch.ones(n, 1, dtype=torch.float64, device=features.device)], 1)
    y = F.one_hot(labels, num_classes).double()
    gram = x.T @ x
    kappa = ridge * float(torch.trace(gram)) / gram.shape[0]
    solve = torch.linalg.solve(gram + kappa * torch.eye(gram.shape[0], dtype=torch.float64, device=x.device), x.T)
    hat = x @ solve
    residual = y - hat @ y
    loo = residual / (1.0 - torch.diagonal(hat))[:, None]
    return float((loo**2).sum(dim=1).mean())


VALIDATION_SPLIT_SEED = 0
"""Seed of the fixed permutation that halves the feedback split in :meth:`ProbeFeedback.validation_score`."""


class ProbeFeedback:
    """Feedback set of probe heads on a labelled image split; eval on a disjoint split.

    Implements :class:`~vpt_gym.core.FeedbackSet`. The learner must provide ``features(images) ->
    (cls [B, D], dense [B, D, h, w])`` and ``device`` (see :class:`~vpt_gym.vision.ssl.SSLLearner`).

    Args:
        feedback / eval: the labelled splits (disjoint, fixed before the episode).
        feature_dim: D of the learner's features.
        batch_size: images per fresh feedback batch (g_down refresh), in [1, len(feedback)].
        probe_size: images of the fixed probe batch, in [1, len(feedback)].
        fit_steps: head refit steps per fresh feedback batch (>= 0); eval_fit_steps: steps of the eval probe.
        head_lr: Adam learning rate of the heads, > 0.
        eval_chunk: images per no-grad forward in :meth:`evaluate`.
        probe_metric: what :meth:`metric` (the ``metric_gain`` reward) measures on a batch: ``"accuracy"``
            (default: the current heads' classification accuracy) or ``"ridge_loo"`` (head-free: minus the
            leave-one-out squared error of a ridge probe fit on the batch's own features, :func:`ridge_loo_error`).

    Raises:
        ValueError: empty splits, mismatched classes or image shapes, sizes out of range, an unknown
            ``probe_metric``.
    """

    metric_name = "probe_accuracy"

    def __init__(self, feedback: ImageSet, eval: ImageSet, *, feature_dim: int, batch_size: int, probe_size: int,
                 fit_steps: int = 10, eval_fit_steps: int = 100, head_lr: float = 0.05, eval_chunk: int = 512,
                 probe_metric: str = "accuracy") -> None:
        if probe_metric not in PROBE_METRICS:
            raise ValueError(f"probe_metric={probe_metric!r} is not accepted; choose one of {PROBE_METRICS}")
        if len(feedback) < 1 or len(eval) < 1:
            raise ValueError(f"feedback and eval splits must be non-empty, got {len(feedback)} and {len(eval)} images")
        if feedback.class_names != eval.class_names or feedback.images.shape[1:] != eval.images.shape[1:]:
            raise ValueError("feedback and eval splits must share classes and image shape")
        for name, value, hi in (("batch_size", batch_size, len(feedback)), ("probe_size", probe_size, len(feedback))):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise ValueError(f"{name} must be an integer in [1, {hi}] (feedback split size), got {value!r}")
        for name, value in (("fit_steps", fit_steps), ("eval_fit_steps", eval_fit_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not head_lr > 0:
            raise ValueError(f"head_lr must be > 0, got {head_lr!r}")
        self.source = feedback.source
        self._feedback, self._eval = feedback, eval
        self._fb_images = normalize(to_float(feedback.images))
        self._eval_images = normalize(to_float(eval.images))
        self.num_classes = len(feedback.class_names)
        self.num_dense_classes = feedback.num_dense_classes if feedback.masks is not None else 0
        self.heads = ProbeHeads(feature_dim, self.num_classes, self.num_dense_classes)
        self.batch_size, self.probe_size = batch_size, probe_size
        self.fit_steps, self.eval_fit_steps = fit_steps, eval_fit_steps
        self.head_lr, self.eval_chunk = head_lr, eval_chunk
        self.probe_metric = probe_metric
        if probe_metric == "ridge_loo":
            self.metric_name = "ridge_loo"
        self._g: torch.Generator | None = None
        self._probe: ProbeBatch | None = None

    def _batch(self, index: torch.Tensor, refit: bool) -> ProbeBatch:
        masks = self._feedback.masks
        return ProbeBatch(images=self._fb_images[index], labels=self._feedback.labels[index],
                          masks=None if masks is None or not self.num_dense_classes else masks[index],
                          refit=refit, num_examples=int(index.numel()))

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: zero the heads, draw the fixed probe batch; sampling uses ``generator``."""
        self._g = generator
        self.heads.zero_()
        self.heads.to("cpu")
        self._probe = self._batch(torch.randperm(len(self._feedback), generator=generator)[: self.probe_size], False)

    def sample_batch(self) -> ProbeBatch:
        """A fresh feedback batch (the heads are refit on it by :meth:`loss`)."""
        if self._g is None:
            raise RuntimeError("ProbeFeedback.sample_batch() before reset(generator)")
        return self._batch(torch.randperm(len(self._feedback), generator=self._g)[: self.batch_size], True)

    def probe_batch(self) -> ProbeBatch:
        """The episode's fixed probe batch (no refit: the heads stay as last fit)."""
        if self._probe is None:
            raise RuntimeError("ProbeFeedback.probe_batch() before reset(generator)")
        return self._probe

    def _targets(self, batch: ProbeBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        return batch.labels.to(device), None if batch.masks is None else batch.masks.to(device)

    def loss(self, learner, batch: ProbeBatch) -> torch.Tensor:
        """L_down = CE(class) + CE(pixel class) with the heads (refit first on a fresh batch).

        Returns:
            Scalar float32 on the learner's device (nats), with graph into the student backbone.
        """
        device = learner.device
        self.heads.to(device)
        cls, dense = learner.features(batch.images)
        labels, masks = self._targets(batch, device)
        if batch.refit:
            fit_heads(self.heads, cls, dense, labels, masks, steps=self.fit_steps, lr=self.head_lr)
        for p in self.heads.parameters():
            p.requires_grad_(False)
        try:
            ce, seg = self.heads.losses(cls, dense, labels, masks)
        finally:
            for p in self.heads.parameters():
                p.requires_grad_(True)
        return ce if seg is None else ce + seg

    @torch.no_grad()
    def metric(self, learner, batch: ProbeBatch) -> float:
        """Higher is better. ``probe_metric="accuracy"``: classification accuracy of the current heads on the
        batch, in [0, 1]. ``"ridge_loo"``: ``-ridge_loo_error(cls features, labels)``, in [-inf, 0] (no heads:
        a function of the learner's state alone)."""
        cls, _ = learner.features(batch.images)
        if self.probe_metric == "ridge_loo":
            return -ridge_loo_error(cls, batch.labels.to(cls.device), self.num_classes)
        self.heads.to(learner.device)
        return float((self.heads.classify(cls).argmax(-1).cpu() == batch.labels).float().mean())

    def _features(self, learner, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [learner.features(images[i : i + self.eval_chunk]) for i in range(0, len(images), self.eval_chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    @torch.no_grad()
    def eval_loss(self, learner) -> float:
        """L_down on the eval split: CE(class) (+ CE(pixel class) with a dense target) of the **current** heads
        (those g_down is taken with, last refit at a g_down refresh), nats; the held-out counterpart of
        :meth:`loss`, so the realized drop of this loss is what the first-order value predicts. The heads are
        not refit (:meth:`evaluate` refits fresh heads for the leaderboard metrics)."""
        return float(self.eval_objective(learner))

    def eval_objective(self, learner) -> torch.Tensor:
        """:meth:`eval_loss` as a scalar float32 tensor with graph into the student backbone when grad is enabled
        (the heads are constants): its gradient on S is the exact held-out g_down (a diagnostic; the env never
        uses it). Cost: a forward (and, if differentiated, a backward) over the whole eval split."""
        device = learner.device
        self.heads.to(device)
        cls, dense = self._features(learner, self._eval_images)
        masks = cast(torch.Tensor, self._eval.masks).to(device) if self.num_dense_classes else None
        grads = [p.requires_grad for p in self.heads.parameters()]
        for p in self.heads.parameters():
            p.requires_grad_(False)
        try:
            ce, seg = self.heads.losses(cls, dense, self._eval.labels.to(device), masks)
        finally:
            for p, g in zip(self.heads.parameters(), grads, strict=True):
                p.requires_grad_(g)
        return ce if seg is None else ce + seg

    @torch.no_grad()
    def validation_score(self, learner) -> float:
        """Two-fold probe accuracy on the feedback split: the eval probe's recipe, the eval split unread.

        The feedback split is cut in two halves by a fixed permutation (a private generator seeded
        :data:`VALIDATION_SPLIT_SEED`: the same halves in every episode and run); a fresh classification head
        (:class:`ProbeHeads` standardization, zero init, ``eval_fit_steps`` full-batch Adam steps at
        ``head_lr``, as :meth:`evaluate`) is fit on the ``cls`` features of one half and scored on the other,
        both ways. Implements :class:`~vpt_gym.core.FeedbackValidation`.

        Cost: one no-grad forward of the feedback split and two head fits. On SSL-Augment-v1 small (1000
        feedback images) it ranks the six fixed-task runs' final probe accuracy at Spearman 0.71 (README
        "Reward validity", ``benchmarks/probe_resolution.py``'s ``twofold_accuracy``).

        Returns:
            The mean of the two halves' accuracies, in [0, 1].

        Raises:
            ValueError: a feedback split of fewer than 2 images (no two halves).
        """
        n = len(self._feedback)
        if n < 2:
            raise ValueError(f"validation_score needs a feedback split of >= 2 images, got {n}")
        cls, _ = self._features(learner, self._fb_images)
        cls = cls.float().cpu()
        labels = self._feedback.labels
        order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
        halves = (order[: n // 2], order[n // 2:])
        scores = []
        for fit, score in (halves, halves[::-1]):
            heads = ProbeHeads(cls.shape[1], self.num_classes, 0)
            fit_heads(heads, cls[fit], cls[fit][:, :, None, None], labels[fit], None, steps=self.eval_fit_steps,
                      lr=self.head_lr)
            scores.append(float((heads.classify(cls[score]).argmax(-1) == labels[score]).float().mean()))
        return sum(scores) / 2

    @torch.no_grad()
    def evaluate(self, learner) -> dict[str, float]:
        """Held-out probe metrics: fresh heads fit on the feedback split, measured on the eval split.

        Returns:
            ``{"probe_accuracy" in [0, 1], "probe_loss" (nats), "eval_images"}`` and, with a dense target,
            ``"miou"`` in [0, 1], ``"pixel_accuracy"`` in [0, 1], ``"seg_loss"`` (nats/pixel).
        """
        device = learner.device
        heads = ProbeHeads(self.heads.cls.in_features, self.num_classes, self.num_dense_classes).to(device)
        fb_cls, fb_dense = self._features(learner, self._fb_images)
        masks = cast(torch.Tensor, self._feedback.masks).to(device) if self.num_dense_classes else None
        fit_heads(heads, fb_cls, fb_dense, self._feedback.labels.to(device), masks, steps=self.eval_fit_steps,
                  lr=self.head_lr)
        cls, dense = self._features(learner, self._eval_images)
        labels = self._eval.labels.to(device)
        logits = heads.classify(cls)
        out = {"probe_accuracy": float((logits.argmax(-1) == labels).float().mean()),
               "probe_loss": float(F.cross_entropy(logits, labels)), "eval_images": float(len(labels))}
        if self.num_dense_classes:
            target = cast(torch.Tensor, self._eval.masks).to(device)
            pixel_logits = heads.segment(dense, target.shape[-1])
            pred = pixel_logits.argmax(1)
            out["miou"] = miou(pred, target, self.num_dense_classes)
            out["pixel_accuracy"] = float((pred == target).float().mean())
            out["seg_loss"] = float(F.cross_entropy(pixel_logits, target))
        return out
