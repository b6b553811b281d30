"""The GSM8K feedback set of the LM environments: solution NLL (L_down) and exact-match Pass@1.

Implements the :class:`vpt_gym.core.FeedbackSet` protocol for a causal LM called as
``learner.module(input_ids=..., attention_mask=...)`` returning ``.logits`` of shape [B, T, V] (a
``transformers`` causal LM; generation uses its ``.generate``). Everything is tokenized once at
construction; batches are slices of precomputed CPU tensors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers
import torch
import torch.nn.functional as F

from vpt_gym.core import Learner
from vpt_gym.lm.corpus import EOS_TOKEN, MathProblem, extract_final_answer, format_completion, format_prompt
from vpt_gym.utils import check_int, inference_mode

IGNORE_INDEX = -100
"""Label of positions that carry no loss (prompt tokens and padding)."""

EOS_ID = 0
"""Id of ``EOS_TOKEN``; also the padding id (padding is always masked)."""

_STOP_TEXT = "Question:"
_MAX_GENERATION_BATCH_SIZE = 65_536
_MAX_CONTEXT_LENGTH = 1_048_576


@dataclass(frozen=True, kw_only=True, eq=False)
class FeedbackBatch:
    """A batch of feedback examples, right-padded, on the CPU.

    Attributes:
        input_ids: shape [B, L], int64, CPU; prompt + solution + eos, padded on the right with id 0.
        attention_mask: shape [B, L], int64, CPU; 1 on tokens, 0 on padding.
        labels: shape [B, L], int64, CPU; the token id on answer positions (solution tokens and the final
            eos), -100 on prompt tokens and padding. Position t's label is predicted from positions < t.
        indices: shape [B], int64, CPU; the examples' indices in the feedback split.
        num_examples: B.
        num_tokens: number of non-padding tokens in the batch (sum of ``attention_mask``).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    num_examples: int
    num_tokens: int


def fit_to_context(prompt_ids: Sequence[int], answer_ids: Sequence[int], context_length: int) -> tuple[list[int], int]:
    """Concatenate prompt and answer tokens into at most ``context_length`` tokens, keeping the answer.

    When too long, the prompt is cut from the left so the answer is kept whole; if the answer alone needs
    more than ``context_length - 1`` positions, the last prompt token and the first ``context_length - 1``
    answer tokens are kept. So every sequence has >= 1 prompt token and >= 1 answer token.

    Args:
        prompt_ids: prompt token ids (>= 1 token).
        answer_ids: answer token ids (solution + eos, >= 1 token).
        context_length: maximum sequence length T (>= 2).

    Returns:
        ``(ids, num_prompt_tokens)``: the kept sequence (length <= T) and how many of its leading tokens are
        prompt tokens.

    Raises:
        ValueError: an empty prompt or answer, or ``context_length < 2``.
    """
    if not prompt_ids or not answer_ids:
        raise ValueError(f"prompt and answer need >= 1 token each, got {len(prompt_ids)} and {len(answer_ids)}")
    if context_length < 2:
        raise ValueError(f"context_length={context_length} outside the accepted range [2, inf)")
    prompt, answer = list(prompt_ids), list(answer_ids)
    if len(answer) > context_length - 1:
        return [prompt[-1], *answer[: context_length - 1]], 1
    prompt = prompt[-(context_length - len(answer)) :]
    return prompt + answer, len(prompt)


