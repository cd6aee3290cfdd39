"""APIs a module implements so that learners (and algorithms) can do more with it."""

from rlmodules.apis.inference_only_api import InferenceOnlyAPI
from rlmodules.apis.q_net_api import QNetAPI
from rlmodules.apis.self_supervised_loss_api import SelfSupervisedLossAPI
from rlmodules.apis.target_network_api import (TARGET_NETWORK_ACTION_DIST_INPUTS,
                                               TargetNetworkAPI, make_target_network,
                                               update_target_network)
from rlmodules.apis.value_function_api import ValueFunctionAPI

__all__ = [
    "InferenceOnlyAPI",
    "QNetAPI",
    "SelfSupervisedLossAPI",
    "TARGET_NETWORK_ACTION_DIST_INPUTS",
    "TargetNetworkAPI",
    "ValueFunctionAPI",
    "make_target_network",
    "update_target_network",
]
