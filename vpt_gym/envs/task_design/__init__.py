"""The one Gymnasium environment class: continued pretraining as an MDP whose actions pick the task.

:class:`TaskDesignEnv` (:mod:`.env`: construction, reset, step, observation, counterfactual branching) and
the components it is composed of, each owning its state: the pending update (:mod:`.pending`), the designer
look-ahead (:mod:`.lookahead`) and the feedback side (:mod:`.feedback`: g_down refreshes, probes, reward
outcomes).
"""

from vpt_gym.envs.task_design.env import BASE_FEATURES, LOG10_NORM_RANGE, LOSS_CAP, VALUE_CAP, TaskDesignEnv

__all__ = ["BASE_FEATURES", "LOG10_NORM_RANGE", "LOSS_CAP", "VALUE_CAP", "TaskDesignEnv"]
