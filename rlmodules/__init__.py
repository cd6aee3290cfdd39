"""RLModules: torch networks with exploration, inference and training forward passes."""

from rlmodules.apis import ValueFunctionAPI
from rlmodules.columns import DEFAULT_MODULE_ID, ENCODER_OUT, Columns
from rlmodules.default_model_config import DefaultModelConfig
from rlmodules.multi_rl_module import MultiRLModule, MultiRLModuleSpec
from rlmodules.rl_module import RLModule, RLModuleSpec
from rlmodules.torch_rl_module import TorchRLModule
from rlmodules import compat  # noqa: F401  (last: it installs the alpha API on RLModule)

__all__ = [
    "Columns",
    "DEFAULT_MODULE_ID",
    "DefaultModelConfig",
    "ENCODER_OUT",
    "MultiRLModule",
    "MultiRLModuleSpec",
    "RLModule",
    "RLModuleSpec",
    "TorchRLModule",
    "ValueFunctionAPI",
]
