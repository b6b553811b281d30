"""Counterfactual branching restores the env exactly; the branch of the chosen action is the real update; the
reward-validity machinery (statistics, report, CLI) on fast envs. Thresholds are not tested here: the
figures come from ``benchmarks/reward_validity.py`` (README "Reward validity")."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from extras import needs

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.benchmark.validity import (
    MODES,
    candidate_actions,
    counterfactual_credit,
    pearson,
    policy_ranking,
    rank,
    slope,
    spearman,
)

ROOT = Path(__file__).resolve().parents[1]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


BRANCH_ENVS = [
    pytest.param("vpt/Toy-Alignment-v0", {}, id="toy"),
    pytest.param("vpt/LM-SoftTargets-v0", {"size": "tiny", "device": "cpu", "eval_items": 2, "max_new_tokens": 8},
                 id="lm"),
    pytest.param("vpt/LM-DomainsContinuous-v0", {"size": "tiny", "device": "cpu", "eval_items": 2, "max_new_tokens": 8},
                 id="lm-domains-box"),
    pytest.param("vpt/SSL-Mask-v0", {"size": "tiny", "device": "cpu"}, id="ssl-mask",
                 marks=pytest.mark.skipif(not _has("torchvision"), reason="needs the 'vision' extra (pip install -e '.[vision]')")),
]


def _actions(env, n: int) -> list:
    rng = np.random.default_rng(7)
    return [env.action_space.sample() if not isinstance(env.action_space, gym.spaces.Discrete)
            else int(rng.integers(env.action_space.n)) for _ in range(n)]


def _rollout(env_id: str, kwargs: dict, actions: list, branch_at: set[int]):
    env = gym.make(env_id, budget=len(actions), **kwargs)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=11)
    base = env.unwrapped
    trace = [obs]
    for t, action in enumerate(actions):
        if t in branch_at:
            cands = candidate_actions(env.action_space, base.standard_action, 5)[:3]
            base.counterfactual(cands, measure=base.feedback.eval_loss, probe_loss=True)
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs, reward, terminated, json.dumps(info, sort_keys=True, default=str)))
    state = {k: v.clone() for k, v in base.learner.module.state_dict().items()}
    env.close()
    return trace, state


@pytest.mark.parametrize("env_id,kwargs", BRANCH_ENVS)
def test_episode_after_counterfactual_equals_episode_without(env_id, kwargs):
    probe = gym.make(env_id, budget=5, **kwargs)
    probe.action_space.seed(0)
    actions = _actions(probe, 5)
    probe.close()
    plain, plain_state = _rollout(env_id, kwargs, actions, set())
    branched, branched_state = _rollout(env_id, kwargs, actions, {0, 3})
    assert np.array_equal(plain[0], branched[0])
    for a, b in zip(plain[1:], branched[1:]):
        assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]
    for name, tensor in plain_state.items():
        assert torch.equal(tensor, branched_state[name]), name


@pytest.mark.parametrize("env_id,kwargs", BRANCH_ENVS)
def test_branch_of_the_chosen_action_is_the_real_update(env_id, kwargs):
    env = gym.make(env_id, budget=4, reward="preconditioned", **kwargs)
    env.action_space.seed(0)
    env.reset(seed=5)
    base = env.unwrapped
    env.step(base.standard_action)
    action = _actions(env, 1)[0]
    before, (branch,) = base.counterfactual([action], measure=base.feedback.eval_loss)
    assert before == base.feedback.eval_loss(base.learner)  # the state is back after branching
    _, reward, _, _, info = env.step(action)
    assert branch.outcome.stats.alignment == info["alignment"]
    assert branch.outcome.preconditioned == info["preconditioned"] == reward
    assert branch.outcome.step_value == info["step_value"]
    with torch.no_grad():
        assert branch.measured == base.feedback.eval_loss(base.learner)


def test_counterfactual_leaves_the_ledger_alone_and_checks_its_input():
    env = gym.make("vpt/Toy-Alignment-v0", budget=4)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.counterfactual([0], measure=lambda learner: 0.0)
    env.reset(seed=0)
    ledger = env.unwrapped.ledger.as_dict()
    env.unwrapped.counterfactual(measure=env.unwrapped.feedback.eval_loss, probe_loss=True)
    assert env.unwrapped.ledger.as_dict() == ledger
    with pytest.raises(ValueError, match="outside the action space"):
        env.unwrapped.counterfactual([9], measure=lambda learner: 0.0)


def test_toy_counterfactual_realized_drop_matches_the_closed_form():
    """Toy, SGD: L_down(theta - eta g) = 1/2 |theta - eta g - theta*|^2 exactly, per task."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=8)
    env.reset(seed=2)
    base = env.unwrapped
    env.step(1)
    world = base.task_space.world
    theta = base.learner.module.theta.detach().clone()
    before, branches = base.counterfactual(measure=base.feedback.eval_loss)
    assert before == pytest.approx(0.5 * float(((theta - world.theta_star) ** 2).sum()), rel=1e-12)
    for task, branch in zip(base.task_space.tasks, branches):
        g = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        after = 0.5 * float(((theta - base.learner.lr * g - world.theta_star) ** 2).sum())
        assert branch.measured == pytest.approx(after, rel=1e-10)


