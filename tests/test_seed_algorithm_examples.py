"""The algorithm examples of the RLModule guide (seed 000), with only their imports changed.

Each test body is the guide's snippet; the import block above it is the only edit
(``ray.rllib...`` -> this package). ``MyRLModuleClass`` is the user's own module, which the
guide leaves undefined; a PPO-ready one is defined here. Where the guide only configures,
the test also builds and trains once to show the config works.
"""

import tempfile

import torch

# ---- the user's own modules (not part of the guide's snippets) --------------------------------
from rlmodules import Columns, TorchRLModule, ValueFunctionAPI


class MyRLModuleClass(TorchRLModule, ValueFunctionAPI):
    """A minimal actor-critic with sizes from its plain-dict model_config."""

    def setup(self):
        hidden = self.model_config.get("fcnet_hiddens", [64])[0]
        obs_dim = self.observation_space.shape[0]
        self._pi = torch.nn.Sequential(torch.nn.Linear(obs_dim, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, self.action_space.n))
        self._vf = torch.nn.Sequential(torch.nn.Linear(obs_dim, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, 1))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._pi(batch[Columns.OBS])}

    def compute_values(self, batch, embeddings=None):
        return self._vf(batch[Columns.OBS]).squeeze(-1)


def test_api_stack():
    from algorithms.algorithm_config import AlgorithmConfig

    config = (
        AlgorithmConfig()
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
    )
    assert isinstance(config, AlgorithmConfig)


def test_flatten_observations_for_frozenlake():
    from algorithms.ppo import PPOConfig
    from runners.connectors import FlattenObservations

    config = (
        PPOConfig()
        # FrozenLake has a discrete observation space, ...
        .environment("FrozenLake-v1")
        # ... which `FlattenObservations` converts to one-hot.
        .env_runners(env_to_module_connector=lambda env: FlattenObservations())
    )

    config.training(train_batch_size_per_learner=256, minibatch_size=128)
    algo = config.build()
    try:
        algo.train()
        assert algo.get_module().observation_space.shape == (16,)  # One-hot of 16 states.
    finally:
        algo.stop()


def test_default_mlp_config():
    from algorithms.ppo import PPOConfig
    from rlmodules.default_model_config import DefaultModelConfig

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .rl_module(
            # Use a non-default 32,32-stack with ReLU activations.
            model_config=DefaultModelConfig(
                fcnet_hiddens=[32, 32],
                fcnet_activation="relu",
            )
        )
    )

    algo = config.build()
    try:
        layers = list(algo.get_module().modules())
        assert [m.out_features for m in layers if isinstance(m, torch.nn.Linear)][:2] == [32, 32]
        assert any(isinstance(m, torch.nn.ReLU) for m in layers)
    finally:
        algo.stop()


def test_default_cnn_config():
    from algorithms.ppo import PPOConfig
    from rlmodules.default_model_config import DefaultModelConfig

    config = (
        PPOConfig()
        .environment("ale_py:ALE/Pong-v5")  # `pip install gymnasium[atari]`
        .rl_module(
            model_config=DefaultModelConfig(
                # Use a DreamerV3-style CNN stack.
                conv_filters=[
                    [16, 4, 2],  # 1st CNN layer: num_filters, kernel, stride(, padding)?
                    [32, 4, 2],  # 2nd CNN layer
                    [64, 4, 2],  # etc..
                    [128, 4, 2],
                ],
                conv_activation="silu",

                # After the last CNN, the default model flattens, then adds an optional MLP.
                head_fcnet_hiddens=[256],
            )
        )
    )
    assert config.effective_model_config().conv_activation == "silu"


def test_single_module_spec():
    from algorithms.ppo import PPOConfig
    from rlmodules.rl_module import RLModuleSpec

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=MyRLModuleClass,
                model_config={"some_key": "some_setting"},
            ),
        )
    )
    ppo = config.build()
    print(ppo.get_module())

    try:
        assert isinstance(ppo.get_module(), MyRLModuleClass)
        assert ppo.get_module().model_config == {"some_key": "some_setting"}
        ppo.train()
    finally:
        ppo.stop()


def test_multi_agent_shared_policy_net():
    from algorithms.ppo import PPOConfig
    from rlmodules.multi_rl_module import MultiRLModuleSpec
    from rlmodules.rl_module import RLModuleSpec
    from runners.envs import MultiAgentCartPole

    config = (
        PPOConfig()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                # All agents (0 and 1) use the same (single) RLModule.
                rl_module_specs=RLModuleSpec(
                    module_class=MyRLModuleClass,
                    model_config={"some_key": "some_setting"},
                )
            ),
        )
    )
    ppo = config.build()
    print(ppo.get_module())

    try:
        result = ppo.train()
        assert list(ppo.learner_group.get_weights()) == ["default_policy"]
        assert result["learners"]["default_policy"]["num_module_steps_trained"] > 0
    finally:
        ppo.stop()


