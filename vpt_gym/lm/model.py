"""The causal-LM learner: size presets, the cached base checkpoint theta_0, and the ``TorchLearner`` wrapper.

Continued pretraining needs a pretrained base. For the ``tiny`` and ``small`` presets the base is a GPT-2
architecture (``transformers.GPT2LMHeadModel``, no dropout) pretrained here by a short, deterministic run of
one-hot next-token prediction on general text (:func:`pretrain_base`), saved as safetensors under the cache
folder keyed by a hash of (config, tokenizer, corpus), and rebuilt when missing. The ``paper`` preset loads
any ``AutoModelForCausalLM`` from a local path or a hub id.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from vpt_gym.atomic import atomic_target
from vpt_gym.learners import TorchLearner

# re-exported (callers import them from here too); they live in vpt_gym.utils
from vpt_gym.utils import CACHE_ENV_VAR as CACHE_ENV_VAR
from vpt_gym.utils import cache_dir as cache_dir
from vpt_gym.utils import build_threads
from vpt_gym.utils import resolve_device as resolve_device

logger = logging.getLogger(__name__)

BASE_FORMAT = "vpt_gym-base-v2"  # v2: built with utils.BUILD_THREADS threads
"""Version of the base-pretraining recipe; part of the cache key (bump when the recipe changes)."""
@dataclass(frozen=True, kw_only=True)
class BaseModelConfig:
    """Architecture and base pretraining of a tiny/small GPT-2 learner.

    Attributes:
        vocab_size: BPE vocabulary size V (tokenizer trained to this size).
        context_length: n_positions (longest sequence, tokens).
        n_embd / n_layer / n_head: GPT-2 width, depth, heads.
        base_steps: optimizer steps of base pretraining on general text.
        base_batch_size / base_seq_len: rows and tokens per row of base pretraining batches.
        base_lr: AdamW learning rate of base pretraining (cosine decay to 10%, 5% linear warm-up).
        seed: seed of the initialization and data order of base pretraining.
    """

    vocab_size: int
    context_length: int
    n_embd: int
    n_layer: int
    n_head: int
    base_steps: int
    base_batch_size: int
    base_seq_len: int
    base_lr: float = 3e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "n_embd", "n_layer", "n_head", "base_steps",
                     "base_batch_size", "base_seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.base_seq_len > self.context_length:
            raise ValueError(f"base_seq_len={self.base_seq_len} exceeds context_length={self.context_length}")


def build_gpt2(config: BaseModelConfig):
    """A freshly initialized ``GPT2LMHeadModel``, float32, on CPU.

    Dropout 0; eos/bos id 0 and no pad id (the stream has no padding).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch_state = torch.random.fork_rng(devices=[])  # initialization must not touch the global RNG
    with torch_state:
        torch.manual_seed(config.seed)
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.n_embd,
            n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=0, eos_token_id=0,
        ))
    return model


def base_key(config: BaseModelConfig, tokenizer_json: str, corpus: torch.Tensor) -> str:
    """Cache key of a base checkpoint: sha256 over config, tokenizer and corpus tokens (16 hex)."""
    h = hashlib.sha256(BASE_FORMAT.encode())
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(tokenizer_json.encode())
    h.update(corpus.numpy().tobytes())
    return h.hexdigest()[:16]


def pretrain_base(model, corpus: torch.Tensor, config: BaseModelConfig, *, progress: bool | None = None) -> list[float]:
    """Deterministic base pretraining: one-hot next-token prediction on random windows of ``corpus``.

    Args:
        model: a causal LM on CPU (trained in place).
        corpus: token stream, shape [num_tokens], int64.
        config: steps, batch, lr, seed.
        progress: show a tqdm bar (None: only when stderr is a terminal).

    Returns:
        The training loss per step (nats/token).
    """
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(config.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=config.base_lr, betas=(0.9, 0.95), weight_decay=0.01)
    warm = max(1, config.base_steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, config.base_steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item())

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    offsets = torch.arange(config.base_seq_len)
    losses = []
    model.train()
    for _ in tqdm(range(config.base_steps), desc="base pretraining (one-time, cached)",
                  disable=None if progress is None else not progress, leave=False):
        starts = torch.randint(0, corpus.numel() - config.base_seq_len, (config.base_batch_size,), generator=g)
        ids = corpus[starts[:, None] + offsets]
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    return losses


