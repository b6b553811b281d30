"""``vpt/LM-SoftTargets-v0`` (and its continuous variant): soft next-token targets steered by GSM8K feedback.

Presets are plain functions of a size name (:data:`LM_PRESETS`): ``tiny`` (~0.1 M params; tests, seconds),
``small`` (~1.1 M; CPU benchmarks, minutes) and ``paper`` (any ``AutoModelForCausalLM`` by path or hub id;
GPU). Data: GSM8K from ``data`` / ``$VPT_GYM_DATA`` (else the hub when online, else the embedded
reasoning-gym ``gsm_symbolic`` default), general prose from tinyshakespeare (else Python's pydoc topics).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch

from vpt_gym.budget import Budget
from vpt_gym.core import FeedbackSet, PretrainStream
from vpt_gym.envs.factory import card, keyword_signature, require_user_parts
from vpt_gym.envs.task_design import TaskDesignEnv
from vpt_gym.envs.task_design.env import check_feedback_momentum
from vpt_gym.lm.corpus import (
    EOS_TOKEN,
    PROCEDURAL_SOURCE,
    build_tokenizer,
    load_general_text,
    load_math_corpus,
    problem_texts,
    procedural_math_texts,
    resolve_data_dir,
)
from vpt_gym.lm.feedback import GSM8KFeedback
from vpt_gym.lm.model import (
    BaseModelConfig,
    cache_dir,
    load_or_pretrain_base,
    load_pretrained_lm,
    load_pretrained_tokenizer,
    make_lm_learner,
    pretrained_context_length,
    resolve_device,
)
from vpt_gym.lm.soft_targets import SoftTargetTaskSpace
from vpt_gym.lm.stream import TokenStream, tokenize_text
from vpt_gym.value import ValueEstimator, make_value_estimator


@dataclass(frozen=True, kw_only=True)
class LMPreset:
    """A size preset of the LM envs.

    Attributes:
        base: architecture and base pretraining (None for ``paper``: the model is loaded by path/id).
        batch_size / seq_len: pretraining rows per update and tokens per row.
        lr: continued-pretraining AdamW learning rate eta.
        budget: default learner updates per episode.
        feedback_batch_size / probe_size: feedback examples per g_down refresh / in the probe batch.
        eval_items / max_new_tokens: GSM8K test items and decoding length of the end-of-episode eval.
        dtype: learner dtype on CUDA (CPU always uses float32).
    """

    base: BaseModelConfig | None
    batch_size: int
    seq_len: int
    lr: float
    budget: int
    feedback_batch_size: int
    probe_size: int
    eval_items: int
    max_new_tokens: int
    dtype: str = "float32"


LM_PRESETS: dict[str, LMPreset] = {
    "tiny": LMPreset(
        base=BaseModelConfig(vocab_size=512, context_length=128, n_embd=48, n_layer=2, n_head=2,
                             base_steps=150, base_batch_size=16, base_seq_len=64),
        batch_size=8, seq_len=64, lr=1e-3, budget=16, feedback_batch_size=4, probe_size=4, eval_items=8,
        max_new_tokens=24,
    ),
    "small": LMPreset(
        base=BaseModelConfig(vocab_size=2048, context_length=256, n_embd=128, n_layer=4, n_head=4,
                             base_steps=400, base_batch_size=8, base_seq_len=128),
        batch_size=8, seq_len=128, lr=1e-3, budget=200, feedback_batch_size=8, probe_size=8, eval_items=64,
        max_new_tokens=128,
    ),
    "paper": LMPreset(
        base=None, batch_size=8, seq_len=512, lr=1e-5, budget=1000, feedback_batch_size=16, probe_size=16,
        eval_items=256, max_new_tokens=256, dtype="bfloat16",
    ),
}
"""Size presets: ``tiny`` (tests), ``small`` (CPU benchmarks), ``paper`` (GPU, real checkpoint)."""


MATH_STREAMS: tuple[str, ...] = ("gsm8k", "procedural")
"""The ``math_stream=`` choices: the unlabeled GSM8K train problems (v0), or
:func:`~vpt_gym.lm.corpus.procedural_math_texts` (no GSM8K-derived text, as the paper's stream, v2 App. F.2)."""

PROCEDURAL_MATH_SIZE = 6000
"""Texts in the procedural math stream (about GSM8K train's unlabeled part, 6,449)."""


@dataclass(frozen=True, kw_only=True)
class LMResources:
    """The shared, read-only parts of the LM envs' ``tiny``/``small`` presets (:func:`lm_resources`).

    Attributes:
        corpus: the GSM8K splits (:class:`~vpt_gym.lm.corpus.MathCorpus`: unlabeled, feedback, eval).
        general_source: the general prose's source name.
        tokenizer: the byte-level BPE ``tokenizers.Tokenizer`` trained on the general and math pretraining text.
        domains: ``{"math", "general"}`` -> the tokenized stream (int64 token ids, documents joined by EOS).
        state: the base checkpoint's state dict (theta_0).
        math_source: the math stream's source name (GSM8K train, or :data:`~vpt_gym.lm.corpus.PROCEDURAL_SOURCE`).
    """

    corpus: Any
    general_source: str
    tokenizer: Any
    domains: Mapping[str, torch.Tensor]
    state: Mapping[str, torch.Tensor]
    math_source: str


@functools.lru_cache(maxsize=4)
def lm_resources(size: str, data_dir: Path | None, cache: Path, feedback_size: int, split_seed: int,
                 math_stream: str = "gsm8k") -> LMResources:
    """The shared parts of the LM envs' ``tiny``/``small`` presets, built once per process (treat as read-only).

    Args:
        size: a key of :data:`LM_PRESETS` with a ``base`` config (``"tiny"`` or ``"small"``).
        data_dir: the data folder (``gsm8k/``, ``tinyshakespeare/``) or ``None`` for the hub/embedded default.
        cache: folder of the cached tokenizer and base checkpoint (built there when missing).
        feedback_size / split_seed: the GSM8K train feedback split (see :func:`load_math_corpus`).
        math_stream: a name in :data:`MATH_STREAMS`: the math pretraining text is GSM8K train's unlabeled
            part (``"gsm8k"``) or :data:`PROCEDURAL_MATH_SIZE` procedural problems seeded by ``split_seed``.

    Returns:
        An :class:`LMResources`.
    """
    preset = LM_PRESETS[size]
    corpus = load_math_corpus(data_dir, feedback_size=feedback_size, split_seed=split_seed)
    general, general_source = load_general_text(data_dir)
    math_texts, math_source = math_stream_texts(math_stream, corpus, split_seed)
    general_chunks = _chunks(general)
    assert preset.base is not None
    tokenizer = build_tokenizer(general_chunks + math_texts, vocab_size=preset.base.vocab_size, cache_dir=cache)
    eos = tokenizer.token_to_id(EOS_TOKEN)
    assert eos is not None  # build_tokenizer checks that EOS_TOKEN has id 0
    domains = {"math": tokenize_text(tokenizer, math_texts, eos),
               "general": tokenize_text(tokenizer, general_chunks, eos)}
    base = load_or_pretrain_base(preset.base, tokenizer.to_str(), domains["general"], cache)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    return LMResources(corpus=corpus, general_source=general_source, tokenizer=tokenizer, domains=domains,
                       state=state, math_source=math_source)


def math_stream_texts(math_stream: str, corpus, split_seed: int) -> tuple[list[str], str]:
    """The math pretraining texts of ``math_stream`` (a name in :data:`MATH_STREAMS`) and their source name:
    ``corpus.unlabeled`` as ``Question:/Answer:`` texts (``"gsm8k"``) or :data:`PROCEDURAL_MATH_SIZE`
    procedural problems seeded by ``split_seed`` (``"procedural"``)."""
    if math_stream == "procedural":
        return procedural_math_texts(split_seed, PROCEDURAL_MATH_SIZE), PROCEDURAL_SOURCE
    return problem_texts(corpus.unlabeled), corpus.source


def check_choice(name: str, value: Any, accepted) -> None:
    """Raise ``ValueError`` naming ``value`` and the accepted names unless ``value in accepted``."""
    if value not in accepted:
        raise ValueError(f"{name}={value!r} is not accepted; choose one of {sorted(accepted)}")


def check_lm_options(*, size: str, budget: int | None, updates_per_decision: int, feedback_period: int,
                     reward: str | ValueEstimator,
                     lr: float | None, model: str | None, device: str, dtype: str | None,
                     counts: dict[str, Any], split_seed: int = 0) -> tuple[LMPreset, Budget, torch.device, str]:
    """Validate the keywords every LM env shares, before any data is read or model built.

    Args:
        counts: optional positive-integer keywords by name (e.g. ``eval_items``); ``None`` means the preset's.
        split_seed: the feedback/eval split seed, an int >= 0 (checked here: a bool would hit the per-process
            caches as 0 or 1).

    Returns:
        (preset, budget, device, dtype name).

    Raises:
        ValueError: an unknown size, reward or dtype; a bad budget, lr or count; ``model`` missing for
            ``size="paper"`` or given for another size. RuntimeError: CUDA requested without a GPU.
    """
    check_choice("size", size, LM_PRESETS)
    preset = LM_PRESETS[size]
    budget_obj = Budget.of(preset.budget if budget is None else budget, updates_per_decision=updates_per_decision,
                           feedback_period=feedback_period)
    make_value_estimator(reward)  # validate the name before any work
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"split_seed must be an int >= 0, got {split_seed!r}")
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 or None, got {value!r}")
    if size == "paper" and not model:
        raise ValueError("size='paper' needs model=<local path or hub id>, e.g. a Qwen2.5-0.5B checkpoint folder")
    if size != "paper" and model is not None:
        raise ValueError(f"model={model!r} is only used by size='paper'; tiny/small build their own base")
    dev = resolve_device(device)
    chosen_dtype = dtype or (preset.dtype if dev.type == "cuda" else "float32")
    check_choice("dtype", chosen_dtype, {"float32", "bfloat16"})
    return preset, budget_obj, dev, chosen_dtype


