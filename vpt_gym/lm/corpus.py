"""Data sources and the tokenizer of the LM environments.

Math word problems (unlabeled pretraining text, the feedback split and the eval split), general prose, the
prompt format shared by pretraining and generation, GSM8K answer extraction, and a cached byte-level BPE
tokenizer. Nothing here touches the network unless a hub load is explicitly allowed (see
:func:`load_math_corpus`), and nothing is copied into the repository: data is read from a path.

Source of the protocol: V-Pretraining (arXiv 2601.22108), the feedback set is a subset of GSM8K *train*
(1,024 examples), the held-out evaluation is GSM8K *test*; the learner never trains on feedback examples.
"""

from __future__ import annotations

import decimal
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

EOS_TOKEN = "<|endoftext|>"
"""The end-of-text special token; always id 0 in tokenizers built by :func:`build_tokenizer`."""

DATA_ENV_VAR = "VPT_GYM_DATA"
"""Environment variable naming the data folder (holding ``gsm8k/`` and ``tinyshakespeare/``)."""

_CALCULATOR_ANNOTATION = re.compile(r"<<[^>]*>>")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_MIN_VOCAB_SIZE = 260
_MAX_VOCAB_SIZE = 1_000_000
_MAX_EMBEDDED_SIZE = 1_000_000
_TOKENIZER_FORMAT = "vpt_gym-bytelevel-bpe-v1"


@dataclass(frozen=True, kw_only=True)
class MathProblem:
    """One math word problem with a worked solution.

    Attributes:
        question: the problem statement, as in the source.
        solution: the worked solution *including* its final ``#### N`` line; GSM8K calculator annotations
            (``<<48/2=24>>``) removed.
        final_answer: the normalized final answer (see :func:`extract_final_answer`), e.g. ``"1234"``.
    """

    question: str
    solution: str
    final_answer: str


@dataclass(frozen=True, kw_only=True)
class MathCorpus:
    """The three disjoint splits of a math corpus.

    Attributes:
        unlabeled: pretraining problems (never in ``feedback`` or ``eval``).
        feedback: the labeled feedback split (rewards and designers only; never trained on).
        eval: the held-out eval split (leaderboard only).
        source: where the problems came from: ``"gsm8k:<dir>"``, ``"hub:openai/gsm8k"`` or
            ``"embedded:reasoning_gym.gsm_symbolic"``.
    """

    unlabeled: tuple[MathProblem, ...]
    feedback: tuple[MathProblem, ...]
    eval: tuple[MathProblem, ...]
    source: str


def resolve_data_dir(data: str | os.PathLike[str] | None) -> Path | None:
    """The data folder: the argument, else the ``VPT_GYM_DATA`` environment variable, else ``None``.

    Args:
        data: a folder path, or ``None`` to consult ``VPT_GYM_DATA``.

    Returns:
        The folder as an absolute ``Path``, or ``None`` when neither the argument nor the variable is set
        (an empty variable counts as unset).

    Raises:
        FileNotFoundError: the given (or variable-named) path does not exist.
    """
    origin = "data="
    if data is None:
        env_value = os.environ.get(DATA_ENV_VAR, "")
        if not env_value:
            return None
        data, origin = env_value, f"${DATA_ENV_VAR}="
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data directory {str(path)!r} does not exist ({origin}{str(data)!r}, resolved from {os.getcwd()}); "
            f"point --data or {DATA_ENV_VAR} at a folder holding gsm8k/train.jsonl and gsm8k/test.jsonl, or unset "
            f"{DATA_ENV_VAR} to use the hub (online) or the embedded default")
    return path.resolve()


def format_prompt(question: str) -> str:
    """The prompt of a problem: ``"Question: {question}\\nAnswer:"``."""
    return f"Question: {question}\nAnswer:"


def format_completion(solution: str) -> str:
    """The completion of a problem: ``" " + solution``; prompt + completion is its pretraining text."""
    return " " + solution


def strip_calculator_annotations(solution: str) -> str:
    """Remove GSM8K calculator annotations ``<<a*b=c>>`` from a solution (standard preprocessing)."""
    return _CALCULATOR_ANNOTATION.sub("", solution)


