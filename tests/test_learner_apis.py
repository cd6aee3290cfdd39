"""Learners and the module APIs: target networks, what runners are sent (learner_only,
inference-only builds), self-supervised losses, non-torch modules, nested batches, and the
shape checks where module outputs enter the learner."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algorithms import Algorithm
from algorithms.ppo import PPOConfig, PPOTorchLearner
from algorithms.vpg import VPGConfig, VPGTorchLearner
from learners import ALL_MODULES, check_required_apis
from learners.batching import concat_fragments, cut_sequences
from rlmodules import (DEFAULT_MODULE_ID, Columns, MultiRLModuleSpec, RLModule, RLModuleSpec,
                       TorchRLModule, ValueFunctionAPI)
from rlmodules.apis import (TARGET_NETWORK_ACTION_DIST_INPUTS, SelfSupervisedLossAPI,
                            TargetNetworkAPI, make_target_network)
from rlmodules.checkpoint import WEIGHTS_FILE, load_state_tensors
from runners.fragment import Fragment
from test_learner_support import (BCLearner, TinyActorCritic, build_learner, make_fragments,
                                  spec_for)

torch.set_num_threads(1)


# ---- target networks ------------------------------------------------------------------------

class TargetPolicy(TorchRLModule, TargetNetworkAPI, ValueFunctionAPI):
    """Policy with a target copy; the value head is built RLlib-style (only when not
    inference_only), without get_non_inference_attributes."""

    def setup(self):
        n_obs, n_act = self.observation_space.shape[0], self.action_space.n
        self.pi = nn.Linear(n_obs, n_act)
        if not self.inference_only:
            self.vf = nn.Linear(n_obs, 1)

    def make_target_networks(self):
        self._target_pi = make_target_network(self.pi)

    def get_target_network_pairs(self):
        return [(self.pi, self._target_pi)]

    def forward_target(self, batch, **kwargs):
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._target_pi(batch[Columns.OBS])}

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS]).squeeze(-1)


def _arrays(tensors):
    return {k: v.detach().numpy().copy() for k, v in tensors.state_dict().items()}


def test_targets_move_by_tau_every_update_freq_trained_steps():
    learner = build_learner(spec=spec_for(default_policy=TargetPolicy), tau=0.25,
                            target_network_update_freq=20)
    module = learner.module["default_policy"]
    assert not any(p.requires_grad for p in module._target_pi.parameters())
    optimizer = learner.get_state("optimizer")["optimizer"][
        "default_policy_default_optimizer"]
    assert len(optimizer["param_groups"][0]["params"]) == 4  # pi and vf; no target params.
    fragments = make_fragments(2, 8)  # 16 steps per update.
    # Trained steps since the last move: 16 (< 20), 32 (move), 16, 32 (move).
    for num_updates, last_ts, moved in [(0, 0, False), (1, 32, True), (1, 32, False),
                                        (2, 64, True)]:
        target = _arrays(module._target_pi)
        metrics = learner.update(fragments)["default_policy"]
        assert (metrics["num_target_updates"], metrics["last_target_update_ts"]) == (
            num_updates, last_ts)
        main, after = _arrays(module.pi), _arrays(module._target_pi)
        for k in target:
            want = target[k] + 0.25 * (main[k] - target[k]) if moved else target[k]
            np.testing.assert_allclose(after[k], want, rtol=1e-6, atol=1e-7)

    # In the learner's state (restored with the counters), never in runner weights.
    state = learner.get_state()
    assert {"_target_pi.weight", "vf.weight"} <= set(state["rl_module"]["default_policy"])
    assert set(learner.get_weights(inference_only=True)["default_policy"]) == {
        "pi.weight", "pi.bias"}
    restored = build_learner(spec=spec_for(default_policy=TargetPolicy), seed=3, tau=0.25,
                             target_network_update_freq=20)
    restored.set_state(state)
    np.testing.assert_array_equal(restored.module["default_policy"]._target_pi.weight.detach(),
                                  module._target_pi.weight.detach())
    assert restored.get_state()["target_updates"] == state["target_updates"] == {
        "default_policy": {"module_steps_trained": 64, "last_target_update_ts": 64,
                           "num_target_updates": 2}}


def test_target_networks_in_algorithm_checkpoints_but_not_in_runners(tmp_path):
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_envs_per_env_runner=2)
              .training(train_batch_size_per_learner=64, minibatch_size=32, num_epochs=1,
                        tau=0.5, target_network_update_freq=0)
              .rl_module(rl_module_spec=RLModuleSpec(module_class=TargetPolicy))
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        result = algo.train()  # The sync's digest check compares exactly what was sent.
        assert result["learners"]["default_policy"]["num_target_updates"] == 1
        runner_module = algo.env_runner_group.local_env_runner.module["default_policy"]
        assert set(runner_module.state_dict()) == {"pi.weight", "pi.bias"}
        learner_module = algo.get_module()
        np.testing.assert_array_equal(runner_module.pi.weight.detach(),
                                      learner_module.pi.weight.detach())
        algo.save_to_path(str(tmp_path / "ckpt"))
        saved = load_state_tensors(
            tmp_path / "ckpt/learner_group/learner/rl_module/default_policy" / WEIGHTS_FILE)
        np.testing.assert_array_equal(saved["_target_pi.weight"],
                                      learner_module._target_pi.weight.detach().numpy())
        target = learner_module._target_pi.weight.detach().clone()
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(str(tmp_path / "ckpt"), config=config)
    try:
        np.testing.assert_array_equal(restored.get_module()._target_pi.weight.detach(), target)
        counters = restored.learner_group.get_state()["learner"]["target_updates"]
        assert counters["default_policy"]["num_target_updates"] == 1
    finally:
        restored.stop()


# ---- self-supervised losses, learner_only modules -------------------------------------------

class ForwardModel(TorchRLModule, SelfSupervisedLossAPI):
    """Curiosity-style: predicts the next observation from the observation and action."""

    def setup(self):
        self.n_actions = self.action_space.n
        n_obs = self.observation_space.shape[0]
        self.net = nn.Sequential(nn.Linear(n_obs + self.n_actions, 32), nn.Tanh(),
                                 nn.Linear(32, n_obs))

    def _forward_train(self, batch, **kwargs):
        actions = F.one_hot(batch[Columns.ACTIONS].long(), self.n_actions).float()
        return {"next_obs_pred": self.net(torch.cat([batch[Columns.OBS], actions], -1))}

    def compute_self_supervised_loss(self, *, learner, module_id, config, batch, fwd_out):
        loss = F.mse_loss(fwd_out["next_obs_pred"], batch[Columns.NEXT_OBS])
        learner.log_metric(module_id, "forward_loss", loss)
        return loss


class CuriosityPPOLearner(PPOTorchLearner):
    """Gives the forward model the policy's fragments plus their next observations."""

    def group_fragments(self, fragments):
        groups = super().group_fragments(fragments)
        if DEFAULT_MODULE_ID in groups:
            groups["curiosity"] = [dataclasses.replace(f, columns={
                **f.columns, Columns.NEXT_OBS: np.concatenate(
                    [f.columns[Columns.OBS][1:], f.last_obs[None]])})
                for f in groups[DEFAULT_MODULE_ID]]
        return groups


