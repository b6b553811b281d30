"""The vision SSL learner: loss known answers, teacher/centre/BatchNorm bookkeeping, reset, feedback gradient."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")

from vpt_gym.vision.base import VisionModelConfig, build_model  # noqa: E402
from vpt_gym.vision.data import ImageBatch, load_mnist5k, split_images  # noqa: E402
from vpt_gym.vision.feedback import ProbeFeedback, miou  # noqa: E402
from vpt_gym.vision.ssl import SSLLearner, dino_loss, simclr_loss  # noqa: E402
from vpt_gym.vision.tasks import VisionTaskSpace, augment_tasks  # noqa: E402


@pytest.fixture(scope="module")
def splits():
    return split_images(load_mnist5k(32), feedback_size=64, eval_size=64, split_seed=0)


def _learner(arch: str, objective: str = "dino") -> SSLLearner:
    config = VisionModelConfig(arch=arch, objective=objective, base_steps=0)
    return SSLLearner(build_model(config), objective=objective, lr=1e-3, alignment_blocks=1, teacher_momentum=0.9)


def _view(splits, n: int = 8, seed: int = 0):
    space = VisionTaskSpace(augment_tasks(), image_size=32, grid=4, num_local=2)
    space.reset(torch.Generator().manual_seed(seed))
    return space.materialize(ImageBatch(images=splits.unlabeled.images[:n], num_examples=n), space.tasks[0])


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str) -> list[str]:
    return [k for k in a if k.startswith(prefix) and not torch.equal(a[k], b[k])]


def test_dino_loss_known_answer() -> None:
    s = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # [V=2, B=1, K=2]
    t = torch.tensor([[[0.0, 0.0]], [[0.08, 0.0]]])  # [G=2, B=1, K=2]
    center = torch.tensor([0.0, 0.04])
    pt = [torch.softmax((t[i, 0] - center) / 0.04, -1) for i in range(2)]
    ls = [torch.log_softmax(s[j, 0] / 0.1, -1) for j in range(2)]
    expected = 0.5 * (-(pt[0] * ls[1]).sum() - (pt[1] * ls[0]).sum())
    got = dino_loss(s, t, center, student_temp=0.1, teacher_temp=0.04)
    assert torch.allclose(got, expected)
    # identical sharp teacher and student on both crops: the loss is the student's entropy-like CE >= 0
    assert float(dino_loss(s, s, torch.zeros(2), student_temp=0.1, teacher_temp=0.1)) > 0


def test_simclr_loss_known_answer() -> None:
    e = torch.eye(4)
    z = torch.stack([e[:2], e[:2]])  # two views, 2 images, orthogonal, positives identical
    tau = 0.5
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2.0))
    assert math.isclose(float(simclr_loss(z, tau)), expected, rel_tol=1e-6)


def test_miou_known_answer() -> None:
    pred = torch.tensor([[0, 0, 1, 1]])
    target = torch.tensor([[0, 1, 1, 1]])
    assert math.isclose(miou(pred, target, 2), 0.5 * (1 / 2 + 2 / 3))


def test_lookahead_forward_changes_nothing_update_moves_teacher_centre_and_bn(splits) -> None:
    learner = _learner("resnet10")
    model = learner.module
    view = _view(splits)
    before = _snapshot(model)
    out = learner.forward(view)  # a look-ahead: forward + gradient on S, no update
    learner.subset_gradient(out.loss)
    assert _changed(before, _snapshot(model), "") == [], "a look-ahead forward changed the learner"
    out = learner.forward(view)
    learner.backward(out.loss)
    learner.apply_update()
    after = _snapshot(model)
    assert any("running_mean" in k for k in _changed(before, after, "student_backbone.")), "BN stats not committed"
    assert _changed(before, after, "teacher_backbone."), "the EMA teacher did not move"
    assert _changed(before, after, "center"), "the centre did not move"
    # EMA known answer on one teacher weight: t1 = m t0 + (1 - m) s1
    key = "student_head.last.weight"
    t_key = key.replace("student", "teacher")
    assert torch.allclose(after[t_key], 0.9 * before[t_key] + 0.1 * after[key], atol=1e-7)


def test_feedback_gradient_leaves_bn_teacher_and_grads_alone(splits) -> None:
    learner = _learner("resnet10")
    model = learner.module
    feedback = ProbeFeedback(splits.feedback, splits.eval, feature_dim=model.student_backbone.dim, batch_size=16,
                             probe_size=8, fit_steps=3, eval_fit_steps=5)
    feedback.reset(torch.Generator().manual_seed(0))
    before = _snapshot(model)
    modes = [m.training for m in model.modules()]
    loss = feedback.loss(learner, feedback.sample_batch())
    g_down = learner.subset_gradient(loss)
    assert _changed(before, _snapshot(model), "") == [], "computing g_down changed weights, BN stats or teacher"
    assert [m.training for m in model.modules()] == modes, "train/eval flags were not restored"
    assert all(p.grad is None for p in model.parameters()), "g_down leaked into .grad"
    assert len(g_down) == len(learner.alignment_parameters())
    assert all(n.startswith("student_backbone.net.layer4.") for n in learner.alignment_names)
    assert sum(float(g.norm()) for g in g_down) > 0
    # the probe heads were refit: L_down below the zero-head loss log(10) + log(2)
    assert float(loss.detach()) < math.log(10) + math.log(2)
    metrics = feedback.evaluate(learner)
    assert set(metrics) == {"probe_accuracy", "probe_loss", "eval_images", "miou", "pixel_accuracy", "seg_loss"}
    assert 0.0 <= metrics["probe_accuracy"] <= 1.0 and 0.0 <= metrics["miou"] <= 1.0
    assert _changed(before, _snapshot(model), "") == [], "evaluate changed the learner"


@pytest.mark.parametrize("objective", ["dino", "simclr"])
def test_reset_restores_student_teacher_centre_optimizer(splits, objective: str) -> None:
    learner = _learner("vit", objective)
    theta0 = _snapshot(learner.module)
    for seed in range(2):
        out = learner.forward(_view(splits, seed=seed))
        learner.backward(out.loss)
        learner.apply_update()
    assert _changed(theta0, _snapshot(learner.module), "student_backbone.")
    learner.reset(torch.Generator())
    assert _changed(theta0, _snapshot(learner.module), "") == []
    assert len(learner.optimizer.state) == 0
    assert learner.alignment_names[-1].startswith("student_backbone.vit.encoder.ln.")


def test_learner_rejects_bad_arguments() -> None:
    model = build_model(VisionModelConfig(base_steps=0))
    with pytest.raises(ValueError, match="byol"):
        SSLLearner(model, objective="byol", lr=1e-3)
    with pytest.raises(ValueError, match="alignment_blocks"):
        SSLLearner(model, lr=1e-3, alignment_blocks=3)
    with pytest.raises(ValueError, match="teacher_momentum"):
        SSLLearner(model, lr=1e-3, teacher_momentum=1.5)
    with pytest.raises(ValueError, match="simclr"):
        SSLLearner(model, objective="simclr", lr=1e-3)  # a DINO model has a teacher