def load_or_pretrain_base(config: BaseModelConfig, tokenizer_json: str, corpus: torch.Tensor, folder: Path,
                          *, progress: bool | None = None):
    """The base checkpoint theta_0: loaded from ``folder/base-{key}.safetensors``, else pretrained and saved.

    The file is written atomically (temp file + rename), so a killed run never leaves a half-written base.
    """
    from safetensors.torch import load_file, save_file

    model = build_gpt2(config)
    path = folder / f"base-{base_key(config, tokenizer_json, corpus)}.safetensors"
    if path.exists():
        state = load_file(str(path))
        model.load_state_dict(state, strict=False)  # tied lm_head is not stored twice
        model.tie_weights()
        return model
    logger.info("building the base checkpoint %s: %d steps of pretraining on general text (one-time; cached)",
                path.name, config.base_steps)
    with build_threads():  # the base's bytes depend on the thread count: build it the same way everywhere
        pretrain_base(model, corpus, config, progress=progress)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    with atomic_target(path) as tmp:
        save_file(state, str(tmp))
    return model


PAPER_CONTEXT_CAP = 2048
"""Longest context the ``paper`` presets use, in tokens (a pretrained model's own limit, capped here)."""


def load_pretrained_tokenizer(model: str) -> tuple[Any, int]:
    """``(tokenizers.Tokenizer, eos id)`` of ``transformers.AutoTokenizer.from_pretrained(model)`` (a local
    folder or a hub id; offline: a local folder only).

    Raises:
        ValueError: the tokenizer has no eos token.
    """
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(model)
    if hf_tok.eos_token_id is None:
        raise ValueError(f"tokenizer of {model!r} has no eos token")
    return hf_tok.backend_tokenizer, int(hf_tok.eos_token_id)


def load_pretrained_lm(model: str, dtype: str) -> torch.nn.Module:
    """``transformers.AutoModelForCausalLM.from_pretrained(model)`` in ``dtype`` (``"float32"``/``"bfloat16"``)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if dtype == "bfloat16" else torch.float32)


def pretrained_context_length(model: str) -> int:
    """The context length of ``model``'s config (``max_position_embeddings``, GPT-2's ``n_positions``), capped
    at :data:`PAPER_CONTEXT_CAP`; read from the config alone (no weights loaded)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return min(int(positions or PAPER_CONTEXT_CAP), PAPER_CONTEXT_CAP)


def lm_forward(module, batch) -> torch.Tensor:
    """Learner forward of a causal LM: logits [batch, seq, vocab] for ``batch.input_ids``."""
    device = next(module.parameters()).device
    return module(input_ids=batch.input_ids.to(device), use_cache=False).logits


def make_lm_learner(model, *, lr: float, alignment: str | int = "last2", device: str | torch.device = "cpu",
                    dtype: str = "float32", max_grad_norm: float | None = 1.0,
                    weight_decay: float = 0.0) -> TorchLearner:
    """Wrap a causal LM as a :class:`~vpt_gym.learners.TorchLearner` (AdamW).

    Args:
        model: an ``AutoModelForCausalLM``-style module returning ``.logits``.
        lr: AdamW learning rate eta > 0.
        alignment: subset S: ``"last2"`` (default, the last two transformer blocks), ``"lastN"``, an int,
            or ``"all"``.
        device: torch device.
        dtype: ``"float32"`` or ``"bfloat16"`` (weights and activations; losses in float32).
        max_grad_norm: gradient clipping norm (None to disable).
        weight_decay: AdamW decoupled weight decay.

    Raises:
        ValueError: unknown dtype, or bfloat16 on a device without support.
    """
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    model = model.to(dtype=dtypes[dtype])
    model.eval()  # no dropout; the value must describe the function the learner steps on
    from vpt_gym.lm.tail import TailForward

    learner = TorchLearner(model, forward_fn=lm_forward, lr=lr, optimizer="adamw", weight_decay=weight_decay,
                           max_grad_norm=max_grad_norm, alignment=alignment, device=device)
    TailForward.attach(learner)  # forward-mode look-ahead through S only, where S is a tail of the blocks
    return learner
