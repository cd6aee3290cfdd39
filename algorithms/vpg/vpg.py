"""VPG: REINFORCE (vanilla policy gradient) on complete episodes."""

from __future__ import annotations

from dataclasses import dataclass

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, Builder, TrainingSettings
from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule
from algorithms.vpg.vpg_torch_learner import VPGTorchLearner
from rlmodules import RLModuleSpec
from runners.config import BOOL, int_at_least, setting
from runners.fragment import Fragment


@dataclass
class VPGTrainingSettings(TrainingSettings):
    """Optimization settings, VPG's own keys included; a train batch is whole episodes."""

    num_episodes_per_train_batch: int = setting(16, int_at_least(1), "so its timesteps vary")
    normalize_returns: bool = setting(True, BOOL, "standardize returns-to-go per batch")


class VPGConfig(AlgorithmConfig):
    """VPG's settings: whole episodes per batch, one gradient step per episode batch."""

    # rollout_fragment_length: steps per env between checks for enough episodes;
    # minibatch_size None: one gradient step on the whole batch of episodes.
    defaults = {"num_envs_per_env_runner": 8, "rollout_fragment_length": 50, "lr": 1e-2,
                "minibatch_size": None}
    training = Builder(VPGTrainingSettings)
    default_learner_class = VPGTorchLearner
    default_rl_module_spec = RLModuleSpec(
        module_class=DefaultVPGTorchRLModule,
        model_config={"fcnet_hiddens": [64], "fcnet_activation": "tanh"})

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or VPG)


class VPG(Algorithm):
    """Samples ``num_episodes_per_train_batch`` complete episodes per iteration."""

    config_class = VPGConfig

    def sample(self) -> list[Fragment]:
        return self.env_runner_group.sample(num_episodes=self.config.num_episodes_per_train_batch)
