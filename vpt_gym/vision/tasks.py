"""Task menus of the vision SSL envs: augmentation recipes, keep-mask families x keep ratios, continuous masks.

A task is how a batch of raw images becomes the learner's views: two global crops (and optional local
crops) built with an augmentation recipe, then, for mask tasks, a keep-mask with blur fill on the two global
crops (V-Pretraining, vision experiments). The task space uses the env's task-dependent forward hook
(``task_dependent_forward = True``, :meth:`VisionTaskSpace.materialize`).

Randomness: per pending batch, one seed is drawn from the task generator (set in :meth:`reset`); every task's
views of that batch are built from a fresh ``torch.Generator`` with that seed. So a look-ahead at task k sees
exactly the views the update would use for task k, look-aheads do not shift later random draws, and tasks
that share a recipe share their crops (common random numbers: a mask task differs from the standard task
only by its mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from vpt_gym.core import Task
from vpt_gym.vision.augment import AUGMENT_MENU, STANDARD_RECIPE, AugmentRecipe, augment_view, normalize, to_float
from vpt_gym.vision.data import ImageBatch
from vpt_gym.vision.masks import MASK_FAMILIES, blur_fill, keep_mask
from vpt_gym.vision.ssl import SSLOutputs, SSLView

NO_MASK = "none"
"""Mask family of tasks without a keep-mask."""
KEEP_RANGE = (0.25, 1.0)
"""Keep-ratio range of the continuous mask variant (action[0] = -1 -> 0.25, +1 -> 1.0, i.e. no mask)."""
SIGMA_RANGE = (0.5, 4.0)
"""Blur-sigma range (pixels) of the continuous mask variant (log-uniform in action[1])."""


def augment_tasks(recipes: Sequence[AugmentRecipe] = AUGMENT_MENU) -> list[Task]:
    """One task per recipe (family ``augment``), index 0 = the first recipe (the standard one)."""
    return [Task(name=r.name, family="augment", params={"recipe": r.name, "mask": NO_MASK, **r.params()})
            for r in recipes]


def mask_tasks(families: Sequence[str] = MASK_FAMILIES, keeps: Sequence[float] = (0.4, 0.55, 0.7),
               blur_sigma: float = 2.0) -> list[Task]:
    """``no_mask`` (standard DINO recipe) then every family x keep ratio with the blur fill.

    Raises:
        ValueError: unknown family, keep outside (0, 1), sigma <= 0, or an empty menu.
    """
    if not families or not keeps:
        raise ValueError(f"mask menu needs >= 1 family and keep ratio, got {list(families)} x {list(keeps)}")
    for f in families:
        if f not in MASK_FAMILIES:
            raise ValueError(f"mask family {f!r} is not accepted; choose from {MASK_FAMILIES}")
    for k in keeps:
        if not 0.0 < k < 1.0:
            raise ValueError(f"keep ratio {k!r} is outside (0, 1)")
    if not blur_sigma > 0:
        raise ValueError(f"blur_sigma must be > 0 pixels, got {blur_sigma!r}")
    base = {"recipe": STANDARD_RECIPE.name}
    tasks = [Task(name="no_mask", family="mask", params={**base, "mask": NO_MASK, "keep": 1.0})]
    tasks += [Task(name=f"{f}_k{k:g}", family="mask",
                   params={**base, "mask": f, "keep": float(k), "blur_sigma": float(blur_sigma)})
              for f in families for k in keeps]
    return tasks


class VisionTaskSpace:
    """A ``Discrete`` menu of vision tasks, or the continuous keep-mask family (``Box``).

    Continuous (``continuous=True``): action in Box([-1, 1]^2, float32); keep ratio
    k = 0.25 + 0.75 (a0 + 1) / 2 in [0.25, 1], blur sigma = 0.5 * 8 ** ((a1 + 1) / 2) in [0.5, 4] pixels
    (log-uniform), family ``random`` (patch-dropout-like) on the standard recipe; the standard action
    [1, 0] is k = 1 (no mask).

    Batch descriptors (observation), all computed from the raw pending images, each in [0, 1]: mean
    intensity, intensity std, foreground fraction (pixels >= 0.5), edge density (mean |horizontal| +
    |vertical| neighbour difference / 2).

    Args:
        tasks: the menu (ignored when ``continuous``); index 0 must be the standard task.
        recipes: recipes the tasks may name (default: :data:`AUGMENT_MENU`).
        image_size: global crop side S (pixels); local_size: local crop side; num_local: local crops >= 0.
        grid: keep-mask cells per side (S / patch size).
        continuous: build the Box variant.

    Raises:
        ValueError: empty menu, duplicate names, unknown recipe, bad sizes.
    """

    task_dependent_forward = True
    descriptor_names = ("mean_intensity", "intensity_std", "foreground_fraction", "edge_density")
    descriptor_low = np.zeros(4)
    descriptor_high = np.ones(4)

    def __init__(self, tasks: Sequence[Task] | None, *, image_size: int, grid: int, num_local: int = 0,
                 local_size: int | None = None, recipes: Sequence[AugmentRecipe] = AUGMENT_MENU,
                 continuous: bool = False) -> None:
        self.recipes = {r.name: r for r in recipes}
        if STANDARD_RECIPE.name not in self.recipes:
            self.recipes[STANDARD_RECIPE.name] = STANDARD_RECIPE
        if image_size < 8 or grid < 1 or image_size % grid:
            raise ValueError(f"image_size={image_size} must be >= 8 and divisible by grid={grid}")
        if isinstance(num_local, bool) or not isinstance(num_local, int) or num_local < 0:
            raise ValueError(f"num_local must be an integer >= 0, got {num_local!r}")
        self.image_size, self.grid, self.num_local = image_size, grid, num_local
        self.local_size = local_size or image_size // 2
        self.continuous = continuous
        if continuous:
            self.action_space: spaces.Space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
            self.standard_action: Any = np.array([1.0, 0.0], dtype=np.float32)
            self.tasks = [Task(name="random_mask_continuous", family="mask",
                               params={"recipe": STANDARD_RECIPE.name, "mask": "random", "keep_range": KEEP_RANGE,
                                       "sigma_range": SIGMA_RANGE})]
        else:
            tasks = list(tasks or [])
            if not tasks:
                raise ValueError("the task menu is empty")
            names = [t.name for t in tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"task names must be unique, got {names}")
            for t in tasks:
                if t.params.get("recipe") not in self.recipes:
                    raise ValueError(f"task {t.name!r} names unknown recipe {t.params.get('recipe')!r}; "
                                     f"known: {sorted(self.recipes)}")
            self.tasks = tasks
            self.action_space = spaces.Discrete(len(tasks))
            self.standard_action = 0
        self._g: torch.Generator | None = None
        self._batch: Any = None
        self._seed = 0

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: the per-batch view seeds are drawn from ``generator``."""
        self._g = generator
        self._batch = None

    def task(self, action: Any) -> Task:
        """The task of an action (menu index, or a Box point mapped to keep ratio and blur sigma)."""
        if not self.continuous:
            return self.tasks[int(action)]
        a = np.asarray(action, dtype=np.float64)
        keep = KEEP_RANGE[0] + (KEEP_RANGE[1] - KEEP_RANGE[0]) * (a[0] + 1.0) / 2.0
        sigma = SIGMA_RANGE[0] * (SIGMA_RANGE[1] / SIGMA_RANGE[0]) ** ((a[1] + 1.0) / 2.0)
        keep = float(min(max(keep, 0.0), 1.0))
        return Task(name=f"random_k{keep:.3f}_s{sigma:.3f}", family="mask",
                    params={"recipe": STANDARD_RECIPE.name, "mask": "random" if keep < 1.0 else NO_MASK,
                            "keep": keep, "blur_sigma": float(sigma)})

    def menu_index(self, action: Any) -> int:
        return 0 if self.continuous else int(action)

    def accepts(self, task: Task) -> bool:
        """Whether ``task`` can be materialized (a known recipe and mask family)."""
        p = task.params
        return p.get("recipe") in self.recipes and p.get("mask", NO_MASK) in (NO_MASK, *MASK_FAMILIES)

    def _view_seed(self, batch: Any) -> int:
        if self._g is None:
            raise RuntimeError("VisionTaskSpace used before reset(generator)")
        if batch is not self._batch:
            self._batch = batch
            self._seed = int(torch.randint(0, 2**62, (1,), generator=self._g))
        return self._seed

    def materialize(self, batch: ImageBatch, task: Task) -> SSLView:
        """The task's views of the pending batch: 2 global crops (+ local crops), then the keep-mask.

        Args:
            batch: raw images [B, C, H, W], uint8 or float in [0, 1].
            task: a task of this space.

        Returns:
            :class:`~vpt_gym.vision.ssl.SSLView`: global views [2, B, C, S, S] and local views
            [L, B, C, s, s] (or None), float32, normalized to [-1, 1].
        """
        g = torch.Generator().manual_seed(self._view_seed(batch))
        images = to_float(batch.images)
        p = task.params
        recipe = self.recipes[p["recipe"]]
        views = [augment_view(images, recipe, scale=recipe.global_scale, size=self.image_size, generator=g)
                 for _ in range(2)]
        local = [augment_view(images, recipe, scale=recipe.local_scale, size=self.local_size, generator=g)
                 for _ in range(self.num_local)]
        family = p.get("mask", NO_MASK)
        if family != NO_MASK:
            keep, sigma = float(p["keep"]), float(p["blur_sigma"])
            views = [blur_fill(v, keep_mask(family, keep, batch=v.shape[0], size=self.image_size, grid=self.grid,
                                            generator=g), sigma) for v in views]
        return SSLView(global_views=normalize(torch.stack(views)),
                       local_views=normalize(torch.stack(local)) if local else None,
                       num_examples=int(batch.num_examples))

    def loss(self, view: SSLView, outputs: SSLOutputs, task: Task) -> torch.Tensor:
        """The learner's SSL loss on the task's views (scalar float32, nats)."""
        return outputs.loss

    def describe(self, batch: ImageBatch, outputs: Any) -> np.ndarray:
        """[mean intensity, intensity std, foreground fraction, edge density] of the raw batch, float64."""
        x = to_float(batch.images).mean(dim=1)
        edges = 0.5 * ((x[:, :, 1:] - x[:, :, :-1]).abs().mean() + (x[:, 1:] - x[:, :-1]).abs().mean())
        stats = torch.stack([x.mean(), x.std(), (x >= 0.5).float().mean(), edges]).double().numpy()
        return np.clip(stats, 0.0, 1.0)

