"""Declared text domains of ``vpt/LM-Domains-v0``: name, source, disjoint pretraining / feedback / eval texts.

A :class:`TextDomain` is plain data. The built-in ones are real text present on every machine or provided:

* ``math``: GSM8K *unlabeled* train problems with their worked solutions (``load_math_corpus(...).unlabeled``);
  the GSM8K feedback and eval problems never enter it (they belong to the GSM8K feedback set).
* ``code``: the Python standard library's own ``*.py`` sources (``sysconfig.get_paths()["stdlib"]``), split
  into pretraining / feedback / eval files by a SHA-256 of each file's relative path.
* ``prose``: Tiny Shakespeare (``<data>/tinyshakespeare/input.txt``; else Python's ``pydoc_data.topics``), cut
  at blank lines into ~2,000-character chunks split the same way by a hash of the chunk index.

:func:`tokenize_domains` turns declared domains into :class:`TokenizedDomain` objects: one pretraining token
stream per domain and fixed held-out token windows (the examples of the held-out NLL feedback sets), with
pretraining documents that share any :data:`DECONTAMINATION_TOKENS`-token window with *any* held-out example
(of any domain, GSM8K feedback/eval problems included) dropped, n-gram decontamination in the style of
GPT-3 (Brown et al. 2020, Appendix C), at the token level.
"""

from __future__ import annotations

import hashlib
import re
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DECONTAMINATION_TOKENS = 64
"""Default width W (tokens) of the windows hashed for decontamination and for the no-leak check (capped at the
held-out window length). Measured on the stdlib code domain with the tiny preset's 512-token BPE: W = 32 drops
70% of the code documents (short boilerplate lines repeat across files), W = 64 drops 4%."""
SPLITS = ("pretrain", "feedback", "eval")
_HASH_BASE = 0x100000001B3  # FNV-1 64-bit prime (odd, so the polynomial hash is a bijection per window slot)
_EXCLUDED_PARTS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "encodings"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def split_of(key: str, *, eval_percent: int = 10, feedback_percent: int = 10) -> str:
    """The split of an item named ``key``: bucket = first 8 hex digits of SHA-256(key) mod 100.

    Buckets [0, eval_percent) -> ``"eval"``, the next ``feedback_percent`` -> ``"feedback"``, the rest ->
    ``"pretrain"``. Fixed per key, so splits never depend on seeds, order or actions.

    Raises:
        ValueError: percentages outside [1, 98] or summing above 99.
    """
    if not (1 <= eval_percent <= 98 and 1 <= feedback_percent <= 98 and eval_percent + feedback_percent <= 99):
        raise ValueError(f"eval_percent={eval_percent}, feedback_percent={feedback_percent}: "
                         "each in [1, 98], sum <= 99")
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < eval_percent:
        return "eval"
    return "feedback" if bucket < eval_percent + feedback_percent else "pretrain"


@dataclass(frozen=True, kw_only=True)
class TextDomain:
    """A declared text domain (plain data; add one without touching the env).

    Attributes:
        name: lower-case identifier (``[a-z][a-z0-9_]*``), e.g. ``"code"``; unique in an env.
        source: where the texts came from (e.g. ``"stdlib:/usr/lib/python3.11"``).
        pretrain: pretraining documents (>= 1 non-empty string).
        feedback: held-out documents of the domain's NLL feedback split (may be empty: no feedback task).
        eval: held-out documents of the domain's NLL eval split (empty iff ``feedback`` is empty).

    Raises:
        ValueError: a bad name, no pretraining text, a document present in two splits, or only one of
            ``feedback`` / ``eval`` given.
    """

    name: str
    source: str
    pretrain: tuple[str, ...]
    feedback: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"domain name {self.name!r} must match [a-z][a-z0-9_]*")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"domain {self.name!r}: source must be a non-empty string, got {self.source!r}")
        for split in SPLITS:
            texts = getattr(self, split)
            if isinstance(texts, str) or not all(isinstance(t, str) and t for t in texts):
                raise ValueError(f"domain {self.name!r}: {split} must be a sequence of non-empty strings")
            object.__setattr__(self, split, tuple(texts))
        if not self.pretrain:
            raise ValueError(f"domain {self.name!r} has no pretraining text")
        if bool(self.feedback) != bool(self.eval):
            raise ValueError(f"domain {self.name!r}: give both feedback and eval texts or neither "
                             f"(got {len(self.feedback)} and {len(self.eval)})")
        seen = set(self.pretrain)
        for split in ("feedback", "eval"):
            shared = seen & set(getattr(self, split))
            if shared:
                raise ValueError(f"domain {self.name!r}: {len(shared)} document(s) of {split} also appear in an "
                                 f"earlier split, e.g. {next(iter(shared))[:60]!r}")
            seen |= set(getattr(self, split))

    @property
    def has_feedback(self) -> bool:
        """Whether the domain has held-out texts (and so an NLL feedback task)."""
        return bool(self.feedback)


