"""vpt/LM-Domains-v0: domain sampling, mixtures, multitask feedback, domain-matched alignment, no leaks."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.core import Task
from vpt_gym.lm.mixture import DomainMixtureTaskSpace
from vpt_gym.lm.corpus import load_math_corpus, problem_texts, resolve_data_dir
from vpt_gym.lm.domains import (
    DECONTAMINATION_TOKENS,
    DomainStream,
    TextDomain,
    check_mixture,
    code_domain,
    split_of,
    window_hashes,
)
from vpt_gym.lm.stream import TokenStream

SMOKE = {"size": "tiny", "eval_items": 2, "max_new_tokens": 8, "heldout_eval_windows": 4}
NAMES = ("math", "code", "prose")


def _make(**kwargs) -> gym.Env:
    return gym.make("vpt/LM-Domains-v0", **{**SMOKE, "budget": 8, **kwargs})


def _episode_rewards(env: gym.Env, action, seed: int) -> list[float]:
    env.reset(seed=seed)
    rewards, done = [], False
    while not done:
        _, reward, done, _, _ = env.step(action)
        rewards.append(reward)
    return rewards


def _fake_domains(seed: int = 0) -> dict[str, torch.Tensor]:
    """Unit-test fake token streams of different lengths (no real data needed for sampling logic)."""
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randint(1, 500, (length,), generator=g) for n, length in zip(NAMES, (5000, 3001, 777))}


def _space_and_stream(batch_size: int = 8, **kwargs) -> tuple[DomainMixtureTaskSpace, DomainStream]:
    space = DomainMixtureTaskSpace(domain_names=NAMES, **kwargs)
    space.reset(torch.Generator().manual_seed(123))
    stream = DomainStream(_fake_domains(), batch_size=batch_size, seq_len=16)
    stream.reset(torch.Generator().manual_seed(7))
    return space, stream


# ------------------------------------------------------------------------------------------- sampling
def test_uniform_mixture_reproduces_uniform_domain_sampling() -> None:
    """The standard task's views are exactly TokenStream's batches with equal domain weights (same seed)."""
    space, stream = _space_and_stream()
    reference = TokenStream(_fake_domains(), {n: 1.0 for n in NAMES}, batch_size=8, seq_len=16)
    reference.reset(torch.Generator().manual_seed(7))
    cont = DomainMixtureTaskSpace(domain_names=NAMES, continuous=True)
    cont.reset(torch.Generator().manual_seed(5))
    uniform, standard_box = space.tasks[0], cont.task(cont.standard_action)
    assert uniform.name == "uniform" and space.standard_action == 0
    for _ in range(20):
        draw = stream.next_batch()
        space.describe(draw)
        want = reference.next_batch()
        for view in (space.materialize(draw, uniform), cont.materialize(draw, standard_box)):
            assert torch.equal(view.input_ids, want.input_ids)
            assert torch.equal(view.domain, want.domain)
            assert (view.num_examples, view.num_tokens) == (want.num_examples, want.num_tokens)


def test_mixture_rows_follow_the_weights_and_views_are_pure() -> None:
    space, stream = _space_and_stream(batch_size=64, mixtures={"skewed": {"math": 0.6, "code": 0.4}})
    skewed = space.tasks[-1]
    counts = np.zeros(3)
    for _ in range(60):
        draw = stream.next_batch()
        space.describe(draw)
        view = space.materialize(draw, skewed)
        assert torch.equal(view.input_ids, space.materialize(draw, skewed).input_ids)  # pure in (draw, task)
        for k, name in enumerate(NAMES):
            only = space.materialize(draw, space.tasks[1 + k])
            assert torch.all(only.domain == k)
            assert torch.equal(only.input_ids, draw.windows[:, k])
        counts += np.bincount(view.domain.numpy(), minlength=3)
    fractions = counts / counts.sum()  # 3840 rows: binomial sd <= 0.008
    assert counts[2] == 0, "a zero-weight domain was sampled"
    assert abs(fractions[0] - 0.6) < 0.03 and abs(fractions[1] - 0.4) < 0.03, fractions


def test_continuous_action_is_a_softmax_mixture() -> None:
    space = DomainMixtureTaskSpace(domain_names=NAMES, continuous=True, logit_scale=3.0)
    weights = space.weights(space.task(np.array([1.0, 0.0, -1.0], dtype=np.float32)))
    want = np.exp([3.0, 0.0, -3.0]) / np.exp([3.0, 0.0, -3.0]).sum()
    np.testing.assert_allclose(weights.numpy(), want, rtol=1e-6)


def test_same_seed_same_views_different_seed_different_views() -> None:
    def views(seed: int) -> list[torch.Tensor]:
        space = DomainMixtureTaskSpace(domain_names=NAMES, mixtures={"m": {"math": 0.2, "code": 0.3, "prose": 0.5}})
        space.reset(torch.Generator().manual_seed(seed))
        stream = DomainStream(_fake_domains(), batch_size=8, seq_len=16)
        stream.reset(torch.Generator().manual_seed(seed))
        out = []
        for _ in range(3):
            draw = stream.next_batch()
            space.describe(draw)
            out.append(space.materialize(draw, space.tasks[-1]).input_ids)
        return out

    assert all(torch.equal(a, b) for a, b in zip(views(1), views(1)))
    assert not all(torch.equal(a, b) for a, b in zip(views(1), views(2)))


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("weights, match", [
    ({"math": float("nan"), "code": 1.0}, "nan"),
    ({"math": float("inf")}, "inf"),
    ({"math": -0.5, "code": 1.5}, "-0.5"),
    ({"math": 0.5, "code": 0.4}, "0.9"),
    ({"math": 0.0}, "sum to 0.0"),
    ({"math": 0.5, "poetry": 0.5}, "poetry"),
])
def test_bad_mixtures_are_rejected(weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_mixture(weights, NAMES)
    with pytest.raises(ValueError, match=match):
        _make(mixtures={"bad": weights})


@pytest.mark.parametrize("kwargs, match", [
    ({"feedback": {"gsm8k": float("nan")}}, "nan"),
    ({"feedback": {"gsm8k": -1.0, "code": 2.0}}, "-1.0"),
    ({"feedback": {"poetry": 1.0}}, "poetry"),
    ({"domains": ("math", "poetry")}, "poetry"),
    ({"mixtures": {"uniform": {"math": 1.0}}}, "uniform"),
    ({"logit_scale": float("nan")}, "logit_scale"),
])
def test_bad_arguments_are_rejected_before_loading(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        _make(**kwargs)


def test_continuous_takes_no_mixtures_and_rejects_bad_designer_tasks() -> None:
    with pytest.raises(ValueError, match="mixtures"):
        gym.make("vpt/LM-DomainsContinuous-v0", **SMOKE, budget=8, mixtures={"m": {"math": 1.0}})
    env = _make()
    env.reset(seed=0)
    bad = Task(name="bad", family="domain_mixture", params={"weights": {"math": 2.0, "code": -1.0}})
    with pytest.raises(ValueError, match="not accepted"):
        env.unwrapped.step(bad)
    assert env.unwrapped.ledger.learner_updates == 0


# ------------------------------------------------------------------------------------------ leakage
def test_no_feedback_or_eval_example_in_any_pretraining_batch() -> None:
    env = _make(feedback={"gsm8k": 1.0, "code": 1.0, "prose": 1.0}, budget=16)
    base = env.unwrapped
    width = min(DECONTAMINATION_TOKENS, base.stream.seq_len)
    tasks = base.feedback.tasks
    eos = 0
    corpus = load_math_corpus(resolve_data_dir(None), feedback_size=1024, split_seed=0)  # the env's defaults
    problems = corpus.feedback + corpus.eval  # every GSM8K feedback and eval problem
    encoded = tasks["gsm8k"].tokenizer.encode_batch(problem_texts(problems))  # the env's one tokenizer
    heldout = [window_hashes(np.asarray(e.ids + [eos]), width) for e in encoded]
    for name in ("code", "prose"):
        heldout += [window_hashes(tasks[name].feedback_windows, width), window_hashes(tasks[name].eval_windows, width)]
    banned = np.unique(np.concatenate(heldout))
    assert banned.size > 100_000

    views = []
    materialize = base.task_space.materialize

    def recording(draw, task):
        view = materialize(draw, task)
        views.append(view.input_ids.clone())
        return view

    base.task_space.materialize = recording
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, done, _, _ = env.step(int(rng.integers(4)))
    assert len(views) == 32
    batch_hashes = window_hashes(torch.cat(views), width)
    assert not np.isin(batch_hashes, banned).any(), "a held-out example appeared in a pretraining batch"
    for name, tokens in zip(base.stream.domain_names, base.stream._tokens):
        assert not np.isin(window_hashes(tokens, width), banned).any(), f"held-out text in the {name} stream"
    # positive control: the same check flags a batch that holds one held-out code window
    leaked = torch.cat([views[0][:-1], tasks["code"].eval_windows[:1, : views[0].shape[1]]])
    assert np.isin(window_hashes(leaked, width), banned).any()


def test_code_files_split_disjointly_by_path_hash() -> None:
    domain = code_domain(max_chars=200_000)
    assert domain.source.startswith("stdlib:")
    assert set(domain.pretrain).isdisjoint(domain.feedback) and set(domain.feedback).isdisjoint(domain.eval)
    splits = [split_of(f"file{i}.py") for i in range(5000)]
    fractions = {s: splits.count(s) / 5000 for s in ("pretrain", "feedback", "eval")}
    assert abs(fractions["pretrain"] - 0.8) < 0.03 and abs(fractions["eval"] - 0.1) < 0.02, fractions
    assert split_of("json/decoder.py") == split_of("json/decoder.py")


# ------------------------------------------------------------------------------- alignment direction
@pytest.mark.parametrize("feedback, favoured", [({"gsm8k": 1.0}, "only_math"), ({"code": 1.0}, "only_code")])
def test_matching_domain_raises_alignment_over_prose(feedback, favoured) -> None:
    """Known direction (tiny preset, measured: math feedback 2.2e-3 (math) vs ~0 (prose) per update; code
    feedback 1.3e-3 (code) vs 0.1e-3 (prose)): always picking the domain of the feedback task gives a larger
    mean alignment than always picking prose, on each of two seeds."""
    env = _make(feedback=feedback)
    names = env.unwrapped.task_names
    for seed in (0, 1):
        matched = np.mean(_episode_rewards(env, names.index(favoured), seed))
        prose = np.mean(_episode_rewards(env, names.index("only_prose"), seed))
        assert matched > prose + 5e-4, (seed, matched, prose)


def test_domain_matched_alignment_known_answers() -> None:
    """Domain-matched: prose has no feedback task -> value exactly 0; uniform -> (1/3)(g_gsm8k + g_code) =
    2/3 of the omega-weighted (1/2, 1/2) g_down, on the same trajectory."""
    plain, matched = _make(), _make(domain_matched=True)
    assert all(r == 0.0 for r in _episode_rewards(matched, 3, seed=0))
    r_plain, r_matched = _episode_rewards(plain, 0, seed=2), _episode_rewards(matched, 0, seed=2)
    np.testing.assert_allclose(r_matched, [2 / 3 * r for r in r_plain], rtol=1e-4, atol=1e-9)
    assert matched.unwrapped.ledger.feedback_backward == 2 * plain.unwrapped.ledger.feedback_backward


# ------------------------------------------------------------------------------ observation and eval
def test_per_domain_observation_and_multitask_eval() -> None:
    env = _make(feedback={"gsm8k": 2.0, "code": 1.0, "prose": 1.0}, budget=4)
    base = env.unwrapped
    index = {n: i for i, n in enumerate(base.observation_names)}
    obs, _ = env.reset(seed=0)
    ema0 = np.array([obs[index[f"batch.ema_loss_{n}"]] for n in NAMES])
    assert np.all(ema0 > 1.0) and np.all(ema0 < math.log(512) + 1)  # theta_0 NLL of each domain
    for _ in range(3):
        obs, _, _, _, info = env.step(base.task_names.index("only_code"))
    assert [obs[index[f"batch.row_fraction_{n}"]] for n in NAMES] == [0.0, 1.0, 0.0]
    assert obs[index["frequency[only_code]"]] == 1.0
    ema = np.array([obs[index[f"batch.ema_loss_{n}"]] for n in NAMES])
    assert ema[0] == ema0[0] and ema[2] == ema0[2] and ema[1] != ema0[1]
    _, _, done, _, info = env.step(0)
    assert done
    report = info["eval"]
    for key in ("gsm8k/eval_nll", "gsm8k/eval_pass@1", "code/eval_nll", "prose/eval_nll", "eval_nll"):
        assert key in report and math.isfinite(report[key]), key
    weighted = 0.5 * report["gsm8k/eval_nll"] + 0.25 * report["code/eval_nll"] + 0.25 * report["prose/eval_nll"]
    assert report["eval_nll"] == pytest.approx(weighted, rel=1e-9)


def test_extra_declared_domain_joins_menu_and_feedback() -> None:
    from pydoc_data.topics import topics

    keys = sorted(topics)[:120]
    split = {s: tuple(topics[k] for k in keys if split_of(f"pydoc:{k}") == s) for s in ("pretrain", "feedback", "eval")}
    docs = TextDomain(name="pydoc", source="embedded:pydoc_data.topics", **split)
    env = _make(extra_domains=(docs,), domains=("math", "code"), feedback={"gsm8k": 1.0, "pydoc": 1.0}, budget=2)
    assert env.unwrapped.task_names == ["uniform", "only_math", "only_code", "only_pydoc"]
    env.reset(seed=0)
    env.step(3)
    _, _, done, _, info = env.step(3)
    assert done and math.isfinite(info["eval"]["pydoc/eval_nll"])


# ------------------------------------------------------------------------------------- paper preset

def test_paper_preset_loads_a_local_checkpoint(local_checkpoint) -> None:
    env = gym.make("vpt/LM-DomainsContinuous-v0", size="paper", model=str(local_checkpoint), device="cpu",
                   budget=2, eval_items=2, max_new_tokens=8, heldout_eval_windows=4, domains=("math", "code"))
    base = env.unwrapped
    assert base.stream.seq_len == 64 and base.action_space.shape == (2,)
    env.reset(seed=0)
    for action in (np.array([1.0, -1.0], np.float32), np.zeros(2, np.float32)):
        _, reward, done, _, info = env.step(action)
        assert math.isfinite(reward)
    assert done and info["task"] == "mix_math0.500_code0.500"
    assert math.isfinite(info["eval"]["code/eval_nll"]) and 0.0 <= info["eval"]["gsm8k/eval_pass@1"] <= 1.0
