"""The feedback-split validation scores and the run-selection designer (``select_fixed``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from extras import needs

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.agents import make_designer
from vpt_gym.agents import selection as selection_module
from vpt_gym.agents.selection import SelectFixedDesigner, selection_key

ROOT = Path(__file__).resolve().parents[1]
SSL = "vpt/SSL-Augment-v1"
TINY = {"size": "tiny", "budget": 2, "device": "cpu"}


def _probe_resolution():
    spec = importlib.util.spec_from_file_location("probe_resolution", ROOT / "benchmarks" / "probe_resolution.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _always(env_id: str, kwargs: dict, action: int, seed: int) -> float:
    """The always-``action`` episode's final validation score, run here without the designer's code."""
    env = gym.make(env_id, **kwargs)
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    base = env.unwrapped
    return base.feedback.validation_score(base.learner)


@needs("vision")
def test_probe_validation_score_is_the_two_fold_refit_accuracy_of_probe_resolution() -> None:
    """``ProbeFeedback.validation_score`` equals ``benchmarks/probe_resolution.py``'s ``twofold_accuracy`` at the
    whole feedback split (an implementation written and checked against the eval probe before), on the
    halves of the same fixed permutation; it is deterministic and leaves the learner unchanged."""
    from vpt_gym.vision.feedback import VALIDATION_SPLIT_SEED

    env = gym.make(SSL, **TINY)
    env.reset(seed=3)
    env.step(1)
    base = env.unwrapped
    fb, learner = base.feedback, base.learner
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    score = fb.validation_score(learner)
    with torch.no_grad():
        feats, _ = fb._features(learner, fb._fb_images)
    n = len(fb._feedback)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(VALIDATION_SPLIT_SEED))
    expected = _probe_resolution().metrics_at(
        {"feedback": feats, "feedback_labels": fb._feedback.labels, "eval": feats[:1],
         "eval_labels": fb._feedback.labels[:1]}, n, order, fb.num_classes, ridge=1.0, steps=fb.eval_fit_steps,
        lr=fb.head_lr)["twofold_accuracy"]
    assert score == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= score <= 1.0 and fb.validation_score(learner) == score
    after = learner.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _lm_after_one_update(env_id: str, data_dir):
    """(feedback set, learner in eval mode) of a tiny LM env after one update (seed 0)."""
    env = gym.make(env_id, size="tiny", budget=2, device="cpu", data=str(data_dir))
    env.reset(seed=0)
    env.step(0)
    base = env.unwrapped
    base.learner.module.eval()
    return base.feedback, base.learner


def test_gsm8k_validation_score_is_minus_the_feedback_split_nll(data_dir) -> None:
    """``GSM8KFeedback.validation_score`` is minus the token-mean answer NLL of the whole feedback split: the
    env's own differentiable ``loss`` on one batch of every feedback problem gives the same number."""
    fb, learner = _lm_after_one_update("vpt/LM-SoftTargets-v1", data_dir)
    with torch.no_grad():
        nll = float(fb.loss(learner, fb._batch(torch.arange(fb.num_feedback))))
    assert fb.validation_score(learner) == pytest.approx(-nll, rel=1e-5)
    assert fb.validation_score(learner) < 0


def test_domain_feedback_validation_score_is_the_weighted_feedback_nll(data_dir) -> None:
    """On LM-Domains the multitask score is sum_j omega_j of each feedback task's score, and each task's score
    is minus its ``loss`` on one batch of its whole feedback split (held-out text windows: the token mean)."""
    fb, learner = _lm_after_one_update("vpt/LM-Domains-v1", data_dir)
    expected = 0.0
    with torch.no_grad():
        for name in fb.task_names:
            task = fb.tasks[name]
            count = task.num_feedback
            expected += fb.weights[name] * -float(task.loss(learner, task._batch(torch.arange(count))))
    assert fb.validation_score(learner) == pytest.approx(expected, rel=1e-5)


