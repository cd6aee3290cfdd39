"""Algorithm checkpoints (local mode): save, resume, component paths, and their errors."""

import json
import os

import pytest

from algorithms import Algorithm
from algorithms.ppo import DefaultPPOTorchRLModule, PPOConfig
from rlmodules import DefaultModelConfig
from runners.envs import MultiAgentCartPole
from test_algorithm_support import assert_states_equal


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A PPO trained to a clearly-better-than-random return, saved once for all tests."""
    algo = PPOConfig().environment("CartPole-v1").debugging(seed=3).build_algo()
    for _ in range(10):
        result = algo.train()
    path = algo.save_to_path(str(tmp_path_factory.mktemp("ckpt") / "algo"))
    yield algo, result, path
    algo.stop()


def test_from_checkpoint_resumes_counters_weights_optimizer_and_return(trained):
    algo, result, path = trained
    restored = Algorithm.from_checkpoint(path)
    try:
        assert type(restored).__name__ == "PPO" and restored.config.seed == 3
        assert_states_equal(restored.learner_group.get_state(), algo.learner_group.get_state())
        assert_states_equal(restored.env_runner_group.local_env_runner.module.get_state(),
                            algo.learner_group.get_weights(inference_only=True))
        next_results = [restored.train() for _ in range(3)]
        assert next_results[0]["training_iteration"] == result["training_iteration"] + 1
        assert next_results[0]["num_env_steps_sampled_lifetime"] == (
            result["num_env_steps_sampled_lifetime"] + 2000)
        # The learning curve continues: well above where a fresh start begins (~20).
        assert next_results[-1]["env_runners"]["episode_return_mean"] > 100
    finally:
        restored.stop()


def test_checkpoint_layout_mirrors_component_paths(trained):
    _, _, path = trained
    module_dir = os.path.join(path, "learner_group", "learner", "rl_module", "default_policy")
    with open(os.path.join(module_dir, "metadata.json")) as f:
        assert json.load(f)["kind"] == "rl_module"
    # Every component dir is itself loadable, e.g. the module as an RLModule.
    module = DefaultPPOTorchRLModule.from_checkpoint(module_dir)
    assert isinstance(module, DefaultPPOTorchRLModule)
    for sub in ("counters", "env_runner", "learner_group/learner/optimizer"):
        assert os.path.isfile(os.path.join(path, sub, "state.json")), sub


def test_restore_module_component_updates_learner_and_runner(trained, tmp_path):
    _, _, path = trained
    algo = PPOConfig().environment("CartPole-v1").debugging(seed=99).build_algo()
    try:
        module_dir = os.path.join(path, "learner_group", "learner", "rl_module", "default_policy")
        algo.restore_from_path(module_dir,
                               component="learner_group/learner/rl_module/default_policy")
        saved = DefaultPPOTorchRLModule.from_checkpoint(module_dir).get_state()
        assert_states_equal(algo.learner_group.get_weights(inference_only=False)[
            "default_policy"], saved)
        assert_states_equal(algo.env_runner_group.local_env_runner.module.get_state()[
            "default_policy"], algo.learner_group.get_weights(inference_only=True)[
            "default_policy"])
        # Only the module changed: the counters and optimizer of this run stay as they were.
        assert algo.training_iteration == 0
    finally:
        algo.stop()


def test_seed_example_module_checkpoint_into_running_algorithm(tmp_path):
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    module = DefaultPPOTorchRLModule(observation_space=env.observation_space,
                                     action_space=env.action_space,
                                     model_config=DefaultModelConfig(fcnet_hiddens=[32]))
    module.save_to_path(str(tmp_path / "module"))
    ppo = (PPOConfig().environment("CartPole-v1")
           .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32])).build())
    try:
        ppo.restore_from_path(str(tmp_path / "module"),
                              component="learner_group/learner/rl_module/default_policy")
        assert_states_equal(ppo.get_module().get_state(), module.get_state())
    finally:
        ppo.stop()


def test_get_state_by_component_path(trained):
    algo, _, _ = trained
    state = algo.get_state(components="learner_group/learner/rl_module/default_policy")
    assert list(state) == ["learner_group"]
    assert list(state["learner_group"]["learner"]) == ["rl_module"]
    assert list(state["learner_group"]["learner"]["rl_module"]) == ["default_policy"]
    assert set(algo.get_state()) == {"learner_group", "env_runner", "counters",
                                     "metrics_logger"}


@pytest.mark.parametrize("component, error, message", [
    ("learner_grp/learner", KeyError, "Unknown component 'learner_grp/learner'"),
    ("learner_group/learners/rl_module", KeyError, "below 'learner_group' comes 'learner'"),
    ("learner_group/learner/rl_module/p7", KeyError, r"no module 'p7'.*\['default_policy'\]"),
])
def test_bad_component_paths_are_named(trained, component, error, message):
    algo, _, path = trained
    with pytest.raises(error, match=message):
        algo.restore_from_path(path, component=component)


def test_bad_checkpoint_paths_are_named(trained, tmp_path):
    algo, _, path = trained
    with pytest.raises(FileNotFoundError, match="does not exist"):
        algo.restore_from_path(str(tmp_path / "missing"))
    module_dir = os.path.join(path, "learner_group", "learner", "rl_module", "default_policy")
    with pytest.raises(ValueError, match="not an algorithm checkpoint.*pass component="):
        algo.restore_from_path(module_dir)
    with pytest.raises(ValueError, match="not an algorithm checkpoint"):
        Algorithm.from_checkpoint(module_dir)


def test_lambdas_in_the_config_need_the_config_passed_back(tmp_path):
    config = (PPOConfig().environment(MultiAgentCartPole, env_config={"num_agents": 2})
              .multi_agent(policies={"p0", "p1"},
                           policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}")
              .training(train_batch_size_per_learner=400, minibatch_size=200))
    algo = config.build_algo()
    try:
        algo.train()
        path = algo.save_to_path(str(tmp_path / "ma"))
    finally:
        algo.stop()
    with pytest.raises(ValueError, match="policy_mapping_fn .*lambda.*from_checkpoint"
                                         r"\(path, config=my_config\)"):
        Algorithm.from_checkpoint(path)
    restored = Algorithm.from_checkpoint(path, config=config)
    try:
        assert restored.training_iteration == 1 and restored.config.policies == {"p0", "p1"}
    finally:
        restored.stop()
