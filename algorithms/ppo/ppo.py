"""PPO: clipped-surrogate policy optimization with GAE, on fixed-size batches of timesteps."""

from __future__ import annotations

from dataclasses import dataclass

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, Builder, TrainingSettings
from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from algorithms.ppo.ppo_catalog import PPOCatalog
from algorithms.ppo.ppo_torch_learner import PPOTorchLearner
from rlmodules import RLModuleSpec
from runners.config import BOOL, NON_NEGATIVE, POSITIVE, UNIT, optional, or_schedule, setting


@dataclass
class PPOTrainingSettings(TrainingSettings):
    """Optimization settings, PPO's own keys included."""

    lambda_: float = setting(0.95, UNIT, "GAE's lambda")
    clip_param: float = setting(0.2, POSITIVE, "how far the policy ratio may leave 1")
    vf_clip_param: float | None = setting(
        None, optional(POSITIVE), "upper bound of the squared value error per sample (None: "
        "unbounded), in squared return units: a bound far below them leaves the value function "
        "no gradient (e.g. 10 with CartPole's returns of up to 100 at gamma=0.99)")
    vf_loss_coeff: float = setting(
        0.5, NON_NEGATIVE, "with an encoder shared by policy and value function "
        "(vf_share_layers, use_lstm) lower this (e.g. 0.01): the value loss, in squared "
        "returns, would drown the policy gradient in the shared layers")
    entropy_coeff: float | list = setting(
        0.0, or_schedule(NON_NEGATIVE), "or [[timestep, coeff], ...] interpolated over the "
        "learner's trained env steps (reported as curr_entropy_coeff)")
    use_kl_loss: bool = setting(False, BOOL)
    kl_coeff: float = setting(0.2, NON_NEGATIVE, "initial value; adapted towards kl_target")
    kl_target: float = setting(0.01, POSITIVE)
    normalize_advantages: str | None = setting(
        "batch", (lambda v: v in ("batch", "minibatch", None), "'batch', 'minibatch' or None"),
        "standardize advantages over each learner's whole batch, each minibatch, or not")


class PPOConfig(AlgorithmConfig):
    """PPO's settings; the defaults solve CartPole-v1 in a few seconds on one core."""

    defaults = {"num_envs_per_env_runner": 8, "lr": 3e-3, "minibatch_size": 500, "num_epochs": 6}
    training = Builder(PPOTrainingSettings)
    default_learner_class = PPOTorchLearner
    default_rl_module_spec = RLModuleSpec(
        module_class=DefaultPPOTorchRLModule, catalog_class=PPOCatalog,
        model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or PPO)


class PPO(Algorithm):
    """Samples ``train_batch_size_per_learner * max(1, num_learners)`` env steps per iteration."""

    config_class = PPOConfig