@dataclass(frozen=True, kw_only=True)
class LMVersion:
    """What a version of the LM ids (LM-SoftTargets, LM-Domains) fixes on top of the size presets (Version History).

    Attributes:
        math_stream: the default ``math_stream`` (a name in :data:`MATH_STREAMS`).
        lr: size -> default AdamW learning rate where it differs from :data:`LM_PRESETS`.
        reward: the default ``reward`` (a name in :data:`vpt_gym.envs.REWARD_MODES`).
    """

    math_stream: str
    lr: Mapping[str, float]
    reward: str

    def resolve(self, size: str, math_stream: str | None, lr: float | None,
                reward: str | ValueEstimator | None) -> tuple[str, float | None, str | ValueEstimator]:
        """``(math_stream, lr, reward)`` with this version's default for each one given as ``None`` (``lr``
        stays ``None`` where the size preset's applies).

        Raises:
            ValueError: a ``math_stream`` not in :data:`MATH_STREAMS`.
        """
        math_stream = self.math_stream if math_stream is None else math_stream
        check_choice("math_stream", math_stream, MATH_STREAMS)
        return math_stream, self.lr.get(size) if lr is None else lr, self.reward if reward is None else reward


LM_VERSIONS: dict[int, LMVersion] = {
    0: LMVersion(math_stream="gsm8k", lr={}, reward="alignment"),
    1: LMVersion(math_stream="procedural", lr={"small": 1e-4}, reward="preconditioned"),
}
"""Defaults of each registered version of the LM-SoftTargets ids: v0 (GSM8K train solutions in the stream, lr
1e-3 at small, reward ``alignment``) and v1 (the procedural math stream, lr 1e-4 at small, reward
``preconditioned``).
README "Reward validity" holds the measurements behind v1."""