@needs("vision")
def test_select_fixed_plays_the_task_whose_runs_score_best(tmp_path) -> None:
    """The record holds, per task and training seed, the score of that always-task episode (recomputed here
    bitwise by running it without the designer); the selected action is the argmax of the seed means and is
    played at every decision of an episode."""
    seeds = [1000, 1001]
    env = gym.make(SSL, **TINY)
    designer = make_designer("select_fixed", env, seeds=seeds, cache=tmp_path)
    record = designer.selection
    assert record["tasks"] == [t.name for t in env.unwrapped.task_space.tasks]
    for action in (0, 3):
        assert record["scores"][action] == [_always(SSL, TINY, action, s) for s in seeds]
    means = [float(np.mean(r)) for r in record["scores"]]
    assert record["mean_scores"] == means and designer.action == int(np.argmax(means))
    assert record["selected_task"] == record["tasks"][designer.action]

    obs, info = env.reset(seed=0)
    designer.reset(seed=0)
    done = False
    while not done:
        action = designer.act(obs, info)
        assert action == designer.action
        obs, reward, terminated, truncated, info = env.step(action)
        designer.observe(action, reward, obs, terminated, truncated, info)
        done = terminated or truncated


@needs("vision")
def test_select_fixed_reads_its_cache_and_recomputes_a_bad_record(tmp_path, monkeypatch) -> None:
    """A second designer of the same env and seeds runs no episode (the record is read); a truncated or
    mismatched record is recomputed; no temporary file is left behind."""
    env = gym.make(SSL, **TINY)
    first = SelectFixedDesigner(env, seeds=[7], cache=tmp_path)
    path = first.cache_path
    assert path.name == f"{selection_key(SSL, dict(env.spec.kwargs), [7])}.json"
    made = []
    real_make = gym.make
    monkeypatch.setattr(selection_module.gym, "make", lambda *a, **k: made.append(a) or real_make(*a, **k))
    again = SelectFixedDesigner(env, seeds=[7], cache=tmp_path)
    assert made == [] and again.selection == first.selection
    path.write_text(path.read_text()[:40])  # a record cut short
    redone = SelectFixedDesigner(env, seeds=[7], cache=tmp_path)
    assert len(made) == 1 + env.action_space.n and redone.selection == first.selection
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "seeds": [8]}))
    SelectFixedDesigner(env, seeds=[7], cache=tmp_path)
    assert len(made) == 2 * (1 + env.action_space.n)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


@needs("vision")
@pytest.mark.parametrize(("seeds", "match"), [([], "non-empty"), ([-1], "integers >= 0"), ([3, 3], "distinct"),
                                              ("12", "non-empty"), ([1.5], "integers >= 0"), ([True], ">= 0")])
def test_select_fixed_refuses_bad_seeds_before_any_episode(tmp_path, monkeypatch, seeds, match) -> None:
    env = gym.make(SSL, **TINY)
    monkeypatch.setattr(selection_module, "run_selection", lambda *a, **k: pytest.fail("ran episodes"))
    with pytest.raises(ValueError, match=match):
        SelectFixedDesigner(env, seeds=seeds, cache=tmp_path)


def test_select_fixed_refuses_a_feedback_set_without_validation_score(tmp_path) -> None:
    """The toy's analytic feedback has no ``validation_score``: refused with the reason, nothing cached."""
    with pytest.raises(TypeError, match="validation_score"):
        SelectFixedDesigner(gym.make("vpt/Toy-Alignment-v0"), cache=tmp_path)
    assert not (tmp_path / "selections").exists()


@needs("vision")
def test_select_fixed_refuses_a_box_menu(tmp_path) -> None:
    with pytest.raises(TypeError, match="Discrete task menu"):
        SelectFixedDesigner(gym.make("vpt/SSL-MaskContinuous-v1", **TINY), cache=tmp_path)
    assert not (tmp_path / "selections").exists()
