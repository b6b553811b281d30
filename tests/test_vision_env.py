"""The vision SSL envs: argument validation, the task changes learning, look-ahead = update, paper preset."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")

import vpt_gym  # noqa: E402,F401  (registers the ids)
from vpt_gym.envs import vision as vision_envs  # noqa: E402


def _episode(env: gym.Env, actions: list, seed: int = 0) -> tuple[list[float], dict]:
    env.reset(seed=seed)
    rewards, info = [], {}
    for action in actions:
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        if terminated:
            break
    return rewards, info


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": "huge"}, ValueError, "huge"),
        ({"objective": "byol"}, ValueError, "byol"),
        ({"arch": "vgg11"}, ValueError, "vgg11"),
        ({"alignment": "first2"}, ValueError, "first2"),
        ({"lr": -1.0}, ValueError, "-1.0"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"num_local": -1}, ValueError, "num_local"),
        ({"model": "some/vit"}, ValueError, "paper"),
        ({"size": "paper"}, ValueError, "model="),
        ({"size": "paper", "model": "x"}, ValueError, "ImageFolder"),
        ({"data": "/no/such/folder"}, FileNotFoundError, "/no/such/folder"),
        ({"keep_ratios": (0.5, 1.5)}, ValueError, "1.5"),
        ({"mask_families": ("ring",)}, ValueError, "ring"),
        ({"blur_sigma": 0.0}, ValueError, "blur_sigma"),
        ({"probe_metric": "knn"}, ValueError, "knn"),
    ],
)
def test_bad_arguments_raise_before_work(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        vision_envs.make_ssl_mask_env(budget=4, **kwargs)


def test_alignment_blocks_outside_the_model_raise() -> None:
    with pytest.raises(ValueError, match=r"\[1, 2\]"):
        gym.make("vpt/SSL-Augment-v0", size="tiny", budget=4, alignment="last3")


def test_fixed_and_different_task_episodes_end_with_different_eval() -> None:
    env = gym.make("vpt/SSL-Augment-v0", size="tiny", budget=8)
    names = env.unwrapped.task_names
    fixed = _episode(env, [names.index("dino_standard")] * 8)[1]["eval"]
    fixed_again = _episode(env, [names.index("dino_standard")] * 8)[1]["eval"]
    other = _episode(env, [names.index("tight_crops")] * 8)[1]["eval"]
    assert fixed == fixed_again
    assert fixed["probe_loss"] != other["probe_loss"]
    assert fixed["seg_loss"] != other["seg_loss"]
    for metrics in (fixed, other):
        assert 0.0 <= metrics["probe_accuracy"] <= 1.0 and 0.0 <= metrics["miou"] <= 1.0
        assert metrics["probe_accuracy"] > 0.15  # well above chance (0.1) on 10 real digit classes
        assert metrics["miou"] > 0.45  # background IoU alone is ~0.87 / 2


def test_mask_task_changes_learning_and_lookahead_equals_update_value() -> None:
    env = gym.make("vpt/SSL-Mask-v0", size="tiny", budget=4)
    base = env.unwrapped
    k = base.task_names.index("block_k0.4")
    env.reset(seed=1)
    values = base.lookahead_values()
    assert values.shape == (len(base.task_names),) and np.all(np.isfinite(values))
    assert len(set(values.tolist())) == len(values), "tasks gave identical look-ahead values"
    _, reward, _, _, info = env.step(k)
    # same views (per-batch seed), same g_down: the look-ahead value is the update's alignment
    assert math.isclose(reward, float(values[k]), rel_tol=1e-4, abs_tol=1e-9)
    assert info["ledger"]["lookahead_forward"] == len(values)
    masked = _episode(env, [k] * 4, seed=2)[1]["eval"]
    plain = _episode(env, [0] * 4, seed=2)[1]["eval"]
    assert masked["probe_loss"] != plain["probe_loss"]


def test_continuous_mask_standard_action_is_no_mask() -> None:
    env = gym.make("vpt/SSL-MaskContinuous-v0", size="tiny", budget=2)
    space = env.unwrapped.task_space
    assert space.task(env.unwrapped.standard_action).params["mask"] == "none"
    low = space.task(np.array([-1.0, -1.0], dtype=np.float32)).params
    assert math.isclose(low["keep"], 0.25) and math.isclose(low["blur_sigma"], 0.5)
    high = space.task(np.array([0.0, 1.0], dtype=np.float32)).params
    assert math.isclose(high["keep"], 0.625) and math.isclose(high["blur_sigma"], 4.0) and high["mask"] == "random"


def test_paper_preset_with_a_local_vit_and_an_image_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paper path end to end on CPU: a transformers ViT saved to a folder, real digits as an ImageFolder."""
    transformers = pytest.importorskip("transformers")
    from PIL import Image

    from vpt_gym.vision.data import load_mnist5k

    pool = load_mnist5k(32)
    for label in range(3):
        folder = tmp_path / "images" / f"digit{label}"
        folder.mkdir(parents=True)
        for i, k in enumerate((pool.labels == label).nonzero()[:12, 0].tolist()):
            Image.fromarray(pool.images[k, 0].numpy()).save(folder / f"{i}.png")
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=3,
                                    num_attention_heads=2, intermediate_size=64, num_channels=3)
    transformers.ViTModel(config).save_pretrained(tmp_path / "vit")
    small_paper = dataclasses.replace(vision_envs.VISION_PRESETS["paper"], batch_size=4, num_local=2, feedback_size=8,
                                      eval_size=8, feedback_batch_size=4, probe_size=4, fit_steps=2, eval_fit_steps=5,
                                      alignment_blocks=2, paper_head=(32, 16, 32))
    monkeypatch.setitem(vision_envs.VISION_PRESETS, "paper", small_paper)
    env = vision_envs.make_ssl_mask_env(size="paper", data=str(tmp_path / "images"), model=str(tmp_path / "vit"),
                                        budget=2, device="cpu")
    names = env.learner.alignment_names
    blocks = {n.split(".2.")[0] for n in names if ".2." in n}
    assert len(blocks) == 1, names  # the last block (index 2) of one block stack
    stack = blocks.pop()
    assert any(n.startswith(f"{stack}.1.") for n in names) and not any(n.startswith(f"{stack}.0.") for n in names)
    assert "student_backbone.model.layernorm.weight" in names  # the final norm
    rewards, info = _episode(env, [1, 5])
    assert all(math.isfinite(r) for r in rewards)
    assert set(info["eval"]) == {"probe_accuracy", "probe_loss", "eval_images"}  # ImageFolder: no dense target
    assert info["eval"]["eval_images"] == 8.0


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["vpt/SSL-Augment-v0", "vpt/SSL-Mask-v0"])
def test_small_preset_passes_the_checkers(env_id: str) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make(env_id, size="small", budget=4)
    check_env(env.unwrapped)
    sb3 = pytest.importorskip("stable_baselines3.common.env_checker")
    sb3.check_env(env.unwrapped, warn=True)
    rewards, info = _episode(env, [0] * 4)
    assert len(rewards) == 4 and {"probe_accuracy", "miou"} <= set(info["eval"])


