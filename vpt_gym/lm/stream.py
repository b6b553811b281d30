"""The unlabeled pretraining stream of the LM envs: random token windows from several text domains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class TokenBatch:
    """A pretraining batch of token windows.

    Attributes:
        input_ids: shape [batch, seq], int64, CPU. The learner predicts ``input_ids[:, 1:]``.
        domain: shape [batch], int64, CPU: index into ``domain_names`` of each row.
        domain_names: names of the domains, e.g. ``("math", "general")``.
        num_examples: rows (= batch).
        num_tokens: tokens (= batch * seq).
    """

    input_ids: torch.Tensor
    domain: torch.Tensor
    domain_names: tuple[str, ...]
    num_examples: int
    num_tokens: int

    def domain_fractions(self) -> np.ndarray:
        """Fraction of rows from each domain, shape [num_domains], float64, sums to 1."""
        counts = torch.bincount(self.domain, minlength=len(self.domain_names)).double()
        return (counts / counts.sum()).numpy()


def tokenize_text(tokenizer, texts: Sequence[str], eos_id: int) -> torch.Tensor:
    """Encode ``texts`` and join them into one token stream, each followed by ``eos_id``.

    Returns:
        shape [total_tokens], int64, CPU.
    """
    ids: list[int] = []
    for enc in tokenizer.encode_batch(list(texts)):
        ids.extend(enc.ids)
        ids.append(eos_id)
    return torch.tensor(ids, dtype=torch.int64)


class TokenStream:
    """Random windows of ``seq_len`` tokens; each row's domain drawn with probability ``weights``.

    Implements :class:`~vpt_gym.core.PretrainStream`. All sampling uses the episode's data generator.

    Args:
        domains: name -> token stream (shape [num_tokens], int64), each longer than ``seq_len``.
        weights: name -> sampling weight >= 0 (normalized; at least one > 0).
        batch_size: rows per batch, >= 1.
        seq_len: tokens per row, >= 2.

    Raises:
        ValueError: empty or too-short domains, weights naming unknown domains or all zero, bad sizes.
    """

    def __init__(self, domains: Mapping[str, torch.Tensor], weights: Mapping[str, float], *, batch_size: int,
                 seq_len: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {seq_len}")
        if not domains:
            raise ValueError("domains is empty")
        unknown = set(weights) - set(domains)
        if unknown:
            raise ValueError(f"weights name unknown domains {sorted(unknown)}; domains: {sorted(domains)}")
        self.domain_names = tuple(domains)
        for name, toks in domains.items():
            if toks.ndim != 1 or toks.numel() <= seq_len:
                raise ValueError(f"domain {name!r} has {toks.numel()} tokens; needs more than seq_len={seq_len}")
        w = torch.tensor([float(weights.get(n, 0.0)) for n in self.domain_names], dtype=torch.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {dict(weights)}")
        self.weights = w / w.sum()
        self._tokens = [domains[n] for n in self.domain_names]
        self.batch_size = batch_size
        self.seq_len = seq_len
        self._offsets = torch.arange(seq_len)

    def reset(self, generator: torch.Generator) -> None:
        """Start an episode: data order from ``generator``."""
        self._g = generator

    def next_batch(self) -> TokenBatch:
        """Sample a batch: per row a domain, then a uniform window start in that domain."""
        domain = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self._g)
        u = torch.rand(self.batch_size, generator=self._g, dtype=torch.float64)
        rows = []
        for i, d in enumerate(domain.tolist()):
            toks = self._tokens[d]
            start = int(u[i] * (toks.numel() - self.seq_len))
            rows.append(toks[start : start + self.seq_len])
        ids = torch.stack(rows)
        return TokenBatch(ids, domain, self.domain_names, self.batch_size, self.batch_size * self.seq_len)
