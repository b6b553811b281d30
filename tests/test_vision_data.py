"""Real image loading, validation errors for bad image data, fixed disjoint splits, the image stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")

from vpt_gym.vision.data import (  # noqa: E402
    ImageSet,
    ImageStream,
    load_image_folder,
    load_mnist5k,
    split_images,
    validate_images,
)


@pytest.fixture(scope="module")
def mnist() -> ImageSet:
    return load_mnist5k(32)


def test_mnist5k_is_real_and_balanced(mnist: ImageSet) -> None:
    assert mnist.images.shape == (5000, 1, 32, 32) and mnist.images.dtype == torch.uint8
    assert torch.bincount(mnist.labels).tolist() == [500] * 10
    fg = mnist.masks.float().mean().item()
    assert 0.05 < fg < 0.35, fg  # digits cover a minority of the pixels
    assert mnist.masks.shape == (5000, 32, 32) and set(mnist.masks.unique().tolist()) == {0, 1}
    # a real digit: the centre is brighter than the border on average
    assert mnist.images[:, :, 12:20, 12:20].float().mean() > 3 * mnist.images[:, :, :4].float().mean()


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.zeros(4, 32, 32, dtype=torch.uint8), "4 dims"),
        (torch.zeros(0, 1, 32, 32, dtype=torch.uint8), "empty"),
        (torch.zeros(4, 2, 32, 32, dtype=torch.uint8), "2 channels"),
        (torch.zeros(4, 1, 4, 4, dtype=torch.uint8), "4x4"),
        (torch.zeros(4, 1, 32, 32, dtype=torch.int32), "torch.int32"),
        (torch.full((4, 1, 32, 32), 2.0), r"\[0, 1\]"),
        (torch.full((4, 1, 32, 32), float("nan")), r"\[0, 1\]"),
        (torch.zeros(4, 1, 32, 32).numpy(), "torch.Tensor"),
    ],
)
def test_bad_images_raise(images, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_images(images)
    if isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[0] > 0:
        with pytest.raises(ValueError, match=match):
            ImageStream(images, batch_size=1)


def test_bad_labels_and_masks_raise() -> None:
    images = torch.zeros(4, 1, 16, 16, dtype=torch.uint8)
    with pytest.raises(ValueError, match="labels"):
        validate_images(images, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        validate_images(images, torch.tensor([0, 1, 2, 0]), num_classes=2)
    with pytest.raises(ValueError, match="masks"):
        validate_images(images, None, torch.zeros(4, 8, 8, dtype=torch.int64))


def test_splits_are_fixed_and_disjoint(mnist: ImageSet) -> None:
    pool = ImageSet(images=mnist.images[:300], labels=torch.arange(300), masks=None,
                    class_names=tuple(str(i) for i in range(300)), num_dense_classes=0, source="test")
    a = split_images(pool, feedback_size=40, eval_size=30, split_seed=0)
    b = split_images(pool, feedback_size=40, eval_size=30, split_seed=0)
    c = split_images(pool, feedback_size=40, eval_size=30, split_seed=1)
    ids = [set(s.labels.tolist()) for s in (a.unlabeled, a.feedback, a.eval)]
    assert [len(x) for x in ids] == [230, 40, 30]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert torch.equal(a.feedback.labels, b.feedback.labels) and not torch.equal(a.feedback.labels, c.feedback.labels)
    with pytest.raises(ValueError, match="300"):
        split_images(pool, feedback_size=200, eval_size=100)
    with pytest.raises(ValueError, match="feedback_size"):
        split_images(pool, feedback_size=0, eval_size=10)


def test_stream_is_seeded_by_its_generator(mnist: ImageSet) -> None:
    stream = ImageStream(mnist.images, batch_size=8)
    with pytest.raises(RuntimeError):
        stream.next_batch()
    stream.reset(torch.Generator().manual_seed(0))
    first = stream.next_batch()
    stream.reset(torch.Generator().manual_seed(0))
    assert torch.equal(stream.next_batch().images, first.images)
    assert first.num_examples == 8 and first.num_tokens == 0
    with pytest.raises(ValueError, match="batch_size"):
        ImageStream(mnist.images[:4], batch_size=5)


def _write_folder(root: Path, mnist: ImageSet, per_class: int = 3) -> None:
    from PIL import Image

    for label in (3, 7):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True)
        index = torch.nonzero(mnist.labels == label)[:per_class, 0]
        for i, k in enumerate(index.tolist()):
            Image.fromarray(mnist.images[k, 0].numpy()).save(folder / f"{i}.png")
        (folder / "notes.txt").write_text("not an image")


def test_image_folder_loads_real_images(tmp_path: Path, mnist: ImageSet) -> None:
    _write_folder(tmp_path, mnist)
    pool = load_image_folder(tmp_path, 32)
    assert pool.class_names == ("digit3", "digit7")
    assert pool.images.shape == (6, 3, 32, 32) and pool.images.dtype == torch.uint8
    assert pool.labels.tolist() == [0, 0, 0, 1, 1, 1] and pool.masks is None
    first3 = mnist.images[torch.nonzero(mnist.labels == 3)[0, 0]]
    assert torch.equal(pool.images[0], first3.expand(3, -1, -1))  # grey PNG decoded as RGB, lossless
    small = load_image_folder(tmp_path, 16, max_per_class=1)
    assert small.images.shape == (2, 3, 16, 16)


def test_image_folder_errors(tmp_path: Path, mnist: ImageSet) -> None:
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing", 32)
    (tmp_path / "only").mkdir()
    with pytest.raises(ValueError, match="need >= 2"):
        load_image_folder(tmp_path, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        load_image_folder(tmp_path, 32)
    (tmp_path / "empty" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "only" / "fine.png").write_bytes(b"")
    with pytest.raises(ValueError, match="does not decode"):
        load_image_folder(tmp_path, 32)