@dataclass(frozen=True, kw_only=True, eq=False)
class TokenizedDomain:
    """A domain after tokenization and decontamination.

    Attributes:
        name / source: as in :class:`TextDomain`.
        tokens: pretraining stream, shape [num_tokens], int64, CPU (documents joined, each followed by eos).
        feedback_windows / eval_windows: held-out examples, shape [num_windows, window], int64, CPU
            (non-overlapping windows of the held-out stream; [0, window] when the domain has no held-out text).
        documents: pretraining documents kept; dropped: pretraining documents removed by decontamination.
    """

    name: str
    source: str
    tokens: torch.Tensor
    feedback_windows: torch.Tensor
    eval_windows: torch.Tensor
    documents: int
    dropped: int


def _chunks_at_lines(text: str, size: int) -> list[str]:
    """``text`` cut at line ends into pieces of about ``size`` characters (a longer single line stays whole)."""
    pieces, current, length = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        length += len(line)
        if length >= size:
            pieces.append("".join(current))
            current, length = [], 0
    if current:
        pieces.append("".join(current))
    return [p for p in pieces if p.strip()]


def math_domain(corpus) -> TextDomain:
    """``math``: the unlabeled GSM8K train problems as ``"Question: ...\\nAnswer: <worked solution>"`` texts.

    Args:
        corpus: a :class:`~vpt_gym.lm.corpus.MathCorpus`; only ``corpus.unlabeled`` is used (its feedback
            and eval problems belong to the GSM8K feedback set, never to pretraining).
    """
    from vpt_gym.lm.corpus import problem_texts

    return TextDomain(name="math", source=corpus.source, pretrain=tuple(problem_texts(corpus.unlabeled)))


