"""Runners: the acting side. Env runners step envs with an inference-only MultiRLModule and
return Fragments; EnvRunnerGroup runs one locally or several as Ray actors."""

from runners.config import EnvRunnerConfig
from runners.env_registry import make_env, register_env
from runners.env_runner import EnvContext, SingleAgentEnvRunner
from runners.env_runner_group import EnvRunnerGroup
from runners.episodes import MultiAgentEpisode, SingleAgentEpisode
from runners.fragment import Fragment
from runners.metrics_logger import MetricsLogger
from runners.module_spec import complete_module_spec
from runners.multi_agent_env import ENV_STATE, MultiAgentEnv, make_multi_agent
from runners.multi_agent_env_runner import MultiAgentEnvRunner

__all__ = [
    "ENV_STATE",
    "EnvContext",
    "EnvRunnerConfig",
    "EnvRunnerGroup",
    "Fragment",
    "MetricsLogger",
    "MultiAgentEnv",
    "MultiAgentEnvRunner",
    "MultiAgentEpisode",
    "SingleAgentEnvRunner",
    "SingleAgentEpisode",
    "complete_module_spec",
    "make_env",
    "make_multi_agent",
    "register_env",
]
