"""The designer behaviour shared by every single-task policy: one action at every decision."""

from __future__ import annotations

from typing import Any

import numpy as np


class ConstantDesigner:
    """Plays ``self.action`` (set by the subclass's constructor) at every decision; no learning, no randomness.

    The base of :class:`vpt_gym.agents.FixedDesigner` (the standard task) and
    :class:`vpt_gym.agents.selection.SelectFixedDesigner` (the task chosen by run selection).
    """

    action: Any

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return self.action

    def observe(self, action, reward, observation, terminated, truncated, info) -> None:
        return None
