"""``ConnectorV2``: one piece of a connector pipeline, with RLlib's call signature.

A piece is called with the ongoing episodes and the batch its predecessors built, and
returns the batch. It may change the episodes in place (what it writes there is what
learners later train on) and add items to the batch. Batch items are kept per episode, as
in RLlib: ``batch[column][key]`` is a list of items, ``key`` being ``(episode.id_,)`` for a
single-agent episode and ``(multi_agent_episode_id, agent_id, module_id)`` for an agent's
part of a multi-agent one (``add_batch_item`` and ``add_n_batch_items`` do this).

Each piece maps input spaces to output spaces (``recompute_output_observation_space`` /
``recompute_output_action_space``); a pipeline chains them, so the module is built for the
last piece's output. Stateful pieces (e.g. MeanStdFilter) implement ``get_state`` /
``set_state`` and ``merge_states`` (how the states of several runners combine).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Iterator

import gymnasium as gym

EpisodeKey = tuple


class ConnectorV2:
    """Base class of connector pieces (override ``__call__``)."""

    # How many steps before the current one this piece reads from episodes (e.g. frame
    # stacking); runners keep that many in the episodes they cut between sample() calls.
    required_lookback: int = 0

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, **kwargs: Any) -> None:
        self._input_observation_space = input_observation_space
        self._input_action_space = input_action_space
        self._observation_space: gym.Space | None = None
        self._action_space: gym.Space | None = None
        self._recompute_spaces()

    # ---- spaces -------------------------------------------------------------------------------

    def recompute_output_observation_space(self, input_observation_space: gym.Space,
                                           input_action_space: gym.Space) -> gym.Space:
        """The observation space after this piece; unchanged by default."""
        return input_observation_space

    def recompute_output_action_space(self, input_observation_space: gym.Space,
                                      input_action_space: gym.Space) -> gym.Space:
        """The action space after this piece; unchanged by default."""
        return input_action_space

    def _recompute_spaces(self) -> None:
        if self._input_observation_space is None:
            return
        self._observation_space = self.recompute_output_observation_space(
            self._input_observation_space, self._input_action_space)
        self._action_space = self.recompute_output_action_space(
            self._input_observation_space, self._input_action_space)

    @property
    def input_observation_space(self) -> gym.Space | None:
        return self._input_observation_space

    @input_observation_space.setter
    def input_observation_space(self, space: gym.Space | None) -> None:
        self._input_observation_space = space
        self._recompute_spaces()

    @property
    def input_action_space(self) -> gym.Space | None:
        return self._input_action_space

    @input_action_space.setter
    def input_action_space(self, space: gym.Space | None) -> None:
        self._input_action_space = space
        self._recompute_spaces()

    def set_input_spaces(self, observation_space: gym.Space | None,
                         action_space: gym.Space | None) -> None:
        """Both input spaces at once (the output spaces are recomputed once)."""
        self._input_observation_space, self._input_action_space = observation_space, \
            action_space
        self._recompute_spaces()

    @property
    def observation_space(self) -> gym.Space | None:
        """The output observation space."""
        return self._observation_space

    @property
    def action_space(self) -> gym.Space | None:
        """The output action space."""
        return self._action_space

    # ---- the call -----------------------------------------------------------------------------

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 metrics: Any = None, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(*, "
                                  "rl_module, batch, episodes, explore, shared_data, metrics, "
                                  "**kwargs) and return the batch.")

    # ---- state --------------------------------------------------------------------------------

    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def reset_state(self) -> None:
        """Forget what was learned from data (stateless pieces: nothing)."""

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        """One state from those of several copies of this piece (runners). By default the
        first one: a piece with state but no merge rule keeps it as it is (set_state never
        gets an empty state); pieces whose copies learn apart (MeanStdFilter) combine them."""
        return states[0] if states else {}

    # ---- helpers for pieces ---------------------------------------------------------------

    @staticmethod
    def single_agent_episode_iterator(episodes: Iterable[Any],
                                      agents_that_stepped_only: bool = True,
                                      zip_with_batch_column: Any = None) -> Iterator[Any]:
        """Every SingleAgentEpisode in ``episodes``: single-agent episodes as they are, each
        agent's episode of a multi-agent one (only the agents that just got an observation,
        with ``agents_that_stepped_only``). With ``zip_with_batch_column`` (a column of the
        batch), pairs ``(episode, items)`` of the episode and its items there."""
        for episode in episodes:
            if not hasattr(episode, "agent_episodes"):
                agents = [episode]
            else:
                agents = [a for aid, a in episode.agent_episodes.items()
                          if not agents_that_stepped_only or _stepped(episode, aid)]
            for agent in agents:
                if zip_with_batch_column is None:
                    yield agent
                else:
                    yield agent, zip_with_batch_column.get(episode_key(agent), [])

    @staticmethod
    def add_batch_item(batch: dict[str, Any], column: str, item_to_add: Any,
                       single_agent_episode: Any = None) -> None:
        """Append one item to ``batch[column]`` under ``single_agent_episode``'s key."""
        batch.setdefault(column, {}).setdefault(
            episode_key(single_agent_episode), []).append(item_to_add)

    @staticmethod
    def add_n_batch_items(batch: dict[str, Any], column: str, items_to_add: Any,
                          num_items: int, single_agent_episode: Any = None) -> None:
        """Append ``num_items`` items (an array or list with that many rows) at once."""
        if len(items_to_add) != num_items:
            raise ValueError(f"add_n_batch_items({column!r}): {len(items_to_add)} items given, "
                             f"num_items={num_items}.")
        batch.setdefault(column, {}).setdefault(
            episode_key(single_agent_episode), []).extend(list(items_to_add))

    @staticmethod
    def foreach_batch_item_change_in_place(batch: dict[str, Any], column: str | list[str],
                                           func: Callable[..., Any]) -> None:
        """``item = func(item, eps_id, agent_id, module_id)`` for every item of ``column``
        (several columns: ``func`` gets and returns a tuple of their items)."""
        columns = [column] if isinstance(column, str) else list(column)
        for key in list(batch[columns[0]]):
            eps_id, agent_id, module_id = (key + (None, None))[:3]
            groups = [batch[c][key] for c in columns]
            for i in range(len(groups[0])):
                items = tuple(g[i] for g in groups)
                new = func(items[0] if len(columns) == 1 else items, eps_id, agent_id,
                           module_id)
                for g, value in zip(groups, (new,) if len(columns) == 1 else new):
                    g[i] = value

    def __repr__(self) -> str:
        return type(self).__name__


def episode_key(episode: Any) -> EpisodeKey:
    """The key of an episode's items in a connector batch (see the module docstring)."""
    if episode is None:
        return ()
    if getattr(episode, "multi_agent_episode_id", None) is None:
        return (episode.id_,)
    return (episode.multi_agent_episode_id, episode.agent_id, episode.module_id)


def _stepped(episode: Any, agent_id: Hashable) -> bool:
    """The agent got an observation at the episode's latest env step."""
    steps = episode.env_t_to_agent_t.get(agent_id)
    return bool(steps) and steps[-1] == episode.env_t