def code_domain(*, root: str | Path | None = None, max_chars: int = 2_000_000, chunk_chars: int = 2000) -> TextDomain:
    """``code``: Python standard-library sources, files split disjointly by a hash of their relative path.

    Files: ``root.rglob("*.py")`` (default root ``sysconfig.get_paths()["stdlib"]``), skipping any path with a
    ``site-packages``/``test``/``tests``/``idle_test``/``encodings`` part (tests and codec tables are not
    representative code) and files that are not UTF-8, in sorted relative-path order; each file's split is
    :func:`split_of` of its relative POSIX path (80/10/10), whole files only. Files are taken in order until
    each split holds ``max_chars`` (pretraining) or ``max_chars // 8`` (feedback, eval) characters, then cut at
    line ends into ``chunk_chars`` documents; a document equal to an earlier one (any split) is dropped.

    Raises:
        ValueError: ``max_chars`` or ``chunk_chars`` < 1000, or no usable file under ``root``.
        FileNotFoundError: ``root`` does not exist.
    """
    if max_chars < 1000 or chunk_chars < 1000:
        raise ValueError(f"max_chars={max_chars} and chunk_chars={chunk_chars} must be >= 1000")
    folder = Path(root or sysconfig.get_paths()["stdlib"])
    if not folder.is_dir():
        raise FileNotFoundError(f"standard-library folder {str(folder)!r} not found")
    caps = {"pretrain": max_chars, "feedback": max_chars // 8, "eval": max_chars // 8}
    texts: dict[str, list[str]] = {s: [] for s in SPLITS}
    used = dict.fromkeys(SPLITS, 0)
    seen: set[str] = set()
    for path in sorted(folder.rglob("*.py"), key=lambda p: p.relative_to(folder).as_posix()):
        rel = path.relative_to(folder)
        if _EXCLUDED_PARTS & set(rel.parts):
            continue
        split = split_of(rel.as_posix())
        if used[split] >= caps[split]:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        chunks = [c for c in _chunks_at_lines(text, chunk_chars) if c not in seen]
        seen.update(chunks)
        texts[split].extend(chunks)
        used[split] += sum(len(c) for c in chunks)
    if not all(texts.values()):
        raise ValueError(f"no usable *.py files for every split under {str(folder)!r}: {dict(used)} characters")
    return TextDomain(name="code", source=f"stdlib:{folder}", pretrain=tuple(texts["pretrain"]),
                      feedback=tuple(texts["feedback"]), eval=tuple(texts["eval"]))


def prose_domain(data_dir: Path | None, *, chunk_chars: int = 2000) -> TextDomain:
    """``prose``: Tiny Shakespeare (else ``pydoc_data.topics``), blank-line-aligned chunks split by hash.

    The text of :func:`~vpt_gym.lm.corpus.load_general_text` is cut at blank lines into chunks of about
    ``chunk_chars`` characters; chunk i goes to :func:`split_of` ``(f"prose:{i}")`` (80/10/10).

    Raises:
        ValueError: ``chunk_chars`` < 200.
    """
    from vpt_gym.lm.corpus import load_general_text

    if chunk_chars < 200:
        raise ValueError(f"chunk_chars={chunk_chars} must be >= 200")
    text, source = load_general_text(data_dir)
    chunks, current, length = [], [], 0
    for paragraph in text.split("\n\n"):
        current.append(paragraph)
        length += len(paragraph) + 2
        if length >= chunk_chars:
            chunks.append("\n\n".join(current))
            current, length = [], 0
    if current:
        chunks.append("\n\n".join(current))
    texts: dict[str, list[str]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for i, chunk in enumerate(chunks):
        if chunk.strip() and chunk not in seen:  # a repeated chunk stays in its first split only
            seen.add(chunk)
            texts[split_of(f"prose:{i}")].append(chunk)
    return TextDomain(name="prose", source=source, pretrain=tuple(texts["pretrain"]),
                      feedback=tuple(texts["feedback"]), eval=tuple(texts["eval"]))


def window_hashes(tokens: torch.Tensor | np.ndarray, width: int = DECONTAMINATION_TOKENS) -> np.ndarray:
    """64-bit polynomial hashes of every ``width``-token window (per row for a 2-D input).

    h(w) = sum_i (w_i + 1) * B^(width - 1 - i) mod 2^64 with B the FNV-1 64-bit prime.

    Args:
        tokens: shape [num_tokens] or [rows, seq], integer ids >= 0.
        width: window width W >= 1.

    Returns:
        shape [num_windows], uint64 (empty when the input is shorter than ``width``).
    """
    array = np.asarray(tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens)
    rows = array.reshape(1, -1) if array.ndim == 1 else array
    if rows.shape[-1] < width:
        return np.zeros(0, dtype=np.uint64)
    powers = np.array([pow(_HASH_BASE, width - 1 - i, 2**64) for i in range(width)], dtype=np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(rows.astype(np.uint64) + np.uint64(1), width, axis=-1)
    return (windows @ powers).reshape(-1)


def _encode(tokenizer, texts: Sequence[str], eos_id: int) -> list[np.ndarray]:
    """Each text's token ids followed by ``eos_id``."""
    return [np.asarray([*enc.ids, eos_id], dtype=np.int64) for enc in tokenizer.encode_batch(list(texts))]


def _windows(documents: list[np.ndarray], window: int) -> torch.Tensor:
    """Non-overlapping ``window``-token windows of the documents joined, shape [n, window], int64."""
    if not documents:
        return torch.zeros((0, window), dtype=torch.int64)
    stream = np.concatenate(documents)
    n = stream.size // window
    return torch.from_numpy(stream[: n * window].reshape(n, window).copy())


def tokenize_domains(domains: Sequence[TextDomain], tokenizer, eos_id: int, *, window: int,
                     extra_heldout: Sequence[Sequence[int]] = (),
                     width: int = DECONTAMINATION_TOKENS) -> dict[str, TokenizedDomain]:
    """Tokenize declared domains: pretraining streams, held-out windows, decontamination.

    Held-out examples are the ``window``-token windows of each domain's feedback and eval documents (joined
    with eos) plus ``extra_heldout`` token sequences (e.g. every GSM8K feedback and eval problem). Any
    pretraining document holding a ``width``-token window whose hash (:func:`window_hashes`) equals that of a
    window of a held-out example is dropped, so no held-out example can appear in a pretraining batch.

    Args:
        domains: declared domains, unique names.
        tokenizer: a ``tokenizers.Tokenizer``.
        eos_id: end-of-text id appended to every document.
        window: held-out example length in tokens (the pretraining ``seq_len``).
        extra_heldout: further held-out token sequences (lists of ids).
        width: decontamination window W in tokens, >= 8 (capped at ``window``).

    Returns:
        name -> :class:`TokenizedDomain`, in the order of ``domains``.

    Raises:
        ValueError: duplicate names, ``min(width, window) < 8``, or a domain left with no pretraining
            document (or with fewer tokens than ``window + 1``) after decontamination.
    """
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise ValueError(f"domain names must be unique, got {names}")
    width = min(width, window)
    if width < 8:
        raise ValueError(f"need 8 <= min(width, window), got width={width}, window={window}")
    heldout: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    banned = [window_hashes(np.asarray(seq, dtype=np.int64), width) for seq in extra_heldout]
    for d in domains:
        fb = _windows(_encode(tokenizer, d.feedback, eos_id), window)
        ev = _windows(_encode(tokenizer, d.eval, eos_id), window)
        if d.has_feedback and (fb.shape[0] == 0 or ev.shape[0] == 0):
            raise ValueError(f"domain {d.name!r}: held-out texts give no {window}-token window "
                             f"(feedback {fb.shape[0]}, eval {ev.shape[0]})")
        heldout[d.name] = (fb, ev)
        banned += [window_hashes(fb, width), window_hashes(ev, width)]
    banned_set = np.unique(np.concatenate(banned)) if banned else np.zeros(0, dtype=np.uint64)
    out: dict[str, TokenizedDomain] = {}
    for d in domains:
        docs = _encode(tokenizer, d.pretrain, eos_id)
        stream = np.concatenate(docs)
        hit = np.isin(window_hashes(stream, width), banned_set)
        ends = np.cumsum([doc.size for doc in docs])
        bad = set(np.searchsorted(ends, np.flatnonzero(hit), side="right").tolist())
        # a window starting in document k may end in k + 1: drop both ends of every hit
        bad |= set(np.searchsorted(ends, np.flatnonzero(hit) + width - 1, side="right").tolist())
        kept = [doc for k, doc in enumerate(docs) if k not in bad]
        tokens = torch.from_numpy(np.concatenate(kept)) if kept else torch.zeros(0, dtype=torch.int64)
        if tokens.numel() <= window:
            raise ValueError(f"domain {d.name!r} has {tokens.numel()} pretraining tokens after decontamination; "
                             f"needs more than {window}")
        fb, ev = heldout[d.name]
        out[d.name] = TokenizedDomain(name=d.name, source=d.source, tokens=tokens, feedback_windows=fb,
                                      eval_windows=ev, documents=len(kept), dropped=len(docs) - len(kept))
    return out


def check_mixture(weights: Mapping[str, float], domain_names: Sequence[str], *,
                  where: str = "mixture") -> tuple[float, ...]:
    """Validate a mixture over ``domain_names``: known names, finite, >= 0, summing to 1 (within 1e-6).

    Args:
        weights: domain name -> weight; missing domains weigh 0.
        domain_names: the env's domains, in order.
        where: name of the mixture in error messages.

    Returns:
        The weights in ``domain_names`` order, renormalized to sum exactly to 1 in float64.

    Raises:
        ValueError: an unknown domain name, a non-finite or negative weight, or a sum other than 1 (the
            message names the bad value and the accepted range).
    """
    if not isinstance(weights, Mapping):
        raise ValueError(f"{where} must be a mapping domain -> weight, got {weights!r}")
    unknown = sorted(set(weights) - set(domain_names))
    if unknown:
        raise ValueError(f"{where} names unknown domain(s) {unknown}; domains: {list(domain_names)}")
    values = []
    for name in domain_names:
        w = weights.get(name, 0.0)
        if isinstance(w, bool) or not isinstance(w, (int, float, np.integer, np.floating)) or not np.isfinite(w):
            raise ValueError(f"{where}: weight of {name!r} is {w!r}; weights must be finite numbers in [0, 1]")
        if w < 0:
            raise ValueError(f"{where}: weight of {name!r} is {w!r}; weights must be in [0, 1]")
        values.append(float(w))
    total = sum(values)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{where}: weights {dict(weights)} sum to {total!r}; a mixture must sum to 1 (within 1e-6)")
    return tuple(v / total for v in values)


@dataclass(kw_only=True, eq=False)
class DomainDraw:
    """A pending pretraining batch that does not yet depend on the action: a window from every domain per row.

    Attributes:
        windows: shape [batch, num_domains, seq], int64, CPU; ``windows[i, d]`` is row i's window in domain d.
        uniform_domain: shape [batch], int64; row i's domain under uniform domain sampling (the standard task).
        domain_names: the domains, in order.
        num_examples / num_tokens: rows and tokens of the batch an update will use (batch, batch * seq).
        mixture_uniforms: shape [batch], float64 in [0, 1), or None; fixed once by the task space (from its
            generator) the first time the draw is described or materialized.
    """

    windows: torch.Tensor
    uniform_domain: torch.Tensor
    domain_names: tuple[str, ...]
    num_examples: int
    num_tokens: int
    mixture_uniforms: torch.Tensor | None = None


class DomainStream:
    """Per row, a random window from every domain and a uniformly drawn domain (the task picks later).

    Implements :class:`~vpt_gym.core.PretrainStream`. The data generator is used exactly as
    :class:`~vpt_gym.lm.stream.TokenStream` with equal weights (``multinomial`` of the row domains, then one
    ``rand`` per row for the window start), so the uniform-mixture task reproduces that stream exactly. Row
    i's window in domain d starts at ``int(u_i * (num_tokens_d - seq_len))``.

    Args:
        domains: name -> pretraining token stream (shape [num_tokens], int64, longer than ``seq_len``).
        batch_size: rows per batch, >= 1. seq_len: tokens per row, >= 2.

    Raises:
        ValueError: no domains, a too-short domain, bad sizes.
    """

    def __init__(self, domains: Mapping[str, torch.Tensor], *, batch_size: int, seq_len: int) -> None:
        if batch_size < 1 or seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2, got {batch_size}, {seq_len}")
        if not domains:
            raise ValueError("domains is empty")
        for name, toks in domains.items():
            if toks.ndim != 1 or toks.numel() <= seq_len:
                raise ValueError(f"domain {name!r} has {toks.numel()} tokens; needs more than seq_len={seq_len}")
        self.domain_names = tuple(domains)
        self._tokens = [domains[n] for n in self.domain_names]
        weights = torch.tensor([1.0] * len(self._tokens), dtype=torch.float64)
        self.weights = weights / weights.sum()
        self._spans = torch.tensor([t.numel() - seq_len for t in self._tokens], dtype=torch.float64)
        self.batch_size = batch_size
        self.seq_len = seq_len
        self._offsets = torch.arange(seq_len)
        self._g: torch.Generator | None = None

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: data order from ``generator``."""
        self._g = generator

    def next_batch(self) -> DomainDraw:
        """The next draw. Raises: RuntimeError before :meth:`reset`."""
        if self._g is None:
            raise RuntimeError("DomainStream.reset(generator) must be called before next_batch()")
        domain = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self._g)
        u = torch.rand(self.batch_size, generator=self._g, dtype=torch.float64)
        starts = (u[:, None] * self._spans[None, :]).long()  # [batch, num_domains], truncation as int()
        windows = torch.stack([toks[starts[:, d, None] + self._offsets] for d, toks in enumerate(self._tokens)], 1)
        return DomainDraw(windows=windows, uniform_domain=domain, domain_names=self.domain_names,
                          num_examples=self.batch_size, num_tokens=self.batch_size * self.seq_len)