def test_self_supervised_learner_only_module_trains_next_to_the_policy():
    spec = MultiRLModuleSpec(rl_module_specs={
        DEFAULT_MODULE_ID: RLModuleSpec(),
        "curiosity": RLModuleSpec(module_class=ForwardModel, learner_only=True)})
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_envs_per_env_runner=4)
              .training(learner_class=CuriosityPPOLearner, train_batch_size_per_learner=256,
                        minibatch_size=64, num_epochs=2)
              .rl_module(rl_module_spec=spec)
              .debugging(seed=0))
    algo = config.build_algo()  # ForwardModel lacks ValueFunctionAPI: PPO accepts it.
    try:
        results = [algo.train()["learners"] for _ in range(6)]
        assert results[-1]["curiosity"]["forward_loss"] < 0.5 * results[0]["curiosity"][
            "forward_loss"]
        assert "vf_loss" not in results[0]["curiosity"]  # Its own loss, not PPO's.
        assert "policy_loss" in results[0][DEFAULT_MODULE_ID]
        assert results[0][ALL_MODULES]["num_env_steps_trained"] == 256  # Counted once.
        # Runners never hold the learner_only module; the algorithm still hands it out.
        assert "curiosity" not in algo.env_runner_group.local_env_runner.module
        assert isinstance(algo.get_module("curiosity"), ForwardModel)
        assert list(algo.learner_group.get_weights()) == [DEFAULT_MODULE_ID]
    finally:
        algo.stop()


