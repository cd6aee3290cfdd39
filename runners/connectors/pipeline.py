"""Connector pipelines: pieces called in order, each with its predecessor's batch, spaces
chained from the first piece's input to the last one's output."""

from __future__ import annotations

from typing import Any, Iterable

import gymnasium as gym

from runners.connectors.connector_v2 import ConnectorV2


class ConnectorPipelineV2(ConnectorV2):
    """A sequence of pieces that is itself a piece (pipelines nest)."""

    def __init__(self, input_observation_space: gym.Space | None = None,
                 input_action_space: gym.Space | None = None, *,
                 connectors: Iterable[ConnectorV2] | None = None, **kwargs: Any) -> None:
        self.connectors: list[ConnectorV2] = []
        for piece in connectors or ():
            self.connectors.append(_checked(piece))
        super().__init__(input_observation_space, input_action_space, **kwargs)

    @property
    def required_lookback(self) -> int:  # type: ignore[override]
        return max((c.required_lookback for c in self.connectors), default=0)

    # ---- editing --------------------------------------------------------------------------

    def append(self, connector: ConnectorV2) -> None:
        self._insert(len(self.connectors), connector)

    def prepend(self, connector: ConnectorV2) -> None:
        self._insert(0, connector)

    def insert_before(self, name_or_class: str | type, connector: ConnectorV2) -> ConnectorV2:
        """Insert ``connector`` before the first piece of that class (or class name)."""
        self._insert(self._index(name_or_class), connector)
        return connector

    def insert_after(self, name_or_class: str | type, connector: ConnectorV2) -> ConnectorV2:
        """Insert ``connector`` after the first piece of that class (or class name)."""
        self._insert(self._index(name_or_class) + 1, connector)
        return connector

    def remove(self, name_or_class: str | type) -> None:
        i = self._index(name_or_class)
        self._take(self.connectors[:i] + self.connectors[i + 1:])

    def _insert(self, i: int, connector: ConnectorV2) -> None:
        self._take(self.connectors[:i] + [_checked(connector)] + self.connectors[i:])

    def _take(self, connectors: list[ConnectorV2]) -> None:
        """Use ``connectors`` if their spaces chain; if a piece refuses its input space, the
        pipeline stays as it was (and the error propagates)."""
        old, self.connectors = self.connectors, connectors
        try:
            self._recompute_spaces()
        except Exception:
            self.connectors = old
            self._recompute_spaces()
            raise

    def _index(self, name_or_class: str | type) -> int:
        for i, piece in enumerate(self.connectors):
            if (type(piece).__name__ == name_or_class if isinstance(name_or_class, str)
                    else isinstance(piece, name_or_class)):
                return i
        name = getattr(name_or_class, "__name__", name_or_class)
        raise ValueError(f"{type(self).__name__} holds no {name} piece; it holds "
                         f"{[type(c).__name__ for c in self.connectors]}.")

    def __len__(self) -> int:
        return len(self.connectors)

    def __getitem__(self, key: int | str | type) -> ConnectorV2:
        return self.connectors[key if isinstance(key, int) else self._index(key)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.connectors))})"

    # ---- spaces and call ------------------------------------------------------------------

    def _recompute_spaces(self) -> None:
        obs, act = self._input_observation_space, self._input_action_space
        if obs is None:
            return
        for piece in self.connectors:
            piece.set_input_spaces(obs, act)
            obs, act = piece.observation_space, piece.action_space
        self._observation_space, self._action_space = obs, act

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: list[Any],
                 explore: bool | None = None, shared_data: dict | None = None,
                 metrics: Any = None, **kwargs: Any) -> Any:
        shared_data = {} if shared_data is None else shared_data
        for piece in self.connectors:
            batch = piece(rl_module=rl_module, batch=batch, episodes=episodes, explore=explore,
                          shared_data=shared_data, metrics=metrics, **kwargs)
            if not isinstance(batch, dict):
                raise TypeError(f"Connector piece {type(piece).__name__} returned a "
                                f"{type(batch).__name__}; __call__ must return the batch "
                                "(a dict).")
        return batch

    # ---- state ----------------------------------------------------------------------------

    def _names(self) -> list[str]:
        names: list[str] = []
        for piece in self.connectors:
            name = type(piece).__name__
            names.append(name if name not in names else f"{name}_{len(names)}")
        return names

    def get_state(self, components: Any = None, *, not_components: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
        """``{piece name: its state}`` for the stateful pieces."""
        states = {name: piece.get_state() for name, piece in zip(self._names(), self.connectors)}
        return {name: state for name, state in states.items() if state}

    def set_state(self, state: dict[str, Any]) -> None:
        for name, piece in zip(self._names(), self.connectors):
            if name in state:
                piece.set_state(state[name])

    def reset_state(self) -> None:
        for piece in self.connectors:
            piece.reset_state()

    def merge_states(self, states: list[dict[str, Any]]) -> dict[str, Any]:
        merged = {}
        for name, piece in zip(self._names(), self.connectors):
            parts = [s[name] for s in states if name in s]
            if parts:
                merged[name] = piece.merge_states(parts)
        return merged


class EnvToModulePipeline(ConnectorPipelineV2):
    """Runs on env runners: ongoing episodes -> the module's forward input."""


class ModuleToEnvPipeline(ConnectorPipelineV2):
    """Runs on env runners: the module's output -> what the envs get."""


class LearnerConnectorPipeline(ConnectorPipelineV2):
    """Runs on learners: sampled episodes -> extra or changed train-batch columns."""


def _checked(piece: Any) -> ConnectorV2:
    if not isinstance(piece, ConnectorV2):
        raise TypeError(f"A connector pipeline takes ConnectorV2 pieces (runners.connectors), "
                        f"not a {type(piece).__name__}: {piece!r}.")
    return piece
