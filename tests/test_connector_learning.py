"""Connector pipelines through the Algorithm: they learn what they are for (normalizing
lopsided observations, stacking frames of a stateless env, previous actions and rewards,
curiosity rewards), and their state and inputs stay consistent across runners, learners,
evaluation and checkpoints."""

from __future__ import annotations

import dataclasses
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import rllib_ports as ports
from algorithms import Algorithm
from algorithms.ppo import PPOConfig, PPOTorchLearner
from conftest import shipped_by_value
from rlmodules import DEFAULT_MODULE_ID, Columns, MultiRLModuleSpec, RLModuleSpec
from runners.connectors import (AddNextObservationsFromEpisodesToTrainBatch, ConnectorV2,
                                FlattenObservations, FrameStackingEnvToModule,
                                FrameStackingLearner, IntrinsicCuriosityModelConnector,
                                LearnerConnectorPipeline, MeanStdFilter, PrevActionsPrevRewards)
from runners.connectors.learner import apply_learner_connector
from runners.fragment import Fragment
from test_algorithm_support import assert_states_equal

NUM_ENVS = 4


class LopsidedCartPole(gym.ObservationWrapper):
    """CartPole with every observation component 3000 lower: a tanh network on the raw values
    saturates, so only normalized observations can be learned from."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(gym.make("CartPole-v1"))
        space = self.env.observation_space
        self.observation_space = gym.spaces.Box(space.low - 3000.0, space.high - 3000.0,
                                                dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return (observation - 3000.0).astype(np.float32)


class StatelessCartPole(gym.ObservationWrapper):
    """CartPole without the velocities (position and angle only): one frame does not say
    where the pole is going, a few frames do."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(gym.make("CartPole-v1"))
        space = self.env.observation_space
        self.observation_space = gym.spaces.Box(space.low[[0, 2]], space.high[[0, 2]],
                                                dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[[0, 2]].astype(np.float32)


def ppo(env, seed: int = 0, **env_runners) -> PPOConfig:
    """A small, fast-learning PPO config (what every learning test here starts from)."""
    return (PPOConfig().environment(env)
            .env_runners(num_envs_per_env_runner=NUM_ENVS, **env_runners)
            .rl_module(model_config={"fcnet_hiddens": [32, 32]})
            .training(train_batch_size_per_learner=500, minibatch_size=125, num_epochs=6,
                      lr=3e-3)
            .debugging(seed=seed))


def returns(config: PPOConfig, iterations: int) -> list[float]:
    algo = config.build_algo()
    try:
        return [algo.train()["env_runners"]["episode_return_mean"] for _ in range(iterations)]
    finally:
        algo.stop()


def filter_state(runner) -> dict:
    """The MeanStdFilter's state of a runner's env-to-module pipeline."""
    return runner.get_connector_state()["env_to_module"]["MeanStdFilter"]["default"]


def observations_seen(env_runners: dict, num_runners: int) -> int:
    """Observations the runners' filters processed: each env's first reset, one per step
    and one per ended episode (its final observation; the next reset is the step's)."""
    return (env_runners["num_env_steps_sampled_lifetime"] + env_runners["num_episodes_lifetime"]
            + num_runners * NUM_ENVS)


# ---- MeanStdFilter ---------------------------------------------------------------------------


def test_mean_std_filter_learns_where_raw_lopsided_observations_do_not():
    filtered = returns(ppo(LopsidedCartPole, env_to_module_connector=lambda env: MeanStdFilter()),
                       10)
    raw = returns(ppo(LopsidedCartPole), 10)
    assert filtered[-1] > filtered[0] + 15, filtered
    assert filtered[-1] > raw[-1] + 15, (filtered, raw)


def test_mean_std_filter_state_reaches_evaluation_and_survives_a_checkpoint(tmp_path):
    config = (ppo(LopsidedCartPole, env_to_module_connector=lambda env: MeanStdFilter())
              .evaluation(evaluation_interval=1, evaluation_duration=100,
                          evaluation_duration_unit="timesteps"))
    algo = config.build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        assert "evaluation" in result
        trained = filter_state(algo.env_runner)
        assert trained["delta"]["n"] == 0  # Merged into the shared stats.
        # Evaluation saw its own observations, but never counted them into training's stats.
        assert trained["base"]["n"] == observations_seen(result["env_runners"], 1)
        np.testing.assert_allclose(trained["base"]["mean"], -3000.0, atol=1.0)
        evaluated = filter_state(algo.eval_env_runner_group.local_env_runner)
        assert_states_equal(evaluated["base"], trained["base"])  # Normalized as in training.
        assert evaluated["delta"]["n"] > 0

        path = algo.save_to_path(str(tmp_path / "algo"))
        restored = Algorithm.from_checkpoint(path, config=config.copy(),
                                             trusted=[LopsidedCartPole])
        try:
            assert_states_equal(filter_state(restored.env_runner), trained)
            runners = restored.train()["env_runners"]
            # Counting goes on from the saved stats (the restored runners' first resets were
            # filtered before the restore replaced the stats, so they are not in them).
            assert filter_state(restored.env_runner)["base"]["n"] == trained["base"]["n"] + \
                runners["num_env_steps_sampled"] + runners["num_episodes"]
            assert_states_equal(
                filter_state(restored.eval_env_runner_group.local_env_runner)["base"],
                filter_state(restored.env_runner)["base"])
        finally:
            restored.stop()
    finally:
        algo.stop()


@pytest.mark.ray
def test_mean_std_filter_states_of_two_ray_runners_merge_every_iteration(ray_session):
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_cpus_per_env_runner=0.5,
                           num_envs_per_env_runner=NUM_ENVS,
                           env_to_module_connector=lambda env: MeanStdFilter())
              .rl_module(model_config={"fcnet_hiddens": [16]})
              .training(train_batch_size_per_learner=400, minibatch_size=200, num_epochs=1)
              .debugging(seed=0))
    with shipped_by_value(sys.modules[__name__]):  # filter_state goes to the actors.
        algo = config.build_algo()
        try:
            for _ in range(3):
                result = algo.train()
                states = algo.env_runner_group.foreach_env_runner(filter_state)
                assert len(states) == 2
                assert_states_equal(states[1], states[0])
                assert states[0]["delta"]["n"] == 0
                # Each observation of both runners counted once, over all iterations so far.
                assert states[0]["base"]["n"] == observations_seen(result["env_runners"], 2)
        finally:
            algo.stop()


