"""Catalog: builds a module's default sub-networks from its spaces and model config.

RLlib's ``Catalog`` API: ``build_encoder(framework)``, ``get_action_dist_cls(framework)``
and ``latent_dims`` (the encoder's output size, which heads take as input). A module whose
spec names a ``catalog_class`` finds an instance in ``self.catalog`` when ``setup()`` runs;
algorithm catalogs (``algorithms.ppo.PPOCatalog``) add their heads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import gymnasium as gym

from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.distributions import TorchDistribution, default_dist_cls
from rlmodules.encoders import Encoder, build_encoder, encoder_output_dim

_KNOWN_KEYS = frozenset(f.name for f in dataclasses.fields(DefaultModelConfig))


class Catalog:
    """Default encoder and action distribution for ``observation_space`` / ``action_space``.

    ``model_config_dict`` is merged over ``DefaultModelConfig()``: ``model_config`` holds
    the default-model settings read from it, ``_model_config_dict`` (RLlib's name) the whole
    merged dict, custom keys included, for subclasses to read. Nothing is checked or built
    until a ``build_*`` method (or ``latent_dims``) is called, so a module that does not use
    its catalog is never failed by it.
    """

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 model_config_dict: Mapping[str, Any] | DefaultModelConfig | None) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        if isinstance(model_config_dict, DefaultModelConfig):
            model_config_dict = dataclasses.asdict(model_config_dict)
        given = dict(model_config_dict or {})
        self.model_config = DefaultModelConfig(
            **{k: v for k, v in given.items() if k in _KNOWN_KEYS})
        self._model_config_dict = {**dataclasses.asdict(self.model_config), **given}
        self._latent_dims: tuple[int, ...] | None = None

    @property
    def latent_dims(self) -> tuple[int, ...]:
        """Shape of the encoder's features, e.g. ``(256,)``; settable, as in RLlib."""
        if self._latent_dims is None:
            self._latent_dims = (encoder_output_dim(self.observation_space, self.model_config),)
        return self._latent_dims

    @latent_dims.setter
    def latent_dims(self, value: tuple[int, ...]) -> None:
        self._latent_dims = tuple(value)

    def build_encoder(self, framework: str = "torch") -> Encoder:
        """The default encoder: ``encoder(batch)[ENCODER_OUT]`` has ``latent_dims`` features."""
        check_framework(self, framework)
        return build_encoder(self.observation_space, self.model_config)

    def get_action_dist_cls(self, framework: str = "torch") -> type[TorchDistribution]:
        """The action space's default distribution class (see ``default_dist_cls``)."""
        check_framework(self, framework)
        return default_dist_cls(self.action_space)


def check_framework(catalog: Catalog, framework: str) -> None:
    """Catalogs build torch models only; anything else is an error naming the catalog."""
    if framework != "torch":
        raise ValueError(f"{type(catalog).__name__} builds torch models only, got "
                         f"framework={framework!r}; pass framework='torch'.")
