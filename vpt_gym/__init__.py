"""vpt_gym: Gymnasium environments that turn (continued) pretraining into an MDP for task designers.

Importing the package registers every env id (``vpt/...``) and does nothing else.
Source: V-Pretraining (Ke & Fanti, "Value-Based Pre-Training with Downstream Feedback", arXiv 2601.22108).
"""

from __future__ import annotations

from vpt_gym.envs import ENV_IDS, register_envs

__version__ = "0.1.0"
__all__ = ["ENV_IDS", "__version__", "register_envs"]

register_envs()