def _canonical_number(text: str) -> str | None:
    """``text`` as a canonical decimal string ("18.00" -> "18", "1e3" -> "1000"), or None if not a number."""
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def extract_final_answer(text: str) -> str | None:
    """The final answer after the last ``####`` (GSM8K convention), normalized.

    Takes the first line after the last ``####``, strips whitespace, ``$``, ``,`` and a trailing ``.``;
    if the rest parses as a number it is canonicalized (``"18.00"`` -> ``"18"``, ``"+3"`` -> ``"3"``);
    otherwise, if it starts with a number, that number is kept (``"72 clips"`` -> ``"72"``); otherwise the
    cleaned text is returned as is.

    Args:
        text: a worked solution or a model's generated continuation.

    Returns:
        The normalized answer, or ``None`` if there is no ``####`` or nothing follows it.
    """
    marker = text.rfind("####")
    if marker < 0:
        return None
    rest = text[marker + 4 :].strip()
    rest = rest.split("\n", 1)[0]
    cleaned = rest.replace("$", "").replace(",", "").strip().rstrip(".").strip()
    if not cleaned:
        return None
    number = _canonical_number(cleaned)
    if number is not None:
        return number
    match = _NUMBER.match(cleaned)
    if match is not None:
        number = _canonical_number(match.group(0).rstrip("."))
        if number is not None:
            return number
    return cleaned


def _problem_from_record(question: Any, answer: Any, where: str) -> MathProblem:
    """A :class:`MathProblem` from a GSM8K-style record; ``where`` names the record in errors."""
    if not isinstance(question, str) or not isinstance(answer, str):
        raise ValueError(f"{where}: 'question' and 'answer' must be strings")
    solution = strip_calculator_annotations(answer)
    final_answer = extract_final_answer(solution)
    if final_answer is None:
        raise ValueError(f"{where}: answer has no final '#### N' line")
    return MathProblem(question=question, solution=solution, final_answer=final_answer)


def _read_gsm8k_jsonl(path: Path) -> list[MathProblem]:
    """Parse a GSM8K jsonl file (blank lines skipped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not JSON, lacks ``question``/``answer``, or its answer has no ``####``
            (the message names the file and the 1-based line number).
    """
    if not path.is_file():
        raise FileNotFoundError(f"GSM8K file {str(path)!r} not found; the data folder needs gsm8k/train.jsonl and "
                                "gsm8k/test.jsonl (JSON lines with 'question' and 'answer', as in "
                                "openai/grade-school-math)")
    problems = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from error
            if not isinstance(record, dict) or "question" not in record or "answer" not in record:
                raise ValueError(f"{where}: expected an object with keys 'question' and 'answer'")
            problems.append(_problem_from_record(record["question"], record["answer"], where))
    if not problems:
        raise ValueError(f"{path}: no examples")
    return problems


def _check_feedback_size(feedback_size: int, available: int) -> None:
    if isinstance(feedback_size, bool) or not isinstance(feedback_size, int):
        raise ValueError(f"feedback_size must be an int, got {feedback_size!r}")
    if not 1 <= feedback_size <= available:
        raise ValueError(f"feedback_size={feedback_size} outside the accepted range [1, {available}]")


def _split_train(
    train: Sequence[MathProblem], test: Sequence[MathProblem], feedback_size: int, split_seed: int, source: str
) -> MathCorpus:
    """Feedback = ``feedback_size`` train problems by a seeded permutation; unlabeled = the rest of train.

    Train problems whose question also appears in ``test`` are dropped first, so the splits are disjoint.
    """
    eval_questions = {problem.question for problem in test}
    train = [problem for problem in train if problem.question not in eval_questions]
    _check_feedback_size(feedback_size, len(train) - 1)
    permutation = np.random.default_rng(split_seed).permutation(len(train))
    feedback_indices = permutation[:feedback_size]
    chosen = set(int(index) for index in feedback_indices)
    return MathCorpus(
        unlabeled=tuple(problem for index, problem in enumerate(train) if index not in chosen),
        feedback=tuple(train[int(index)] for index in feedback_indices),
        eval=tuple(test),
        source=source,
    )


def _load_hub(feedback_size: int, split_seed: int) -> MathCorpus | None:
    """GSM8K from the Hugging Face hub, or ``None`` when ``datasets`` is missing or the load fails."""
    try:
        import datasets  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - any import failure means "no hub"
        return None
    try:
        loaded = datasets.load_dataset("openai/gsm8k", "main")
        splits = {
            name: [
                _problem_from_record(row["question"], row["answer"], f"hub:openai/gsm8k[{name}][{index}]")
                for index, row in enumerate(loaded[name])
            ]
            for name in ("train", "test")
        }
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - network/cache errors fall through to the embedded corpus
        warnings.warn(f"loading openai/gsm8k from the hub failed ({error!r}); using the embedded corpus", stacklevel=3)
        return None
    return _split_train(splits["train"], splits["test"], feedback_size, split_seed, "hub:openai/gsm8k")


