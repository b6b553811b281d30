"""The one Gymnasium environment class: continued pretraining as an MDP whose actions pick the task.

:class:`TaskDesignEnv` (:mod:`.env`: construction, reset, step, observation) with its designer look-ahead
(:mod:`.lookahead`) and its feedback side (:mod:`.feedback`: g_down refreshes, probes, reward outcomes).
"""

from vpt_gym.envs.task_design.env import BASE_FEATURES, LOG10_NORM_RANGE, LOSS_CAP, VALUE_CAP, TaskDesignEnv

__all__ = ["BASE_FEATURES", "LOG10_NORM_RANGE", "LOSS_CAP", "VALUE_CAP", "TaskDesignEnv"]
