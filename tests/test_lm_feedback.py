"""Tests of vpt_gym.lm.feedback.GSM8KFeedback: L_down masking and cutting, sampling, Pass@1, evaluate."""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import transformers

from vpt_gym.core import FeedbackSet
from vpt_gym.lm.corpus import (
    MathProblem,
    build_tokenizer,
    format_completion,
    format_prompt,
    load_math_corpus,
    problem_texts,
)
from vpt_gym.lm.feedback import GSM8KFeedback, fit_to_context

DATA_DIR = Path(os.environ.get("VPT_GYM_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
VOCAB = 300


def _problem(i: int, answer: int | None = None) -> MathProblem:
    answer = 3 * i + 4 if answer is None else answer
    return MathProblem(
        question=f"Ann has {i} pens and gets {2 * i + 4} more. How many pens does she have?",
        solution=f"She has {i} + {2 * i + 4} = {answer} pens.\n#### {answer}",
        final_answer=str(answer),
    )


FEEDBACK = tuple(_problem(i) for i in range(12))
EVAL = tuple(_problem(i) for i in range(100, 106))


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    texts = problem_texts(FEEDBACK + EVAL) + ["The quick brown fox jumps over the lazy dog."]
    return build_tokenizer(texts, vocab_size=VOCAB, cache_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def learner() -> SimpleNamespace:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=128, n_embd=32, n_layer=2, n_head=2,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    return SimpleNamespace(module=transformers.GPT2LMHeadModel(config), device=torch.device("cpu"))


def _feedback(tokenizer: Any, **overrides: Any) -> GSM8KFeedback:
    kwargs: dict[str, Any] = dict(
        feedback=FEEDBACK, eval=EVAL, tokenizer=tokenizer, context_length=128, batch_size=4, probe_size=3,
        eval_items=4, max_new_tokens=16, generation_batch_size=3, source="test",
    )
    kwargs.update(overrides)
    return GSM8KFeedback(**kwargs)


def _hand_loss(module: torch.nn.Module, ids: list[int], num_prompt: int) -> float:
    """Mean -log p(ids[t] | ids[:t]) over t >= num_prompt, one example, position by position."""
    with torch.no_grad():
        logits = module(input_ids=torch.tensor([ids])).logits[0].double()
    terms = [-torch.log_softmax(logits[t - 1], dim=-1)[ids[t]].item() for t in range(num_prompt, len(ids))]
    return sum(terms) / len(terms)


def test_protocol_and_attributes(tokenizer: Any) -> None:
    feedback = _feedback(tokenizer)
    assert isinstance(feedback, FeedbackSet)
    assert feedback.metric_name == "pass@1" and feedback.source == "test"


def test_labels_mask_exactly_the_prompt_and_loss_matches_hand_computation(tokenizer: Any, learner: Any) -> None:
    feedback = _feedback(tokenizer, batch_size=1, probe_size=1)
    feedback.reset(torch.Generator().manual_seed(0))
    batch = feedback.probe_batch()
    index = int(batch.indices[0])
    prompt = tokenizer.encode(format_prompt(FEEDBACK[index].question)).ids
    completion = tokenizer.encode(format_completion(FEEDBACK[index].solution)).ids
    ids = prompt + completion + [0]
    assert batch.input_ids[0].tolist() == ids and batch.num_tokens == len(ids) and batch.num_examples == 1
    labels = batch.labels[0]
    assert (labels[: len(prompt)] == -100).all()
    assert labels[len(prompt):].tolist() == completion + [0]
    loss = feedback.loss(learner, batch)
    assert loss.dtype == torch.float32 and loss.dim() == 0 and loss.requires_grad
    assert loss.item() == pytest.approx(_hand_loss(learner.module, ids, len(prompt)), rel=1e-5)


def test_batch_loss_is_token_mean_over_answers(tokenizer: Any, learner: Any) -> None:
    feedback = _feedback(tokenizer)
    feedback.reset(torch.Generator().manual_seed(1))
    batch = feedback.sample_batch()
    assert batch.input_ids.shape == batch.labels.shape == batch.attention_mask.shape
    assert (batch.labels[batch.attention_mask == 0] == -100).all()
    total, count = 0.0, 0
    for row in range(batch.num_examples):
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row, :length].tolist()
        num_prompt = int((batch.labels[row, :length] == -100).sum())
        answer_tokens = length - num_prompt
        total += _hand_loss(learner.module, ids, num_prompt) * answer_tokens
        count += answer_tokens
    assert feedback.loss(learner, batch).item() == pytest.approx(total / count, rel=1e-5)
    assert batch.num_tokens == int(batch.attention_mask.sum())


def test_head_on_answer_rows_equals_full_logits_bitwise(tokenizer: Any, learner: Any) -> None:
    """The head runs on answer positions only; loss and gradients equal the full-logits computation bitwise."""
    import torch.nn.functional as F

    feedback = _feedback(tokenizer)
    feedback.reset(torch.Generator().manual_seed(3))
    batch = feedback.sample_batch()
    module = learner.module
    params = [p for p in module.parameters()]

    def full_logits_loss() -> torch.Tensor:  # the reference: logits at every position, then select
        logits = module(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        targets = batch.labels[:, 1:]
        mask = targets != -100
        return F.cross_entropy(logits[:, :-1][mask].float(), targets[mask], reduction="sum") / mask.sum()

    reference = full_logits_loss()
    reference_grads = torch.autograd.grad(reference, params)
    loss = feedback.loss(learner, batch)
    grads = torch.autograd.grad(loss, params)
    assert torch.equal(loss, reference)
    # Every gradient is bitwise equal but the output head's weight (tied to the token embedding here): its
    # weight-gradient GEMM sums over fewer rows, so float32 rounding may differ (measured: 1.7e-7 relative
    # with torch 2.14 / MKL on AVX2). The alignment subset S (transformer blocks) never holds it.
    head_weight = module.get_output_embeddings().weight
    for p, g, r in zip(params, grads, reference_grads):
        if p is head_weight:
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6 * float(r.abs().max()))
        else:
            assert torch.equal(g, r)
    head = module.get_output_embeddings()
    assert not head._forward_pre_hooks  # the hook is gone after the call
    assert module(input_ids=batch.input_ids).logits.shape == (*batch.input_ids.shape, VOCAB)
    # a model whose output head is not an nn.Linear keeps the full logits; same loss
    no_linear_head = SimpleNamespace(module=module, device=learner.device)
    module.get_output_embeddings = lambda: None  # instance attribute shadowing the method
    try:
        assert torch.equal(feedback.loss(no_linear_head, batch), reference)
    finally:
        del module.get_output_embeddings


def test_loss_backward_and_bf16_logits(tokenizer: Any, learner: Any) -> None:
    feedback = _feedback(tokenizer)
    feedback.reset(torch.Generator().manual_seed(2))
    module = learner.module
    module.zero_grad()
    feedback.loss(learner, feedback.sample_batch()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in module.parameters())
    module.zero_grad()
    half = SimpleNamespace(module=transformers.GPT2LMHeadModel(module.config).to(torch.bfloat16), device=learner.device)
    loss = feedback.loss(half, feedback.probe_batch())
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())


def test_fit_to_context_cuts_prompt_from_left() -> None:
    assert fit_to_context([1, 2, 3], [4, 5, 0], 10) == ([1, 2, 3, 4, 5, 0], 3)
    assert fit_to_context([1, 2, 3, 4, 5], [6, 7, 0], 5) == ([4, 5, 6, 7, 0], 2)
    assert fit_to_context([1, 2, 3], [4, 5, 6, 7, 8, 0], 4) == ([3, 4, 5, 6], 1)
    assert fit_to_context([1, 2, 3], [4, 5, 6, 0], 4) == ([3, 4, 5, 6], 1)
    assert fit_to_context([1, 2, 3], [4, 5, 0], 4) == ([3, 4, 5, 0], 1)


def test_left_cut_keeps_the_solution(tokenizer: Any, learner: Any) -> None:
    feedback = _feedback(tokenizer, context_length=40, max_new_tokens=8, batch_size=12)
    feedback.reset(torch.Generator().manual_seed(0))
    batch = feedback.sample_batch()
    assert batch.input_ids.shape[1] <= 40
    for row, index in enumerate(batch.indices.tolist()):
        prompt = tokenizer.encode(format_prompt(FEEDBACK[index].question)).ids
        answer = tokenizer.encode(format_completion(FEEDBACK[index].solution)).ids + [0]
        assert len(prompt) + len(answer) > 40  # the cut is exercised
        length = int(batch.attention_mask[row].sum())
        ids = batch.input_ids[row, :length].tolist()
        assert length == 40 and ids[-len(answer):] == answer and ids[: 40 - len(answer)] == prompt[len(answer) - 40:]
        assert batch.labels[row, 40 - len(answer):].tolist() == answer
    assert math.isfinite(feedback.loss(learner, batch).item())


def test_solution_longer_than_context_keeps_an_answer_token(tokenizer: Any, learner: Any) -> None:
    long_problem = MathProblem(question="How many?", solution="one two three " * 30 + "\n#### 5", final_answer="5")
    feedback = _feedback(tokenizer, feedback=(long_problem,), batch_size=1, probe_size=1, context_length=8,
                         max_new_tokens=4)
    feedback.reset(torch.Generator().manual_seed(0))
    batch = feedback.sample_batch()
    prompt = tokenizer.encode(format_prompt(long_problem.question)).ids
    completion = tokenizer.encode(format_completion(long_problem.solution)).ids
    assert batch.input_ids[0].tolist() == [prompt[-1], *completion[:7]]
    assert batch.labels[0, 0].item() == -100 and (batch.labels[0, 1:] != -100).sum().item() == 7
    loss = feedback.loss(learner, batch)
    assert math.isfinite(loss.item()) and loss.item() > 0


def test_sampling_is_seeded(tokenizer: Any) -> None:
    first, second = _feedback(tokenizer), _feedback(tokenizer)
    first.reset(torch.Generator().manual_seed(7))
    second.reset(torch.Generator().manual_seed(7))
    assert first.probe_batch().indices.tolist() == second.probe_batch().indices.tolist()
    a, b = first.sample_batch(), second.sample_batch()
    assert a.indices.tolist() == b.indices.tolist() and torch.equal(a.input_ids, b.input_ids)
    assert len(set(a.indices.tolist())) == 4
    assert first.probe_batch() is first.probe_batch()


def test_sample_before_reset_raises(tokenizer: Any) -> None:
    feedback = _feedback(tokenizer)
    with pytest.raises(RuntimeError, match="reset"):
        feedback.sample_batch()


def test_overlapping_splits_raise(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="disjoint"):
        _feedback(tokenizer, eval=EVAL + (FEEDBACK[3],))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("batch_size", 0), ("batch_size", 13), ("probe_size", 0), ("probe_size", 13), ("eval_items", 0),
        ("eval_items", 7), ("context_length", 7), ("max_new_tokens", 0), ("max_new_tokens", 128),
        ("generation_batch_size", 0), ("batch_size", 2.0), ("source", ""), ("feedback", ()), ("eval", ()),
    ],
)
def test_bad_arguments_raise(tokenizer: Any, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=name):
        _feedback(tokenizer, **{name: value})


