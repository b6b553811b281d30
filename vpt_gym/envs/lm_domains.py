"""``vpt/LM-Domains-v0``/``-v1`` (and continuous variants): choose which data domain feeds the next learner update.

The action picks a mixture over declared text domains (:mod:`vpt_gym.lm.domains`: GSM8K worked solutions,
standard-library code, prose); each pretraining row's domain is drawn from it, and the reward is the
alignment of the update with a multitask feedback gradient (:mod:`vpt_gym.lm.multitask`). Learner,
tokenizer, base checkpoint theta_0 and presets are those of ``vpt/LM-SoftTargets-v0``
(:data:`vpt_gym.envs.lm.LM_PRESETS`): the byte-level BPE trained on prose + math and the base pretrained on
prose, so both envs share one cache entry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from vpt_gym.core import FeedbackSet
from vpt_gym.envs.factory import card, keyword_signature, require_user_parts
from vpt_gym.envs.lm import LMVersion, check_lm_options, lm_resources, math_stream_texts
from vpt_gym.envs.task_design import TaskDesignEnv
from vpt_gym.envs.task_design.env import check_feedback_momentum
from vpt_gym.lm.corpus import EOS_TOKEN, load_math_corpus, problem_texts, resolve_data_dir
from vpt_gym.lm.domains import (
    DomainStream,
    TextDomain,
    code_domain,
    prose_domain,
    tokenize_domains,
)
from vpt_gym.lm.feedback import GSM8KFeedback
from vpt_gym.lm.mixture import DomainMixtureTaskSpace
from vpt_gym.lm.model import (
    load_pretrained_lm,
    load_pretrained_tokenizer,
    make_lm_learner,
    pretrained_context_length,
)
from vpt_gym.lm.multitask import HeldoutNLLFeedback, MultitaskFeedback, normalized_weights
from vpt_gym.utils import cache_dir
from vpt_gym.value import ValueEstimator

BUILTIN_DOMAINS = ("math", "code", "prose")
# The task space (DomainMixtureTaskSpace) lives with the other LM task spaces, in vpt_gym/lm/mixture.py.
# ----------------------------------------------------------------------------------------------- factories
@dataclass(frozen=True, kw_only=True)
class DomainResources:
    """The shared parts of the LM-Domains envs, built once per process (treat as read-only).

    Attributes:
        corpus: the GSM8K math corpus (feedback and eval splits).
        tokenizer: the learner's ``tokenizers.Tokenizer``.
        eos: the GSM8K feedback's eos id for a hub tokenizer (None: the built tokenizer's id 0).
        state: the base checkpoint's state dict (tiny/small), None for ``paper``.
        tokenized: the tokenized domains by name (``vpt_gym.lm.domains.tokenize_domains``).
    """

    corpus: Any
    tokenizer: Any
    eos: int | None
    state: Mapping[str, torch.Tensor] | None
    tokenized: dict[str, Any]


@functools.lru_cache(maxsize=4)
def domain_resources(size: str, data_dir: Path | None, cache: Path, feedback_size: int, split_seed: int,
                     seq_len: int, builtins: tuple[str, ...], extra: tuple[TextDomain, ...], model: str | None,
                     math_stream: str = "gsm8k") -> DomainResources:
    """Math corpus, tokenizer, eos id (None: the built tokenizer's id 0), base state (tiny/small) and the
    tokenized domains (the ``builtins`` used as menu domains or feedback tasks, then ``extra``; ``math`` is the
    text of ``math_stream``, see :func:`vpt_gym.envs.lm.math_stream_texts`); cached per process (read-only)."""
    state = None
    if model is not None:
        tokenizer, eos = load_pretrained_tokenizer(model)
        gsm8k_eos = eos
        corpus = load_math_corpus(data_dir, feedback_size=feedback_size, split_seed=split_seed)
    else:
        shared = lm_resources(size, data_dir, cache, feedback_size, split_seed, math_stream)
        corpus, tokenizer, state = shared.corpus, shared.tokenizer, shared.state
        eos, gsm8k_eos = tokenizer.token_to_id(EOS_TOKEN), None

    def math() -> TextDomain:
        texts, source = math_stream_texts(math_stream, corpus, split_seed)
        return TextDomain(name="math", source=source, pretrain=tuple(texts))

    makers = {"math": math, "code": code_domain, "prose": lambda: prose_domain(data_dir)}
    declared = tuple(makers[n]() for n in builtins) + extra
    heldout = [enc.ids + [eos] for enc in tokenizer.encode_batch(problem_texts(corpus.feedback + corpus.eval))]
    tokenized = tokenize_domains(declared, tokenizer, eos, window=seq_len, extra_heldout=heldout)
    return DomainResources(corpus=corpus, tokenizer=tokenizer, eos=gsm8k_eos, state=state, tokenized=tokenized)


def _domain_losses(learner, tokenized, names: Sequence[str], rows: int, seq_len: int) -> dict[str, float]:
    """The learner's mean next-token NLL on ``rows`` evenly spaced pretraining windows of each domain."""
    out = {}
    with torch.no_grad():
        for name in names:
            toks = tokenized[name].tokens
            starts = torch.linspace(0, toks.numel() - seq_len - 1, rows).long()
            ids = toks[starts[:, None] + torch.arange(seq_len)].to(learner.device)
            logits = learner.module(input_ids=ids).logits[:, :-1]
            out[name] = float(F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten()))
    return out


