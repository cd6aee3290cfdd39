"""VPG: REINFORCE (vanilla policy gradient) on complete episodes."""

from __future__ import annotations

from typing import Any

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, NotProvided, is_int
from rlmodules import RLModuleSpec
from runners.fragment import Fragment

_VPG_CHECKS = {
    **AlgorithmConfig.checks,
    "num_episodes_per_train_batch": (lambda v: is_int(v) and v >= 1, "an int >= 1"),
    "normalize_returns": (lambda v: isinstance(v, bool), "a bool"),
}


class VPGConfig(AlgorithmConfig):
    """VPG's settings: whole episodes per batch, one gradient step per episode batch."""

    checks = _VPG_CHECKS

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or VPG)
        self.num_envs_per_env_runner = 8
        self.rollout_fragment_length = 50  # Steps per env between checks for enough episodes.
        self.lr = 1e-2
        self.minibatch_size = None  # One gradient step on the whole batch of episodes.
        # VPG's own keys.
        self.num_episodes_per_train_batch = 16
        self.normalize_returns = True

    def training(self, *, num_episodes_per_train_batch: int = NotProvided,
                 normalize_returns: bool = NotProvided, **kwargs: Any) -> "VPGConfig":
        """VPG's keys; everything else goes to ``AlgorithmConfig.training``.

        Each train batch is ``num_episodes_per_train_batch`` complete episodes, so its size
        in timesteps varies; ``normalize_returns`` standardizes the returns-to-go per batch.
        """
        super().training(**kwargs)
        return self._set("training", {},
                         num_episodes_per_train_batch=num_episodes_per_train_batch,
                         normalize_returns=normalize_returns)

    def get_default_learner_class(self) -> type:
        from algorithms.vpg.vpg_torch_learner import VPGTorchLearner

        return VPGTorchLearner

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule

        return RLModuleSpec(module_class=DefaultVPGTorchRLModule,
                            model_config={"fcnet_hiddens": [64], "fcnet_activation": "tanh"})


class VPG(Algorithm):
    """Samples ``num_episodes_per_train_batch`` complete episodes per iteration."""

    config_class = VPGConfig

    def sample(self) -> list[Fragment]:
        return self.env_runner_group.sample(num_episodes=self.config.num_episodes_per_train_batch)
