"""RLModules: torch networks with exploration, inference and training forward passes."""

from rlmodules.apis import (TARGET_NETWORK_ACTION_DIST_INPUTS, InferenceOnlyAPI, QNetAPI,
                            SelfSupervisedLossAPI, TargetNetworkAPI, ValueFunctionAPI,
                            make_target_network, update_target_network)
from rlmodules.columns import (ALL_MODULES, COMPONENT_ENV_RUNNER, COMPONENT_ENV_TO_MODULE_CONNECTOR,
                               COMPONENT_EVAL_ENV_RUNNER, COMPONENT_LEARNER,
                               COMPONENT_LEARNER_GROUP, COMPONENT_METRICS_LOGGER,
                               COMPONENT_MODULE_TO_ENV_CONNECTOR, COMPONENT_MULTI_RL_MODULE_SPEC,
                               COMPONENT_OPTIMIZER, COMPONENT_RL_MODULE, DEFAULT_AGENT_ID,
                               DEFAULT_MODULE_ID, DEFAULT_POLICY_ID, ENCODER_OUT, Columns)
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.encoders import ACTOR, CRITIC
from rlmodules.multi_rl_module import MultiRLModule, MultiRLModuleSpec
from rlmodules.rl_module import RLModule, RLModuleSpec
from rlmodules.torch_rl_module import TorchRLModule
from rlmodules import compat  # noqa: F401  (last: it installs the alpha API on RLModule)

__all__ = [
    "ACTOR",
    "ALL_MODULES",
    "CRITIC",
    "COMPONENT_ENV_RUNNER",
    "COMPONENT_ENV_TO_MODULE_CONNECTOR",
    "COMPONENT_EVAL_ENV_RUNNER",
    "COMPONENT_LEARNER",
    "COMPONENT_LEARNER_GROUP",
    "COMPONENT_METRICS_LOGGER",
    "COMPONENT_MODULE_TO_ENV_CONNECTOR",
    "COMPONENT_MULTI_RL_MODULE_SPEC",
    "COMPONENT_OPTIMIZER",
    "COMPONENT_RL_MODULE",
    "Columns",
    "DEFAULT_AGENT_ID",
    "DEFAULT_MODULE_ID",
    "DEFAULT_POLICY_ID",
    "DefaultModelConfig",
    "ENCODER_OUT",
    "InferenceOnlyAPI",
    "MultiRLModule",
    "MultiRLModuleSpec",
    "QNetAPI",
    "RLModule",
    "RLModuleSpec",
    "SelfSupervisedLossAPI",
    "TARGET_NETWORK_ACTION_DIST_INPUTS",
    "TargetNetworkAPI",
    "TorchRLModule",
    "ValueFunctionAPI",
    "make_target_network",
    "update_target_network",
]