def _generate_symbolic(seed: int, size: int, exclude: set[str]) -> list[MathProblem]:
    """``size`` distinct ``gsm_symbolic`` problems from a seeded generator, skipping questions in ``exclude``."""
    import reasoning_gym

    pool_size = size + size // 8 + 32
    while True:
        dataset = reasoning_gym.create_dataset("gsm_symbolic", seed=seed, size=pool_size)
        problems: list[MathProblem] = []
        seen: set[str] = set()
        for index in range(len(dataset)):
            item = dataset[index]
            question = item["question"]
            if question in exclude or question in seen:
                continue
            seen.add(question)
            problems.append(
                _problem_from_record(
                    question, item["metadata"]["answer_cot"], f"reasoning_gym gsm_symbolic seed={seed} item {index}"
                )
            )
            if len(problems) == size:
                return problems
        if pool_size > 16 * size + 1024:
            raise ValueError(f"gsm_symbolic (seed={seed}) could not produce {size} distinct problems")
        pool_size *= 2


def _load_embedded(
    feedback_size: int, split_seed: int, unlabeled_size: int, eval_size: int
) -> MathCorpus:
    """The embedded corpus: three seeded ``gsm_symbolic`` generators, made disjoint by question text."""
    _check_feedback_size(feedback_size, _MAX_EMBEDDED_SIZE)
    for name, value in (("embedded_unlabeled_size", unlabeled_size), ("embedded_eval_size", eval_size)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_EMBEDDED_SIZE:
            raise ValueError(f"{name}={value!r} outside the accepted range [1, {_MAX_EMBEDDED_SIZE}]")
    unlabeled_seed, feedback_seed, eval_seed = (
        int(seed) for seed in np.random.SeedSequence(split_seed).generate_state(3, dtype=np.uint32)
    )
    eval_split = _generate_symbolic(eval_seed, eval_size, set())
    eval_questions = {problem.question for problem in eval_split}
    feedback = _generate_symbolic(feedback_seed, feedback_size, eval_questions)
    unlabeled = _generate_symbolic(
        unlabeled_seed, unlabeled_size, eval_questions | {problem.question for problem in feedback}
    )
    return MathCorpus(
        unlabeled=tuple(unlabeled),
        feedback=tuple(feedback),
        eval=tuple(eval_split),
        source="embedded:reasoning_gym.gsm_symbolic",
    )


def load_math_corpus(
    data_dir: Path | None,
    *,
    feedback_size: int = 1024,
    split_seed: int = 0,
    embedded_unlabeled_size: int = 4000,
    embedded_eval_size: int = 500,
) -> MathCorpus:
    """Load math word problems and split them into disjoint unlabeled / feedback / eval splits.

    Sources, in order:

    1. ``data_dir/gsm8k/{train,test}.jsonl`` (when ``data_dir`` is given): feedback = ``feedback_size``
       train problems chosen by ``numpy.random.default_rng(split_seed).permutation``, unlabeled = the rest of
       train (in file order), eval = test. Source ``"gsm8k:<dir>"``.
    2. When ``data_dir`` is ``None``, the ``datasets`` package imports and ``HF_HUB_OFFLINE`` is not
       ``"1"``: ``openai/gsm8k`` (``main``) from the hub, same split. Source ``"hub:openai/gsm8k"``.
       A failed hub load warns and falls through.
    3. Embedded: ``reasoning_gym``'s ``gsm_symbolic`` generator with three seeds derived from ``split_seed``
       (eval ``embedded_eval_size``, feedback ``feedback_size``, unlabeled ``embedded_unlabeled_size``
       problems); questions are distinct within a split, feedback excludes eval questions and unlabeled
       excludes both. Source ``"embedded:reasoning_gym.gsm_symbolic"``.

    Calculator annotations ``<<...>>`` are removed from solutions; train problems whose question also
    appears in test are dropped (none in GSM8K), so the three splits are always disjoint by question text.

    Source: V-Pretraining (arXiv 2601.22108), feedback = 1,024 GSM8K train examples, eval = GSM8K test.

    Args:
        data_dir: folder holding ``gsm8k/`` (see :func:`resolve_data_dir`), or ``None``.
        feedback_size: problems in the feedback split, in [1, len(train) - 1] (GSM8K: [1, 7472]);
            [1, 1_000_000] for the embedded corpus.
        split_seed: seed of the split (>= 0).
        embedded_unlabeled_size: unlabeled problems of the embedded corpus, in [1, 1_000_000].
        embedded_eval_size: eval problems of the embedded corpus, in [1, 1_000_000].

    Returns:
        The corpus with its three splits and its source.

    Raises:
        FileNotFoundError: ``data_dir`` is given but ``gsm8k/train.jsonl`` or ``gsm8k/test.jsonl`` is missing.
        ValueError: a malformed jsonl line (message names the file and line), or an argument outside its range.
    """
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise ValueError(f"split_seed must be an int >= 0, got {split_seed!r}")
    split_seed = int(split_seed)
    if data_dir is not None:
        folder = Path(data_dir) / "gsm8k"
        train = _read_gsm8k_jsonl(folder / "train.jsonl")
        test = _read_gsm8k_jsonl(folder / "test.jsonl")
        return _split_train(train, test, feedback_size, split_seed, f"gsm8k:{folder}")
    if os.environ.get("HF_HUB_OFFLINE", "") != "1":
        corpus = _load_hub(feedback_size, split_seed)
        if corpus is not None:
            return corpus
    return _load_embedded(feedback_size, split_seed, embedded_unlabeled_size, embedded_eval_size)


def load_general_text(data_dir: Path | None) -> tuple[str, str]:
    """General (non-math) prose for the general-text domain.

    Args:
        data_dir: folder that may hold ``tinyshakespeare/input.txt``, or ``None``.

    Returns:
        ``(text, source)``: Tiny Shakespeare with source ``"tinyshakespeare:<path>"`` if the file exists,
        else the English prose of Python's ``pydoc_data.topics`` (values joined in sorted-key order) with
        source ``"embedded:pydoc_data.topics"``.
    """
    if data_dir is not None:
        path = Path(data_dir) / "tinyshakespeare" / "input.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8"), f"tinyshakespeare:{path}"
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    return text, "embedded:pydoc_data.topics"