def test_statistics_known_answers():
    assert rank([3.0, 1.0, 2.0, 2.0]).tolist() == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # hand-worked: ranks x = 1,2,3 ; y = 1,3,2 -> 1 - 6 * (0 + 1 + 1) / (3 * 8) = 0.5
    assert spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    if _has("scipy"):
        from scipy import stats

        rng = np.random.default_rng(0)
        x, y = rng.normal(size=20), rng.normal(size=20)
        x[3] = x[4]  # a tie
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)
        assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, rel=1e-12)


def test_candidate_actions():
    assert candidate_actions(gym.spaces.Discrete(3), 0, 5) == [0, 1, 2]
    box = gym.spaces.Box(-1, 1, (2,), np.float32)
    points = candidate_actions(box, np.array([-1.0, 0.0], np.float32), 5)
    assert len(points) == 5 and np.array_equal(points[0], [-1.0, 0.0]) and all(box.contains(p) for p in points)
    with pytest.raises(ValueError, match="grid_points"):
        candidate_actions(box, np.zeros(2, np.float32), 4)


def test_report_machinery_on_the_toy():
    make = lambda: gym.make("vpt/Toy-Alignment-v0", budget=12)  # noqa: E731
    credit = counterfactual_credit(make, seeds=[0, 1], num_states=3, first_state=2)
    assert set(credit["summary"]) == set(MODES)
    assert len(credit["states"]) == 6 and credit["summary"]["alignment"]["states"] == 6
    for state in credit["states"]:
        assert len(state["tasks"]) == 5 and len(state["realized"]) == 5
        assert all(math.isfinite(v) for v in state["values"]["alignment"])
    assert credit["calibration"]["alignment"]["updates"] == 24  # every update of both episodes
    ranking = policy_ranking(make, seeds=[0, 1])
    assert len(ranking["policies"]) == 5
    assert [p["task"] for p in ranking["policies"]] == ["mixture", "source_0", "source_1", "source_2", "source_3"]
    # the return of a fixed policy is the mean over seeds of its steps' summed info values: rerun it here
    totals, finals = [], []
    for seed in (0, 1):
        env = make()
        env.reset(seed=seed)
        totals.append(sum(env.step(2)[4]["alignment"] for _ in range(12)))
        finals.append(env.unwrapped.feedback.eval_loss(env.unwrapped.learner))
    assert ranking["policies"][2]["returns"]["alignment"] == pytest.approx(np.mean(totals), rel=1e-12)
    assert ranking["policies"][2]["final_eval_loss"] == pytest.approx(np.mean(finals), rel=1e-12)


def test_policy_ranking_against_the_primary_metric_on_the_toy():
    make = lambda: gym.make("vpt/Toy-Alignment-v0", budget=12)  # noqa: E731
    ranking = policy_ranking(make, seeds=[0, 1], metric="eval_solved_fraction", higher_is_better=True)
    # rerun each fixed policy and read the metric from the env's own evaluate() at the episode end
    rerun = []
    for action in range(5):
        per_seed = []
        for seed in (0, 1):
            env = make()
            env.reset(seed=seed)
            for _ in range(12):
                env.step(action)
            per_seed.append(env.unwrapped.feedback.evaluate(env.unwrapped.learner)["eval_solved_fraction"])
        rerun.append(per_seed)
    assert [p["per_seed_metric"] for p in ranking["policies"]] == rerun
    means = [float(np.mean(r)) for r in rerun]
    returns = [p["returns"]["alignment"] for p in ranking["policies"]]
    assert ranking["spearman_metric"]["alignment"] == pytest.approx(spearman(returns, means), abs=1e-12)
    losses = [-p["final_eval_loss"] for p in ranking["policies"]]
    assert ranking["eval_loss_vs_metric"] == pytest.approx(spearman(losses, means), abs=1e-12)
    # the toy's primary metric is its eval loss: ranked lower-is-better it must reproduce the eval-loss ranking
    same = policy_ranking(make, seeds=[0, 1], metric="eval_loss", higher_is_better=False)
    assert same["spearman_metric"] == same["spearman"] and same["eval_loss_vs_metric"] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="'miou'.*eval_loss"):
        policy_ranking(make, seeds=[0], metric="miou")


