"""Spatial keep-masks and the blur-fill operator: the task family of V-Pretraining's vision experiments.

A keep-mask mu in [0, 1]^{H x W} is applied to a view v as

    v_tilde = mu * v + (1 - mu) * Blur_sigma(v)

so kept pixels (mu = 1) are unchanged and dropped pixels (mu = 0) are replaced by a Gaussian-blurred copy of
the view (no hard black holes, no train/test distribution jump).
Source: V-Pretraining (Ke & Fanti, arXiv 2601.22108), vision experiments: the designer outputs a soft spatial
keep-mask applied to the two global crops with a blur fill; keep ratios 0.4-0.7.

Mask families (each draws its randomness from the generator passed in):

- ``random``: a random subset of round(keep * n) patch cells per image (patch-dropout-like).
- ``block``: one contiguous rectangle of patch cells of area ~ keep at a random position.
- ``centre``: a centred square of area ~ keep (pixel resolution), no randomness.
- ``grid``: round(keep * n) cells spread evenly over the raster order (error diffusion), random phase.
"""

from __future__ import annotations

import math

import torch

MASK_FAMILIES = ("random", "block", "centre", "grid")
"""Accepted keep-mask families."""


def _check(family: str, keep: float, size: int, grid: int) -> None:
    if family not in MASK_FAMILIES:
        raise ValueError(f"mask family {family!r} is not accepted; choose one of {MASK_FAMILIES}")
    if not 0.0 <= keep <= 1.0 or not math.isfinite(keep):
        raise ValueError(f"keep ratio {keep!r} is outside [0, 1]")
    if grid < 1 or size % grid:
        raise ValueError(f"grid={grid} cells per side must be >= 1 and divide the image side {size}")


def keep_mask(family: str, keep: float, *, batch: int, size: int, grid: int,
              generator: torch.Generator) -> torch.Tensor:
    """A keep-mask per image.

    Args:
        family: one of :data:`MASK_FAMILIES`.
        keep: target fraction of kept pixels, in [0, 1].
        batch: number of masks B.
        size: image side S (pixels).
        grid: patch cells per side (S / patch size); must divide S.
        generator: source of randomness.

    Returns:
        mu, shape [B, 1, S, S], float32 in {0, 1} (a special case of [0, 1]). The kept fraction is
        round(keep * grid^2) / grid^2 for ``random`` and ``grid``, the nearest rectangle for ``block`` and
        the nearest square for ``centre``.

    Raises:
        ValueError: unknown family, keep outside [0, 1], grid not dividing size.
    """
    _check(family, keep, size, grid)
    n = grid * grid
    if family == "centre":
        side = min(size, int(round(math.sqrt(keep) * size)))
        lo = (size - side) // 2
        mu = torch.zeros(batch, 1, size, size)
        mu[:, :, lo : lo + side, lo : lo + side] = 1.0
        return mu
    k = int(round(keep * n))
    if family == "random":
        ranks = torch.rand(batch, n, generator=generator).argsort(dim=1).argsort(dim=1)
        cells = (ranks < k).float()
    elif family == "grid":
        phase = torch.rand(batch, 1, generator=generator, dtype=torch.float64)
        t = torch.arange(n, dtype=torch.float64)[None]
        cells = (torch.floor((t + 1) * k / n + phase) - torch.floor(t * k / n + phase)).float()
    else:  # block
        cells = torch.zeros(batch, grid, grid)
        if k > 0:
            log_r = (torch.rand(batch, generator=generator) - 0.5) * math.log(2.0)  # aspect in [1/sqrt2, sqrt2]
            h = (torch.sqrt(k * torch.exp(log_r))).round().clamp(1, grid)
            w = (k / h).round().clamp(1, grid)
            top = (torch.rand(batch, generator=generator) * (grid - h + 1)).floor().clamp(0, grid - 1)
            left = (torch.rand(batch, generator=generator) * (grid - w + 1)).floor().clamp(0, grid - 1)
            rows = torch.arange(grid)[None, :, None]
            cols = torch.arange(grid)[None, None, :]
            inside_r = (rows >= top[:, None, None]) & (rows < (top + h)[:, None, None])
            inside_c = (cols >= left[:, None, None]) & (cols < (left + w)[:, None, None])
            cells = (inside_r & inside_c).float()
        cells = cells.reshape(batch, n)
    patch = size // grid
    mu = cells.reshape(batch, 1, grid, grid).repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return mu.contiguous()


def blur_kernel_size(sigma: float, size: int) -> int:
    """Odd kernel size 2 * ceil(3 sigma) + 1, clipped to 2 * size - 1 (reflect padding needs pad < size)."""
    return min(2 * int(math.ceil(3.0 * sigma)) + 1, 2 * size - 1)


def blur_fill(views: torch.Tensor, mu: torch.Tensor, sigma: float) -> torch.Tensor:
    """The masked view ``mu * v + (1 - mu) * Blur_sigma(v)`` (V-Pretraining, vision task family).

    Blur: ``torchvision.transforms.v2.functional.gaussian_blur`` with kernel :func:`blur_kernel_size`.
    ``mu = 1`` returns ``views`` exactly; ``mu = 0`` returns the blurred views exactly.

    Args:
        views: shape [B, C, H, W], float32 in [0, 1].
        mu: shape [B, 1, H, W] (or broadcastable), float32 in [0, 1].
        sigma: blur sigma in pixels, > 0.

    Returns:
        shape [B, C, H, W], float32 in [0, 1].

    Raises:
        ValueError: sigma <= 0, mu outside [0, 1], or shapes that do not broadcast.
    """
    from torchvision.transforms.v2 import functional as TF

    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"blur sigma must be > 0 (pixels), got {sigma!r}")
    if float(mu.min()) < 0.0 or float(mu.max()) > 1.0:
        raise ValueError(f"keep-mask values must lie in [0, 1], got range [{float(mu.min())}, {float(mu.max())}]")
    try:
        torch.broadcast_shapes(views.shape, mu.shape)
    except RuntimeError as exc:
        raise ValueError(f"mask shape {tuple(mu.shape)} does not broadcast to views {tuple(views.shape)}") from exc
    k = blur_kernel_size(float(sigma), min(views.shape[-2:]))
    blurred = TF.gaussian_blur(views, kernel_size=[k, k], sigma=[float(sigma), float(sigma)])
    return mu * views + (1.0 - mu) * blurred