def test_ridge_loo_error_equals_explicit_leave_one_out_refits() -> None:
    """The closed form (PRESS) against n explicit ridge fits, each without one example, same penalty and the
    same (whole-batch) standardization; and the invariance the standardization buys."""
    import torch

    from vpt_gym.vision.feedback import ridge_loo_error

    g = torch.Generator().manual_seed(3)
    n, d, c = 20, 6, 3
    features = torch.randn(n, d, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0, 1.0, 30.0]) + 7.0
    labels = torch.randint(0, c, (n,), generator=g)
    f64 = features.double()
    z = (f64 - f64.mean(0)) / f64.std(0, correction=0)
    x = torch.cat([z, torch.ones(n, 1, dtype=torch.float64)], 1)
    y = torch.nn.functional.one_hot(labels, c).double()
    kappa = 0.5 * float(torch.trace(x.T @ x)) / (d + 1)
    errors = []
    for i in range(n):
        keep = torch.arange(n) != i
        xi, yi = x[keep], y[keep]
        w = torch.linalg.solve(xi.T @ xi + kappa * torch.eye(d + 1, dtype=torch.float64), xi.T @ yi)
        errors.append(float(((y[i] - x[i] @ w) ** 2).sum()))
    assert ridge_loo_error(features, labels, c, ridge=0.5) == pytest.approx(sum(errors) / n, rel=1e-10)
    # per-dimension shift and positive rescaling change nothing; a constant dimension adds nothing
    scaled = f64 * torch.tensor([1e-3, 10.0, 1.0, 0.5, 100.0, 2.0], dtype=torch.float64) - 4.0
    assert ridge_loo_error(scaled, labels, c, ridge=0.5) == pytest.approx(sum(errors) / n, rel=1e-10)
    padded = torch.cat([features, torch.full((n, 1), 3.0)], 1)
    kappa_padded = 0.5 * float(torch.trace(x.T @ x)) / (d + 2)  # the constant (zeroed) dimension only moves kappa
    errors_padded = []
    for i in range(n):
        keep = torch.arange(n) != i
        w = torch.linalg.solve(x[keep].T @ x[keep] + kappa_padded * torch.eye(d + 1, dtype=torch.float64),
                               x[keep].T @ y[keep])
        errors_padded.append(float(((y[i] - x[i] @ w) ** 2).sum()))
    assert ridge_loo_error(padded, labels, c, ridge=0.5) == pytest.approx(sum(errors_padded) / n, rel=1e-10)
    # features that carry the label are more separable than noise
    informative = torch.nn.functional.one_hot(labels, c).float() * 3 + 0.1 * features[:, :c]
    assert ridge_loo_error(informative, labels, c) < ridge_loo_error(features, labels, c)
    with pytest.raises(ValueError, match="ridge > 0"):
        ridge_loo_error(features, labels, c, ridge=0.0)


def test_metric_gain_with_the_head_free_probe_metric_is_its_change() -> None:
    """metric_gain under probe_metric="ridge_loo": each reward is the change of -ridge_loo_error on the probe
    batch, so an episode's return is the total change (no heads to go stale between refreshes)."""
    from vpt_gym.vision.feedback import ridge_loo_error

    env = gym.make("vpt/SSL-Augment-v1", size="tiny", budget=6, reward="metric_gain", probe_metric="ridge_loo")
    env.reset(seed=0)
    base = env.unwrapped
    probe = base.feedback.probe_batch()

    def quality() -> float:
        cls, _ = base.learner.features(probe.images)
        return -ridge_loo_error(cls, probe.labels, base.feedback.num_classes)

    start, total = quality(), 0.0
    for _ in range(6):
        before = quality()
        _, reward, *_ = env.step(1)
        assert reward == pytest.approx(quality() - before, abs=1e-6)  # float32 features, batched differently
        total += reward
    assert total == pytest.approx(quality() - start, abs=1e-5)
    assert abs(total) > 1e-4  # the updates do move it
