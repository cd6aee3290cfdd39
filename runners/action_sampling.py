"""From a module's forward output to actions the env accepts, per the seeds' rules.

Returned ``actions`` are used as they are; otherwise they are sampled from the distribution
built from ``action_dist_inputs`` (made deterministic for inference). For exploration, logp is
computed whenever there is a distribution, also for actions the module chose itself: from the
recorded ``action_dist_inputs`` once for all steps of a sample() call (``add_logp``), or per
step when the module returned a distribution object instead of its inputs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import distributions as td

from rlmodules import Columns, RLModule
from rlmodules.distributions import TorchDistribution, action_dist_from_output

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
        # What to_env checks: integer bounds [low, high) of (Multi)Discrete spaces, else None.
        self._bounds = None
        if isinstance(action_space, spaces.Discrete):
            self._bounds = (int(action_space.start), int(action_space.start + action_space.n))
        elif isinstance(action_space, spaces.MultiDiscrete):
            self._bounds = (action_space.start, action_space.start + action_space.nvec)

    def columns(self, out: dict[str, Any], explore: bool, batch_size: int
                ) -> dict[str, np.ndarray]:
        """``actions`` [B, ...] and every other [B, ...] tensor the module returned
        (``action_dist_inputs``, ``vf_preds``, ...); ``action_logp`` [B] only when exploring
        with a distribution object, which cannot be rebuilt later."""
        if self._stateful:
            out = {k: v if k == Columns.STATE_OUT else _drop_time_dim(v) for k, v in out.items()}
        inputs = out.get(Columns.ACTION_DIST_INPUTS, out.get(Columns.ACTION_DIST))
        dist = None
        actions = out.get(Columns.ACTIONS)
        if actions is None:
            if inputs is None:
                raise ValueError(
                    f"Module '{self.module_id}' ({type(self.module).__name__}) returned neither "
                    f"'{Columns.ACTIONS}' nor '{Columns.ACTION_DIST_INPUTS}' (got "
                    f"{sorted(out)}); return one of them from its forward pass.")
            dist = action_dist_from_output(out, self._get_dist_cls(explore))
            actions = (dist if explore else dist.to_deterministic()).sample()
        cols = {Columns.ACTIONS: self._action_array(actions, batch_size)}
        if explore and isinstance(inputs, (td.Distribution, TorchDistribution)):
            dist = dist or action_dist_from_output(out, self._get_dist_cls(explore))
            cols[Columns.ACTION_LOGP] = dist.logp(torch.as_tensor(cols[Columns.ACTIONS])).numpy()
        for key, value in out.items():
            if key in _NOT_A_COLUMN or key in cols:
                continue
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            if isinstance(value, np.ndarray) and value.ndim and len(value) == batch_size:
                cols[key] = value
        return cols

    def add_logp(self, columns: dict[str, np.ndarray], batch_shape: tuple[int, ...]) -> None:
        """Exploration data: the logp of ``actions`` under the exploration distribution built
        from ``action_dist_inputs``, for all rows (``batch_shape`` leading dims) at once."""
        inputs = columns.get(Columns.ACTION_DIST_INPUTS)
        if inputs is None or Columns.ACTION_LOGP in columns:
            return
        rows, lead = int(np.prod(batch_shape)), len(batch_shape)
        dist = self._get_dist_cls(True).from_logits(
            torch.from_numpy(inputs.reshape(rows, *inputs.shape[lead:])))
        actions = columns[Columns.ACTIONS]
        logp = dist.logp(torch.from_numpy(actions.reshape(rows, *actions.shape[lead:])))
        columns[Columns.ACTION_LOGP] = logp.numpy().reshape(batch_shape)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Raise on actions outside a Discrete/MultiDiscrete space; clip to a Box space."""
        if self._bounds is None:
            if isinstance(self.action_space, spaces.Box):
                return np.clip(actions, self.action_space.low, self.action_space.high)
            return actions
        low, high = self._bounds
        if actions.dtype.kind in "iu" and (actions >= low).all() and (actions < high).all():
            return actions
        bad = actions[(actions < low) | (actions >= high)] if actions.dtype.kind in "iu" \
            else actions
        raise ValueError(
            f"Module '{self.module_id}' ({type(self.module).__name__}) chose action(s) "
            f"{bad.tolist()[:8]} (dtype {actions.dtype}) outside the action space "
            f"{self.action_space}. Return integer actions inside the space, or "
            "action_dist_inputs sized for it and let the runner sample.")

    def _get_dist_cls(self, explore: bool) -> type:
        if explore not in self._dist_cls:
            self._dist_cls[explore] = (self.module.get_exploration_action_dist_cls if explore
                                       else self.module.get_inference_action_dist_cls)()
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
