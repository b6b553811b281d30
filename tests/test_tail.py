"""The forward-mode look-ahead through S only (vpt_gym.lm.tail) equals the whole-model JVP."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import vpt_gym  # noqa: F401
from vpt_gym.learners import TorchLearner
from vpt_gym.lm.model import lm_forward
from vpt_gym.lm.soft_targets import SoftTargetTaskSpace, candidate_set, log_prob_jvp
from vpt_gym.lm.stream import TokenBatch
from vpt_gym.lm.tail import TailForward
from vpt_gym.value import grad_dot

VOCAB, SEQ, K = 40, 9, 6


def _learner(alignment: str) -> TorchLearner:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=16, n_layer=3, n_head=2,
                                           resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).double().eval()
    return TorchLearner(model, forward_fn=lm_forward, lr=0.01, alignment=alignment)


def _batch() -> TokenBatch:
    ids = torch.randint(0, VOCAB, (3, SEQ), generator=torch.Generator().manual_seed(1))
    return TokenBatch(ids, torch.zeros(3, dtype=torch.int64), ("math",), 3, 3 * SEQ)


@pytest.mark.parametrize("alignment", ["last1", "last2", "last3"])
def test_tail_jvp_equals_the_whole_model_jvp_in_float64(alignment: str) -> None:
    learner = _learner(alignment)
    assert TailForward.attach(learner)
    tail = learner.forward_fn
    assert tail.start == 3 - int(alignment[-1])
    batch = _batch()
    outputs = learner.forward(batch)
    assert tail.last is not None and tail.last[0] is outputs
    gen = torch.Generator().manual_seed(2)
    g_down = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in learner.alignment_parameters()]
    cand = candidate_set(outputs[:, :-1], batch.input_ids[:, 1:], K)
    subset = dict(zip(learner.alignment_names, learner.alignment_parameters()))
    fast = tail.log_prob_jvp(outputs, cand, subset, g_down)
    full = log_prob_jvp(learner.module, batch.input_ids, cand, subset, g_down)
    assert fast.dtype == torch.float64 and fast.shape == (3, SEQ - 1, K)
    torch.testing.assert_close(fast, full, rtol=1e-10, atol=1e-12)
    # and both are the directional derivative of log p along g_down (explicit reverse mode)
    logp = torch.log_softmax(outputs[:, :-1], -1).gather(-1, cand)
    grads = torch.autograd.grad(logp[2, 5, 1], learner.alignment_parameters())
    assert float(fast[2, 5, 1]) == pytest.approx(float(grad_dot(g_down, grads)), rel=1e-9)


def test_only_the_learner_forward_records_and_stale_outputs_fall_back() -> None:
    learner = _learner("last1")
    TailForward.attach(learner)
    batch = _batch()
    outputs = learner.forward(batch)
    learner.module(input_ids=batch.input_ids)  # e.g. a feedback forward: calls the module directly
    assert learner.forward_fn.last[0] is outputs
    newer = learner.forward(batch)
    cand = candidate_set(outputs[:, :-1], batch.input_ids[:, 1:], K)
    subset = dict(zip(learner.alignment_names, learner.alignment_parameters()))
    assert learner.forward_fn.log_prob_jvp(outputs, cand, subset, list(subset.values())) is None  # stale
    assert learner.forward_fn.log_prob_jvp(newer, cand, subset, list(subset.values())) is not None


def test_alignment_outside_the_blocks_keeps_the_whole_model_jvp() -> None:
    learner = _learner("all")
    assert not TailForward.attach(learner)
    assert learner.forward_fn is lm_forward
    space = SoftTargetTaskSpace(vocab_size=VOCAB, domain_names=("math",), top_k=K)
    batch = _batch()
    outputs = learner.forward(batch)
    g = [torch.ones_like(p) for p in learner.alignment_parameters()]
    values = space.linear_values(learner, batch, outputs, g, space.tasks)
    assert values.shape == (len(space.tasks),) and np.all(np.isfinite(values))


def test_lm_env_learner_uses_the_tail_and_greedy_matches_backward() -> None:
    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=3, eval_items=1, max_new_tokens=4)
    base = env.unwrapped
    assert isinstance(base.learner.forward_fn, TailForward)
    env.reset(seed=5)
    env.step(2)
    fast = base.lookahead_values()
    assert base.learner.forward_fn.last[0] is base.pending_outputs  # the tail path was available
    base.forward_mode_lookahead = False
    slow = base.lookahead_values()
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-7 * np.abs(slow).max())


def test_bf16_learner_tail_jvp_runs_in_float32_on_the_bf16_weights() -> None:
    """bf16 learners: the tail JVP runs on a float32 copy of the tail (CUDA's layer-norm forward AD returns
    float32 tangents for bf16 inputs); it equals the float32 tail of the same (bf16-rounded) weights, fed the
    same recorded hidden state."""
    low = _learner("last2")
    low.module.to(torch.bfloat16)
    ref = _learner("last2")
    ref.module.load_state_dict({k: v.float() for k, v in low.module.state_dict().items()})
    ref.module.float()
    assert TailForward.attach(low) and TailForward.attach(ref)
    batch = _batch()
    outputs = low.forward(batch)
    ref.forward(batch)
    _, hidden, rest, kwargs = low.forward_fn.last
    assert hidden.dtype == torch.bfloat16
    ref.forward_fn.last = (outputs, hidden.float(), rest, kwargs)
    gen = torch.Generator().manual_seed(3)
    g_down = [torch.randn(p.shape, generator=gen) for p in ref.alignment_parameters()]
    cand = candidate_set(outputs[:, :-1].float(), batch.input_ids[:, 1:], K)
    fast = low.forward_fn.log_prob_jvp(outputs, cand, dict(zip(low.alignment_names, low.alignment_parameters())),
                                       g_down)
    expected = ref.forward_fn.log_prob_jvp(outputs, cand,
                                           dict(zip(ref.alignment_names, ref.alignment_parameters())), g_down)
    assert fast.dtype == torch.float32 and torch.isfinite(fast).all() and fast.abs().max() > 0
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    assert {p.dtype for p in low.module.parameters()} == {torch.bfloat16}  # the learner itself is untouched


def test_bf16_whole_model_jvp_runs_on_a_float32_copy() -> None:
    """The whole-model JVP (S not a tail, e.g. ``alignment="all"``) of a bf16 model equals the float32 JVP of
    the same bf16-rounded weights; the model stays bf16."""
    low = _learner("all")
    low.module.to(torch.bfloat16)
    ref = _learner("all")
    ref.module.load_state_dict({k: v.float() for k, v in low.module.state_dict().items()})
    ref.module.float()
    batch = _batch()
    outputs = ref.forward(batch)
    cand = candidate_set(outputs[:, :-1], batch.input_ids[:, 1:], K)
    gen = torch.Generator().manual_seed(4)
    g_down = [torch.randn(p.shape, generator=gen) for p in ref.alignment_parameters()]
    fast = log_prob_jvp(low.module, batch.input_ids, cand, dict(zip(low.alignment_names,
                                                                    low.alignment_parameters())), g_down)
    expected = log_prob_jvp(ref.module, batch.input_ids, cand, dict(zip(ref.alignment_names,
                                                                        ref.alignment_parameters())), g_down)
    assert fast.dtype == torch.float32 and fast.abs().max() > 0
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    assert {p.dtype for p in low.module.parameters()} == {torch.bfloat16}