# ---- frame stacking ----------------------------------------------------------------------


def test_frame_stacking_learns_a_stateless_cartpole_single_frames_do_not():
    config = ppo(StatelessCartPole, env_to_module_connector=lambda env: FrameStackingEnvToModule(
        num_frames=4)).training(learner_connector=lambda obs_space, act_space:
                                FrameStackingLearner(num_frames=4))
    stacked = returns(config, 30)
    single = returns(ppo(StatelessCartPole), 30)
    assert stacked[-1] > 2 * stacked[0], stacked
    assert stacked[-1] > single[-1] + 20, (stacked, single)


class RecordModuleInputs(ConnectorV2):
    """Last env-to-module piece: what the module gets for each episode step, by
    ``(episode id, env step)``."""

    def __init__(self, *args, **kwargs) -> None:
        self.seen: dict[tuple[str, int], np.ndarray] = {}
        super().__init__(*args, **kwargs)

    def __call__(self, *, rl_module, batch, episodes, **kwargs):
        for episode in episodes:
            self.seen[(episode.id_, episode.t)] = np.array(batch[Columns.OBS][(episode.id_,)][-1])
        return batch


class RecordingPPOLearner(PPOTorchLearner):
    """Keeps the fragments it trains on (after the learner connector)."""

    def group_fragments(self, fragments):
        self.__dict__.setdefault("trained_on", []).extend(fragments)
        return super().group_fragments(fragments)


def test_learner_stacks_the_frames_the_module_saw_across_sample_calls():
    config = ppo(StatelessCartPole, rollout_fragment_length=15,
                 env_to_module_connector=lambda env: [FrameStackingEnvToModule(num_frames=4),
                                                      RecordModuleInputs()]).training(
        learner_class=RecordingPPOLearner, train_batch_size_per_learner=60, minibatch_size=60,
        num_epochs=1, learner_connector=lambda obs_space, act_space: FrameStackingLearner(
            num_frames=4))
    algo = config.build_algo()
    try:
        for _ in range(4):
            algo.train()
        seen = algo.env_runner.connector["RecordModuleInputs"].seen
        fragments = algo.learner_group.foreach_learner(lambda learner: learner.trained_on)[0]
        assert sum(map(len, fragments)) == 240
        for fragment in fragments:
            obs, start = fragment.columns[Columns.OBS], fragment.t_started
            assert obs.shape == (len(fragment), 8)
            for j in range(len(fragment)):
                np.testing.assert_array_equal(obs[j], seen[(fragment.episode_id, start + j)])
            np.testing.assert_array_equal(
                fragment.last_obs, seen[(fragment.episode_id, start + len(fragment))])
        # Fragments that go on from an earlier sample() call stacked from the lookback.
        assert sum(f.t_started >= 3 and f.lookback_obs is not None for f in fragments) >= 3
    finally:
        algo.stop()


# ---- previous actions and rewards --------------------------------------------------------


def test_previous_actions_and_rewards_reach_the_module_and_it_learns():
    config = ppo("CartPole-v1", env_to_module_connector=lambda env: [
        PrevActionsPrevRewards(n_prev_actions=1, n_prev_rewards=1), FlattenObservations()])
    algo = config.build_algo()
    try:
        # 4 observation values + the last action one-hot (2) + the last reward.
        assert algo.get_module().observation_space.shape == (7,)
        assert algo.env_runner.module[DEFAULT_MODULE_ID].observation_space.shape == (7,)
        results = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(10)]
        assert results[-1] > results[0] + 15, results
        for fragment in algo.env_runner_group.sample(num_timesteps=40):
            obs = fragment.columns[Columns.OBS]
            actions = fragment.columns[Columns.ACTIONS]
            np.testing.assert_array_equal(obs[1:, 4:6], np.eye(2)[actions[:-1]])
            np.testing.assert_array_equal(obs[1:, 6], fragment.columns[Columns.REWARDS][:-1])
            if fragment.t_started == 0:
                np.testing.assert_array_equal(obs[0, 4:], 0.0)  # Nothing before the first.
    finally:
        algo.stop()


