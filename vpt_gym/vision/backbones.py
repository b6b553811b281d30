"""Backbones of the vision SSL learner: a global feature and a dense feature map per image.

Every backbone maps images [B, C, H, W] (float32, normalized) to ``(cls [B, D], dense [B, D, h, w])`` and
names its alignment subset S (the last blocks and the final norm; V-Pretraining v2 Eq. 28 aligns the last 2-4
ViT blocks plus final norms):

- :class:`ViTBackbone`: ``torchvision.models.VisionTransformer`` (any input side divisible by the patch; the
  position embedding is interpolated for local crops), cls = the class token, dense = the patch tokens.
- :class:`ResNetBackbone`: ``torchvision.models.ResNet`` with a 3x3 stem for small images, cls = global
  average pool, dense = the last stage's map. It has BatchNorm.
- :class:`HFViTBackbone`: any ``transformers`` ViT-style ``AutoModel`` (ViT, DINOv2, ...) from a path or hub
  id (the ``paper`` preset).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ViTBackbone(nn.Module):
    """A torchvision ``VisionTransformer`` as a (cls, patch-token map) feature extractor.

    Args:
        image_size / patch_size / num_layers / num_heads / hidden_dim / mlp_dim: the ViT (dropout 0).
        in_channels: image channels C (the patch projection is rebuilt for C != 3).

    Raises:
        ValueError: image_size not divisible by patch_size, hidden_dim not divisible by num_heads.
    """

    def __init__(self, *, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        from torchvision.models import VisionTransformer

        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be divisible by patch_size={patch_size}")
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={num_heads}")
        self.vit = VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                                     num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim)
        if in_channels != 3:
            self.vit.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.vit.heads = nn.Identity()
        self.dim = hidden_dim
        self.patch_size = patch_size
        self.num_blocks = num_layers

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cls [B, D], dense [B, D, H/p, W/p]) of images [B, C, H, W] (H, W divisible by the patch p)."""
        vit = self.vit
        x = vit.conv_proj(images)  # [B, D, h, w]
        b, d, h, w = x.shape
        tokens = torch.cat([vit.class_token.expand(b, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        pos = vit.encoder.pos_embedding
        if pos.shape[1] != tokens.shape[1]:
            side = int(math.isqrt(pos.shape[1] - 1))
            grid = pos[:, 1:].reshape(1, side, side, d).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
            pos = torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
        tokens = vit.encoder.ln(vit.encoder.layers(vit.encoder.dropout(tokens + pos)))
        return tokens[:, 0], tokens[:, 1:].transpose(1, 2).reshape(b, d, h, w)

    def alignment_prefixes(self, blocks: int) -> list[str]:
        """Parameter-name prefixes (relative to this module) of the last ``blocks`` blocks and the final norm."""
        n = self.num_blocks
        return [f"vit.encoder.layers.encoder_layer_{i}." for i in range(n - blocks, n)] + ["vit.encoder.ln."]


class ResNetBackbone(nn.Module):
    """A torchvision ``ResNet`` (BasicBlock) with a 3x3 stride-2 stem and no max-pool, for small images.

    Args:
        layers: blocks per stage, e.g. ``(1, 1, 1, 1)`` (ResNet-10) or ``(2, 2, 2, 2)`` (ResNet-18).
        in_channels: image channels C.
    """

    def __init__(self, *, layers: tuple[int, int, int, int] = (1, 1, 1, 1), in_channels: int = 3) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock, ResNet

        self.net = ResNet(BasicBlock, list(layers))
        self.net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.net.maxpool = nn.Identity()
        self.net.fc = nn.Identity()
        self.dim = 512
        self.num_blocks = 4

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cls [B, 512] = average pool, dense [B, 512, H/16, W/16]) of images [B, C, H, W]."""
        net = self.net
        x = net.relu(net.bn1(net.conv1(images)))
        x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        return x.mean(dim=(2, 3)), x

    def alignment_prefixes(self, blocks: int) -> list[str]:
        """Prefixes of the last ``blocks`` stages (``layer4``, ``layer3``, ...)."""
        return [f"net.layer{i}." for i in range(5 - blocks, 5)]


class HFViTBackbone(nn.Module):
    """A ``transformers`` ViT-style vision model (``AutoModel``: ViT, DINOv2, ...) from a path or hub id.

    cls = ``last_hidden_state[:, 0]``; dense = the last h*w tokens (register tokens skipped) as a map.

    Args:
        model: a loaded ``transformers`` model with ``config.image_size``, ``config.patch_size``,
            ``config.hidden_size`` and ``config.num_channels``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg: Any = model.config  # a transformers config
        self.dim = int(cfg.hidden_size)
        self.patch_size = int(cfg.patch_size)
        self.image_size = int(cfg.image_size)
        self.in_channels = int(getattr(cfg, "num_channels", 3))
        from vpt_gym.learners import find_blocks

        self._blocks_name, blocks = find_blocks(model)
        self.num_blocks = len(blocks)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cls [B, D], dense [B, D, H/p, W/p])."""
        b, _, h, w = images.shape
        hp, wp = h // self.patch_size, w // self.patch_size
        kwargs = {"interpolate_pos_encoding": True} if (h, w) != (self.image_size, self.image_size) else {}
        tokens = self.model(pixel_values=images, **kwargs).last_hidden_state
        dense = tokens[:, -hp * wp :].transpose(1, 2).reshape(b, self.dim, hp, wp)
        return tokens[:, 0], dense

    def alignment_prefixes(self, blocks: int) -> list[str]:
        """The last ``blocks`` blocks and the final norm(s) after them (names containing ``norm``)."""
        n = self.num_blocks
        prefixes = [f"model.{self._blocks_name}.{i}." for i in range(n - blocks, n)]
        top = {name.split(".")[0] for name, _ in self.model.named_parameters() if "norm" in name.split(".")[0]}
        return prefixes + [f"model.{t}." for t in sorted(top)]


def load_hf_backbone(model: str) -> HFViTBackbone:
    """``transformers.AutoModel.from_pretrained(model)`` (float32, no pooling layer) wrapped as a backbone.

    Raises:
        ImportError: transformers missing. ValueError: the model has no ViT-style config.
    """
    from transformers import AutoModel

    net = AutoModel.from_pretrained(model)
    cfg = net.config
    for key in ("hidden_size", "patch_size", "image_size"):
        if not hasattr(cfg, key):
            raise ValueError(f"model {model!r} ({type(net).__name__}) is not a ViT-style vision model: "
                             f"config lacks {key}")
    if getattr(net, "pooler", None) is not None:
        net.pooler = None  # unused; its parameters would get no gradient
    return HFViTBackbone(net.float())