def test_tokenizer_without_eos_at_zero_raises(tokenizer: Any) -> None:
    class Wrong:
        def encode_batch(self, texts: list[str]) -> list[Any]:
            return []

        def token_to_id(self, token: str) -> int:
            return 5

    with pytest.raises(ValueError, match="id 0"):
        _feedback(Wrong())


def test_evaluate_is_deterministic_and_leaves_module_unchanged(tokenizer: Any, learner: Any) -> None:
    feedback = _feedback(tokenizer)
    module = learner.module
    module.train()
    module.transformer.h[0].eval()  # a mixed mode must be restored exactly
    modes = [m.training for m in module.modules()]
    params = [p.detach().clone() for p in module.parameters()]
    first = feedback.evaluate(learner)
    assert set(first) == {"eval_nll", "eval_pass@1", "eval_items"}
    assert first["eval_items"] == 4.0 and 0.0 <= first["eval_pass@1"] <= 1.0 and math.isfinite(first["eval_nll"])
    assert feedback.evaluate(learner) == first
    assert [m.training for m in module.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(params, module.parameters()))
    unbatched = _feedback(tokenizer, generation_batch_size=1).evaluate(learner)
    assert unbatched["eval_pass@1"] == first["eval_pass@1"]
    assert unbatched["eval_nll"] == pytest.approx(first["eval_nll"], rel=1e-5)
    module.train()


