"""Known answers of the keep-mask families and the blur-fill operator, and augmentation determinism."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")

from vpt_gym.vision.augment import (  # noqa: E402
    AUGMENT_MENU,
    STANDARD_RECIPE,
    AugmentRecipe,
    augment_view,
    crop_resize,
    gaussian_blur_per_image,
)
from vpt_gym.vision.masks import MASK_FAMILIES, blur_fill, keep_mask  # noqa: E402


def _images(n: int = 6, c: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g)


@pytest.mark.parametrize("family", MASK_FAMILIES)
@pytest.mark.parametrize("keep", [0.4, 0.55, 0.7])
def test_keep_ratio_achieved(family: str, keep: float) -> None:
    mu = keep_mask(family, keep, batch=64, size=32, grid=8, generator=torch.Generator().manual_seed(1))
    assert mu.shape == (64, 1, 32, 32) and mu.dtype == torch.float32
    assert set(mu.unique().tolist()) <= {0.0, 1.0}
    per_image = mu.mean(dim=(1, 2, 3))
    tolerance = {"random": 1 / 64, "grid": 1 / 64, "centre": 0.05, "block": 0.08}[family]
    assert torch.all((per_image - keep).abs() <= tolerance), (family, keep, per_image.min(), per_image.max())


def test_random_and_grid_keep_exact_cell_counts() -> None:
    g = torch.Generator().manual_seed(0)
    for family in ("random", "grid"):
        mu = keep_mask(family, 0.5, batch=10, size=16, grid=4, generator=g)
        cells = mu[:, 0, ::4, ::4].reshape(10, 16)
        assert cells.sum(dim=1).tolist() == [8.0] * 10
    centre = keep_mask("centre", 0.25, batch=2, size=16, grid=4, generator=g)
    expected = torch.zeros(16, 16)
    expected[4:12, 4:12] = 1.0
    assert torch.equal(centre[0, 0], expected) and torch.equal(centre[1, 0], expected)


def test_masks_depend_on_generator_only() -> None:
    a = keep_mask("random", 0.5, batch=8, size=32, grid=4, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG must not matter
    b = keep_mask("random", 0.5, batch=8, size=32, grid=4, generator=torch.Generator().manual_seed(3))
    c = keep_mask("random", 0.5, batch=8, size=32, grid=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_blur_fill_known_answers() -> None:
    from torchvision.transforms.v2 import functional as TF

    views = _images()
    ones, zeros = torch.ones(6, 1, 32, 32), torch.zeros(6, 1, 32, 32)
    assert torch.equal(blur_fill(views, ones, 2.0), views)  # mu = 1: the view unchanged
    blurred = TF.gaussian_blur(views, kernel_size=[13, 13], sigma=[2.0, 2.0])
    assert torch.equal(blur_fill(views, zeros, 2.0), blurred)  # mu = 0: the blurred view
    half = keep_mask("centre", 0.25, batch=6, size=32, grid=4, generator=torch.Generator())
    mixed = blur_fill(views, half, 2.0)
    inside = half.bool().expand_as(views)
    assert torch.equal(mixed[inside], views[inside]) and torch.equal(mixed[~inside], blurred[~inside])
    # the blur really smooths: less pixel variance than the random input
    assert float(blurred.var()) < 0.2 * float(views.var())


@pytest.mark.parametrize("bad", [{"sigma": 0.0}, {"mu": 1.5}, {"mu_shape": (6, 1, 16, 16)}])
def test_blur_fill_rejects_bad_arguments(bad: dict) -> None:
    views = _images()
    mu = torch.full(bad.get("mu_shape", (6, 1, 32, 32)), float(bad.get("mu", 1.0)))
    with pytest.raises(ValueError):
        blur_fill(views, mu, bad.get("sigma", 1.0))


@pytest.mark.parametrize("kwargs", [{"family": "ring"}, {"keep": 1.2}, {"grid": 5}])
def test_keep_mask_rejects_bad_arguments(kwargs: dict) -> None:
    args = {"family": "random", "keep": 0.5, "grid": 4, **kwargs}
    with pytest.raises(ValueError, match=str(list(kwargs.values())[0])):
        keep_mask(args["family"], args["keep"], batch=2, size=32, grid=args["grid"], generator=torch.Generator())


def test_full_box_crop_is_identity_and_per_image_blur() -> None:
    images = _images(4, 3)
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(4, 1)
    assert torch.allclose(crop_resize(images, box, 32), images, atol=1e-6)
    # a half box upsampled x2 keeps the top-left quadrant's mean
    quarter = crop_resize(images, torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(4, 1), 32)
    assert torch.allclose(quarter.mean(dim=(2, 3)), images[..., :16, :16].mean(dim=(2, 3)), atol=0.02)
    sigma = torch.tensor([0.0, 1.0, 0.0, 2.0])
    out = gaussian_blur_per_image(images, sigma)
    assert torch.equal(out[0], images[0]) and torch.equal(out[2], images[2])
    assert out[3].var() < out[1].var() < images[1].var()


def test_augmentation_deterministic_under_generator_and_in_range() -> None:
    images = _images(8, 3)
    views = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed * 100)  # the global RNG must not matter
        g = torch.Generator().manual_seed(seed)
        views.append(augment_view(images, STANDARD_RECIPE, scale=(0.4, 1.0), size=32, generator=g))
    assert torch.equal(views[0], views[1])
    assert not torch.equal(views[0], views[2])
    for v in views:
        assert v.shape == (8, 3, 32, 32) and v.dtype == torch.float32
        assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0


def test_recipes_change_the_views_and_validate() -> None:
    images = _images(8, 1)
    outs = {r.name: augment_view(images, r, scale=r.global_scale, size=32, generator=torch.Generator().manual_seed(0))
            for r in AUGMENT_MENU}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.equal(outs[a], outs[b]), (a, b)
    with pytest.raises(ValueError, match="global_scale"):
        AugmentRecipe(name="bad", global_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="blur_p"):
        AugmentRecipe(name="bad", blur_p=1.5)
