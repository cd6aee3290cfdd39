"""Filling a module spec's spaces from the env, and checking the spaces a user set."""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from rlmodules import DEFAULT_MODULE_ID, MultiRLModuleSpec, RLModuleSpec
from runners.config import EnvRunnerConfig
from runners.connectors import build_env_to_module
from runners.env_registry import make_env
from runners.multi_agent_env import MultiAgentEnv


def complete_module_spec(config: EnvRunnerConfig) -> MultiRLModuleSpec:
    """The config's module spec as a MultiRLModuleSpec with every sub-spec's spaces filled.

    Builds one env (and the env-to-module pipeline) to read the spaces. Spaces the user set
    are kept but must fit the env's. ``config.module_ids`` (default: the ids
    ``policy_mapping_fn`` maps the env's agents to) expands a single shared spec (a plain
    RLModuleSpec, or a MultiRLModuleSpec holding one).
    """
    env = make_env(config.env, config.env_config)
    try:
        return fill_module_spec(config, env, build_env_to_module(config, env))
    finally:
        env.close()


def fill_module_spec(config: EnvRunnerConfig, env: Any, connector: Any) -> MultiRLModuleSpec:
    """``complete_module_spec`` for an env (and env-to-module pipeline, or None) the caller
    already built: modules see the pipeline's output observation space."""
    user = config.rl_module_spec
    if user is None:
        raise ValueError("EnvRunnerConfig.rl_module_spec is None; pass an RLModuleSpec (or "
                         "MultiRLModuleSpec) with module_class set.")
    if isinstance(user, RLModuleSpec):  # One spec shared by every module id.
        user = MultiRLModuleSpec(rl_module_specs=user)
    multi_agent = isinstance(env, MultiAgentEnv)
    mapping = {aid: config.policy_mapping_fn(aid, None) for aid in env.possible_agents} \
        if multi_agent else {None: DEFAULT_MODULE_ID}
    ids = config.module_ids or list(dict.fromkeys(mapping.values()))
    specs = {mid: dataclasses.replace(spec) for mid, spec in user.module_specs(ids).items()}
    for agent_id, module_id in mapping.items():
        if module_id not in specs:
            who = "A single-agent env acts with" if agent_id is None else \
                f"policy_mapping_fn maps agent {agent_id!r} to"
            raise ValueError(f"{who} module '{module_id}', but the module spec only defines "
                             f"{sorted(specs)}. Add a spec for '{module_id}'"
                             + (" or change the mapping." if agent_id is not None else "."))
    env_name = getattr(config.env, "__name__", config.env)
    for module_id, spec in specs.items():
        agents = [aid for aid, mid in mapping.items() if mid == module_id] if multi_agent \
            else [None]  # A single-agent env's spaces fit every module.
        if not agents and (spec.observation_space is None or spec.action_space is None) \
                and not spec.learner_only:  # A learner-only module's spaces are the user's.
            raise ValueError(
                f"Module '{module_id}' has no agent mapped to it by policy_mapping_fn "
                f"(agents map to {sorted(set(mapping.values()))}), so its spaces cannot be "
                "read from the env; set observation_space and action_space in its "
                "RLModuleSpec.")
        for agent_id in agents:
            obs_space, act_space = (env.get_observation_space(agent_id),
                                    env.get_action_space(agent_id)) if multi_agent \
                else (env.observation_space, env.action_space)
            who = f"env {env_name!r}" + (f", agent {agent_id!r}" if multi_agent else "")
            if connector is not None:
                obs_space = connector.observation_space[agent_id] if multi_agent \
                    else connector.observation_space
            spec.observation_space = _fit(spec.observation_space, obs_space,
                                          "observation_space", module_id, spec, who)
            spec.action_space = _fit(spec.action_space, act_space, "action_space",
                                     module_id, spec, who)
    return dataclasses.replace(user, rl_module_specs=specs)


def spaces_fit(a: gym.Space, b: gym.Space) -> bool:
    """Same kind and shape (bounds may differ): a module built for ``a`` can take ``b``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, spaces.Discrete):
        return a.n == b.n
    if isinstance(a, spaces.MultiDiscrete):
        return a.nvec.shape == b.nvec.shape and (a.nvec == b.nvec).all()
    if isinstance(a, spaces.Dict):
        return a.keys() == b.keys() and all(spaces_fit(a[k], b[k]) for k in a.keys())
    if isinstance(a, spaces.Tuple):
        return len(a) == len(b) and all(spaces_fit(x, y) for x, y in zip(a, b))
    return a.shape == b.shape


def _fit(set_space: gym.Space | None, env_space: gym.Space, name: str, module_id: str,
         spec: RLModuleSpec, who: str) -> gym.Space:
    if set_space is None:
        return env_space
    if not spaces_fit(set_space, env_space):
        cls = getattr(spec.module_class, "__name__", spec.module_class)
        raise ValueError(
            f"Module '{module_id}' ({cls}) is built for {name} {set_space}, but {who} gives "
            f"{env_space} (after the env-to-module connector). Leave {name} unset in the "
            "RLModuleSpec to have it read from the env, or fix the env or connector.")
    return set_space