def test_cli_refuses_a_metric_the_env_does_not_report(capsys):
    module = _script("reward_validity")
    with pytest.raises(SystemExit):
        module.main(["--env", "vpt/Toy-Alignment-v0", "--metric", "probe_accuracy"])
    assert "'probe_accuracy' is not an eval metric of vpt/Toy-Alignment-v0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--env", "vpt/Toy-Alignment-v0", "--reward", "ridge"])
    assert "--reward 'ridge' is not accepted by vpt/Toy-Alignment-v0" in capsys.readouterr().err
    assert module.primary_metric("vpt/SSL-Augment-v2", None) == ("probe_accuracy", True)
    assert module.primary_metric("vpt/LM-Domains-v1", "gsm8k/eval_pass@1") == ("gsm8k/eval_pass@1", True)
    assert module.primary_metric("vpt/LM-SoftTargets-v1", None) == ("eval_nll", False)
    assert module.primary_metric("vpt/Toy-Alignment-v0", None) is None  # its metric is the eval loss (c) ranks by
    # an own reward outside the counterfactual modes (--reward metric_gain) gets its policy-ranking row
    report = {"env_id": "vpt/SSL-Augment-v1", "kwargs": {"reward": "metric_gain"},
              "policy_ranking": {"spearman": {"reward": 0.5}, "spearman_metric": {"reward": -0.25},
                                 "metric": "probe_accuracy"}}
    assert "| `metric_gain` | n/a | n/a | n/a | n/a | 0.50 | -0.25 |" in module.table(report)
    with pytest.raises(ValueError, match="'eval_images' is a count"):
        module.primary_metric("vpt/SSL-Augment-v2", "eval_images")


