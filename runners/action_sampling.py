"""From a module's forward output to actions the env accepts, per the seeds' rules.

Returned ``actions`` are used as they are; otherwise they are sampled from the distribution
built from ``action_dist_inputs`` (made deterministic for inference). For exploration, logp is
computed whenever there is a distribution, also for actions the module chose itself.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rlmodules import Columns, RLModule
from rlmodules.distributions import action_dist_from_output

_NOT_A_COLUMN = (Columns.ACTIONS, Columns.ACTION_DIST, Columns.STATE_OUT)


class ActionSampler:
    """For one sub-module: output dict -> numpy columns; actions -> checked, clipped env actions."""

    def __init__(self, module: RLModule, module_id: str, action_space: gym.Space):
        self.module = module
        self.module_id = module_id
        self.action_space = action_space
        self._stateful = module.is_stateful()  # Its outputs carry a time dim of 1.
        self._dist_cls: dict[bool, type] = {}  # explore -> class, looked up when first needed.
        self._action_shape = tuple(action_space.shape or ())

    def columns(self, out: dict[str, Any], explore: bool, batch_size: int
                ) -> dict[str, np.ndarray]:
        """``actions`` [B, ...], ``action_logp`` [B] (exploring with a distribution) and every
        other [B, ...] tensor the module returned (``action_dist_inputs``, ``vf_preds``, ...)."""
        if self._stateful:
            out = {k: v if k == Columns.STATE_OUT else _drop_time_dim(v) for k, v in out.items()}
        dist = None
        if Columns.ACTION_DIST_INPUTS in out or Columns.ACTION_DIST in out:
            dist = action_dist_from_output(out, self._get_dist_cls(explore))
        actions = out.get(Columns.ACTIONS)
        if actions is None:
            if dist is None:
                raise ValueError(
                    f"Module '{self.module_id}' ({type(self.module).__name__}) returned neither "
                    f"'{Columns.ACTIONS}' nor '{Columns.ACTION_DIST_INPUTS}' (got "
                    f"{sorted(out)}); return one of them from its forward pass.")
            actions = (dist if explore else dist.to_deterministic()).sample()
        cols = {Columns.ACTIONS: self._action_array(actions, batch_size)}
        if explore and dist is not None:
            if not isinstance(actions, torch.Tensor) or actions.shape != \
                    cols[Columns.ACTIONS].shape:
                actions = torch.as_tensor(cols[Columns.ACTIONS])
            cols[Columns.ACTION_LOGP] = dist.logp(actions).numpy()
        for key, value in out.items():
            if key in _NOT_A_COLUMN or key in cols:
                continue
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            if isinstance(value, np.ndarray) and value.ndim and len(value) == batch_size:
                cols[key] = value
        return cols

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Raise on actions outside a Discrete/MultiDiscrete space; clip to a Box space."""
        space = self.action_space
        if isinstance(space, spaces.Box):
            return np.clip(actions, space.low, space.high)
        if isinstance(space, spaces.Discrete):  # min/max: the cheapest check per step.
            low, high = space.start, space.start + space.n
            inside = actions.min() >= low and actions.max() < high
        elif isinstance(space, spaces.MultiDiscrete):
            low, high = space.start, space.start + space.nvec
            inside = (actions >= low).all() and (actions < high).all()
        else:
            return actions
        if actions.dtype.kind not in "iu" or not inside:
            bad = actions[(actions < low) | (actions >= high)] if actions.dtype.kind in "iu" \
                else actions
            raise ValueError(
                f"Module '{self.module_id}' ({type(self.module).__name__}) chose action(s) "
                f"{bad.tolist()[:8]} (dtype {actions.dtype}) outside the action space {space}. "
                "Return integer actions inside the space, or action_dist_inputs sized for it "
                "and let the runner sample.")
        return actions

    def _get_dist_cls(self, explore: bool) -> type:
        if explore not in self._dist_cls:
            getter = (self.module.get_exploration_action_dist_cls if explore
                      else self.module.get_inference_action_dist_cls)
            self._dist_cls[explore] = getter()
        return self._dist_cls[explore]

    def _action_array(self, actions: Any, batch_size: int) -> np.ndarray:
        array = actions.numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
        shape = (batch_size, *self._action_shape)
        if array.shape != shape:
            if array.size != int(np.prod(shape)):
                raise ValueError(
                    f"Module '{self.module_id}' ({type(self.module).__name__}) returned actions "
                    f"of shape {array.shape}, but a batch of {batch_size} in action space "
                    f"{self.action_space} needs shape {shape}.")
            array = array.reshape(shape)
        return array


def _drop_time_dim(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim >= 2 and value.shape[1] == 1:
        return value[:, 0]
    return value