def _tokenizer_key(texts: Sequence[str], vocab_size: int) -> str:
    """First 16 hex digits of a SHA-256 over the format, ``vocab_size`` and every text (length-prefixed)."""
    digest = hashlib.sha256(f"{_TOKENIZER_FORMAT}|vocab_size={vocab_size}|texts={len(texts)}|".encode())
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:16]


def _check_eos(tokenizer: tokenizers.Tokenizer, where: str) -> tokenizers.Tokenizer:
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    if eos_id != 0:
        raise ValueError(f"{where}: {EOS_TOKEN!r} has id {eos_id}, expected 0")
    return tokenizer


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    from vpt_gym.atomic import write_text_atomic

    write_text_atomic(path, text)


def build_tokenizer(texts: Sequence[str], *, vocab_size: int, cache_dir: Path) -> tokenizers.Tokenizer:
    """A byte-level BPE tokenizer trained on ``texts``, cached as JSON.

    Byte-level BPE (GPT-2 style: ``pre_tokenizers.ByteLevel(add_prefix_space=False)``, byte alphabet as the
    initial alphabet, so any text round-trips) with the special token ``"<|endoftext|>"`` at id 0. Training
    is deterministic: the same texts and ``vocab_size`` give an identical JSON. The tokenizer is stored at
    ``cache_dir / f"tokenizer-{key}.json"`` (key: first 16 hex digits of a SHA-256 over ``vocab_size`` and
    all texts), written atomically, and loaded from there when present.

    Args:
        texts: training texts (non-empty sequence of strings).
        vocab_size: target vocabulary size including the special token, in [260, 1_000_000]. The result may
            be smaller when the texts allow fewer merges.
        cache_dir: folder of the cache (created if missing).

    Returns:
        The tokenizer; ``token_to_id(EOS_TOKEN) == 0``.

    Raises:
        ValueError: ``vocab_size`` outside [260, 1_000_000], ``texts`` empty or not all strings, or a cached
            file whose end-of-text id is not 0.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
    if not _MIN_VOCAB_SIZE <= vocab_size <= _MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} outside the accepted range [{_MIN_VOCAB_SIZE}, {_MAX_VOCAB_SIZE}]"
        )
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single string")
    texts = list(texts)
    if not texts:
        raise ValueError("texts must contain at least one string, got an empty sequence")
    if not all(isinstance(text, str) for text in texts):
        raise ValueError("texts must contain only strings")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"tokenizer-{_tokenizer_key(texts, vocab_size)}.json"
    if path.is_file():
        return _check_eos(tokenizers.Tokenizer.from_file(str(path)), str(path))

    tokenizer = tokenizers.Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    _check_eos(tokenizer, "trained tokenizer")
    _atomic_write_text(path, tokenizer.to_str())
    return tokenizer


def problem_texts(problems: Iterable[MathProblem]) -> list[str]:
    """The pretraining text (prompt + completion) of each problem."""
    return [format_prompt(problem.question) + format_completion(problem.solution) for problem in problems]