DOMAINS_VERSIONS: dict[int, LMVersion] = {
    0: LMVersion(math_stream="gsm8k", lr={}, reward="alignment"),
    1: LMVersion(math_stream="procedural", lr={"small": 1e-4}, reward="preconditioned"),
}
"""Defaults of each registered version of the LM-Domains ids (the fields of :class:`vpt_gym.envs.lm.LMVersion`):
v0 (the ``math`` domain is GSM8K train's worked solutions, lr 1e-3 at small, reward ``alignment``) and v1 (the
procedural math stream of ``vpt/LM-SoftTargets-v1``, lr 1e-4 at small, reward ``preconditioned``). README "Reward
validity" holds the measurements behind v1."""


def _make_domains_env(
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
    feedback_size: int = 1024,
    split_seed: int = 0,
    eval_items: int | None = None,
    max_new_tokens: int | None = None,
    feedback_batch_size: int | None = None,
    feedback_momentum: float = 0.0,
    heldout_eval_windows: int | None = None,
    domains: Sequence[str] = BUILTIN_DOMAINS,
    extra_domains: Sequence[TextDomain] = (),
    feedback: Mapping[str, float] | None = None,
    domain_matched: bool = False,
    mixtures: Mapping[str, Mapping[str, float]] | None = None,
    logit_scale: float = 3.0,
    math_stream: str | None = None,
    model: str | None = None,
    cache: str | Path | None = None,
    feedback_set: FeedbackSet | None = None,
) -> TaskDesignEnv:
    require_user_parts(feedback_set=feedback_set)
    math_stream, lr, reward = DOMAINS_VERSIONS[version].resolve(size, math_stream, lr, reward)
    preset, budget_obj, dev, chosen_dtype = check_lm_options(
        size=size, budget=budget, updates_per_decision=updates_per_decision, feedback_period=feedback_period,
        reward=reward, lr=lr, model=model, device=device, dtype=dtype, split_seed=split_seed,
        counts={"eval_items": eval_items, "max_new_tokens": max_new_tokens, "feedback_size": feedback_size,
                "heldout_eval_windows": heldout_eval_windows, "feedback_batch_size": feedback_batch_size})
    check_feedback_momentum(feedback_momentum)
    extra = tuple(extra_domains)
    if not all(isinstance(d, TextDomain) for d in extra):
        raise ValueError(f"extra_domains must be TextDomain objects, got {[type(d).__name__ for d in extra]}")
    known = BUILTIN_DOMAINS + tuple(d.name for d in extra)
    if len(set(known)) != len(known):
        raise ValueError(f"extra domain names {[d.name for d in extra]} clash with the built-in {BUILTIN_DOMAINS}")
    names = tuple(domains) + tuple(d.name for d in extra if d.name not in domains)
    unknown = [n for n in names if n not in known]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"domains={tuple(domains)} must be distinct names from {list(known)}; bad: {unknown}")
    with_feedback = ("gsm8k",) + tuple(n for n in known if n in ("code", "prose") or
                                       any(d.name == n and d.has_feedback for d in extra))
    omega = dict(feedback if feedback is not None else {"gsm8k": 0.5, "code": 0.5})
    bad = sorted(set(omega) - set(with_feedback))
    if not omega or bad:
        raise ValueError(f"feedback={omega} names unknown feedback task(s) {bad}; accepted: {list(with_feedback)}")
    matched = {j: ("math" if j == "gsm8k" else j) for j in omega}
    task_space = DomainMixtureTaskSpace(domain_names=names, continuous=continuous, mixtures=mixtures,
                                        logit_scale=logit_scale)  # validates mixtures before any heavy work
    normalized_weights(omega)  # finite, >= 0, positive sum
    used = tuple(n for n in BUILTIN_DOMAINS if n in names or n in omega)

    data_dir = resolve_data_dir(data)
    folder = cache_dir(cache)
    if preset.base is None:  # check_lm_options requires model for size="paper" (the preset without a base)
        context = pretrained_context_length(cast(str, model))
    else:
        context = preset.base.context_length
    seq_len = min(preset.seq_len, context)
    shared = domain_resources(size, data_dir, folder, feedback_size, split_seed, seq_len, used, extra, model,
                              math_stream)
    corpus, tokenizer, eos, state, tokenized = (shared.corpus, shared.tokenizer, shared.eos, shared.state,
                                                shared.tokenized)
    if preset.base is None:
        net = load_pretrained_lm(cast(str, model), chosen_dtype)
    else:
        from vpt_gym.lm.model import build_gpt2

        net = build_gpt2(preset.base)
        net.load_state_dict(state)
    learner = make_lm_learner(net, lr=lr or preset.lr, alignment=alignment, device=dev, dtype=chosen_dtype)
    task_space.set_initial_losses(_domain_losses(learner, tokenized, names, preset.batch_size, seq_len))
    stream = DomainStream({n: tokenized[n].tokens for n in names}, batch_size=preset.batch_size, seq_len=seq_len)
    tasks: dict[str, Any] = {}
    fb_batch = feedback_batch_size or preset.feedback_batch_size
    for j in omega:
        if j == "gsm8k":
            tasks[j] = GSM8KFeedback(
                feedback=corpus.feedback, eval=corpus.eval, tokenizer=tokenizer, context_length=context,
                batch_size=min(fb_batch, len(corpus.feedback)), probe_size=preset.probe_size,
                eval_items=min(eval_items or preset.eval_items, len(corpus.eval)),
                max_new_tokens=min(max_new_tokens or preset.max_new_tokens, context // 2), source=corpus.source,
                eos_token_id=eos)
        else:
            dom = tokenized[j]
            tasks[j] = HeldoutNLLFeedback(
                feedback=dom.feedback_windows, eval=dom.eval_windows,
                batch_size=min(fb_batch, dom.feedback_windows.shape[0]),
                probe_size=min(preset.probe_size, dom.feedback_windows.shape[0]),
                eval_items=min(heldout_eval_windows or 4 * preset.eval_items, dom.eval_windows.shape[0]),
                source=f"{dom.source} (held-out files/chunks)")
    multitask = MultitaskFeedback(tasks, omega, matched_domains=matched, domain_matched=domain_matched)
    return TaskDesignEnv(
        learner=learner, task_space=task_space, stream=stream,
        feedback=multitask if feedback_set is None else feedback_set, budget=budget_obj, reward=reward,
        feedback_momentum=feedback_momentum, data_sources={n: tokenized[n].source for n in names},
        decontamination={n: {"documents": tokenized[n].documents, "dropped": tokenized[n].dropped} for n in names})


_DOMAINS_CARD = """
    Observation Space:
        ``Box(float32)``; names in ``env.unwrapped.observation_names``. K = menu size (4 with the defaults;
        1 for the Box variant, whose per-task entries are ``last_value[continuous]`` and
        ``frequency[continuous]``); D = 3 domains (``math``, ``code``, ``prose``), each ``<domain>`` row below
        is one feature per domain, in that order:

        | index | name | feature | range | unit |
        |---|---|---|---|---|
        $BASE_ROWS
        | 6..5+K | ``last_value[<task>]`` | eta g_down.g_pre at the task's last update (0 before) | [-1e6, 1e6] | nats |
        | 6+K..5+2K | ``frequency[<task>]`` | fraction of the updates so far that used each task | [0, 1] | - |
        | 6+2K..8+2K | ``batch.standard_fraction_<domain>`` | next batch's rows per domain, standard task | [0, 1] | - |
        | 9+2K..11+2K | ``batch.ema_loss_<domain>`` | EMA of trained rows' NLL per domain | [0, 1e3] | nats/tok. |
        | 12+2K..14+2K | ``batch.row_fraction_<domain>`` | fraction of trained rows per domain | [0, 1] | - |

        With the default domains the descriptor names are ``batch.standard_fraction_math``,
        ``batch.standard_fraction_code``, ``batch.standard_fraction_prose``, ``batch.ema_loss_math``,
        ``batch.ema_loss_code``, ``batch.ema_loss_prose``, ``batch.row_fraction_math``,
        ``batch.row_fraction_code``, ``batch.row_fraction_prose``. The loss EMAs start at the learner's NLL
        at theta_0 and use decay 0.9.

    Reward:
        ``alignment`` (v0's default): eta * g_down,S . g_pre,S with g_down = sum_j omega_j g_j over the feedback
        tasks (default ``{"gsm8k": 0.5, "code": 0.5}``: GSM8K solution NLL and held-out stdlib code NLL);
        with ``domain_matched=True``, g_down(task) = sum_j pi_{d(j)} g_j (each domain paired with its own
        feedback). ``preconditioned`` (v1's default): eta sum_S g_down * g / (sqrt(v_hat) + eps), the
        first-order value of the AdamW step (v2 App. B.4). Also ``cosine``, ``value_gain``, ``metric_gain``,
        ``advantage``.

    Episode End:
        ``terminated`` when the budget of learner updates is spent or on divergence; ``info["eval"]`` then
        lists every feedback task's held-out metrics (``"gsm8k/eval_nll"``, ``"gsm8k/eval_pass@1"``,
        ``"code/eval_nll"``, ...) and ``"eval_nll"``, their omega-weighted NLL.

    Budget:
        ``budget`` learner updates (preset default: tiny 16, small 200, paper 1000); ``info["ledger"]`` counts
        passes, examples and tokens (of the materialized views), and feedback examples and tokens.

    Arguments:
        size, data, budget, reward, updates_per_decision, feedback_period, device, dtype, alignment, lr,
            feedback_size, split_seed, eval_items, max_new_tokens, feedback_batch_size, feedback_momentum, model,
            cache: as in :func:`vpt_gym.envs.lm.make_soft_targets_env` (same presets, tokenizer and base checkpoint).
        heldout_eval_windows: eval windows of each held-out NLL task (default 4 * the preset's eval_items).
        domains: built-in domains in the menu, subset of ``("math", "code", "prose")`` (default all three).
        extra_domains: further :class:`~vpt_gym.lm.domains.TextDomain` objects (always in the menu; one with
            feedback/eval texts can be a feedback task under its name).
        feedback: feedback task -> omega (>= 0, finite, positive sum; normalized); tasks ``"gsm8k"``,
            ``"code"``, ``"prose"`` or an extra domain with held-out texts.
        domain_matched: score each update with its domains' own feedback (gsm8k <-> math).
        feedback_set: your own :class:`~vpt_gym.core.FeedbackSet` in place of the one built from ``feedback``
            (its feedback split gives g_down and the probes, its eval split ``info["eval"]``); checked before
            any work. An env built with a part object cannot go into a suite or be replayed from a results row.
        mixtures: extra named menu entries, name -> {domain: weight} on the simplex (Discrete only).
        logit_scale: softmax scale of the Box variant (default 3, finite, > 0).
        math_stream: the ``math`` domain's text: ``"gsm8k"`` (GSM8K train's unlabeled part; v0's default) or
            ``"procedural"`` (v1's default; see :data:`vpt_gym.envs.lm.MATH_STREAMS`).

    Raises:
        ValueError: any argument outside its range (a mixture off the simplex or non-finite, unknown domain
            or feedback names, ...) before any data is read or model built.
        FileNotFoundError: ``data`` names a missing folder.

    Version History:
        v0: initial release: the ``math`` domain is GSM8K train's unlabeled worked solutions, small's lr 1e-3,
            default reward ``alignment``.
        v1: the ``math`` domain is the procedural stream of ``vpt/LM-SoftTargets-v1`` (``math_stream="procedural"``,
            no GSM8K-derived text, as the paper's stream, v2 App. F.2), small's lr is 1e-4 and the default reward
            is ``preconditioned``. Chosen from README "Reward validity". Published v0 rows replay under v0.
"""


@keyword_signature(_make_domains_env, fixed=("continuous",))
def make_domains_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-Domains-v0``: a ``Discrete`` menu of data-domain mixtures for the next learner update.

    Description:
        Continued pretraining of a causal LM (one-hot next-token prediction) where the designer picks, each
        decision, which data domain(s) feed the update: GSM8K worked solutions (``math``, the unlabeled train
        part only), Python standard-library sources (``code``) and Tiny Shakespeare (``prose``), plus any
        declared ``extra_domains``. Closest to online data mixing (ODM, DoReMi, DoGE), steered by gradient
        alignment with a multitask feedback set. Learner, tokenizer and base checkpoint are those of
        ``vpt/LM-SoftTargets-v0``. Source: V-Pretraining (arXiv 2601.22108) v2 multitask setting, Eq. 44-46.

    Action Space:
        ``Discrete(1 + D + len(mixtures))``: 0 ``uniform`` (the standard task: each row's domain uniform, the
        matched-budget baseline), 1..D ``only_<domain>`` (domains in ``domains`` order), then ``mixtures``.
    """
    return _make_domains_env(0, continuous=False, **kwargs)


@keyword_signature(_make_domains_env, fixed=("continuous",))
def make_domains_continuous_env(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-DomainsContinuous-v0``: ``Box([-1, 1]^D)`` -> mixture pi = softmax(logit_scale * a).

    Description:
        ``vpt/LM-Domains-v0`` with a continuous action: each pretraining row's domain is drawn from pi (see
        :class:`DomainMixtureTaskSpace`). ``logit_scale`` (default 3) bounds the odds between two domains by
        exp(2 * logit_scale).

    Action Space:
        ``Box(-1, 1, (D,), float32)`` (D = 3 with the defaults), pi = softmax(logit_scale * a); the standard
        action 0 is the uniform mixture. No ``mixtures``.
    """
    return _make_domains_env(0, continuous=True, **kwargs)


@keyword_signature(_make_domains_env, fixed=("continuous",))
def make_domains_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-Domains-v1``: the domain menu of ``vpt/LM-Domains-v0`` on v1's math stream and lr.

    Description:
        Continued pretraining of a causal LM (one-hot next-token prediction) where the designer picks, each
        decision, which data domain(s) feed the update: procedural math problems (``math``: the reasoning-gym
        stream of ``vpt/LM-SoftTargets-v1``, none derived from GSM8K), Python standard-library sources
        (``code``) and Tiny Shakespeare (``prose``), plus any declared ``extra_domains``; feedback as v0 (GSM8K
        solution NLL + held-out code NLL). Source: V-Pretraining (arXiv 2601.22108) v2 multitask setting,
        Eq. 44-46; the stream as in v2 App. F.2.

    Action Space:
        ``Discrete(1 + D + len(mixtures))``: 0 ``uniform`` (the standard task: each row's domain uniform, the
        matched-budget baseline), 1..D ``only_<domain>`` (domains in ``domains`` order), then ``mixtures``.
    """
    return _make_domains_env(1, continuous=False, **kwargs)


@keyword_signature(_make_domains_env, fixed=("continuous",))
def make_domains_continuous_env_v1(**kwargs: Any) -> TaskDesignEnv:
    """Build ``vpt/LM-DomainsContinuous-v1``: ``Box([-1, 1]^D)`` -> mixture pi = softmax(logit_scale * a).

    Description:
        ``vpt/LM-Domains-v1`` with the continuous action of ``vpt/LM-DomainsContinuous-v0``.

    Action Space:
        ``Box(-1, 1, (D,), float32)`` (D = 3 with the defaults), pi = softmax(logit_scale * a); the standard
        action 0 is the uniform mixture. No ``mixtures``.
    """
    return _make_domains_env(1, continuous=True, **kwargs)


for _factory in (make_domains_env, make_domains_continuous_env, make_domains_env_v1, make_domains_continuous_env_v1):
    _factory.__doc__ = card((_factory.__doc__ or "") + _DOMAINS_CARD)
