"""Budget validation, the ledger, and decisions of several learner updates on the toy env."""

from __future__ import annotations

import gymnasium as gym
import pytest

import vpt_gym  # noqa: F401  (registers the ids)
from vpt_gym.budget import Budget, Ledger

LEDGER_FIELDS = ("learner_updates", "learner_forward", "learner_backward", "feedback_forward", "feedback_backward",
                 "lookahead_forward", "lookahead_backward", "designer_forward", "designer_backward", "examples",
                 "tokens", "feedback_examples", "feedback_tokens")


@pytest.mark.parametrize("field", ["learner_updates", "updates_per_decision", "feedback_period"])
@pytest.mark.parametrize("value", [0, -1, -64, 2.5, "8", None, True, 8.0])
def test_budget_rejects_bad_values(field: str, value: object) -> None:
    kwargs = {"learner_updates": 8, field: value}
    with pytest.raises(ValueError) as excinfo:
        Budget(**kwargs)
    message = str(excinfo.value)
    assert field in message and repr(value) in message, message


@pytest.mark.parametrize("updates, per_decision", [(10, 4), (7, 2), (3, 5)])
def test_updates_per_decision_must_divide(updates: int, per_decision: int) -> None:
    with pytest.raises(ValueError) as excinfo:
        Budget(learner_updates=updates, updates_per_decision=per_decision)
    message = str(excinfo.value)
    assert f"updates_per_decision={per_decision}" in message and f"learner_updates={updates}" in message


@pytest.mark.parametrize("updates, per_decision, decisions", [(32, 4, 8), (7, 1, 7), (12, 12, 1), (1, 1, 1)])
def test_decisions(updates: int, per_decision: int, decisions: int) -> None:
    budget = Budget(learner_updates=updates, updates_per_decision=per_decision)
    assert budget.decisions == decisions
    assert budget.feedback_period == 8


def test_budget_is_frozen_and_keyword_only() -> None:
    budget = Budget(learner_updates=4)
    with pytest.raises(AttributeError):
        budget.learner_updates = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        Budget(4)  # type: ignore[misc]


def test_ledger_as_dict_is_plain_ints_and_a_copy() -> None:
    ledger = Ledger()
    assert ledger.as_dict() == dict.fromkeys(LEDGER_FIELDS, 0)
    ledger.learner_updates += 3
    ledger.tokens += 4096
    d = ledger.as_dict()
    assert tuple(d) == LEDGER_FIELDS
    assert all(type(v) is int for v in d.values())
    assert d["learner_updates"] == 3 and d["tokens"] == 4096
    d["learner_updates"] = 99
    assert ledger.learner_updates == 3


def test_env_with_several_updates_per_decision() -> None:
    env = gym.make("vpt/Toy-Alignment-v0", budget=32, updates_per_decision=4)
    base = env.unwrapped
    assert base.budget.decisions == 8
    env.reset(seed=0)
    steps, terminated, info = 0, False, {}
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(steps % 5)
        steps += 1
        assert not truncated
        assert info["learner_updates"] == 4 * steps == info["ledger"]["learner_updates"]
        assert info["decision"] == steps
        assert terminated == (steps == 8)
        assert obs[0] == pytest.approx(1.0 - 4 * steps / 32)  # observed remaining budget fraction
    assert steps == 8
    ledger = info["ledger"]
    assert ledger["learner_updates"] == 32
    assert ledger["learner_backward"] == 32
    assert ledger["learner_forward"] == 32  # one forward per update, reused by its backward
    assert ledger["examples"] == 32 * 16
    # g_down: once at reset, then every feedback_period=8 decisions while budget remains -> never again.
    assert ledger["feedback_backward"] == 1
    assert "eval" in info
    env.close()


@pytest.mark.parametrize("budget, feedback_period, refreshes", [(32, 8, 4), (32, 4, 8), (8, 8, 1), (16, 3, 6)])
def test_feedback_refreshes_are_counted(budget: int, feedback_period: int, refreshes: int) -> None:
    """g_down is refreshed at reset and after every ``feedback_period`` decisions (not after the last one)."""
    env = gym.make("vpt/Toy-Alignment-v0", budget=budget, feedback_period=feedback_period)
    env.reset(seed=1)
    terminated, info = False, {}
    while not terminated:
        _, _, terminated, _, info = env.step(0)
    assert info["ledger"]["feedback_backward"] == info["ledger"]["feedback_forward"] == refreshes
    assert info["ledger"]["lookahead_backward"] == 0
    env.close()


def test_advantage_reward_charges_lookahead() -> None:
    env = gym.make("vpt/Toy-Alignment-v0", budget=8, reward="advantage")
    env.reset(seed=2)
    _, reward, _, _, info = env.step(0)
    # The standard task is the chosen one here: its advantage is exactly zero.
    assert reward == 0.0
    assert info["ledger"]["lookahead_backward"] == 1
    _, reward, _, _, info = env.step(1)
    assert reward != 0.0
    assert info["ledger"]["lookahead_backward"] == 2
    assert info["ledger"]["learner_updates"] == 2
    env.close()


def test_ledger_counts_feedback_examples_and_tokens() -> None:
    """Each g_down refresh reads feedback_batch_size examples; value_gain's probe adds probe_size per update."""
    import gymnasium as gym

    env = gym.make("vpt/LM-SoftTargets-v0", size="tiny", budget=4, feedback_period=2, feedback_batch_size=3,
                   reward="value_gain", eval_items=1, max_new_tokens=4).unwrapped
    env.reset(seed=0)
    probe = env.feedback.probe_batch()
    refreshes = []
    for _ in range(4):
        before = env._ledger.feedback_examples
        info = env.step(0)[4]
        refreshes.append(info["ledger"]["feedback_examples"] - before)
    ledger = info["ledger"]
    # reset: one refresh (3) + one probe (probe_size); each update: one probe; every 2nd decision a refresh
    # while budget remains (after decision 2; none after the last)
    assert refreshes == [probe.num_examples, probe.num_examples + 3, probe.num_examples, probe.num_examples]
    assert ledger["feedback_examples"] == 3 * 2 + probe.num_examples * 5
    assert ledger["feedback_tokens"] >= ledger["feedback_examples"]  # every example has >= 1 token