def _pack(sequences: Sequence[tuple[list[int], int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad ``(ids, num_prompt_tokens)`` pairs into ``input_ids``, ``attention_mask``, ``labels`` [N, L]."""
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), EOS_ID, dtype=torch.int64)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.int64)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.int64)
    for row, (ids, num_prompt) in enumerate(sequences):
        tokens = torch.tensor(ids, dtype=torch.int64)
        input_ids[row, : len(ids)] = tokens
        attention_mask[row, : len(ids)] = 1
        labels[row, num_prompt : len(ids)] = tokens[num_prompt:]
    return input_ids, attention_mask, labels


def answer_nll(
    module: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed teacher-forced NLL of the answer tokens and their count.

    ``logits[:, :-1]`` predict ``labels[:, 1:]``; positions labelled -100 are skipped. The output head runs
    on the answer positions' hidden states only (:func:`head_on_rows`), not on prompt and padding positions:
    the same logits for the positions that carry loss (bitwise on CPU, tested), at a fraction of the head's
    cost, with memory scaling with the number of answer tokens, not B * L * V.

    Args:
        module: causal LM; ``module(input_ids=, attention_mask=).logits`` has shape [B, L, V], any float dtype.
        input_ids / attention_mask / labels: shape [B, L], int64, on the module's device.

    Returns:
        ``(nll_sum, count)``: float32 scalar (differentiable, nats) and int64 scalar (answer tokens).
    """
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    rows = F.pad(mask, (0, 1))  # hidden state at t predicts token t + 1: rows [B, L], last position unused
    with head_on_rows(module, rows), varying_length_attention(input_ids.device):
        logits = module(input_ids=input_ids, attention_mask=attention_mask).logits
    # [N, V] when the hook ran; [B, L, V] for a model without a linear head (or one that bypasses it)
    selected = logits if logits.dim() == 2 else logits[:, :-1][mask]
    nll_sum = F.cross_entropy(selected.float(), targets[mask], reduction="sum")
    return nll_sum, mask.sum()


def varying_length_attention(device: torch.device) -> contextlib.AbstractContextManager:
    """Attention backends for forwards whose sequence length changes from call to call (feedback batches,
    padded to their longest example; generation).

    On CUDA: every ``scaled_dot_product_attention`` backend except cuDNN's, which builds an execution plan for
    each new shape. Measured on an H200 (small LM preset, bf16, ``feedback_period=1``): a g_down refresh cost
    84 ms per step while its shapes were new with cuDNN attention and 13 ms without it, against a 13 ms plain
    step. Elsewhere (CPU): no change, so CPU results stay bitwise the same.

    Args:
        device: where the forward runs.

    Returns:
        A context manager (``torch.nn.attention.sdpa_kernel`` on CUDA, else a no-op).
    """
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


@contextlib.contextmanager
def head_on_rows(module: torch.nn.Module, rows: torch.Tensor) -> Iterator[bool]:
    """Within the block, the module's output head sees only the hidden states at ``rows``.

    A forward pre-hook on ``module.get_output_embeddings()`` replaces the head's input [B, L, d_model] by
    ``hidden[rows]`` [N, d_model] (N = ``rows.sum()``, row-major order), so the forward returns ``.logits``
    of shape [N, V] instead of [B, L, V]; anything the model applies after the head (e.g. logit
    soft-capping) is elementwise and sees the same rows. Models without an ``nn.Linear`` output head keep
    the full logits.

    Args:
        module: causal LM.
        rows: bool [B, L] on the module's device, the positions whose logits are needed.

    Yields:
        True when the hook is installed (logits come back as [N, V]), False when the full [B, L, V] logits
        come back and the caller must select the rows itself.
    """
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None  # type: ignore[operator]  # HF method
    if not isinstance(head, torch.nn.Linear):
        yield False
        return

    def select(_: torch.nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        if hidden.shape[:2] != rows.shape:
            raise RuntimeError(f"output head input of shape {tuple(hidden.shape)} does not match rows "
                               f"{tuple(rows.shape)}")
        return (hidden[rows], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield True
    finally:
        handle.remove()


def _check_problems(name: str, problems: Any) -> tuple[MathProblem, ...]:
    if isinstance(problems, (str, bytes)) or not isinstance(problems, Sequence):
        raise ValueError(f"{name} must be a sequence of MathProblem, got {type(problems).__name__}")
    problems = tuple(problems)
    if not problems:
        raise ValueError(f"{name} must hold >= 1 problem, got 0")
    for index, problem in enumerate(problems):
        if not isinstance(problem, MathProblem):
            raise ValueError(f"{name}[{index}] must be a MathProblem, got {type(problem).__name__}")
    return problems


class GSM8KFeedback:
    """Feedback set of math word problems: solution NLL as L_down, exact-match Pass@1 as the metric.

    The feedback split gives rewards (``sample_batch``, ``probe_batch``, ``loss``, ``metric``); the disjoint
    eval split gives the held-out leaderboard metrics (``evaluate``). A problem's sequence is
    ``format_prompt(question)`` + ``format_completion(solution)`` tokens + eos, cut to ``context_length``
    by :func:`fit_to_context`.

    Source: V-Pretraining (arXiv 2601.22108) v2 Eq. 38, L_down = teacher-forced NLL of the reference
    solution given the question, question tokens masked; feedback = GSM8K train subset, eval = GSM8K test.

    Attributes:
        source: where the problems came from (e.g. ``"gsm8k:/data/gsm8k"``).
        metric_name: ``"pass@1"``.
        context_length: maximum sequence length T, tokens.
        num_feedback: problems in the feedback split.
    """

    metric_name = "pass@1"

    def __init__(
        self,
        *,
        feedback: Sequence[MathProblem],
        eval: Sequence[MathProblem],  # noqa: A002 - the split's name
        tokenizer: tokenizers.Tokenizer,
        context_length: int,
        batch_size: int = 8,
        probe_size: int = 8,
        eval_items: int = 64,
        max_new_tokens: int = 256,
        generation_batch_size: int = 16,
        source: str,
        eos_token_id: int | None = None,
    ) -> None:
        """Validate, tokenize both splits once and precompute the padded feedback tensors.

        Args:
            feedback: the feedback split (>= 1 problem).
            eval: the eval split (>= 1 problem), disjoint from ``feedback`` by question text.
            tokenizer: a tokenizer whose ``"<|endoftext|>"`` has id 0 (see ``corpus.build_tokenizer``).
            context_length: maximum sequence length T in tokens (the model's ``n_positions``), in
                [8, 1048576].
            batch_size: examples per ``sample_batch``, in [1, len(feedback)].
            probe_size: examples in the episode's probe batch, in [1, len(feedback)].
            eval_items: how many leading eval problems ``evaluate`` uses, in [1, len(eval)].
            max_new_tokens: greedy generation length, in [1, context_length - 1]; prompts are left-cut to
                ``context_length - max_new_tokens`` tokens so prompt + generation fit in T.
            generation_batch_size: prompts per ``generate`` call (and examples per eval NLL forward), in
                [1, 65536].
            source: non-empty description of the problems' origin.
            eos_token_id: the end-of-text id appended to solutions and ending generation (None: the id of
                ``"<|endoftext|>"``, which must be 0, as in tokenizers from ``corpus.build_tokenizer``; a
                pretrained checkpoint passes its own, e.g. Qwen's).

        Raises:
            ValueError: any argument outside its range, a tokenizer without ``"<|endoftext|>"`` at id 0 when
                ``eos_token_id`` is None, or a question present in both splits.
        """
        self._feedback = _check_problems("feedback", feedback)
        self._eval = _check_problems("eval", eval)
        if not hasattr(tokenizer, "encode_batch") or not hasattr(tokenizer, "token_to_id"):
            raise ValueError(f"tokenizer must be a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        if eos_token_id is None:
            eos_id = tokenizer.token_to_id(EOS_TOKEN)
            if eos_id != EOS_ID:
                raise ValueError(f"tokenizer must map {EOS_TOKEN!r} to id {EOS_ID}, got {eos_id}")
        elif isinstance(eos_token_id, bool) or not isinstance(eos_token_id, int) or eos_token_id < 0:
            raise ValueError(f"eos_token_id must be an int >= 0 or None, got {eos_token_id!r}")
        self.eos_id = EOS_ID if eos_token_id is None else eos_token_id
        num_feedback = len(self._feedback)
        self.context_length = check_int("context_length", context_length, 8, _MAX_CONTEXT_LENGTH)
        self.batch_size = check_int("batch_size", batch_size, 1, num_feedback)
        self.probe_size = check_int("probe_size", probe_size, 1, num_feedback)
        self.eval_items = check_int("eval_items", eval_items, 1, len(self._eval))
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1, context_length - 1)
        self.generation_batch_size = check_int(
            "generation_batch_size", generation_batch_size, 1, _MAX_GENERATION_BATCH_SIZE
        )
        if not isinstance(source, str) or not source:
            raise ValueError(f"source must be a non-empty string, got {source!r}")
        self.source = source
        shared = {problem.question for problem in self._feedback} & {problem.question for problem in self._eval}
        if shared:
            example = next(iter(sorted(shared)))
            raise ValueError(
                f"feedback and eval splits must be disjoint, but {len(shared)} question(s) appear in both, "
                f"e.g. {example[:80]!r}"
            )
        self._tokenizer = tokenizer
        self.num_feedback = num_feedback

        eval_problems = self._eval[: self.eval_items]
        feedback_seqs, self._feedback_prompts = self._tokenize(self._feedback)
        eval_seqs, self._eval_prompts = self._tokenize(eval_problems)
        self._input_ids, self._attention_mask, self._labels = _pack(feedback_seqs)
        self._eval_input_ids, self._eval_attention_mask, self._eval_labels = _pack(eval_seqs)
        self._feedback_answers = [problem.final_answer for problem in self._feedback]
        self._eval_answers = [problem.final_answer for problem in eval_problems]
        self._generator: torch.Generator | None = None
        self._probe: FeedbackBatch | None = None

    @property
    def tokenizer(self) -> tokenizers.Tokenizer:
        """The tokenizer of the feedback and eval problems (the learner's own)."""
        return self._tokenizer

    def _tokenize(self, problems: Sequence[MathProblem]) -> tuple[list[tuple[list[int], int]], list[list[int]]]:
        """Teacher-forcing sequences (``fit_to_context``) and left-cut generation prompts of ``problems``."""
        encode = self._tokenizer.encode_batch
        prompts = [encoding.ids for encoding in encode([format_prompt(problem.question) for problem in problems])]
        completions = [
            encoding.ids for encoding in encode([format_completion(problem.solution) for problem in problems])
        ]
        sequences = [
            fit_to_context(prompt, [*completion, self.eos_id], self.context_length)
            for prompt, completion in zip(prompts, completions, strict=True)
        ]
        prompt_budget = self.context_length - self.max_new_tokens
        generation_prompts = [prompt[-prompt_budget:] for prompt in prompts]
        return sequences, generation_prompts

    def _batch(self, indices: torch.Tensor) -> FeedbackBatch:
        """The batch of feedback examples ``indices`` (shape [B], int64), trimmed to its longest sequence."""
        attention_mask = self._attention_mask[indices]
        lengths = attention_mask.sum(dim=1)
        width = int(lengths.max())
        return FeedbackBatch(
            input_ids=self._input_ids[indices, :width],
            attention_mask=attention_mask[:, :width],
            labels=self._labels[indices, :width],
            indices=indices.clone(),
            num_examples=int(indices.numel()),
            num_tokens=int(lengths.sum()),
        )

    def _require_reset(self) -> torch.Generator:
        if self._generator is None:
            raise RuntimeError("GSM8KFeedback.reset(generator) must be called before sampling")
        return self._generator

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: keep ``generator`` for sampling and draw the probe batch from it.

        Args:
            generator: a CPU ``torch.Generator``; the probe is the first ``probe_size`` entries of
                ``torch.randperm(num_feedback, generator=generator)``.

        Raises:
            ValueError: ``generator`` is not a ``torch.Generator``.
        """
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self._generator = generator
        self._probe = self._batch(torch.randperm(self.num_feedback, generator=generator)[: self.probe_size])

    def sample_batch(self) -> FeedbackBatch:
        """``batch_size`` distinct random feedback examples drawn with the episode's generator.

        Raises:
            RuntimeError: called before :meth:`reset`.
        """
        generator = self._require_reset()
        return self._batch(torch.randperm(self.num_feedback, generator=generator)[: self.batch_size])

    def probe_batch(self) -> FeedbackBatch:
        """The episode's fixed probe batch (``probe_size`` examples drawn at :meth:`reset`).

        Raises:
            RuntimeError: called before :meth:`reset`.
        """
        self._require_reset()
        assert self._probe is not None
        return self._probe

    def loss(self, learner: Learner, batch: FeedbackBatch) -> torch.Tensor:
        """L_down: token-mean NLL of the answer tokens (solution + eos) of the whole batch, question masked.

        Runs in the module's current train/eval mode, with autograd (differentiable).

        Source: V-Pretraining (arXiv 2601.22108) v2 Eq. 38.

        Args:
            learner: provides ``module`` and ``device``.
            batch: a :class:`FeedbackBatch` from this feedback set.

        Returns:
            Scalar, float32, ``learner.device``; nats per answer token, >= 0.
        """
        device = learner.device
        nll_sum, count = answer_nll(
            learner.module,
            batch.input_ids.to(device),
            batch.attention_mask.to(device),
            batch.labels.to(device),
        )
        return nll_sum / count

    def _pass_rate(self, learner: Learner, prompts: Sequence[list[int]], answers: Sequence[str]) -> float:
        """Fraction of ``prompts`` whose greedy continuation's final answer equals ``answers`` (in [0, 1])."""
        module, device = learner.module, learner.device
        correct = 0
        with inference_mode(module):
            for start in range(0, len(prompts), self.generation_batch_size):
                chunk = prompts[start : start + self.generation_batch_size]
                width = max(len(prompt) for prompt in chunk)
                input_ids = torch.full((len(chunk), width), self.eos_id, dtype=torch.int64)
                attention_mask = torch.zeros((len(chunk), width), dtype=torch.int64)
                for row, prompt in enumerate(chunk):
                    input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.int64)
                    attention_mask[row, width - len(prompt) :] = 1
                with varying_length_attention(device):
                    output = module.generate(  # type: ignore[operator]  # a transformers causal LM
                        input_ids=input_ids.to(device),
                        attention_mask=attention_mask.to(device),
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=self.eos_id,
                        eos_token_id=self.eos_id,
                    )
                for row, new_ids in enumerate(output[:, width:].cpu().tolist()):
                    if self.eos_id in new_ids:
                        new_ids = new_ids[: new_ids.index(self.eos_id)]
                    text = self._tokenizer.decode(new_ids).split(_STOP_TEXT, 1)[0]
                    predicted = extract_final_answer(text)
                    correct += int(predicted is not None and predicted == answers[start + row])
        return correct / len(prompts)

    def metric(self, learner: Learner, batch: FeedbackBatch) -> float:
        """Exact-match Pass@1 of greedy decoding on the batch's examples.

        Generation: the left-cut prompt, left-padded, ``module.generate`` greedy for up to
        ``max_new_tokens`` tokens, cut at the first eos and at ``"Question:"``; the answer after the last
        ``####`` (``extract_final_answer``) must equal the problem's ``final_answer``. Runs under
        ``torch.no_grad`` in eval mode; the module's parameters and train/eval flags are left unchanged.

        Args:
            learner: provides ``module`` (with ``.generate``) and ``device``.
            batch: a :class:`FeedbackBatch` from this feedback set.

        Returns:
            Fraction of correct examples, in [0, 1].
        """
        indices = batch.indices.tolist()
        return self._pass_rate(
            learner,
            [self._feedback_prompts[index] for index in indices],
            [self._feedback_answers[index] for index in indices],
        )

    def _split_nll(self, learner: Learner, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   labels: torch.Tensor) -> float:
        """Solution NLL (nats per answer token) over the packed rows, ``generation_batch_size`` at a time."""
        module, device = learner.module, learner.device
        nll_total = 0.0
        count_total = 0
        with inference_mode(module):
            for start in range(0, int(input_ids.shape[0]), self.generation_batch_size):
                rows = slice(start, start + self.generation_batch_size)
                mask = attention_mask[rows]
                width = int(mask.sum(dim=1).max())
                nll_sum, count = answer_nll(
                    module,
                    input_ids[rows, :width].to(device),
                    mask[:, :width].to(device),
                    labels[rows, :width].to(device),
                )
                nll_total += float(nll_sum)
                count_total += int(count)
        return nll_total / count_total

    def eval_loss(self, learner: Learner) -> float:
        """Solution NLL on the first ``eval_items`` eval problems (nats per answer token, >= 0): the
        ``eval_nll`` of :meth:`evaluate` without the decoding. Under ``torch.no_grad`` in eval mode."""
        return self._split_nll(learner, self._eval_input_ids, self._eval_attention_mask, self._eval_labels)

    def validation_score(self, learner: Learner) -> float:
        """Minus the solution NLL over the whole feedback split (nats per answer token, <= 0; higher is
        better): :meth:`eval_loss`'s measure on the designer's own labelled problems, the eval split unread.
        Implements :class:`~vpt_gym.core.FeedbackValidation`. Under ``torch.no_grad`` in eval mode; cost one
        forward of the feedback split."""
        return -self._split_nll(learner, self._input_ids, self._attention_mask, self._labels)

    def evaluate(self, learner: Learner) -> dict[str, float]:
        """Held-out metrics on the first ``eval_items`` problems of the eval split (fixed, deterministic).

        Runs under ``torch.no_grad`` in eval mode; the module's parameters and train/eval flags are left
        unchanged.

        Args:
            learner: provides ``module`` (with ``.generate``) and ``device``.

        Returns:
            ``{"eval_nll": nats per answer token (>= 0, same masking and cutting as :meth:`loss`),
            "eval_pass@1": exact-match Pass@1 in [0, 1] (as :meth:`metric`), "eval_items": problems used}``.
        """
        nll = self.eval_loss(learner)
        pass_rate = self._pass_rate(learner, self._eval_prompts, self._eval_answers)
        return {
            "eval_nll": nll,
            "eval_pass@1": pass_rate,
            "eval_items": float(self.eval_items),
        }
