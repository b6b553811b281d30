"""The components of TaskDesignEnv (FeedbackGradient, FeedbackProbe, PendingUpdate, Lookahead) on their own,
against closed forms of the toy: L_down = mean_i 1/2 |theta - y_i|^2 on a feedback batch of noisy copies y_i
of theta*, so g_down = theta - mean_i y_i."""

from __future__ import annotations

import pytest
import torch

from vpt_gym.budget import Ledger
from vpt_gym.envs.task_design.feedback import FeedbackGradient, FeedbackProbe
from vpt_gym.envs.task_design.lookahead import Lookahead
from vpt_gym.envs.task_design.pending import PendingUpdate
from vpt_gym.envs.toy import make_toy_env
from vpt_gym.value import GradientStats, make_value_estimator


def _parts(seed: int = 0):
    env = make_toy_env(budget=8)
    learner, feedback = env.learner, env.feedback
    learner.reset(torch.Generator().manual_seed(seed))
    feedback.reset(torch.Generator().manual_seed(seed + 1))
    return learner, feedback


def _theta(learner) -> torch.Tensor:
    (p,) = learner.alignment_parameters()
    return p.detach().clone()


def _twin_batches(seed: int, count: int):
    """The feedback batches a FeedbackGradient will draw after ``feedback.reset`` with ``seed + 1``."""
    _, feedback = _parts(seed)
    return [feedback.sample_batch() for _ in range(count)]


def test_a_refresh_is_the_closed_form_gradient_and_is_charged() -> None:
    learner, feedback = _parts()
    (expected_batch,) = _twin_batches(0, 1)
    component = FeedbackGradient(feedback, learner, matched=False, subset_only=None, momentum=0.0, ema_decay=0.9)
    ledger = Ledger()
    component.reset(ledger)
    assert component.refresh()
    theta, y = _theta(learner), expected_batch.y
    (g_down,) = component.g_down
    torch.testing.assert_close(g_down, theta - y.mean(dim=0), rtol=1e-12, atol=1e-12)
    assert component.loss == pytest.approx(float(0.5 * ((theta - y) ** 2).sum(dim=1).mean()), rel=1e-12)
    assert component.norm == pytest.approx(float((theta - y.mean(dim=0)).norm()), rel=1e-12)
    assert component.ema_loss == component.loss  # the EMA starts at the first measurement
    assert (ledger.feedback_forward, ledger.feedback_backward, ledger.feedback_examples) == (1, 1, y.shape[0])


def test_momentum_is_the_running_average_of_the_fresh_gradients() -> None:
    learner, feedback = _parts(3)
    first, second = _twin_batches(3, 2)
    beta = 0.75
    component = FeedbackGradient(feedback, learner, matched=False, subset_only=None, momentum=beta, ema_decay=0.5)
    component.reset(Ledger())
    assert component.refresh() and component.refresh()
    theta = _theta(learner)
    g1, g2 = theta - first.y.mean(dim=0), theta - second.y.mean(dim=0)
    torch.testing.assert_close(component.g_down[0], beta * g1 + (1 - beta) * g2, rtol=1e-12, atol=1e-12)
    l1 = float(0.5 * ((theta - first.y) ** 2).sum(dim=1).mean())
    l2 = float(0.5 * ((theta - second.y) ** 2).sum(dim=1).mean())
    assert component.ema_loss == pytest.approx(0.5 * l1 + 0.5 * l2, rel=1e-12)


def test_reset_forgets_the_episode_and_reading_before_a_refresh_is_refused() -> None:
    learner, feedback = _parts()
    component = FeedbackGradient(feedback, learner, matched=False, subset_only=None, momentum=0.5, ema_decay=0.9)
    with pytest.raises(RuntimeError, match=r"reset\(ledger\) must be called before a refresh"):
        component.refresh()
    component.reset(Ledger())
    component.refresh()
    component.reset(Ledger())
    assert component.ema_loss is None and component.norm == 0.0
    with pytest.raises(RuntimeError, match="before the first feedback refresh"):
        component.g_down  # noqa: B018