# ---- modules that are not trained -----------------------------------------------------------

class FirstActionHeuristic(RLModule):
    """A numpy policy: always action 0; nothing to train."""

    def _forward_inference(self, batch, **kwargs):
        return {Columns.ACTIONS: np.zeros(len(batch[Columns.OBS]), np.int64)}

    _forward_exploration = _forward_inference

    def get_state(self, inference_only=False):
        return {}

    def set_state(self, state):
        pass


class ValueBCLearner(BCLearner):
    @classmethod
    def rl_module_required_apis(cls):
        return [ValueFunctionAPI]


def test_heuristic_numpy_module_next_to_a_trained_one_is_skipped():
    spec = spec_for(p0=TinyActorCritic, heuristic=FirstActionHeuristic)
    check_required_apis(ValueBCLearner, spec)  # The heuristic needs no ValueFunctionAPI.
    learner = build_learner(ValueBCLearner, spec=spec)
    before = learner.get_weights(["p0"])
    results = learner.update(make_fragments(2, 8, "p0") + make_fragments(2, 8, "heuristic"))
    assert set(results) == {"p0", ALL_MODULES}
    assert results[ALL_MODULES]["num_env_steps_trained"] == 16
    assert not np.array_equal(before["p0"]["pi.0.weight"], learner.get_weights(["p0"])["p0"][
        "pi.0.weight"])
    assert list(learner.get_state("optimizer")["optimizer"]) == ["p0_default_optimizer"]
    assert list(learner.get_weights(inference_only=True)) == ["p0"]


# ---- nested observations and actions --------------------------------------------------------

DICT_OBS = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,)), "vel": gym.spaces.Box(-1, 1, (3,))})
TUPLE_ACT = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))))


class TupleActor(TorchRLModule, ValueFunctionAPI):
    """Dict observations, Tuple(Discrete(3), Box(2)) actions (a TorchMultiDistribution)."""

    def setup(self):
        self.pi = nn.Linear(5, 3 + 2 * 2)
        self.vf = nn.Linear(5, 1)

    def _obs(self, batch):
        return torch.cat([batch[Columns.OBS]["pos"], batch[Columns.OBS]["vel"]], -1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(self._obs(batch))}

    def compute_values(self, batch, embeddings=None):
        return self.vf(self._obs(batch)).squeeze(-1)


def tuple_action_fragments(module, num=4, length=16, seed=0):
    """Actions from ``module``'s own distribution; the discrete action 0 pays 1."""
    rng = np.random.default_rng(seed)
    fragments = []
    for i in range(num):
        obs = {"pos": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
               "vel": rng.uniform(-1, 1, (length, 3)).astype(np.float32)}
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
            dist = module.get_train_action_dist_cls().from_logits(logits)
            actions = dist.sample()
            logp = dist.logp(actions)
        actions = tuple(a.numpy() for a in actions)
        fragments.append(Fragment(
            module_id=DEFAULT_MODULE_ID, agent_id=None, episode_id=str(i), columns={
                Columns.OBS: obs, Columns.ACTIONS: actions,
                Columns.REWARDS: (actions[0] == 0).astype(np.float32),
                Columns.TERMINATEDS: np.zeros(length, bool),
                Columns.TRUNCATEDS: np.zeros(length, bool),
                Columns.ACTION_LOGP: logp.numpy(), Columns.ACTION_DIST_INPUTS: logits.numpy()},
            last_obs={"pos": np.zeros(2, np.float32), "vel": np.zeros(3, np.float32)},
            terminated=False, truncated=False))
    return fragments