def _make_lm_env(
    version: int,
    /,
    *,
    continuous: bool,
    size: str = "tiny",
    data: str | Path | None = None,
    budget: int | None = None,
    reward: str | ValueEstimator | None = None,
    updates_per_decision: int = 1,
    feedback_period: int = 8,
    device: str = "auto",
    dtype: str | None = None,
    alignment: str | int = "last2",
    lr: float | None = None,
    math_fraction: float = 0.5,
    math_stream: str | None = None,
    feedback_size: int = 1024,
    split_seed: int = 0,
    eval_items: int | None = None,
    max_new_tokens: int | None = None,
    feedback_batch_size: int | None = None,
    feedback_momentum: float = 0.0,
    top_k: int = 64,
    alphas: tuple[float, ...] = (0.1, 0.25, 0.5),
    temperatures: tuple[float, ...] = (1.0,),
    alpha_max: float = 0.5,
    model: str | None = None,
    cache: str | Path | None = None,
    feedback_set: FeedbackSet | None = None,
    stream: PretrainStream | None = None,
) -> TaskDesignEnv:
    require_user_parts(feedback_set=feedback_set, stream=stream)
    check_feedback_momentum(feedback_momentum)
    if not 0.0 <= math_fraction <= 1.0:
        raise ValueError(f"math_fraction must be in [0, 1], got {math_fraction}")
    math_stream, lr, reward = LM_VERSIONS[version].resolve(size, math_stream, lr, reward)
    preset, budget_obj, dev, chosen_dtype = check_lm_options(
        size=size, budget=budget, updates_per_decision=updates_per_decision, feedback_period=feedback_period,
        reward=reward, lr=lr, model=model, device=device, dtype=dtype, split_seed=split_seed,
        counts={"eval_items": eval_items, "max_new_tokens": max_new_tokens,
                "feedback_batch_size": feedback_batch_size, "feedback_size": feedback_size})
    if preset.base is not None:
        vocab_size = preset.base.vocab_size
    else:
        assert model is not None  # check_lm_options: size='paper' needs model=
        from transformers import AutoConfig

        vocab_size = int(AutoConfig.from_pretrained(model).vocab_size)
    task_space = SoftTargetTaskSpace(vocab_size=vocab_size, domain_names=("math", "general"), top_k=top_k,
                                     alphas=alphas, temperatures=temperatures, alpha_max=alpha_max,
                                     continuous=continuous)  # validates the menu before any heavy work
    data_dir = resolve_data_dir(data)
    folder = cache_dir(cache)
    if preset.base is None:
        assert model is not None  # check_lm_options: size='paper' needs model=
        net, tokenizer, eos, corpus, general_source, domains, math_source = _load_pretrained(
            model, data_dir, feedback_size, split_seed, chosen_dtype, math_stream)
        context = pretrained_context_length(model)
    else:
        from vpt_gym.lm.model import build_gpt2

        shared = lm_resources(size, data_dir, folder, feedback_size, split_seed, math_stream)
        corpus, general_source, tokenizer = shared.corpus, shared.general_source, shared.tokenizer
        domains, state, math_source = shared.domains, shared.state, shared.math_source
        net = build_gpt2(preset.base)
        net.load_state_dict(state)
        eos, context = None, preset.base.context_length
    learner = make_lm_learner(net, lr=lr or preset.lr, alignment=alignment, device=dev, dtype=chosen_dtype)
    if stream is None:
        stream = TokenStream(domains, {"math": math_fraction, "general": 1.0 - math_fraction},
                             batch_size=preset.batch_size, seq_len=min(preset.seq_len, context))
    feedback = feedback_set
    if feedback is None:
        feedback = GSM8KFeedback(
            feedback=corpus.feedback, eval=corpus.eval, tokenizer=tokenizer, context_length=context,
            batch_size=min(feedback_batch_size or preset.feedback_batch_size, len(corpus.feedback)),
            probe_size=preset.probe_size, eval_items=min(eval_items or preset.eval_items, len(corpus.eval)),
            max_new_tokens=min(max_new_tokens or preset.max_new_tokens, context // 2), source=corpus.source,
            eos_token_id=eos,
        )
    return TaskDesignEnv(learner=learner, task_space=task_space, stream=stream, feedback=feedback, budget=budget_obj,
                         reward=reward, feedback_momentum=feedback_momentum,
                         data_sources={"math": math_source, "general": general_source})


def _load_pretrained(model: str, data_dir: Path | None, feedback_size: int, split_seed: int, dtype: str,
                     math_stream: str = "gsm8k"):
    """The ``paper`` preset's parts: ``AutoModelForCausalLM.from_pretrained(model)``, its tokenizer and eos id,
    the math corpus and the token streams tokenized with that tokenizer."""
    tokenizer, eos = load_pretrained_tokenizer(model)
    net = load_pretrained_lm(model, dtype)
    corpus = load_math_corpus(data_dir, feedback_size=feedback_size, split_seed=split_seed)
    general, general_source = load_general_text(data_dir)
    math_texts, math_source = math_stream_texts(math_stream, corpus, split_seed)
    domains = {"math": tokenize_text(tokenizer, math_texts, eos),
               "general": tokenize_text(tokenizer, _chunks(general), eos)}
    return net, tokenizer, eos, corpus, general_source, domains, math_source


def _chunks(text: str, size: int = 2000) -> list[str]:
    """``text`` cut into pieces of ``size`` characters (for batched tokenization)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


_LM_CARD = """
    Observation Space:
        ``Box(float32)``; names in ``env.unwrapped.observation_names`` (K = 7 for the Discrete menu, 1 for
        the Box variant, whose per-task entries are ``last_value[continuous]`` and ``frequency[continuous]``):

        | index | name | feature | range | unit |
        |---|---|---|---|---|
        $BASE_ROWS
        | 6..5+K | ``last_value[<task>]`` | eta g_down.g_pre at the task's last update (0 before) | [-1e6, 1e6] | nats |
        | 6+K..5+2K | ``frequency[<task>]`` | fraction of the updates so far that used each task | [0, 1] | - |
        | 6+2K | ``batch.fraction_math`` | fraction of the next batch's rows that are math text | [0, 1] | - |
        | 7+2K | ``batch.fraction_general`` | fraction of rows that are general prose | [0, 1] | - |
        | 8+2K | ``batch.loss`` | the learner's one-hot next-token loss on the next batch | [0, 1e3] | nats/token |
        | 9+2K | ``batch.entropy`` | the learner's mean predictive entropy on the next batch | [0, ln V] | nats |

        Math text is GSM8K solutions in v0 and procedural problems in v1. Losses are in nats per token; the
        ``batch.*`` descriptors come from the forward pass of the next update, run before the observation is
        returned.

    Reward:
        ``alignment`` (v0's default): eta * g_down,S . g_pre,S, S = the last two transformer blocks
        (``alignment="last2"``), g_down the gradient of the GSM8K solution NLL (question tokens masked) on a
        feedback batch from the feedback split (1,024 GSM8K train problems), refreshed every
        ``feedback_period`` decisions. ``preconditioned`` (v1's default): eta sum_S g_down * g / (sqrt(v_hat)
        + eps), the first-order value of the AdamW step (v2 App. B.4); under AdamW the step is not eta g_pre,
        and this value ranks the tasks by their realized held-out drop far better than ``alignment`` (README
        "Reward validity"). Also ``cosine``, ``value_gain``, ``metric_gain`` (Pass@1 on the probe
        batch: greedy decoding every update) and ``advantage``. Source: V-Pretraining v2 Eq. 8-9, 28.

    Episode End:
        ``terminated`` when the budget of learner updates is spent or on divergence (``info["diverged"]``);
        ``info["eval"]`` then holds ``eval_nll`` (solution NLL, nats/token) and ``eval_pass@1`` (greedy
        exact match) on the first ``eval_items`` GSM8K **test** problems (tiny 8, small 64, paper 256).

    Budget:
        ``budget`` learner updates (preset default: tiny 16, small 200, paper 1000), one AdamW step each;
        ``info["ledger"]`` counts learner, feedback and look-ahead forward/backward passes, the learner's
        examples and tokens, and the feedback examples and tokens read (``feedback_examples``/``_tokens``).

    Arguments:
        size: ``"tiny"`` (~0.09 M params; tests, seconds) | ``"small"`` (~1.1 M; CPU, minutes) | ``"paper"``
            (``model=`` a causal LM; GPU, bf16); see :data:`LM_PRESETS`.
        data: folder with ``gsm8k/{train,test}.jsonl`` and ``tinyshakespeare/input.txt`` (default
            ``$VPT_GYM_DATA``; else the hub when online with the ``hub`` extra, else the embedded
            reasoning-gym ``gsm_symbolic`` default).
        budget: learner updates per episode (default: the preset's).
        reward: ``alignment`` | ``cosine`` | ``value_gain`` | ``metric_gain`` | ``advantage`` | ``preconditioned``
            (default: v0 ``alignment``, v1 ``preconditioned``).
        updates_per_decision, feedback_period: see :class:`~vpt_gym.budget.Budget` (defaults 1 and 8).
        device: ``"auto"`` (CUDA when available) | ``"cpu"`` | ``"cuda"``; dtype: ``"float32"`` | ``"bfloat16"``.
        alignment: subset S (default ``"last2"``, the last two transformer blocks; ``"lastN"``; ``"all"``).
        math_fraction: probability that a pretraining row is math text (else general prose), in [0, 1].
        math_stream: the math pretraining text: ``"gsm8k"`` (GSM8K train's unlabeled part; v0's default) or
            ``"procedural"`` (v1's default: 6,000 reasoning-gym arithmetic and short word problems, none
            GSM8K-derived, as the paper's stream, v2 App. F.2).
        lr: AdamW learning rate (default: the preset's; v1 small: 1e-4).
        feedback_size: GSM8K train examples in the feedback split (default 1,024, the paper's).
        split_seed: seed of the feedback/unlabeled split of GSM8K train (fixed across episodes).
        eval_items, max_new_tokens: GSM8K test items and decoding length of the end-of-episode eval.
        feedback_batch_size: feedback examples per g_down refresh (default: the preset's, tiny 4, small 8, paper
            16; capped at ``feedback_size``). The refresh's cost scales with it (with ``feedback_period=1`` it
            is most of the env's overhead); a smaller batch gives a noisier g_down, hence a noisier reward, so
            compare designers only at the same value.
        feedback_momentum: running average of g_down across refreshes, beta in [0, 1): each refresh sets
            g_down <- beta g_down + (1 - beta) g_new (default 0: the fresh gradient only).
        top_k, alphas, temperatures, alpha_max: the soft-target menu.
        model: ``size="paper"`` only: local path or hub id of an ``AutoModelForCausalLM``.
        cache: cache folder for tokenizers and base checkpoints (default ``$VPT_GYM_CACHE`` or
            ``~/.cache/vpt_gym``).
        feedback_set: your own :class:`~vpt_gym.core.FeedbackSet` in place of the GSM8K solution-NLL feedback
            (its feedback split gives g_down and the probes, its eval split ``info["eval"]``); checked first.
        stream: your own :class:`~vpt_gym.core.PretrainStream` of token batches
            (:class:`~vpt_gym.lm.stream.TokenBatch`: ``input_ids`` [batch, seq] int64 and a ``domain`` index per
            row) in place of the math + prose stream.
            An env built with a part object cannot go into a suite or be replayed from a results row.

    Raises:
        ValueError: any argument outside its accepted range (before any data is read or model built).
        TypeError: a ``feedback_set`` or ``stream`` that misses members of its Protocol (names them).
        FileNotFoundError: ``data`` names a missing folder or file.

    Version History:
        v0: initial release: the math rows are GSM8K train's unlabeled solutions (``math_stream="gsm8k"``),
            small's lr 1e-3.
        v1: the math rows are procedural reasoning-gym problems, none GSM8K-derived
            (``math_stream="procedural"``, as the paper's stream, v2 App. F.2), small's lr is 1e-4 (the paper
            continues pretraining at a small lr; tiny and paper keep theirs) and the default reward is
            ``preconditioned``. Chosen from README "Reward validity".
            Published v0 rows replay under v0.
"""


@keyword_signature(_make_lm_env, fixed=("continuous",))
def make_soft_targets_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-SoftTargets-v0``: a ``Discrete`` menu of soft next-token targets for the next update.

    Description:
        Continued pretraining of a causal LM (``transformers``; a GPT-2 configuration built and pretrained
        here for ``tiny``/``small``, any ``AutoModelForCausalLM`` for ``paper``) on a stream mixing GSM8K
        worked solutions (the unlabeled part of GSM8K train) and general prose; the designer picks, each
        decision, how the next update's next-token targets are built. The learner never sees the feedback
        labels. Source: V-Pretraining (arXiv 2601.22108) v2 §2, Eq. 14-15.

    Action Space:
        ``Discrete(7)``: 0 ``one_hot`` (standard next-token prediction, the matched-budget baseline);
        1-3 ``uniform_top64_a{0.1,0.25,0.5}`` (uniform top-K smoothing); 4-6 ``self_top64_a{0.1,0.25,0.5}_t1``
        (self top-K distillation at temperature 1).
    """
    return _make_lm_env(0, continuous=False, **kwargs)


@keyword_signature(_make_lm_env, fixed=("continuous",))
def make_soft_targets_continuous_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-SoftTargetsContinuous-v0``: ``Box([-1, 1]^2)`` -> self top-K distillation (alpha, tau).

    Description:
        The learner, data and feedback of ``vpt/LM-SoftTargets-v0``; the action sets the gate and the
        temperature of self top-K distillation continuously. Source: V-Pretraining v2 §2, Eq. 14-15.

    Action Space:
        ``Box(-1, 1, (2,), float32)``: alpha = alpha_max * (a0 + 1) / 2 in [0, 0.5]; tau = 0.25 * 16 **
        ((a1 + 1) / 2) in [0.25, 4]; the standard action [-1, 0] is one-hot prediction (alpha = 0).
    """
    return _make_lm_env(0, continuous=True, **kwargs)


@keyword_signature(_make_lm_env, fixed=("continuous",))
def make_soft_targets_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-SoftTargets-v1``: the menu of ``vpt/LM-SoftTargets-v0`` on v1's stream and lr.

    Description:
        Continued pretraining of a causal LM (``transformers``; a GPT-2 configuration built and pretrained
        here for ``tiny``/``small``, any ``AutoModelForCausalLM`` for ``paper``) on a stream mixing
        procedural math problems (reasoning-gym arithmetic and short word problems, none derived from GSM8K)
        and general prose; the designer picks, each decision, how the next update's next-token targets are
        built, steered by GSM8K feedback. The learner never sees GSM8K text. Source: V-Pretraining (arXiv
        2601.22108) v2 §2, Eq. 14-15; the stream as in v2 App. F.2.

    Action Space:
        ``Discrete(7)``: 0 ``one_hot`` (standard next-token prediction, the matched-budget baseline);
        1-3 ``uniform_top64_a{0.1,0.25,0.5}`` (uniform top-K smoothing); 4-6 ``self_top64_a{0.1,0.25,0.5}_t1``
        (self top-K distillation at temperature 1).
    """
    return _make_lm_env(1, continuous=False, **kwargs)


@keyword_signature(_make_lm_env, fixed=("continuous",))
def make_soft_targets_continuous_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-SoftTargetsContinuous-v1``: ``Box([-1, 1]^2)`` -> self top-K distillation (alpha, tau).

    Description:
        The learner, data and feedback of ``vpt/LM-SoftTargets-v1``; the action sets the gate and the
        temperature of self top-K distillation continuously. Source: V-Pretraining v2 §2, Eq. 14-15.

    Action Space:
        ``Box(-1, 1, (2,), float32)``: alpha = alpha_max * (a0 + 1) / 2 in [0, 0.5]; tau = 0.25 * 16 **
        ((a1 + 1) / 2) in [0.25, 4]; the standard action [-1, 0] is one-hot prediction (alpha = 0).
    """
    return _make_lm_env(1, continuous=True, **kwargs)


for _factory in (make_soft_targets_env, make_soft_targets_continuous_env, make_soft_targets_env_v1,
                 make_soft_targets_continuous_env_v1):
    _factory.__doc__ = card((_factory.__doc__ or "") + _LM_CARD)