def test_the_probe_measures_before_and_after_and_carries_the_after_forward() -> None:
    learner, feedback = _parts()
    probe = FeedbackProbe(feedback, learner, make_value_estimator("value_gain"))
    ledger = Ledger()
    probe.reset(ledger)
    y = feedback.probe_batch().y
    theta0 = _theta(learner)
    assert probe.loss == pytest.approx(float(0.5 * ((theta0 - y) ** 2).sum(dim=1).mean()), rel=1e-12)
    assert probe.metric is None  # value_gain does not read the metric
    with torch.no_grad():
        learner.alignment_parameters()[0].add_(0.1 * (feedback.world.theta_star - theta0))  # a step toward theta*
    stats = GradientStats(dot=0.0, alignment=0.0, cosine=0.0, g_pre_norm=0.0, g_down_norm=0.0)
    outcome = probe.outcome(stats, None)
    theta1 = _theta(learner)
    after = float(0.5 * ((theta1 - y) ** 2).sum(dim=1).mean())
    assert outcome.probe_loss_after == pytest.approx(after, rel=1e-12) and probe.loss == outcome.probe_loss_after
    assert outcome.probe_loss_before == pytest.approx(float(0.5 * ((theta0 - y) ** 2).sum(dim=1).mean()), rel=1e-12)
    assert ledger.feedback_forward == 2  # one probe forward at reset, one after the update


def test_the_pending_update_is_the_streams_next_batch_with_its_forward_charged() -> None:
    env = make_toy_env(budget=8)
    env.reset(seed=5)
    twin = make_toy_env(budget=8)
    learner, space, stream = env.learner, env.task_space, env.stream
    stream.reset(torch.Generator().manual_seed(11))
    twin.stream.reset(torch.Generator().manual_seed(11))
    pending = PendingUpdate(learner, space, stream, task_dependent=False)
    ledger = Ledger()
    pending.reset(ledger)
    pending.prepare()
    expected = twin.stream.next_batch()
    assert pending.batch.phase == expected.phase  # the stream's next batch, nothing drawn before it
    torch.testing.assert_close(pending.outputs, _theta(learner), rtol=0, atol=0)  # the toy's forward is theta
    assert ledger.learner_forward == 1 and ledger.lookahead_forward == 0
    assert pending.trained_batch() is pending.batch
    task = space.task(0)
    x = space.samples(pending.batch, task)
    expected_loss = 0.5 * ((_theta(learner)[None, :] - x) ** 2).sum(dim=1).mean()
    loss = float(pending.task_loss(task, lookahead=True).detach())
    assert loss == pytest.approx(float(expected_loss.detach()), rel=1e-12)
    assert ledger.learner_forward == 1  # a task-independent forward is reused, not run again


def test_the_lookahead_component_is_the_closed_form_value_of_every_task() -> None:
    env = make_toy_env(budget=8)
    env.reset(seed=2)
    base = env  # make_toy_env returns the TaskDesignEnv itself
    assert isinstance(base.lookahead, Lookahead)
    before = base.ledger.as_dict()
    theta = _theta(base.learner)
    (g_down,) = base.g_down
    tasks = [base.task_space.task(a) for a in range(len(base.task_names))]
    values = base.lookahead.values(tasks, "alignment", branches=lambda: [])
    for value, task in zip(values, tasks, strict=True):  # g_pre = theta - mean x (the toy's loss)
        g_pre = theta - base.task_space.samples(base.pending_batch, task).mean(dim=0)
        assert value == pytest.approx(base.learner.lr * float(g_down @ g_pre), rel=1e-10)
    after = base.ledger.as_dict()
    assert after["lookahead_backward"] - before["lookahead_backward"] == len(tasks)  # one backward per task
    assert after["learner_updates"] == before["learner_updates"] == 0
    torch.testing.assert_close(_theta(base.learner), theta, rtol=0, atol=0)  # the learner is not changed
    base.forward_mode_per_task = True  # the env's setting is the component's
    assert base.lookahead.forward_mode_per_task is True
