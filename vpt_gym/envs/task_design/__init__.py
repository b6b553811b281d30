"""The one Gymnasium environment class: continued pretraining as an MDP whose actions pick the task.

:class:`TaskDesignEnv` (:mod:`.env`: construction, reset, step, observation, counterfactual branching) and
the components it is composed of, each owning its state: the pending update (:mod:`.pending`), the designer
look-ahead (:mod:`.lookahead`) and the feedback side (:mod:`.feedback`: g_down refreshes, probes, reward
outcomes). Each component can be passed to :class:`TaskDesignEnv` (``feedback_gradient=``, ``probe=``,
``pending=``, ``lookahead=``), built with its ``for_parts`` from the env's parts; the defaults are those.
"""

from vpt_gym.envs.task_design.env import BASE_FEATURES, LOG10_NORM_RANGE, LOSS_CAP, VALUE_CAP, TaskDesignEnv
from vpt_gym.envs.task_design.feedback import FeedbackGradient, FeedbackProbe
from vpt_gym.envs.task_design.lookahead import Lookahead
from vpt_gym.envs.task_design.pending import PendingUpdate

__all__ = ["BASE_FEATURES", "LOG10_NORM_RANGE", "LOSS_CAP", "VALUE_CAP", "FeedbackGradient", "FeedbackProbe",
           "Lookahead", "PendingUpdate", "TaskDesignEnv"]