class _Oracle(torch.nn.Module):
    """Generates ``" #### 31<eos>"`` after any prompt; checks the left padding it receives."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.reply = tokenizer.encode(" 4 + 27 = 31\n#### 31").ids + [0]

    def generate(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                 **kwargs: Any) -> torch.Tensor:
        assert not torch.is_grad_enabled() and not self.training
        assert kwargs["do_sample"] is False and kwargs["pad_token_id"] == 0
        assert (attention_mask[:, -1] == 1).all()  # left padded
        reply = torch.tensor(self.reply[:max_new_tokens]).expand(input_ids.shape[0], -1)
        return torch.cat([input_ids, reply], dim=1)


def test_metric_exact_match_with_an_oracle(tokenizer: Any) -> None:
    problems = tuple(_problem(i, answer=31 if i % 3 else 32) for i in range(9))
    feedback = _feedback(tokenizer, feedback=problems, batch_size=9, probe_size=9, max_new_tokens=30)
    feedback.reset(torch.Generator().manual_seed(0))
    oracle = SimpleNamespace(module=_Oracle(tokenizer), device=torch.device("cpu"))
    oracle.module.train()
    assert feedback.metric(oracle, feedback.sample_batch()) == pytest.approx(6 / 9)
    assert oracle.module.training


@pytest.mark.skipif(not (DATA_DIR / "gsm8k").is_dir(), reason=f"no GSM8K data at {DATA_DIR}")
def test_real_gsm8k_feedback(tmp_path: Path, learner: Any) -> None:
    corpus = load_math_corpus(DATA_DIR, feedback_size=64)
    tokenizer = build_tokenizer(problem_texts(corpus.feedback), vocab_size=VOCAB, cache_dir=tmp_path)
    feedback = GSM8KFeedback(feedback=corpus.feedback, eval=corpus.eval, tokenizer=tokenizer, context_length=128,
                             eval_items=4, max_new_tokens=8, source=corpus.source)
    feedback.reset(torch.Generator().manual_seed(0))
    assert math.isfinite(feedback.loss(learner, feedback.sample_batch()).item())
    assert 0.0 <= feedback.metric(learner, feedback.probe_batch()) <= 1.0


def test_varying_length_attention_changes_nothing_on_the_cpu() -> None:
    import contextlib

    from vpt_gym.lm.feedback import varying_length_attention

    assert isinstance(varying_length_attention(torch.device("cpu")), contextlib.nullcontext)
