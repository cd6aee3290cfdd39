"""Learner pieces and how a learner runs its connector pipeline on fragments.

Learners train on Fragments; a learner connector sees each fragment as a numpy-backed
SingleAgentEpisode (``episode_view``): observations are the fragment's lookback (what the
runner kept of the steps before it), its ``obs`` and its ``last_obs``; actions, rewards and
extra model outputs are the fragment's own arrays, so ``set_rewards`` and friends change
the fragment. Items a piece adds to the batch become the fragment's columns: ``len(fragment)``
items a column, or ``len(fragment) + 1`` observations (the last one becomes ``last_obs``,
which values bootstrap from). The default columns (observations, actions, rewards, the
algorithm's advantages) are then built from the fragments as without a connector.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from rlmodules.columns import Columns
from rlmodules.tree import map_tree
from runners.connectors.connector_v2 import ConnectorV2, episode_key
from runners.connectors.env_to_module import stacked_space
from runners.episodes import SingleAgentEpisode
from runners.fragment import Fragment

_OWN_COLUMNS = (Columns.OBS, Columns.ACTIONS, Columns.REWARDS, Columns.TERMINATEDS,
                Columns.TRUNCATEDS, Columns.INFOS, Columns.STATE_IN)


def episode_view(fragment: Fragment, id_: str | None = None) -> SingleAgentEpisode:
    """``fragment`` as a numpy-backed SingleAgentEpisode (see the module docstring); ``id_``
    (default: the fragment's episode id) is its episode key in the connector batch."""
    cols = fragment.columns
    lookback = fragment.lookback_obs
    id_ = id_ or fragment.episode_id
    episode = SingleAgentEpisode(id_, agent_id=fragment.agent_id,
                                 module_id=fragment.module_id, t_started=fragment.t_started,
                                 multi_agent_episode_id=None if fragment.agent_id is None
                                 else id_)
    episode.observations = map_tree(
        lambda obs, last: np.concatenate([obs, np.asarray(last)[None]]), cols[Columns.OBS],
        fragment.last_obs)
    episode.lookback_observations = lookback  # Read by FrameStackingLearner.
    episode.actions, episode.rewards = cols[Columns.ACTIONS], cols[Columns.REWARDS]
    episode.infos = list(cols.get(Columns.INFOS, [{}] * len(fragment))) + [{}]
    episode.extra_model_outputs = {k: v for k, v in cols.items() if k not in _OWN_COLUMNS}
    episode.t = fragment.t_started + len(fragment)
    episode.is_terminated, episode.is_truncated = fragment.terminated, fragment.truncated
    return episode


def _rows(tree: Any) -> int:
    """Leading dim of an array or of the first leaf of a dict/tuple tree of arrays."""
    leaf = tree
    while not isinstance(leaf, np.ndarray):
        leaf = next(iter(leaf.values())) if isinstance(leaf, dict) else leaf[0]
    return len(leaf)


def apply_learner_connector(pipeline: ConnectorV2, rl_module: Any,
                            fragments: Sequence[Fragment], metrics: Any = None
                            ) -> list[Fragment]:
    """``fragments`` after ``pipeline``: new or replaced columns from its batch items,
    observations and last_obs as the pieces left them."""
    seen: dict[tuple, int] = {}
    views = []
    for fragment in fragments:  # Two chunks of one agent's episode get distinct batch keys.
        chunk = (fragment.episode_id, fragment.agent_id)
        n = seen[chunk] = seen.get(chunk, -1) + 1
        views.append(episode_view(fragment, fragment.episode_id + (f"#{n}" if n else "")))
    batch = pipeline(rl_module=rl_module, batch={}, episodes=views, explore=False,
                     shared_data={}, metrics=metrics)
    out = []
    for fragment, view in zip(fragments, views):
        T = len(fragment)
        columns = dict(fragment.columns)
        columns[Columns.OBS] = map_tree(lambda o: o[:T], view.observations)
        last_obs = map_tree(lambda o: o[T], view.observations)
        key = episode_key(view)
        for column, items in batch.items():
            mine = items.get(key) if isinstance(items, dict) else None
            if not mine:
                continue
            array = map_tree(lambda *xs: np.stack(xs), *mine)
            rows = _rows(array)
            if column == Columns.OBS and rows == T + 1:
                columns[Columns.OBS] = map_tree(lambda a: a[:T], array)
                last_obs = map_tree(lambda a: a[T], array)
            elif rows == T:
                columns[column] = array
            else:
                raise ValueError(
                    f"Learner connector added {rows} items of column {column!r} for a fragment "
                    f"of {T} steps (episode {fragment.episode_id}); add one per step (or "
                    f"{T + 1} observations, the last being the one after the last step).")
        out.append(dataclasses.replace(fragment, columns=columns, last_obs=last_obs))
    return out


class FrameStackingLearner(ConnectorV2):
    """The learner twin of FrameStackingEnvToModule: each step's observation becomes the
    last ``num_frames`` ones concatenated along the last axis (zeros before the episode's
    first), built from the fragment and the lookback the runner kept."""

    def __init__(self, input_observation_space: Any = None, input_action_space: Any = None,
                 *, num_frames: int = 1, multi_agent: bool = False, **kwargs: Any) -> None:
        if num_frames < 1:
            raise ValueError(f"FrameStackingLearner: num_frames={num_frames} must be >= 1.")
        self.num_frames, self.multi_agent = num_frames, multi_agent
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def recompute_output_observation_space(self, input_observation_space: Any,
                                           input_action_space: Any) -> Any:
        if isinstance(input_observation_space, dict) or self.multi_agent:
            return input_observation_space  # Per module: the module was built stacked.
        return stacked_space(input_observation_space, self.num_frames, type(self).__name__)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        k = self.num_frames
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            lookback = getattr(episode, "lookback_observations", None)
            have = 0 if lookback is None else len(lookback)
            obs = np.asarray(episode.observations)  # T + 1 rows.
            if have:
                obs = np.concatenate([np.asarray(lookback), obs])
            missing = k - 1 - have
            if missing > 0 and episode.t_started > have:
                raise ValueError(
                    f"FrameStackingLearner(num_frames={k}) needs the {k - 1} observations "
                    f"before each fragment, but episode {episode.id_}'s fragment (from step "
                    f"{episode.t_started}) came with {have}. Stack frames with "
                    f"FrameStackingEnvToModule(num_frames={k}) on the env runners (they then "
                    "keep the lookback).")
            if missing > 0:
                obs = np.concatenate([np.zeros((missing, *obs.shape[1:]), obs.dtype), obs])
            start = len(obs) - (len(episode) + 1)  # Row of the fragment's first obs.
            stacked = np.concatenate([obs[start - k + 1 + j:len(obs) - k + 1 + j]
                                      for j in range(k)], axis=-1)
            self.add_n_batch_items(batch, Columns.OBS, stacked, len(stacked), episode)
        return batch


class AddNextObservationsFromEpisodesToTrainBatch(ConnectorV2):
    """``new_obs``: the observation after each step (the last one is the fragment's
    ``last_obs``), for losses that need transitions (e.g. a curiosity model)."""

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            T = len(episode)
            self.add_n_batch_items(batch, Columns.NEXT_OBS,
                                   episode.get_observations(slice(1, T + 1)), T, episode)
        return batch


class IntrinsicCuriosityModelConnector(ConnectorV2):
    """Adds ``intrinsic_reward_coeff`` x the curiosity module's ``intrinsic_rewards`` to the
    rewards (before the algorithm computes advantages). The curiosity module (a
    SelfSupervisedLossAPI module under ``icm_module_id``) gets ``obs``, ``new_obs`` and
    ``actions`` of each fragment in its ``forward_train``."""

    def __init__(self, input_observation_space: Any = None, input_action_space: Any = None,
                 *, intrinsic_reward_coeff: float = 0.05,
                 icm_module_id: str = "_intrinsic_curiosity_model", **kwargs: Any) -> None:
        self.intrinsic_reward_coeff, self.icm_module_id = intrinsic_reward_coeff, icm_module_id
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 **kwargs: Any) -> dict[str, Any]:
        if self.icm_module_id not in rl_module:
            raise KeyError(f"IntrinsicCuriosityModelConnector: no module "
                           f"'{self.icm_module_id}' in the learner's MultiRLModule (it holds "
                           f"{list(rl_module.keys())}); pass icm_module_id=...")
        icm = rl_module[self.icm_module_id]
        device = next(icm.parameters()).device
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            if episode.module_id == self.icm_module_id or not len(episode):
                continue
            T = len(episode)
            with torch.no_grad():
                out = icm.forward_train(map_tree(
                    lambda x: torch.as_tensor(np.asarray(x)).to(device), {
                        Columns.OBS: episode.get_observations(slice(0, T)),
                        Columns.NEXT_OBS: episode.get_observations(slice(1, T + 1)),
                        Columns.ACTIONS: episode.get_actions()}))
            intrinsic = out[Columns.INTRINSIC_REWARDS].float().cpu().numpy().reshape(T)
            episode.set_rewards(new_data=episode.get_rewards() +
                                self.intrinsic_reward_coeff * intrinsic)
        return batch


__all__ = ["FrameStackingLearner", "AddNextObservationsFromEpisodesToTrainBatch",
           "IntrinsicCuriosityModelConnector", "episode_view", "apply_learner_connector"]
