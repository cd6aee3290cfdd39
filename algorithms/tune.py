"""Ray Tune adapter: ``trainable(PPO)`` is a ``ray.tune.Trainable`` running that algorithm.

    from ray import tune
    from algorithms.tune import trainable
    tune.Tuner(trainable(PPO), param_space=PPOConfig().environment("CartPole-v1")
               .training(lr=tune.grid_search([1e-3, 3e-4])),
               run_config=tune.RunConfig(stop={"env_runners/episode_return_mean": 450}))

Tune resolves the search spaces of ``param_space`` (a config or its ``to_dict()``); each trial
builds the algorithm from its resolved values, checked as ``update_from_dict`` checks them.
Results reach Tune as ``Algorithm.train()`` returns them (Tune flattens nested keys with
"/": ``env_runners/episode_return_mean``); checkpoints are ``Algorithm.save_to_path``
directories, so ``Algorithm.from_checkpoint(result.checkpoint.path)`` loads them.

Only this module imports Ray Tune; nothing imports it by default.
"""

from __future__ import annotations

from typing import Any, Mapping

from ray import tune
from ray.tune.tune import _Config

from algorithms.algorithm import Algorithm
from algorithms.algorithm_config import AlgorithmConfig
from rlmodules.checkpoint import read_metadata

# Tune takes a param_space that is a dict or one of its _Config (RLlib's AlgorithmConfig is
# one); registering ours lets Tuner call its to_dict(), as for RLlib's.
_Config.register(AlgorithmConfig)

# Settings the learners read at every update (or the optimizers hold): a trial whose new
# config differs only in these (PBT's perturbations) keeps its runners and learners.
_SET_IN_PLACE = frozenset({"lr", "gamma", "lambda_", "clip_param", "vf_clip_param",
                           "vf_loss_coeff", "entropy_coeff", "grad_clip", "num_epochs",
                           "minibatch_size"})


def _config_of(algo_class: type[Algorithm], trial_config: Mapping[str, Any] | AlgorithmConfig
               ) -> AlgorithmConfig:
    """The algorithm's config with the trial's resolved values, checked."""
    if isinstance(trial_config, AlgorithmConfig):
        return trial_config.copy()
    return algo_class.get_default_config().update_from_dict(trial_config)


def trainable(algo_class: type[Algorithm]) -> type[tune.Trainable]:
    """A Tune Trainable (class API) that trains ``algo_class``, one ``train()`` per step."""

    class AlgorithmTrainable(tune.Trainable):
        __doc__ = f"Trains {algo_class.__name__} in a Tune trial (algorithms.tune.trainable)."

        @classmethod
        def default_resource_request(cls, config: Mapping[str, Any] | AlgorithmConfig
                                     ) -> tune.PlacementGroupFactory:
            """The algorithm's ``default_resource_request`` bundles (driver, env runners,
            evaluation runners, learners) as one placement group, so the trial's runners and
            learners are placed in it."""
            cfg = _config_of(algo_class, config)
            bundles = [{k: v for k, v in bundle.items() if v}
                       for bundle in algo_class.default_resource_request(cfg)]
            return tune.PlacementGroupFactory(bundles, strategy=cfg.placement_strategy)

        def setup(self, config: dict[str, Any]) -> None:
            self.algo = algo_class(_config_of(algo_class, config))

        def step(self) -> dict[str, Any]:
            return self.algo.train()

        def save_checkpoint(self, checkpoint_dir: str) -> str:
            self.algo.save_to_path(checkpoint_dir)
            return checkpoint_dir

        def load_checkpoint(self, checkpoint: str) -> None:
            """Restore, keeping this trial's lr: PBT loads another trial's checkpoint (whose
            optimizer state holds that trial's lr) after ``reset_config``."""
            saved_lr = read_metadata(checkpoint)["config"]["lr"]
            self.algo.restore_from_path(checkpoint)
            lr = self.algo.config.lr
            if isinstance(saved_lr, float) and isinstance(lr, float) and saved_lr != lr:
                self.algo.learner_group.foreach_learner(
                    lambda learner: _reconfigure(learner, saved_lr, self.algo.config))

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            """Change the settings in place when only per-update ones (lr, entropy_coeff,
            ...) differ; else False, and Tune builds the trial anew."""
            new = _config_of(algo_class, new_config)
            old = self.algo.config
            changed = {k for k in old.settings() if vars(new)[k] != vars(old)[k]}
            if not changed <= _SET_IN_PLACE or isinstance(new.lr, list) or \
                    isinstance(old.lr, list):
                return False
            self.algo.learner_group.foreach_learner(
                lambda learner: _reconfigure(learner, old.lr, new))
            self.algo.config = new
            return True

        def cleanup(self) -> None:
            self.algo.stop()

    AlgorithmTrainable.__name__ = AlgorithmTrainable.__qualname__ = algo_class.__name__
    return AlgorithmTrainable


def _reconfigure(learner: Any, old_lr: float, new: AlgorithmConfig) -> None:
    """Give ``learner`` the new config; optimizers that ran at the old ``lr`` get the new
    one (optimizers with their own lr or schedule keep it)."""
    learner.config = new  # A copy on Ray learners: the lambda is sent there.
    for name, optimizer in learner._optimizers.items():
        if name in learner._lr_schedules or name in learner._lr_schedulers:
            continue
        for group in optimizer.param_groups:
            if group["lr"] == old_lr:
                group["lr"] = new.lr
