"""Known answers of vpt_gym.lm.soft_targets (V-Pretraining v2 §2, Eq. 14-15)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vpt_gym.core import Task
from vpt_gym.lm.soft_targets import TEMPERATURE_RANGE, SoftTargetTaskSpace, candidate_set, soft_targets
from vpt_gym.lm.stream import TokenBatch

VOCAB, K = 10, 4


def _example(seed: int = 0, batch: int = 2, seq: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, seq, VOCAB, generator=gen)
    gold = torch.randint(0, VOCAB, (batch, seq), generator=gen)
    return logits, gold


def _token_batch(input_ids: torch.Tensor) -> TokenBatch:
    b, s = input_ids.shape
    return TokenBatch(input_ids=input_ids, domain=torch.zeros(b, dtype=torch.int64), domain_names=("math", "general"),
                      num_examples=b, num_tokens=b * s)


def _space(**kwargs) -> SoftTargetTaskSpace:
    return SoftTargetTaskSpace(vocab_size=VOCAB, domain_names=("math", "general"), top_k=K, **kwargs)


def _hand_candidates(row_logits: list[float], gold: int, k: int) -> list[int]:
    order = sorted(range(len(row_logits)), key=lambda v: -row_logits[v])[:k]
    if gold not in order:
        order[-1] = gold
    return order


# -------------------------------------------------------------------------------------------- targets
@pytest.mark.parametrize("family", ["uniform", "self_distill", "one_hot"])
def test_alpha_zero_is_exactly_one_hot(family: str) -> None:
    logits, gold = _example()
    cand, q = soft_targets(logits, gold, family=family, alpha=0.0, top_k=K, temperature=2.0)
    assert torch.equal(q, (cand == gold[..., None]).float())
    assert torch.equal(q.sum(-1), torch.ones_like(q.sum(-1)))
    assert set(q.unique().tolist()) == {0.0, 1.0}


def test_one_hot_family_ignores_alpha() -> None:
    logits, gold = _example()
    cand, q = soft_targets(logits, gold, family="one_hot", alpha=0.5, top_k=K)
    assert torch.equal(q, (cand == gold[..., None]).float())


@pytest.mark.parametrize("family", ["uniform", "self_distill"])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0])
def test_q_is_a_distribution_over_candidates(family: str, alpha: float) -> None:
    logits, gold = _example(seed=1)
    cand, q = soft_targets(logits, gold, family=family, alpha=alpha, top_k=K, temperature=0.7)
    assert cand.shape == q.shape == (*gold.shape, K)
    assert cand.dtype == torch.int64 and q.dtype == torch.float32
    assert (q >= 0).all()
    assert torch.allclose(q.sum(-1), torch.ones(gold.shape), atol=1e-6)
    # Candidates are distinct token ids.
    assert all(len(set(row)) == K for row in cand.reshape(-1, K).tolist())
    # Gold keeps at least (1 - alpha) of the mass.
    gold_mass = (q * (cand == gold[..., None])).sum(-1)
    assert (gold_mass >= 1 - alpha - 1e-6).all()


def test_gold_always_in_candidates_even_when_lowest() -> None:
    logits, _ = _example(seed=2, batch=3, seq=5)
    lowest = logits.argmin(dim=-1)
    cand = candidate_set(logits, lowest, K)
    assert (cand == lowest[..., None]).any(-1).all()
    # Top K-1 are kept, the K-th replaced by the gold.
    top = logits.topk(K, dim=-1).indices
    assert torch.equal(cand[..., : K - 1], top[..., : K - 1])
    assert torch.equal(cand[..., -1], lowest)
    for family in ("uniform", "self_distill"):
        cand2, q = soft_targets(logits, lowest, family=family, alpha=0.3, top_k=K)
        assert (cand2 == lowest[..., None]).any(-1).all()
        assert torch.allclose(q.sum(-1), torch.ones(lowest.shape), atol=1e-6)


def test_candidates_match_hand_top_k() -> None:
    logits, gold = _example(seed=3, batch=2, seq=8)
    cand = candidate_set(logits, gold, K)
    for b in range(gold.shape[0]):
        for t in range(gold.shape[1]):
            expected = _hand_candidates(logits[b, t].tolist(), int(gold[b, t]), K)
            assert sorted(cand[b, t].tolist()) == sorted(expected)


def test_uniform_r_is_one_over_k() -> None:
    logits, gold = _example(seed=4)
    alpha = 0.25
    cand, q = soft_targets(logits, gold, family="uniform", alpha=alpha, top_k=K)
    onehot = (cand == gold[..., None]).float()
    r = (q - (1 - alpha) * onehot) / alpha
    assert torch.allclose(r, torch.full_like(r, 1.0 / K), atol=1e-6)


@pytest.mark.parametrize("tau", [0.25, 1.0, 3.0])
def test_self_distill_r_is_tempered_softmax_on_candidates(tau: float) -> None:
    logits, gold = _example(seed=5)
    logits.requires_grad_(True)
    alpha = 0.5
    cand, q = soft_targets(logits, gold, family="self_distill", alpha=alpha, top_k=K, temperature=tau)
    assert not q.requires_grad, "the self-distillation target must be detached"
    onehot = (cand == gold[..., None]).float()
    r = (q - (1 - alpha) * onehot) / alpha
    expected = torch.softmax(logits.detach().gather(-1, cand) / tau, dim=-1)
    assert torch.allclose(r, expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(family="label_smoothing", alpha=0.1), "label_smoothing"),
    (dict(family="uniform", alpha=1.5), "1.5"),
    (dict(family="uniform", alpha=-0.1), "-0.1"),
    (dict(family="self_distill", alpha=0.1, temperature=0.0), "temperature"),
    (dict(family="self_distill", alpha=0.1, temperature=-1.0), "temperature"),
])
def test_soft_targets_bad_arguments(kwargs: dict, match: str) -> None:
    logits, gold = _example()
    with pytest.raises(ValueError, match=match):
        soft_targets(logits, gold, top_k=K, **kwargs)


# ------------------------------------------------------------------------------------------ task space
def test_one_hot_loss_equals_cross_entropy() -> None:
    space = _space()
    gen = torch.Generator().manual_seed(6)
    ids = torch.randint(0, VOCAB, (3, 7), generator=gen)
    outputs = torch.randn(3, 7, VOCAB, generator=gen)
    expected = F.cross_entropy(outputs[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert space.tasks[0].name == "one_hot" and space.standard_action == 0
    loss = space.loss(_token_batch(ids), outputs, space.tasks[0])
    assert loss.shape == () and loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("family, tau", [("uniform", 1.0), ("self_distill", 1.0), ("self_distill", 2.0)])
def test_soft_loss_equals_hand_mixture(family: str, tau: float) -> None:
    """L = (1 - alpha) CE + alpha * (-sum_C r log p), computed position by position by hand."""
    alpha = 0.25
    space = _space(alphas=(alpha,), temperatures=(tau,))
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, VOCAB, (2, 5), generator=gen)
    outputs = torch.randn(2, 5, VOCAB, generator=gen, dtype=torch.float64).float()
    task = next(t for t in space.tasks if t.family == family)
    assert task.params["alpha"] == alpha
    loss = space.loss(_token_batch(ids), outputs, task)

    total, count = 0.0, 0
    for b in range(2):
        for t in range(4):
            row = outputs[b, t].double().tolist()
            gold = int(ids[b, t + 1])
            log_z = math.log(sum(math.exp(v) for v in row))
            log_p = [v - log_z for v in row]
            cand = _hand_candidates(row, gold, K)
            if family == "uniform":
                r = [1.0 / K] * K
            else:
                z = sum(math.exp(row[c] / tau) for c in cand)
                r = [math.exp(row[c] / tau) / z for c in cand]
            ce = -log_p[gold]
            soft = -sum(rc * log_p[c] for rc, c in zip(r, cand))
            total += (1 - alpha) * ce + alpha * soft
            count += 1
    assert float(loss) == pytest.approx(total / count, rel=1e-5)


def test_soft_loss_gradient_does_not_flow_through_target() -> None:
    """For self-distillation the gradient is that of -sum q log p with q fixed (detached target)."""
    space = _space(alphas=(0.5,))
    gen = torch.Generator().manual_seed(8)
    ids = torch.randint(0, VOCAB, (1, 4), generator=gen)
    outputs = torch.randn(1, 4, VOCAB, generator=gen).requires_grad_(True)
    task = next(t for t in space.tasks if t.family == "self_distill")
    space.loss(_token_batch(ids), outputs, task).backward()
    logits = outputs.detach()[:, :-1]
    cand, q = soft_targets(logits, ids[:, 1:], family="self_distill", alpha=0.5, top_k=K)
    dense_q = torch.zeros_like(logits).scatter(-1, cand, q)
    expected = (torch.softmax(logits, -1) - dense_q) / logits.shape[1]
    assert torch.allclose(outputs.grad[:, :-1], expected, atol=1e-6)
    assert torch.equal(outputs.grad[:, -1], torch.zeros(1, VOCAB))


def test_discrete_menu() -> None:
    space = _space(alphas=(0.1, 0.5), temperatures=(1.0, 2.0))
    names = [t.name for t in space.tasks]
    assert names == ["one_hot", "uniform_top4_a0.1", "uniform_top4_a0.5", "self_top4_a0.1_t1", "self_top4_a0.5_t1",
                     "self_top4_a0.1_t2", "self_top4_a0.5_t2"]
    assert space.action_space.n == len(names)
    assert [space.menu_index(a) for a in range(len(names))] == list(range(len(names)))
    assert space.descriptor_names == ("fraction_math", "fraction_general", "loss", "entropy")
    assert space.descriptor_high[-1] == pytest.approx(math.log(VOCAB))


@pytest.mark.parametrize("action, alpha, tau", [
    ([-1.0, 0.0], 0.0, 1.0),
    ([1.0, 1.0], 0.5, 4.0),
    ([1.0, -1.0], 0.5, 0.25),
    ([0.0, 0.0], 0.25, 1.0),
])
def test_continuous_mapping(action: list[float], alpha: float, tau: float) -> None:
    space = _space(continuous=True)
    task = space.task(np.asarray(action, dtype=np.float32))
    assert task.family == "self_distill"
    assert task.params["alpha"] == pytest.approx(alpha, abs=1e-12)
    assert task.params["temperature"] == pytest.approx(tau, rel=1e-6)
    assert space.menu_index(np.asarray(action, dtype=np.float32)) == 0
    assert TEMPERATURE_RANGE == (0.25, 4.0)


def test_continuous_standard_action_is_one_hot() -> None:
    space = _space(continuous=True)
    assert space.action_space.shape == (2,)
    assert space.action_space.contains(space.standard_action)
    task = space.task(space.standard_action)
    assert task.params["alpha"] == 0.0
    gen = torch.Generator().manual_seed(9)
    ids = torch.randint(0, VOCAB, (2, 6), generator=gen)
    outputs = torch.randn(2, 6, VOCAB, generator=gen)
    one_hot = space.loss(_token_batch(ids), outputs, Task(name="one_hot", family="one_hot", params={"alpha": 0.0}))
    assert torch.equal(space.loss(_token_batch(ids), outputs, task), one_hot)


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_k=VOCAB + 1), "top_k"),
    (dict(top_k=1), "top_k"),
    (dict(top_k=K, alphas=(0.6,)), "0.6"),
    (dict(top_k=K, alphas=(0.0,)), "alpha"),
    (dict(top_k=K, alpha_max=1.5), "alpha_max"),
    (dict(top_k=K, temperatures=(0.0,)), "temperature"),
    (dict(top_k=K, temperatures=(-2.0,)), "temperature"),
])
def test_task_space_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SoftTargetTaskSpace(vocab_size=VOCAB, domain_names=("math",), **kwargs)


def test_describe_reports_domain_fractions_loss_and_entropy() -> None:
    space = _space()
    gen = torch.Generator().manual_seed(10)
    ids = torch.randint(0, VOCAB, (4, 5), generator=gen)
    batch = TokenBatch(input_ids=ids, domain=torch.tensor([0, 1, 1, 1]), domain_names=("math", "general"),
                       num_examples=4, num_tokens=20)
    outputs = torch.randn(4, 5, VOCAB, generator=gen)
    desc = space.describe(batch, outputs)
    logp = F.log_softmax(outputs[:, :-1], -1)
    nll = F.cross_entropy(outputs[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    entropy = -(logp.exp() * logp).sum(-1).mean()
    assert desc.shape == (4,)
    assert desc[:2].tolist() == [0.25, 0.75]
    assert desc[2] == pytest.approx(float(nll), rel=1e-5)
    assert desc[3] == pytest.approx(float(entropy), rel=1e-5)
    assert np.all(desc >= space.descriptor_low) and np.all(desc <= space.descriptor_high)