def _script(name: str):
    """Import the benchmark script ``benchmarks/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_the_report(tmp_path):
    module = _script("reward_validity")
    out = tmp_path / "validity.json"
    assert module.main(["--env", "vpt/Toy-Alignment-v0", "--budget", "10", "--seeds", "0", "--states", "2",
                        "--policy-seeds", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["reports"][0]
    assert report["env_id"] == "vpt/Toy-Alignment-v0"
    # --env all: the current version of each family (the toy has only v0, SSL-Augment a v3, the others a v1)
    assert set(module.ALL_ENVS) == {"vpt/Toy-Alignment-v0", "vpt/SSL-Augment-v3"} | {
        f"vpt/{f}-v1" for f in ("LM-SoftTargets", "LM-SoftTargetsContinuous", "LM-Domains", "LM-DomainsContinuous",
                                "SSL-Mask", "SSL-MaskContinuous")}
    assert set(report["counterfactual"]["summary"]) == set(MODES)
    with pytest.raises(SystemExit):
        module.main(["--env", "vpt/Nope-v0"])
    with pytest.raises(SystemExit, match="no keyword 'bogus'"):  # checked before any env is built
        module.main(["--env", "vpt/Toy-Alignment-v0", "--set", "bogus=1", "--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


@needs("vision")
def test_first_order_check_script_runs_on_the_tiny_vision_env(tmp_path) -> None:
    """The diagnosis script runs end to end (machinery only, no thresholds): every gradient's Spearman is in
    [-1, 1] and the exact eval gradient has cosine 1 with itself."""
    import subprocess
    import sys

    out = tmp_path / "check.json"
    script = ROOT / "benchmarks" / "first_order_check.py"
    subprocess.run([sys.executable, str(script), "--env", "vpt/SSL-Mask-v0", "--size", "tiny", "--states", "2",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    rows = json.loads(out.read_text())["states"]
    assert [r["update"] for r in rows] == [2] and len(rows[0]["realized_drop"]) == 13
    assert all(-1.0 <= v <= 1.0 for v in rows[0]["spearman"].values())
    assert rows[0]["cosine_with_g_eval"]["exact g_eval"] == pytest.approx(1.0, abs=1e-3)


@needs("vision")
def test_ssl_base_curve_starts_at_the_random_init_and_refuses_bad_input(tmp_path) -> None:
    """The base-curve script (machinery, no thresholds): its step-0 point is the probe of the random-init model,
    computed here independently of the script; DINO's teacher equals the student at init; SimCLR has no
    teacher; bad input exits naming the value before any work (no file written)."""
    from dataclasses import replace

    from vpt_gym.envs.vision import VISION_PRESETS
    from vpt_gym.vision.base import build_model
    from vpt_gym.vision.data import load_images, split_images
    from vpt_gym.vision.feedback import ProbeFeedback
    from vpt_gym.vision.ssl import SSLLearner

    curve = _script("ssl_base_curve")
    out = tmp_path / "curve.json"
    dino = curve.main(["--size", "tiny", "--steps", "3", "--checkpoints", "0", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == dino and [r["step"] for r in dino["curve"]] == [0, 3]
    preset = VISION_PRESETS["tiny"]
    pool = load_images(None, preset.model.image_size)
    splits = split_images(pool, feedback_size=preset.feedback_size, eval_size=preset.eval_size)
    learner = SSLLearner(build_model(replace(preset.model, base_steps=0)), objective="dino", lr=1e-3,
                         alignment_blocks=1, teacher_momentum=0.99, device="cpu")
    probe = ProbeFeedback(splits.feedback, splits.eval, feature_dim=learner.model.student_backbone.dim,
                          batch_size=preset.feedback_batch_size, probe_size=preset.probe_size,
                          eval_fit_steps=preset.eval_fit_steps)
    start = dino["curve"][0]
    assert start["probe_accuracy"] == round(probe.evaluate(learner)["probe_accuracy"], 4)
    assert start["teacher_probe_accuracy"] == start["probe_accuracy"] and start["ssl_loss"] is None
    assert dino["curve"][1]["ssl_loss"] > 0
    simclr = curve.main(["--size", "tiny", "--objective", "simclr", "--steps", "2", "--checkpoints", "2"])
    assert "teacher_probe_accuracy" not in simclr["curve"][0] and simclr["num_local"] == 0
    for bad, match in ((["--lr", "-1"], "--lr must be > 0, got -1"),
                       (["--steps", "0"], "--steps must be >= 1, got 0"),
                       (["--steps", "5", "--checkpoints", "9"], r"--checkpoints must lie in \[0, --steps=5\], got \[9\]")):
        with pytest.raises(SystemExit, match=match):
            curve.main(["--size", "tiny", "--json", str(tmp_path / "bad.json"), *bad])
    assert not (tmp_path / "bad.json").exists()


@needs("vision")
def test_probe_resolution_recomputes_the_leaderboard_probe_and_its_closed_forms(tmp_path) -> None:
    """The probe-resolution script (machinery, no thresholds): at n = the whole feedback split its held-out
    probe accuracy is the episode's own ``probe_accuracy``; its ridge LOO accuracy equals n explicit ridge refits
    without each example; the cache makes a second call read the features instead of running episodes; bad
    input exits before any work."""
    import torch

    module = _script("probe_resolution")
    cache, out = tmp_path / "cache", tmp_path / "res.json"
    argv = ["--env", "vpt/SSL-Augment-v1", "--size", "tiny", "--budget", "2", "--seeds", "0", "--sizes", "8",
            "100000", "--cache", str(cache), "--json", str(out)]
    report = module.main(argv)
    assert json.loads(out.read_text())["summary"] == report["summary"]
    full = max(int(k.split("@")[1]) for k in report["summary"])
    for row in report["rows"].values():
        assert row["metrics"][f"heldout_accuracy@{full}"] == [pytest.approx(row["probe_accuracy"][0], abs=1e-7)]
    assert len(list(cache.glob("*.pt"))) == len(report["rows"])
    again = module.main(argv[:-2])  # from the cache: same rows
    assert again["rows"] == report["rows"]

    g = torch.Generator().manual_seed(5)
    n, d, c = 16, 5, 3
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 3 + 1
    y = torch.randint(0, c, (n,), generator=g)
    z = (x - x.mean(0)) / x.std(0, correction=0)
    xb = torch.cat([z, torch.ones(n, 1, dtype=torch.float64)], 1)
    onehot = torch.nn.functional.one_hot(y, c).double()
    kappa = 0.3 * float(torch.trace(xb.T @ xb)) / (d + 1)
    hits = 0
    for i in range(n):
        keep = torch.arange(n) != i
        w = torch.linalg.solve(xb[keep].T @ xb[keep] + kappa * torch.eye(d + 1, dtype=torch.float64),
                               xb[keep].T @ onehot[keep])
        hits += int(int((xb[i] @ w).argmax()) == int(y[i]))
    assert module.ridge_loo_accuracy(x, y, c, 0.3) == pytest.approx(hits / n, abs=1e-12)

    for bad, match in ((["--env", "vpt/LM-Domains-v1"], "not an SSL id with a task menu"),
                       (["--sizes", "2"], "--sizes must each be >= 4"),
                       (["--ridge", "0"], "--ridge must be > 0, got 0.0")):
        with pytest.raises(SystemExit, match=match):
            module.main(["--size", "tiny", "--json", str(tmp_path / "bad.json"), *bad])
    assert not (tmp_path / "bad.json").exists()