def test_multi_agent_two_policy_nets():
    from algorithms.ppo import PPOConfig
    from rlmodules.multi_rl_module import MultiRLModuleSpec
    from rlmodules.rl_module import RLModuleSpec
    from runners.envs import MultiAgentCartPole

    config = (
        PPOConfig()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .multi_agent(
            policies={"p0", "p1"},
            # Agent IDs of `MultiAgentCartPole` are 0 and 1, mapping to
            # "p0" and "p1", respectively.
            policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}"
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                # Agents (0 and 1) use different (single) RLModules.
                rl_module_specs={
                    "p0": RLModuleSpec(
                        module_class=MyRLModuleClass,
                        # Small network.
                        model_config={"fcnet_hiddens": [32, 32]},
                    ),
                    "p1": RLModuleSpec(
                        module_class=MyRLModuleClass,
                        # Large network.
                        model_config={"fcnet_hiddens": [128, 128]},
                    ),
                },
            ),
        )
    )
    ppo = config.build()
    print(ppo.get_module())

    try:
        assert ppo.get_module("p0")._pi[0].out_features == 32
        assert ppo.get_module("p1")._pi[0].out_features == 128
        result = ppo.train()
        assert {"p0", "p1"} <= set(result["learners"])
    finally:
        ppo.stop()


def test_required_apis():
    # The guide asks SACConfig; this package has PPO and VPG, so the same call on PPOConfig.
    from algorithms.ppo import PPOConfig

    print(
        PPOConfig()
        .get_default_learner_class()
        .rl_module_required_apis()
    )
    assert PPOConfig().get_default_learner_class().rl_module_required_apis() == [
        ValueFunctionAPI]


def test_module_checkpoint_into_running_algorithm():
    import shutil

    import gymnasium as gym

    from algorithms.ppo import PPOConfig
    from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
    from rlmodules.default_model_config import DefaultModelConfig
    from rlmodules.rl_module import RLModule

    env = gym.make("CartPole-v1")

    # Create an RLModule to later checkpoint.
    rl_module = DefaultPPOTorchRLModule(
        observation_space=env.observation_space,
        action_space=env.action_space,
        model_config=DefaultModelConfig(fcnet_hiddens=[32]),
    )

    # Finally, write the RLModule checkpoint.
    module_ckpt_path = tempfile.mkdtemp()
    rl_module.save_to_path(module_ckpt_path)

    # Create a new RLModule from the checkpoint.
    new_module = RLModule.from_checkpoint(module_ckpt_path)

    # Create a new Algorithm (with the changed module config: 32 units instead of the
    # default 256; otherwise loading the state of ``module`` fails due to a shape
    # mismatch).
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32]))
    )
    ppo = config.build()

    ppo.restore_from_path(
        module_ckpt_path,  # <- NOT an Algorithm checkpoint, but single-agent RLModule one.

        # Therefore, we have to provide the exact path (of RLlib components) down
        # to the individual RLModule within the algorithm, which is:
        component="learner_group/learner/rl_module/default_policy",
    )

    saved = new_module.get_state()
    learner_state = ppo.get_module().get_state()
    runner_state = ppo.env_runner_group.local_env_runner.module["default_policy"].get_state()
    assert learner_state.keys() == saved.keys()
    for state in (learner_state, runner_state):  # The runner holds the inference-only part.
        for name, value in state.items():
            torch.testing.assert_close(torch.as_tensor(value), torch.as_tensor(saved[name]))

    ppo.stop()
    shutil.rmtree(module_ckpt_path)


def test_alpha_guide_enable_flags():
    # Seeds 001/002: the alpha API's flags are accepted (this runtime has only that stack).
    from pprint import pprint

    from algorithms.ppo import PPOConfig

    config = (
        PPOConfig()
        .framework("torch")
        .environment("CartPole-v1")
        .rl_module(_enable_rl_module_api=True)
        .training(_enable_learner_api=True)
    )

    config.training(train_batch_size_per_learner=256, minibatch_size=128)
    algorithm = config.build()

    # run for 2 training steps
    for _ in range(2):
        result = algorithm.train()
        pprint(result)

    assert result["training_iteration"] == 2
    algorithm.stop()


# ---- the shared-encoder MultiRLModule of the guide's "Implementing custom MultiRLModules" ----
# The guide includes these classes from an example file; the user's versions, written to
# the same API, follow.
from rlmodules import ENCODER_OUT, MultiRLModule  # noqa: E402

SHARED_ENCODER_ID = "shared_encoder"


