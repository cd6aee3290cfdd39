"""Proximal Policy Optimization."""

from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from algorithms.ppo.ppo import PPO, PPOConfig
from algorithms.ppo.ppo_catalog import PPOCatalog
from algorithms.ppo.ppo_torch_learner import PPOTorchLearner

__all__ = ["PPO", "PPOCatalog", "PPOConfig", "DefaultPPOTorchRLModule", "PPOTorchLearner"]
