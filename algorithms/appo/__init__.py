"""Asynchronous Proximal Policy Optimization (APPO)."""

from algorithms.appo.appo import APPO, APPOConfig
from algorithms.appo.appo_torch_learner import APPOTorchLearner
from algorithms.appo.default_appo_rl_module import DefaultAPPOTorchRLModule
from algorithms.appo.vtrace import vtrace

__all__ = ["APPO", "APPOConfig", "APPOTorchLearner", "DefaultAPPOTorchRLModule", "vtrace"]