class VPGPolicyAfterSharedEncoder(TorchRLModule):
    """A policy head that acts on the shared encoder's output (batch[ENCODER_OUT])."""

    def setup(self):
        super().setup()
        embedding_dim = self.model_config["embedding_dim"]
        hidden_dim = self.model_config["hidden_dim"]
        self._pi_head = torch.nn.Sequential(
            torch.nn.Linear(embedding_dim, hidden_dim), torch.nn.ReLU(),
            torch.nn.Linear(hidden_dim, self.action_space.n))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._pi_head(batch[ENCODER_OUT])}


class SharedEncoder(TorchRLModule):
    """One linear layer from observations to embeddings, used by every policy."""

    def setup(self):
        super().setup()
        self._net = torch.nn.Linear(self.observation_space.shape[0],
                                    self.model_config["embedding_dim"])

    def _forward(self, batch, **kwargs):
        return {ENCODER_OUT: self._net(batch[Columns.OBS])}


class VPGMultiRLModuleWithSharedEncoder(MultiRLModule):
    """Runs the shared encoder on each policy's batch, then that policy's head."""

    def setup(self):
        super().setup()
        self.encoder = self._rl_modules[SHARED_ENCODER_ID]

    def _forward(self, batch, forward_type, **kwargs):
        fwd_out = {}
        for policy_id, policy_batch in batch.items():
            policy_batch[ENCODER_OUT] = self.encoder._forward(policy_batch)[ENCODER_OUT]
            fwd_out[policy_id] = getattr(self._rl_modules[policy_id], forward_type)(
                policy_batch, **kwargs)
        return fwd_out

    def _forward_inference(self, batch, **kwargs):
        return self._forward(batch, "_forward_inference", **kwargs)

    def _forward_exploration(self, batch, **kwargs):
        return self._forward(batch, "_forward_exploration", **kwargs)

    def _forward_train(self, batch, **kwargs):
        return self._forward(batch, "_forward_train", **kwargs)


def test_shared_encoder_trains_with_one_optimizer():
    import gymnasium as gym

    from algorithms.vpg import VPGConfig, VPGTorchLearnerSharedOptimizer
    from rlmodules.multi_rl_module import MultiRLModuleSpec
    from rlmodules.rl_module import RLModuleSpec
    from runners.envs import MultiAgentCartPole

    single_agent_env = gym.make("CartPole-v1")

    EMBEDDING_DIM = 64  # encoder output dim

    config = (
        VPGConfig()
        .environment(MultiAgentCartPole, env_config={"num_agents": 2})
        .training(
            learner_class=VPGTorchLearnerSharedOptimizer,
        )
        .multi_agent(
            # Declare the two policies trained.
            policies={"p0", "p1"},
            # Agent IDs of `MultiAgentCartPole` are 0 and 1. They are mapped to
            # the two policies with ModuleIDs "p0" and "p1", respectively.
            policy_mapping_fn=lambda agent_id, episode, **kw: f"p{agent_id}"
        )
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                multi_rl_module_class=VPGMultiRLModuleWithSharedEncoder,
                rl_module_specs={
                    # Shared encoder.
                    SHARED_ENCODER_ID: RLModuleSpec(
                        module_class=SharedEncoder,
                        model_config={"embedding_dim": EMBEDDING_DIM},
                        observation_space=single_agent_env.observation_space,
                        action_space=single_agent_env.action_space,
                    ),
                    # Large policy net.
                    "p0": RLModuleSpec(
                        module_class=VPGPolicyAfterSharedEncoder,
                        model_config={
                            "embedding_dim": EMBEDDING_DIM,
                            "hidden_dim": 1024,
                        },
                    ),
                    # Small policy net.
                    "p1": RLModuleSpec(
                        module_class=VPGPolicyAfterSharedEncoder,
                        model_config={
                            "embedding_dim": EMBEDDING_DIM,
                            "hidden_dim": 64,
                        },
                    ),
                },
            ),
        )
    )
    algo = config.debugging(seed=0).build_algo()  # Seeded: the learning check must not flake.
    print(algo.train())

    try:
        optimizers = algo.learner_group.get_state(components="optimizer")["learner"]["optimizer"]
        assert list(optimizers) == ["__all_modules___shared_optimizer"]  # One over all three nets.
        encoder_before = algo.get_module(SHARED_ENCODER_ID)._net.weight.detach().clone()
        first = algo.train()["env_runners"]["episode_return_mean"]
        for _ in range(6):
            result = algo.train()
        assert not torch.equal(encoder_before, algo.get_module(SHARED_ENCODER_ID)._net.weight)
        assert result["env_runners"]["episode_return_mean"] > 1.5 * first
    finally:
        algo.stop()
