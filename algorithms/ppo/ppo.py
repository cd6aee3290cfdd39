"""PPO: clipped-surrogate policy optimization with GAE, on fixed-size batches of timesteps."""

from __future__ import annotations

from typing import Any

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig, NotProvided, is_number
from rlmodules import RLModuleSpec

_PPO_CHECKS = {
    **AlgorithmConfig.checks,
    "lambda_": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "clip_param": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "vf_clip_param": (lambda v: v is None or (is_number(v) and v > 0), "None or a number > 0"),
    "vf_loss_coeff": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "entropy_coeff": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "use_kl_loss": (lambda v: isinstance(v, bool), "a bool"),
    "kl_coeff": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "kl_target": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "normalize_advantages": (lambda v: v in ("batch", "minibatch", None),
                             "'batch', 'minibatch' or None"),
}


class PPOConfig(AlgorithmConfig):
    """PPO's settings; the defaults solve CartPole-v1 in a few seconds on one core."""

    checks = _PPO_CHECKS

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class=algo_class or PPO)
        self.num_envs_per_env_runner = 8
        self.lr = 3e-3
        self.train_batch_size_per_learner = 2000
        self.minibatch_size = 500
        self.num_epochs = 6
        # PPO's own keys.
        self.lambda_ = 0.95
        self.clip_param = 0.2
        # Upper bound of the squared value error per sample (None: unbounded). It is in
        # squared return units: a bound far below them leaves the value function no
        # gradient (e.g. 10 with CartPole's returns of up to 100 at gamma=0.99).
        self.vf_clip_param: float | None = None
        # With an encoder shared by policy and value function (vf_share_layers, use_lstm)
        # lower this (e.g. 0.01): the value loss, in squared returns, would drown the
        # policy gradient in the shared layers.
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.0
        self.use_kl_loss = False
        self.kl_coeff = 0.2  # Initial coefficient; adapted towards kl_target during training.
        self.kl_target = 0.01
        self.normalize_advantages: str | None = "batch"

    def training(self, *, lambda_: float = NotProvided, clip_param: float = NotProvided,
                 vf_clip_param: float = NotProvided, vf_loss_coeff: float = NotProvided,
                 entropy_coeff: float = NotProvided, use_kl_loss: bool = NotProvided,
                 kl_coeff: float = NotProvided, kl_target: float = NotProvided,
                 normalize_advantages: str | None = NotProvided,
                 **kwargs: Any) -> "PPOConfig":
        """PPO's keys; everything else goes to ``AlgorithmConfig.training``.

        ``normalize_advantages``: standardize advantages over each learner's whole batch
        ("batch"), over each minibatch ("minibatch"), or not at all (None).
        """
        super().training(**kwargs)
        return self._set("training", {}, lambda_=lambda_, clip_param=clip_param,
                         vf_clip_param=vf_clip_param, vf_loss_coeff=vf_loss_coeff,
                         entropy_coeff=entropy_coeff, use_kl_loss=use_kl_loss,
                         kl_coeff=kl_coeff, kl_target=kl_target,
                         normalize_advantages=normalize_advantages)

    def get_default_learner_class(self) -> type:
        from algorithms.ppo.ppo_torch_learner import PPOTorchLearner

        return PPOTorchLearner

    def get_default_rl_module_spec(self) -> RLModuleSpec:
        from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule

        return RLModuleSpec(module_class=DefaultPPOTorchRLModule,
                            model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})


class PPO(Algorithm):
    """Samples ``train_batch_size_per_learner * max(1, num_learners)`` env steps per iteration."""

    config_class = PPOConfig
