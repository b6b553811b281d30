"""Vision self-supervised learning for the ``vpt/SSL-*`` environments.

Modules: :mod:`~vpt_gym.vision.data` (real images, validation, fixed disjoint splits, the image stream),
:mod:`~vpt_gym.vision.augment` (augmentation recipes on batched tensors, driven by a ``torch.Generator``),
:mod:`~vpt_gym.vision.masks` (soft keep-masks and the blur-fill operator of V-Pretraining),
:mod:`~vpt_gym.vision.backbones` (torchvision ViT / ResNet feature extractors),
:mod:`~vpt_gym.vision.ssl` (the DINO / SimCLR learner), :mod:`~vpt_gym.vision.base` (its cached base checkpoint),
:mod:`~vpt_gym.vision.tasks` (the augmentation and mask task menus),
:mod:`~vpt_gym.vision.feedback` (probe-head feedback set and held-out eval).

Importing this package imports nothing heavy; ``torchvision`` is needed by the submodules (pip extra
``vpt-gym[vision]``).
"""

from __future__ import annotations


def require_torchvision():
    """Import and return ``torchvision``.

    Raises:
        ImportError: torchvision is missing (install the ``vision`` extra).
    """
    try:
        import torchvision
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError("the vision environments need torchvision: pip install 'vpt-gym[vision]'") from exc
    return torchvision