# ---- next observations and curiosity ------------------------------------------------------


def chunk(agent_id: str | None, t_started: int, length: int) -> Fragment:
    """``length`` steps of episode "ep" from step ``t_started``; observation t is [t]."""
    obs = np.arange(t_started, t_started + length + 1, dtype=np.float32)[:, None]
    return Fragment(DEFAULT_MODULE_ID, agent_id, "ep", {
        Columns.OBS: obs[:-1], Columns.ACTIONS: np.zeros(length, np.int64),
        Columns.REWARDS: np.ones(length, np.float32),
        Columns.TERMINATEDS: np.zeros(length, bool), Columns.TRUNCATEDS: np.zeros(length, bool)},
        obs[-1], False, False, t_started=t_started)


@pytest.mark.parametrize("agent_id", [None, "agent_0"])
def test_two_chunks_of_one_episode_in_a_batch_get_their_own_next_observations(agent_id):
    """A Ray runner's carried-over request can put two chunks of one episode in one batch."""
    pipeline = LearnerConnectorPipeline(connectors=[AddNextObservationsFromEpisodesToTrainBatch()])
    first, second = apply_learner_connector(pipeline, None, [chunk(agent_id, 0, 3),
                                                             chunk(agent_id, 3, 2)])
    np.testing.assert_array_equal(first.columns[Columns.NEXT_OBS][:, 0], [1, 2, 3])
    np.testing.assert_array_equal(second.columns[Columns.NEXT_OBS][:, 0], [4, 5])


ICM = "intrinsic_curiosity_model"
COEFF = 0.5


class CuriosityLearner(PPOTorchLearner):
    """The curiosity model trains on the policy's fragments (NEXT_OBS and the intrinsic
    rewards come from the learner connector); keeps, per policy fragment, the rewards GAE
    gets and the intrinsic rewards the curiosity model gives the same transitions."""

    def group_fragments(self, fragments):
        fragments = super().group_fragments(fragments)
        fragments[ICM] = [dataclasses.replace(f, module_id=ICM)
                          for f in fragments.get(DEFAULT_MODULE_ID, [])]
        return fragments

    def compute_extra_columns_for_module(self, module_id, fragments):
        if module_id == DEFAULT_MODULE_ID:  # Called before this update trains anything.
            seen = self.__dict__.setdefault("rewards_seen", [])
            for f in fragments:
                with torch.no_grad():
                    out = self.module[ICM].forward_train({
                        key: torch.as_tensor(f.columns[key])
                        for key in (Columns.OBS, Columns.NEXT_OBS, Columns.ACTIONS)})
                next_obs = np.concatenate([f.columns[Columns.OBS][1:], f.last_obs[None]])
                np.testing.assert_array_equal(f.columns[Columns.NEXT_OBS], next_obs)
                seen.append((f.columns[Columns.REWARDS].copy(),
                             out[Columns.INTRINSIC_REWARDS].numpy()))
        return super().compute_extra_columns_for_module(module_id, fragments)


def test_curiosity_connector_adds_intrinsic_rewards_the_policy_trains_on():
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_envs_per_env_runner=NUM_ENVS)
              .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={
                  DEFAULT_MODULE_ID: RLModuleSpec(),
                  ICM: RLModuleSpec(module_class=ports.IntrinsicCuriosityModel,
                                    learner_only=True, model_config={"feature_dim": 16})}))
              .training(learner_class=CuriosityLearner, train_batch_size_per_learner=1000,
                        minibatch_size=250, num_epochs=4, lr=3e-3,
                        learner_config_dict={"forward_loss_weight": 0.5},
                        learner_connector=lambda obs_space, act_space: [
                            AddNextObservationsFromEpisodesToTrainBatch(),
                            IntrinsicCuriosityModelConnector(intrinsic_reward_coeff=COEFF,
                                                             icm_module_id=ICM)])
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        results = [algo.train() for _ in range(4)]
        seen = algo.learner_group.foreach_learner(lambda learner: learner.rewards_seen)[0]
        assert sum(len(rewards) for rewards, _ in seen) == 4000
        for rewards, intrinsic in seen:  # CartPole pays 1 a step.
            np.testing.assert_allclose(rewards, 1.0 + COEFF * intrinsic, rtol=1e-6)
            assert (intrinsic > 0).all()
        icm_losses = [r["learners"][ICM]["total_loss"] for r in results]
        assert icm_losses[-1] < icm_losses[0], icm_losses
        # The runners report what the env paid, not the curiosity bonus.
        assert results[-1]["env_runners"]["episode_return_mean"] == pytest.approx(
            results[-1]["env_runners"]["episode_len_mean"])
    finally:
        algo.stop()