@pytest.mark.parametrize("config_class, learner_class", [(PPOConfig, PPOTorchLearner),
                                                         (VPGConfig, VPGTorchLearner)])
def test_dict_obs_and_tuple_actions_through_the_losses(config_class, learner_class):
    config = config_class().training(train_batch_size_per_learner=64, minibatch_size=16,
                                     num_epochs=2, lr=1e-2).debugging(seed=0)
    spec = MultiRLModuleSpec(rl_module_specs={DEFAULT_MODULE_ID: RLModuleSpec(
        module_class=TupleActor, observation_space=DICT_OBS, action_space=TUPLE_ACT)})
    learner = learner_class(config=config, module_spec=spec)
    learner.build()
    module = learner.module[DEFAULT_MODULE_ID]
    batch = learner.build_module_batch(DEFAULT_MODULE_ID, tuple_action_fragments(module))
    assert batch[Columns.OBS]["vel"].shape == (64, 3)
    assert isinstance(batch[Columns.ACTIONS], tuple) and batch[Columns.ACTIONS][1].shape == (64, 2)

    def p_action_0():
        obs = {k: torch.zeros(1, n) for k, n in (("pos", 2), ("vel", 3))}
        return torch.softmax(module.forward_inference({Columns.OBS: obs})[
            Columns.ACTION_DIST_INPUTS][0, :3], -1)[0].item()

    before = p_action_0()
    for seed in range(5):
        metrics = learner.update(tuple_action_fragments(module, seed=seed))[DEFAULT_MODULE_ID]
        assert np.isfinite(metrics["policy_loss"])
    assert p_action_0() > before + 0.05


def test_nested_columns_concatenate_and_cut_into_sequences():
    fragments = make_fragments(2, 3)
    for f in fragments:
        f.columns[Columns.OBS] = {"a": f.columns[Columns.OBS], "b": (f.columns[Columns.ACTIONS],)}
    flat = concat_fragments(fragments)
    assert flat[Columns.OBS]["a"].shape == (6, 4) and flat[Columns.OBS]["b"][0].shape == (6,)
    seqs = cut_sequences(flat, [3, 3], max_seq_len=2)
    assert seqs[Columns.OBS]["a"].shape == (4, 2, 4)
    np.testing.assert_array_equal(seqs[Columns.OBS]["b"][0][seqs[Columns.LOSS_MASK]],
                                  flat[Columns.OBS]["b"][0])


# ---- shape checks ---------------------------------------------------------------------------

class ColumnValues(TinyActorCritic):
    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS])  # [B, 1]: forgot the squeeze.


class BatchMeanLogits(TinyActorCritic):
    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS]).mean(0, keepdim=True)}


def test_compute_values_of_shape_b1_is_named_with_both_shapes():
    config = PPOConfig().training(train_batch_size_per_learner=16, minibatch_size=8)
    learner = PPOTorchLearner(config=config, module_spec=spec_for(p0=ColumnValues))
    learner.build()
    with pytest.raises(ValueError, match=r"ColumnValues \(module 'p0'\): compute_values\(\) has "
                                         r"shape \(18, 1\), but the batch's is \(18,\), i\.e\. "
                                         r"\[B\]; return exactly \[B\], e\.g\. `\.squeeze"):
        learner.update(make_fragments(2, 8, "p0"))


def test_action_dist_inputs_must_have_the_batch_rows():
    learner = build_learner(spec=spec_for(p0=BatchMeanLogits))
    with pytest.raises(ValueError, match=r"BatchMeanLogits \(module 'p0'\): forward_train\(\)"
                                         r"\['action_dist_inputs'\] has shape \(1, 3\), but the "
                                         r"batch's is \(16,\)"):
        learner.update(make_fragments(2, 8, "p0"))
