"""Vanilla policy gradient (REINFORCE)."""

from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule
from algorithms.vpg.vpg import VPG, VPGConfig
from algorithms.vpg.vpg_torch_learner import VPGTorchLearner, VPGTorchLearnerSharedOptimizer

__all__ = ["VPG", "VPGConfig", "DefaultVPGTorchRLModule", "VPGTorchLearner",
           "VPGTorchLearnerSharedOptimizer"]
