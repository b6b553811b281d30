"""Tests of vpt_gym.lm.corpus: data sources, splits, answer extraction and the cached tokenizer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vpt_gym.lm.corpus import (
    EOS_TOKEN,
    MathProblem,
    build_tokenizer,
    extract_final_answer,
    format_completion,
    format_prompt,
    load_general_text,
    load_math_corpus,
    problem_texts,
    resolve_data_dir,
)

DATA_DIR = Path(os.environ.get("VPT_GYM_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA_DIR / "gsm8k").is_dir(), reason=f"no GSM8K data at {DATA_DIR}")


def _questions(problems: tuple[MathProblem, ...]) -> set[str]:
    return {problem.question for problem in problems}


def _write_gsm8k(folder: Path, train_lines: list[str], test_lines: list[str]) -> None:
    (folder / "gsm8k").mkdir(parents=True)
    (folder / "gsm8k" / "train.jsonl").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (folder / "gsm8k" / "test.jsonl").write_text("\n".join(test_lines) + "\n", encoding="utf-8")


def _record(question: str, answer: str) -> str:
    return json.dumps({"question": question, "answer": answer})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 1,000+234 = 1,234\n#### 1,234", "1234"),
        ("#### $18.00", "18"),
        ("#### -3", "-3"),
        ("#### 0.50", "0.5"),
        ("#### 5.", "5"),
        ("#### 7 #### 72 clips\nQuestion: next", "72"),
        ("no final line here", None),
        ("####   ", None),
        ("#### 36.0", "36"),
    ],
)
def test_extract_final_answer_known_answers(text: str, expected: str | None) -> None:
    assert extract_final_answer(text) == expected


def test_prompt_and_completion_format() -> None:
    assert format_prompt("What is 2+2?") == "Question: What is 2+2?\nAnswer:"
    assert format_completion("2+2=4\n#### 4") == " 2+2=4\n#### 4"


def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPT_GYM_DATA", raising=False)
    assert resolve_data_dir(None) is None
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("VPT_GYM_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        resolve_data_dir(missing)


def test_local_gsm8k_split_and_annotations(tmp_path: Path) -> None:
    train = [_record(f"q{i}?", f"a <<2*{i}={2 * i}>>{2 * i}\n#### {2 * i:,}") for i in range(1000, 1020)]
    test = [_record(f"t{i}?", f"b\n#### {i}") for i in range(5)]
    _write_gsm8k(tmp_path, train, test)
    corpus = load_math_corpus(tmp_path, feedback_size=6, split_seed=3)
    assert (len(corpus.unlabeled), len(corpus.feedback), len(corpus.eval)) == (14, 6, 5)
    assert corpus.source == f"gsm8k:{tmp_path / 'gsm8k'}"
    assert not _questions(corpus.feedback) & _questions(corpus.unlabeled)
    assert all("<<" not in problem.solution and problem.solution.rstrip().split("\n")[-1].startswith("####")
               for problem in corpus.unlabeled + corpus.feedback)
    first = corpus.feedback[0]
    assert first.final_answer == str(2 * int(first.question[1:-1]))
    assert load_math_corpus(tmp_path, feedback_size=6, split_seed=3) == corpus
    assert load_math_corpus(tmp_path, feedback_size=6, split_seed=4).feedback != corpus.feedback


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "line 3"),
        (json.dumps({"question": "q"}), "line 3"),
        (_record("q", "no final answer"), "line 3"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    _write_gsm8k(tmp_path, [_record("a", "#### 1"), _record("b", "#### 2"), bad_line], [_record("c", "#### 3")])
    with pytest.raises(ValueError, match=message) as error:
        load_math_corpus(tmp_path, feedback_size=1)
    assert "train.jsonl" in str(error.value)


def test_missing_gsm8k_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train.jsonl"):
        load_math_corpus(tmp_path)


def test_feedback_size_out_of_range(tmp_path: Path) -> None:
    _write_gsm8k(tmp_path, [_record(f"q{i}", f"#### {i}") for i in range(4)], [_record("t", "#### 1")])
    for size in (0, 4, -1):
        with pytest.raises(ValueError, match=rf"feedback_size={size}.*\[1, 3\]"):
            load_math_corpus(tmp_path, feedback_size=size)


@needs_data
def test_real_gsm8k_splits() -> None:
    corpus = load_math_corpus(DATA_DIR, feedback_size=1024, split_seed=0)
    assert (len(corpus.unlabeled), len(corpus.feedback), len(corpus.eval)) == (7473 - 1024, 1024, 1319)
    assert not _questions(corpus.feedback) & _questions(corpus.eval)
    assert not _questions(corpus.unlabeled) & (_questions(corpus.feedback) | _questions(corpus.eval))
    assert all("<<" not in problem.solution for problem in corpus.feedback)
    assert all(extract_final_answer(problem.solution) == problem.final_answer for problem in corpus.eval)


def test_embedded_corpus_is_disjoint_and_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kwargs = dict(feedback_size=40, split_seed=1, embedded_unlabeled_size=120, embedded_eval_size=30)
    corpus = load_math_corpus(None, **kwargs)
    assert corpus.source == "embedded:reasoning_gym.gsm_symbolic"
    assert (len(corpus.unlabeled), len(corpus.feedback), len(corpus.eval)) == (120, 40, 30)
    assert not _questions(corpus.feedback) & _questions(corpus.eval)
    assert not _questions(corpus.unlabeled) & (_questions(corpus.feedback) | _questions(corpus.eval))
    assert all(problem.final_answer == extract_final_answer(problem.solution) for problem in corpus.feedback)
    assert load_math_corpus(None, **kwargs) == corpus


def test_general_text_sources(tmp_path: Path) -> None:
    text, source = load_general_text(None)
    assert source == "embedded:pydoc_data.topics" and len(text) > 10_000
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("First Citizen:\nSpeak.\n", encoding="utf-8")
    text, source = load_general_text(tmp_path)
    assert text == "First Citizen:\nSpeak.\n" and source.startswith("tinyshakespeare:")


def _tokenizer_texts() -> list[str]:
    problems = [MathProblem(question=f"Tom has {i} apples and buys {i + 3}. How many?",
                            solution=f"{i}+{i + 3}={2 * i + 3}\n#### {2 * i + 3}", final_answer=str(2 * i + 3))
                for i in range(40)]
    return problem_texts(problems) + ["To be, or not to be, that is the question."]


def test_tokenizer_cache_is_deterministic(tmp_path: Path) -> None:
    texts = _tokenizer_texts()
    first = build_tokenizer(texts, vocab_size=300, cache_dir=tmp_path / "a")
    second = build_tokenizer(texts, vocab_size=300, cache_dir=tmp_path / "b")
    files_a, files_b = sorted((tmp_path / "a").iterdir()), sorted((tmp_path / "b").iterdir())
    assert len(files_a) == 1 and [f.name for f in files_a] == [f.name for f in files_b]
    assert files_a[0].name.startswith("tokenizer-") and files_a[0].suffix == ".json"
    assert files_a[0].read_text() == files_b[0].read_text()
    assert first.to_str() == second.to_str()
    cached = build_tokenizer(texts, vocab_size=300, cache_dir=tmp_path / "a")
    assert cached.to_str() == first.to_str()
    assert first.token_to_id(EOS_TOKEN) == 0
    other = build_tokenizer(texts, vocab_size=301, cache_dir=tmp_path / "a")
    assert len(list((tmp_path / "a").iterdir())) == 2 and other.token_to_id(EOS_TOKEN) == 0


def test_tokenizer_round_trips_ascii(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(_tokenizer_texts(), vocab_size=300, cache_dir=tmp_path)
    text = "Question: Zoe's 3 cats ate 1,204.5 g?\n  Answer:\t~`!@#$%^&*()_+{}|:\"<>?\n#### 7"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


@pytest.mark.parametrize("vocab_size", [259, 1_000_001, 300.0])
def test_tokenizer_bad_vocab_size(tmp_path: Path, vocab_size: object) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(["abc"], vocab_size=vocab_size, cache_dir=tmp_path)  # type: ignore[arg-type]


def test_tokenizer_empty_texts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="texts"):
        build_tokenizer([], vocab_size=300, cache_dir=tmp_path)


def test_procedural_math_texts_known_answers_and_layout() -> None:
    """chain_sum answers re-computed from the question text; round-robin layout; seeded determinism."""
    import re

    from vpt_gym.lm.corpus import PROCEDURAL_GENERATORS, procedural_math_texts

    texts = procedural_math_texts(3, 45)
    assert len(texts) == 45 and texts == procedural_math_texts(3, 45)
    assert texts != procedural_math_texts(4, 45)
    assert all(t.startswith("Question: ") and "\nAnswer: #### " in t for t in texts)
    chain = PROCEDURAL_GENERATORS.index("chain_sum")
    checked = 0
    for text in texts[chain :: len(PROCEDURAL_GENERATORS)]:  # generator g holds texts g, g + G, g + 2G, ...
        expression = re.search(r"problem: (.*) =\nAnswer", text).group(1)
        assert re.fullmatch(r"-?\d+( [-+] \d+)*", expression), text
        total, sign = 0, 1
        for token in expression.split():
            if token in "+-":
                sign = 1 if token == "+" else -1
            else:
                total, sign = total + sign * int(token), 1
        assert text.endswith(f"#### {total}"), (text, total)
        checked += 1
    assert checked == 5  # 45 texts over 10 generators: the first 5 generators get 5 each, chain_sum included
    equations = texts[PROCEDURAL_GENERATORS.index("simple_equations") :: len(PROCEDURAL_GENERATORS)]
    for text in equations:  # "<variable> ...: <lhs> = <rhs>" with the answer substituted satisfies the equation
        lhs, rhs = re.search(r": ([^:]*) = (-?\d+)\n", text).groups()
        variable = re.search(r"[a-z]", lhs).group(0)
        value = int(text.rsplit("#### ", 1)[1])
        assert eval(lhs.replace(variable, f"({value})"), {}) == int(rhs), text  # noqa: S307 - generated arithmetic


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(seed=-1, size=3), "seed must be"), (dict(seed=0, size=0), "size must be"),
    (dict(seed=0, size=3, generators=("not_a_generator",)), "not_a_generator"),
    (dict(seed=0, size=3, generators=()), "non-empty"),
])
def test_procedural_math_texts_bad_input(kwargs: dict, message: str) -> None:
    from vpt_gym.lm.corpus import procedural_math_texts

    with pytest.raises(ValueError, match=message):
        procedural_math_texts(**kwargs)
