"""Module-to-env pieces: they get the step's columns (numpy ``actions`` and the module's
other outputs, one row per env; in a multi-agent runner ``{module_id: columns}``, one row
per acting agent of that module) and may change them; ``actions_for_env``, when a piece
sets it, is what the envs get (``actions`` stays what learners train on)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlmodules.columns import Columns
from rlmodules.multi_rl_module import MultiRLModule
from runners.connectors.connector_v2 import ConnectorV2
from runners.spaces import box_actions_for_env, map_space


class NormalizeAndClipActions(ConnectorV2):
    """``actions_for_env`` from ``actions`` for Box action spaces: with
    ``normalize_actions`` the module acts in [-1, 1] and actions are scaled to the space's
    bounds; with ``clip_actions`` they are clipped to the bounds."""

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *,
                 normalize_actions: bool = True, clip_actions: bool = False,
                 **kwargs: Any) -> None:
        self.normalize_actions, self.clip_actions = normalize_actions, clip_actions
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        if isinstance(rl_module, MultiRLModule):  # A multi-agent batch: {module_id: columns}.
            for module_id, columns in batch.items():
                self._add_actions_for_env(columns, rl_module[module_id].action_space)
            return batch
        space = self.input_action_space or getattr(rl_module, "action_space", None)
        if space is None:
            raise ValueError("NormalizeAndClipActions needs the action space: build it with "
                             "input_action_space=... or act with a module that has one.")
        self._add_actions_for_env(batch, space)
        return batch

    def _add_actions_for_env(self, columns: dict[str, Any], space: gym.Space) -> None:
        columns[Columns.ACTIONS_FOR_ENV] = map_space(
            space, columns[Columns.ACTIONS], lambda s, a, path: self._convert(s, a))

    def _convert(self, space: gym.Space, actions: Any) -> Any:
        if not isinstance(space, spaces.Box):
            return actions
        return box_actions_for_env(space, np.asarray(actions, np.float32),
                                   self.normalize_actions, self.clip_actions)


__all__ = ["NormalizeAndClipActions"]
