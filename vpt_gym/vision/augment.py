"""Augmentation recipes of the vision SSL tasks, on batched tensors, driven by a ``torch.Generator``.

``torchvision.transforms.v2`` classes draw their random parameters from the global torch RNG and apply one
parameter set per call. Here every random parameter (crop box, flip, jitter factors, blur sigma, ...) is
drawn *per image* from the generator passed in, and applied to the whole batch at once: crops with
``torchvision.ops.roi_align`` (per-image boxes, bilinear, adaptive sampling), flips, grayscale, solarize and
normalization with ``torchvision.transforms.v2.functional``, per-image colour blends with the same formula
as ``transforms.v2.functional`` (``_blend``), per-image Gaussian blur as a grouped separable convolution
with reflect padding (as ``transforms.v2.functional.gaussian_blur``). Same generator state -> same views,
bitwise, on CPU.

Source: the DINO multi-crop recipe (Caron et al., "Emerging Properties in Self-Supervised Vision
Transformers", ICCV 2021, §3 and appendix), which V-Pretraining (arXiv 2601.22108) continues from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, kw_only=True)
class AugmentRecipe:
    """One augmentation recipe (a task of ``vpt/SSL-Augment-v0``).

    Attributes:
        name: unique name in the menu.
        global_scale: (min, max) area fraction of a global crop, in (0, 1].
        local_scale: (min, max) area fraction of a local crop, in (0, 1].
        ratio: (min, max) aspect ratio w/h of crops, > 0 (sampled log-uniformly).
        hflip_p: probability of a horizontal flip, in [0, 1].
        jitter_p: probability of colour jitter, in [0, 1].
        brightness / contrast / saturation: jitter strengths s >= 0; factor ~ U[max(0, 1 - s), 1 + s].
        grayscale_p: probability of converting an RGB view to grey (no-op on 1-channel images).
        blur_p: probability of a Gaussian blur, in [0, 1]; blur_sigma: (min, max) sigma in pixels, > 0.
        solarize_p: probability of solarizing (x >= 0.5 -> 1 - x), in [0, 1].

    Raises:
        ValueError: a field outside its range.
    """

    name: str
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.1

    def __post_init__(self) -> None:
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must satisfy 0 < min <= max <= 1")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio={self.ratio} must satisfy 0 < min <= max")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma={self.blur_sigma} must satisfy 0 < min <= max")
        for name in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1]")
        for name in ("brightness", "contrast", "saturation"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")

    def params(self) -> dict[str, float | str]:
        """The recipe as plain values (for ``Task.params``)."""
        out: dict[str, float | str] = {}
        for key, value in vars(self).items():
            if isinstance(value, tuple):
                out[f"{key}_min"], out[f"{key}_max"] = float(value[0]), float(value[1])
            elif key != "name":
                out[key] = float(value)
        return out


STANDARD_RECIPE = AugmentRecipe(name="dino_standard")
"""The standard DINO recipe (crop scales 0.4-1 / 0.05-0.4, flip, jitter 0.4/0.4/0.2 with p 0.8, grayscale
0.2, blur p 0.5, solarize 0.1): the fixed baseline task."""

AUGMENT_MENU: tuple[AugmentRecipe, ...] = (
    STANDARD_RECIPE,
    AugmentRecipe(name="weak", global_scale=(0.8, 1.0), local_scale=(0.3, 0.6), jitter_p=0.3, brightness=0.2,
                  contrast=0.2, saturation=0.1, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0),
    AugmentRecipe(name="tight_crops", global_scale=(0.14, 0.5), local_scale=(0.03, 0.14)),
    AugmentRecipe(name="strong_color", jitter_p=1.0, brightness=0.8, contrast=0.8, saturation=0.8,
                  grayscale_p=0.5, solarize_p=0.5),
    AugmentRecipe(name="heavy_blur", blur_p=1.0, blur_sigma=(1.0, 2.5)),
    AugmentRecipe(name="crop_only", jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0),
)
"""The task menu of ``vpt/SSL-Augment-v0`` (index 0 = the standard DINO recipe)."""


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float32)


def _bernoulli(n: int, p: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                      generator: torch.Generator) -> torch.Tensor:
    """Random-resized-crop boxes, one per image, vectorized.

    Area fraction ~ U[scale], log aspect ratio ~ U[log ratio]; the side lengths are clipped to the image
    (instead of ``RandomResizedCrop``'s 10 retries), the position is uniform.

    Returns:
        shape [n, 4], float32, (x1, y1, x2, y2) in pixel coordinates, 0 <= x1 < x2 <= width.
    """
    area = _uniform(n, scale[0], scale[1], generator) * (height * width)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(1.0, float(width))
    h = torch.sqrt(area / r).clamp(1.0, float(height))
    x1 = torch.rand(n, generator=generator) * (width - w)
    y1 = torch.rand(n, generator=generator) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its box and resize to ``size`` x ``size`` (bilinear, adaptive anti-aliasing).

    A box covering the whole image at the image's own size returns the image unchanged.

    Args:
        images: shape [B, C, H, W], float32 in [0, 1].
        boxes: shape [B, 4], float32 (x1, y1, x2, y2) pixel coordinates.
        size: output side (pixels).

    Returns:
        shape [B, C, size, size], float32.
    """
    from torchvision.ops import roi_align

    index = torch.arange(images.shape[0], dtype=images.dtype, device=images.device)[:, None]
    rois = torch.cat([index, boxes.to(images)], dim=1)
    return roi_align(images, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _gray(images: torch.Tensor) -> torch.Tensor:
    """Luma [B, 1, H, W] (ITU-R 601, as ``rgb_to_grayscale``); the image itself when grey."""
    from torchvision.transforms.v2 import functional as TF

    return images if images.shape[1] == 1 else TF.rgb_to_grayscale(images)


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``ratio * a + (1 - ratio) * b`` clamped to [0, 1], ``ratio`` shape [B] (per image)."""
    r = ratio[:, None, None, None]
    return (r * a + (1.0 - r) * b).clamp_(0.0, 1.0)


def color_jitter(images: torch.Tensor, recipe: AugmentRecipe, generator: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter with per-image factors (applied with prob ``jitter_p``).

    Same formulas as ``transforms.v2.functional.adjust_{brightness,contrast,saturation}``.
    """
    n = images.shape[0]
    apply = _bernoulli(n, recipe.jitter_p, generator)

    def factors(strength: float) -> torch.Tensor:
        f = _uniform(n, max(0.0, 1.0 - strength), 1.0 + strength, generator)
        return torch.where(apply, f, torch.ones_like(f)).to(images)

    fb, fc, fs = factors(recipe.brightness), factors(recipe.contrast), factors(recipe.saturation)
    out = _blend(images, torch.zeros_like(images), fb)
    mean = _gray(out).mean(dim=(-3, -2, -1), keepdim=True)
    out = _blend(out, mean.expand_as(out), fc)
    if out.shape[1] == 3:
        out = _blend(out, _gray(out).expand_as(out), fs)
    return out


def gaussian_blur_per_image(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (sigma <= 0: unchanged), reflect padding.

    Kernel size 2 * ceil(3 * max sigma) + 1 (clipped to the image), weights exp(-x^2 / (2 sigma^2))
    normalized, as ``transforms.v2.functional.gaussian_blur``.

    Args:
        images: shape [B, C, H, W], float32.
        sigma: shape [B], float32 pixels.

    Returns:
        shape [B, C, H, W], float32.
    """
    b, c, h, w = images.shape
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax <= 0:
        return images
    half = min(int(math.ceil(3.0 * smax)), h - 1, w - 1)
    x = torch.arange(-half, half + 1, dtype=images.dtype, device=images.device)
    s = sigma.to(images)[:, None]
    kernel = torch.exp(-0.5 * (x[None] / s.clamp_min(1e-6)) ** 2)
    kernel = torch.where(s > 0, kernel, (x[None] == 0).to(images))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)  # [B*C, k]
    flat = images.reshape(1, b * c, h, w)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def augment_view(images: torch.Tensor, recipe: AugmentRecipe, *, scale: tuple[float, float], size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """One augmented view of every image: crop, flip, colour jitter, grayscale, blur, solarize.

    Args:
        images: shape [B, C, H, W], float32 in [0, 1].
        recipe: the augmentation recipe.
        scale: the crop's area-fraction range (the recipe's global or local scale).
        size: output side (pixels).
        generator: source of every random parameter.

    Returns:
        shape [B, C, size, size], float32 in [0, 1].
    """
    from torchvision.transforms.v2 import functional as TF

    n, c, h, w = images.shape
    out = crop_resize(images, sample_crop_boxes(n, h, w, scale, recipe.ratio, generator), size)
    flip = _bernoulli(n, recipe.hflip_p, generator)[:, None, None, None]
    out = torch.where(flip, TF.horizontal_flip(out), out)
    out = color_jitter(out, recipe, generator)
    gray = _bernoulli(n, recipe.grayscale_p, generator)[:, None, None, None]
    if c == 3:
        out = torch.where(gray, TF.rgb_to_grayscale(out, num_output_channels=3), out)
    blur = _bernoulli(n, recipe.blur_p, generator)
    sigma = _uniform(n, recipe.blur_sigma[0], recipe.blur_sigma[1], generator)
    out = gaussian_blur_per_image(out, torch.where(blur, sigma, torch.zeros_like(sigma)))
    solarize = _bernoulli(n, recipe.solarize_p, generator)[:, None, None, None]
    return torch.where(solarize, TF.solarize(out, threshold=0.5), out)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) -> float32 in [0, 1] (``transforms.v2.functional.to_dtype(scale=True)``); float -> float32.

    Raises:
        ValueError: another dtype.
    """
    from torchvision.transforms.v2 import functional as TF

    if images.dtype == torch.uint8:
        return TF.to_dtype(images, torch.float32, scale=True)
    if images.dtype in (torch.float32, torch.float64):
        return images.to(torch.float32)
    raise ValueError(f"images have dtype {images.dtype}; accepted: torch.uint8 or float32/float64 in [0, 1]")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] per channel (``transforms.v2.functional.normalize`` with mean 0.5, std 0.5)."""
    from torchvision.transforms.v2 import functional as TF

    c = images.shape[-3]
    return TF.normalize(images, mean=[0.5] * c, std=[0.5] * c)
