"""From a module's forward output to actions the env accepts, per the seeds' rules.

Returned ``actions`` are used as they are; otherwise they are sampled from the distribution
built from ``action_dist_inputs`` (made deterministic for inference). For exploration, logp is
computed whenever there is a distribution, also for actions the module chose itself: from the
recorded ``action_dist_inputs`` once for all steps of a sample() call (``add_logp``), or per
step when the module returned a distribution object instead of its inputs. A module that
returns ``action_logp`` with its own actions (e.g. autoregressive sampling) keeps its logp.

Actions of Dict/Tuple action spaces are nested as the space (dicts/tuples of [B, ...] arrays),
in the columns and when sampled from a distribution (e.g. TorchMultiDistribution); each env
gets its own action in the space's structure.
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
from rlmodules.tree import first_leaf, map_tree
from runners.spaces import box_actions_for_env, map_space

_NOT_A_COLUMN = (Columns.ACTIONS, Columns.ACTION_DIST, Columns.STATE_OUT)


class ActionSampler:
    """For one sub-module: output dict -> numpy columns; actions -> checked env actions (Box
    ones scaled or clipped)."""

    def __init__(self, module: RLModule, module_id: str, action_space: gym.Space, *,
                 normalize_actions: bool, clip_actions: bool):
        self.module = module
        self.module_id = module_id
        self.action_space = action_space
        self.normalize_actions, self.clip_actions = normalize_actions, clip_actions
        self._stateful = module.is_stateful()  # Its outputs carry a time dim of 1.
        self._dist_cls: dict[bool, type] = {}  # explore -> class, looked up when first needed.
        self._inputs_checked: set[bool] = set()  # Modes whose dist inputs' size was checked.
        self._nested = isinstance(action_space, (spaces.Dict, spaces.Tuple))
        self._bounds = _int_bounds(action_space)  # What to_env checks for a flat space.

    def columns(self, out: dict[str, Any], explore: bool, batch_size: int
                ) -> dict[str, Any]:
        """``actions`` [B, ...] (nested as the action space) and every other [B, ...] tensor
        the module returned (``action_dist_inputs``, ``vf_preds``, ...); ``action_logp`` [B]
        only when exploring with a distribution object, which cannot be rebuilt later."""
        if self._stateful:
            out = {k: v if k == Columns.STATE_OUT else map_tree(_drop_time_dim, v)
                   for k, v in out.items()}
        inputs = out.get(Columns.ACTION_DIST_INPUTS, out.get(Columns.ACTION_DIST))
        if isinstance(inputs, torch.Tensor) and explore not in self._inputs_checked:
            self._check_input_dim(inputs, explore, batch_size)
        dist = None
        actions = out.get(Columns.ACTIONS)
        if actions is None:
            if inputs is None:
                raise ValueError(
                    f"{self._who} returned neither '{Columns.ACTIONS}' nor "
                    f"'{Columns.ACTION_DIST_INPUTS}' (got {sorted(out)}); return one of them "
                    "from its forward pass.")
            dist = action_dist_from_output(out, self._get_dist_cls(explore))
            actions = (dist if explore else dist.to_deterministic()).sample()
        cols = {Columns.ACTIONS: self._action_arrays(actions, batch_size)}
        if explore and Columns.ACTION_LOGP not in out and isinstance(
                inputs, (td.Distribution, TorchDistribution)):
            dist = dist or action_dist_from_output(out, self._get_dist_cls(explore))
            cols[Columns.ACTION_LOGP] = dist.logp(
                map_tree(torch.as_tensor, cols[Columns.ACTIONS])).numpy()
        for key, value in out.items():
            if key in _NOT_A_COLUMN or key in cols:
                continue
            if isinstance(value, torch.Tensor):  # The common case, without map_tree.
                cols[key] = self._rows(key, value, batch_size)
            elif _is_batch_data(value):
                cols[key] = map_tree(lambda v: self._rows(key, v, batch_size), value)
        return cols

    def add_logp(self, columns: dict[str, Any], batch_shape: tuple[int, ...]) -> None:
        """Exploration data: the logp of ``actions`` under the exploration distribution built
        from ``action_dist_inputs``, for all rows (``batch_shape`` leading dims) at once."""
        inputs = columns.get(Columns.ACTION_DIST_INPUTS)
        if not isinstance(inputs, np.ndarray) or Columns.ACTION_LOGP in columns:
            return
        rows, lead = int(np.prod(batch_shape)), len(batch_shape)

        def flat(v: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(v.reshape(rows, *v.shape[lead:]))

        dist = self._get_dist_cls(True).from_logits(flat(inputs))
        logp = dist.logp(map_tree(flat, columns[Columns.ACTIONS]))
        columns[Columns.ACTION_LOGP] = logp.numpy().reshape(batch_shape)

    def env_actions(self, columns: dict[str, Any], random_actions: bool) -> Any:
        """What the envs get for one step's ``columns``: ``actions_for_env`` if a connector
        piece set it (popped: learners train on ``actions``), else ``actions`` converted
        (random actions are already in the env's space)."""
        for_env = columns.pop(Columns.ACTIONS_FOR_ENV, None)
        if for_env is not None:
            return self.to_env(for_env, convert=False)
        return self.to_env(columns[Columns.ACTIONS], convert=not random_actions)

    def to_env(self, actions: Any, convert: bool) -> Any:
        """Raise on actions outside a Discrete/MultiDiscrete space; Box actions scaled or
        clipped as ``normalize_actions`` / ``clip_actions`` say, unless ``convert`` is False
        (random actions, or ``actions_for_env`` a connector piece set: meant for the env as
        they are). A nested space's actions come back as one action (dict/tuple) per env."""
        if not self._nested:
            return self._leaf_to_env(self.action_space, actions, self._bounds, convert)
        checked = map_space(self.action_space, actions, lambda s, a, path: self._leaf_to_env(
            s, a, _int_bounds(s), convert, path))
        return [map_tree(lambda a: a[i], checked) for i in range(len(first_leaf(checked)))]

    @property
    def _who(self) -> str:
        return f"Module '{self.module_id}' ({type(self.module).__name__})"

    def _leaf_to_env(self, space: gym.Space, actions: np.ndarray, bounds: tuple | None,
                     convert: bool, path: str = "") -> np.ndarray:
        if bounds is None:
            if isinstance(space, spaces.Box):
                return box_actions_for_env(space, actions, self.normalize_actions,
                                           self.clip_actions) if convert else actions
            if isinstance(space, spaces.MultiBinary):
                return actions.astype(space.dtype, copy=False)
            return actions
        low, high = bounds
        if actions.dtype.kind in "iu" and (actions >= low).all() and (actions < high).all():
            return actions
        bad = actions[(actions < low) | (actions >= high)] if actions.dtype.kind in "iu" \
            else actions
        raise ValueError(
            f"{self._who} chose action(s) {path}{bad.tolist()[:8]} (dtype {actions.dtype}) "
            f"outside the action space {space}. Return integer actions inside the space, or "
            "action_dist_inputs sized for it and let the runner sample.")

    def _check_input_dim(self, inputs: torch.Tensor, explore: bool, batch_size: int) -> None:
        """Once per mode: ``action_dist_inputs`` has the batch's rows and the last dim the
        distribution class says it needs for the action space (where it can say)."""
        self._inputs_checked.add(explore)
        self._rows(Columns.ACTION_DIST_INPUTS, inputs, batch_size)
        dist_cls = self._get_dist_cls(explore)
        required = getattr(dist_cls, "required_input_dim", None)
        try:
            need = required(self.action_space) if required else None
        except (NotImplementedError, TypeError):  # The class cannot tell for this space.
            return
        if need is not None and inputs.shape[-1] != need:
            raise ValueError(
                f"{self._who} returned '{Columns.ACTION_DIST_INPUTS}' of shape "
                f"{tuple(inputs.shape)}, but {dist_cls.__name__} needs a last dim of {need} for "
                f"action space {self.action_space}. Size the module's output layer to {need}, "
                "or override get_exploration_action_dist_cls()/get_inference_action_dist_cls().")

    def _get_dist_cls(self, explore: bool) -> type:
        if explore not in self._dist_cls:
            self._dist_cls[explore] = (self.module.get_exploration_action_dist_cls if explore
                                       else self.module.get_inference_action_dist_cls)()
        return self._dist_cls[explore]

    def _rows(self, key: str, value: Any, batch_size: int) -> np.ndarray:
        """``value`` as a numpy array, checked to have the batch's leading dim."""
        array = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if array.ndim == 0 or len(array) != batch_size:
            raise ValueError(
                f"{self._who} returned '{key}' of shape {tuple(array.shape)} for a batch of "
                f"{batch_size}; every tensor a forward pass returns needs the batch's leading "
                f"dim ({batch_size}, ...).")
        return array

    def _action_arrays(self, actions: Any, batch_size: int) -> Any:
        """The actions as numpy arrays [B, *leaf shape], nested as the action space."""
        try:
            if not self._nested:
                return self._action_array(self.action_space, actions, batch_size, "actions")
            return map_space(self.action_space, actions,
                             lambda s, a, path: self._action_array(s, a, batch_size, path),
                             "actions")
        except ValueError as err:
            raise ValueError(f"{self._who} returned actions that do not fit the action space "
                             f"{self.action_space}: {err}.") from None

    def _action_array(self, space: gym.Space, actions: Any, batch_size: int,
                      path: str) -> np.ndarray:
        array = actions.detach().numpy() if isinstance(actions, torch.Tensor) \
            else np.asarray(actions)
        shape = (batch_size, *(space.shape or ()))
        if array.shape != shape:
            if array.size != int(np.prod(shape)):
                raise ValueError(f"{path} has shape {array.shape}, but a batch of {batch_size} "
                                 f"in {space} needs shape {shape}")
            array = array.reshape(shape)
        return array


def _int_bounds(space: gym.Space) -> tuple | None:
    """Integer bounds [low, high) of a (Multi)Discrete space, else None."""
    if isinstance(space, spaces.Discrete):
        return int(space.start), int(space.start + space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return space.start, space.start + space.nvec
    return None


def _is_batch_data(value: Any) -> bool:
    """A tensor or array, or a dict/tuple of them (what becomes a column)."""
    if isinstance(value, dict):
        return bool(value) and _is_batch_data(next(iter(value.values())))
    if isinstance(value, tuple):
        return bool(value) and _is_batch_data(value[0])
    return isinstance(value, (torch.Tensor, np.ndarray))


def _drop_time_dim(value: Any) -> Any:
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim >= 2 and value.shape[1] == 1:
        return value[:, 0]
    return value
