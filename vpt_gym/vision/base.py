"""The base checkpoint theta_0 of the vision learner: architecture config, deterministic SSL pretraining, cache.

For the ``tiny`` and ``small`` presets the base is a freshly initialized backbone + head trained by a short,
deterministic run of the learner's own SSL objective with the standard DINO recipe on the unlabeled split
(:func:`pretrain_base`), saved as safetensors under the cache folder (:func:`vpt_gym.utils.cache_dir`)
keyed by a hash of (config, images), and rebuilt when missing. ``base_steps=0`` gives the random init.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vpt_gym.atomic import atomic_target
from vpt_gym.utils import build_threads
from vpt_gym.vision.ssl import OBJECTIVES, SSLModel

logger = logging.getLogger(__name__)

BASE_FORMAT = "vpt_gym-ssl-base-v2"  # v2: built with utils.BUILD_THREADS threads
"""Version of the vision base-pretraining recipe; part of the cache key."""
ARCHES = ("vit", "resnet10", "resnet18")
"""Backbones built here: a torchvision ViT, or a torchvision ResNet with [1,1,1,1] / [2,2,2,2] blocks."""


@dataclass(frozen=True, kw_only=True)
class VisionModelConfig:
    """Architecture and base pretraining of a tiny/small vision SSL learner.

    Attributes:
        arch: one of :data:`ARCHES`.
        objective: ``"dino"`` or ``"simclr"``.
        image_size / in_channels: input side S (pixels) and channels C.
        patch_size / num_layers / num_heads / hidden_dim / mlp_dim: the ViT (ignored by ResNets).
        head_hidden / bottleneck / out_dim: the projection head (K = out_dim prototypes).
        base_steps / base_batch_size / base_lr: base SSL pretraining (AdamW, constant lr).
        teacher_momentum: EMA momentum during base pretraining.
        seed: seed of the initialization and of the base pretraining's data and views.

    Raises:
        ValueError: unknown arch/objective or a size < 1.
    """

    arch: str = "vit"
    objective: str = "dino"
    image_size: int = 32
    in_channels: int = 1
    patch_size: int = 8
    num_layers: int = 2
    num_heads: int = 2
    hidden_dim: int = 32
    mlp_dim: int = 64
    head_hidden: int = 64
    bottleneck: int = 32
    out_dim: int = 64
    base_steps: int = 60
    base_batch_size: int = 32
    base_lr: float = 1e-3
    teacher_momentum: float = 0.99
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch={self.arch!r} is not accepted; choose one of {ARCHES}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} is not accepted; choose one of {OBJECTIVES}")
        for name in ("image_size", "in_channels", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
                     "head_hidden", "bottleneck", "out_dim", "base_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.base_steps < 0:
            raise ValueError(f"base_steps must be >= 0, got {self.base_steps}")
        if self.arch == "vit" and self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be divisible by patch_size={self.patch_size}")

    @property
    def grid(self) -> int:
        """Keep-mask cells per side: S / patch for the ViT, S / 8 for ResNets."""
        return self.image_size // (self.patch_size if self.arch == "vit" else 8)


def build_model(config: VisionModelConfig) -> SSLModel:
    """A freshly initialized :class:`SSLModel` (float32, CPU); the global torch RNG is left untouched."""
    from vpt_gym.vision.backbones import ResNetBackbone, ViTBackbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone: ViTBackbone | ResNetBackbone
        if config.arch == "vit":
            backbone = ViTBackbone(image_size=config.image_size, patch_size=config.patch_size,
                                   num_layers=config.num_layers, num_heads=config.num_heads,
                                   hidden_dim=config.hidden_dim, mlp_dim=config.mlp_dim,
                                   in_channels=config.in_channels)
        else:
            layers = (1, 1, 1, 1) if config.arch == "resnet10" else (2, 2, 2, 2)
            backbone = ResNetBackbone(layers=layers, in_channels=config.in_channels)
        return SSLModel(backbone, head_hidden=config.head_hidden, bottleneck=config.bottleneck,
                        out_dim=config.out_dim, make_teacher=config.objective == "dino")


def base_key(config: VisionModelConfig, fingerprint: str) -> str:
    """Cache key: sha256 over the recipe version, the config and the image fingerprint (16 hex)."""
    h = hashlib.sha256(BASE_FORMAT.encode())
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(fingerprint.encode())
    return h.hexdigest()[:16]


def pretrain_base(model: SSLModel, images: torch.Tensor, config: VisionModelConfig, *,
                  progress: bool | None = None) -> list[float]:
    """Deterministic base SSL pretraining of ``model`` in place (standard DINO recipe, no local crops).

    Args:
        model: a fresh :class:`SSLModel` on CPU.
        images: unlabeled images [N, C, S, S], uint8.
        config: steps, batch size, lr, seed, objective.
        progress: show a tqdm bar (None: only when stderr is a terminal).

    Returns:
        The SSL loss per step (nats).
    """
    from tqdm.auto import tqdm

    from vpt_gym.vision.data import ImageBatch
    from vpt_gym.vision.ssl import SSLLearner
    from vpt_gym.vision.tasks import VisionTaskSpace, augment_tasks

    learner = SSLLearner(model, objective=config.objective, lr=config.base_lr, alignment_blocks=1,
                         teacher_momentum=config.teacher_momentum)
    space = VisionTaskSpace(augment_tasks(), image_size=config.image_size, grid=config.grid)
    g = torch.Generator().manual_seed(config.seed + 1)
    space.reset(g)
    task = space.tasks[space.standard_action]
    batch_size = min(config.base_batch_size, len(images))
    losses = []
    for _ in tqdm(range(config.base_steps), desc="vision base pretraining (one-time, cached)",
                  disable=None if progress is None else not progress, leave=False):
        index = torch.randperm(len(images), generator=g)[:batch_size]
        batch = ImageBatch(images=images[index], num_examples=batch_size)
        loss = learner.forward(space.materialize(batch, task)).loss
        learner.backward(loss)
        learner.apply_update()
        losses.append(float(loss.detach()))
    learner.optimizer.zero_grad(set_to_none=True)
    return losses


def load_or_pretrain_base(config: VisionModelConfig, images: torch.Tensor, fingerprint: str, folder: Path, *,
                          progress: bool | None = None) -> SSLModel:
    """theta_0: loaded from ``folder/ssl-base-{key}.safetensors``, else pretrained and saved atomically."""
    from safetensors.torch import load_file, save_file

    model = build_model(config)
    if config.base_steps == 0:
        return model
    path = folder / f"ssl-base-{base_key(config, fingerprint)}.safetensors"
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model
    logger.info("building the vision base checkpoint %s: %d SSL steps on the unlabeled images (one-time; cached)",
                path.name, config.base_steps)
    with build_threads():  # the base's bytes depend on the thread count: build it the same way everywhere
        pretrain_base(model, images, config, progress=progress)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_target(path) as tmp:
        save_file(state, str(tmp))
    return model
