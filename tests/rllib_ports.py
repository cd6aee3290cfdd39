"""Modules and envs written the way RLlib 2.60 users write them, with only the imports changed.

Each class follows the pattern of one of RLlib's examples (action masking, an autoregressive
action head, a curiosity model, a heuristic opponent, an LSTM module with target networks);
RLlib-only helpers (``override``, ``try_import_torch``, ``FLOAT_MIN``) are dropped, as the
porting rule allows. tests/test_rllib_ports.py trains them.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.nn.functional import one_hot

from algorithms.ppo import DefaultPPOTorchRLModule
from rlmodules import (Columns, RLModule, SelfSupervisedLossAPI, TargetNetworkAPI,
                       TorchRLModule, ValueFunctionAPI)
from rlmodules.apis import TARGET_NETWORK_ACTION_DIST_INPUTS, make_target_network
from rlmodules.distributions import TorchCategorical, TorchDiagGaussian, TorchMultiDistribution
from runners import MultiAgentEnv

FLOAT_MIN = torch.finfo(torch.float32).min


# ---- 1. Action masking: a Dict observation holding the mask ---------------------------------


class ActionMaskEnv(gym.Env):
    """Each step two of four actions are allowed; the reward is the observation's value at
    the chosen action. An action outside the mask raises, as RLlib's ActionMaskEnv does."""

    def __init__(self, config: Optional[dict] = None):
        self.observation_space = gym.spaces.Dict({
            "action_mask": gym.spaces.Box(0.0, 1.0, (4,), np.float32),
            "observations": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
        })
        self.action_space = gym.spaces.Discrete(4)
        self._t = 0

    def _obs(self):
        mask = np.zeros(4, np.float32)
        mask[self.np_random.choice(4, size=2, replace=False)] = 1.0
        self._mask = mask
        self._values = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return {"action_mask": mask, "observations": self._values}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        if not self._mask[action]:
            raise ValueError(f"Invalid action {action}; the mask was {self._mask}.")
        reward = float(self._values[action])
        self._t += 1
        return self._obs(), reward, False, self._t >= 10, {}


class ActionMaskingTorchRLModule(DefaultPPOTorchRLModule):
    """RLlib's action-masking module: the networks see ``observations``; the logits of
    disallowed actions are pushed to -inf."""

    def __init__(self, *, observation_space=None, action_space=None, inference_only=None,
                 learner_only=False, model_config=None, catalog_class=None, **kwargs):
        self.observation_space_with_mask = observation_space
        self.observation_space = observation_space["observations"]
        super().__init__(observation_space=self.observation_space, action_space=action_space,
                         inference_only=inference_only, learner_only=learner_only,
                         model_config=model_config, catalog_class=catalog_class, **kwargs)

    def setup(self):
        super().setup()
        self.observation_space = self.observation_space_with_mask

    def _forward_inference(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        action_mask, batch = self._preprocess_batch(batch)
        outs = super()._forward_inference(batch, **kwargs)
        return self._mask_action_logits(outs, action_mask)

    def _forward_exploration(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        action_mask, batch = self._preprocess_batch(batch)
        outs = super()._forward_exploration(batch, **kwargs)
        return self._mask_action_logits(outs, action_mask)

    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        outs = super()._forward_train(batch, **kwargs)
        return self._mask_action_logits(outs, batch["action_mask"])

    def compute_values(self, batch: Dict[str, Any], embeddings=None):
        if isinstance(batch[Columns.OBS], dict):
            action_mask, batch = self._preprocess_batch(batch)
            batch["action_mask"] = action_mask
        return super().compute_values(batch, embeddings)

    def _preprocess_batch(self, batch: Dict[str, Any], **kwargs):
        action_mask = batch[Columns.OBS].pop("action_mask")
        batch[Columns.OBS] = batch[Columns.OBS].pop("observations")
        return action_mask, batch

    def _mask_action_logits(self, batch: Dict[str, Any], action_mask):
        inf_mask = torch.clamp(torch.log(action_mask), min=FLOAT_MIN)
        batch[Columns.ACTION_DIST_INPUTS] += inf_mask
        return batch


# ---- 2. An autoregressive action head over a Tuple action space ----------------------------


class CorrelatedActionsEnv(gym.Env):
    """Action ``(a1, a2)``: a1 in {0, 1, 2} should match the sign of the observation (-, 0, +);
    a2 (a number) should then equal a1 - 1. Reward: 1 for a1, up to 1 for a2."""

    def __init__(self, config: Optional[dict] = None):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Tuple(
            (gym.spaces.Discrete(3), gym.spaces.Box(-2.0, 2.0, (1,), np.float32)))
        self._t = 0

    def _obs(self):
        self._target = int(self.np_random.integers(3))
        return np.array([self._target - 1.0], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        a1, a2 = action
        reward = float(a1 == self._target) + max(0.0, 1.0 - abs(float(a2[0]) - (a1 - 1.0)))
        self._t += 1
        return self._obs(), reward, False, self._t >= 20, {}


class AutoregressiveActionsRLM(TorchRLModule, ValueFunctionAPI):
    """RLlib's autoregressive example: a1 from a prior net, a2 from a posterior net that
    also sees a1; the module samples both itself and returns their joint logp."""

    def setup(self):
        super().setup()
        assert isinstance(self.action_space, gym.spaces.Tuple)
        obs_dim = self.observation_space.shape[0]
        self._prior_net = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(),
                                        nn.Linear(64, self.action_space[0].n))
        self._posterior_net = nn.Sequential(
            nn.Linear(obs_dim + self.action_space[0].n, 64), nn.Tanh(),
            nn.Linear(64, self.action_space[1].shape[0] * 2))
        self._value_net = nn.Sequential(nn.Linear(obs_dim, 64), nn.Tanh(), nn.Linear(64, 1))

    def _forward_inference(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        return self._pi(batch[Columns.OBS], inference=True)

    def _forward_exploration(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        return self._pi(batch[Columns.OBS], inference=False)

    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        return self._pi(batch[Columns.OBS], inference=False, actions=batch[Columns.ACTIONS])

    def compute_values(self, batch: Dict[str, Any], embeddings=None):
        return self._value_net(batch[Columns.OBS]).squeeze(-1)

    def _pi(self, obs, inference: bool, actions=None):
        prior_out = self._prior_net(obs)
        dist_a1 = TorchCategorical.from_logits(prior_out)
        if inference:
            dist_a1 = dist_a1.to_deterministic()
        a1 = dist_a1.sample() if actions is None else actions[0].long()
        posterior_out = self._posterior_net(
            torch.cat([obs, one_hot(a1, self.action_space[0].n).float()], dim=-1))
        dist_a2 = TorchDiagGaussian.from_logits(posterior_out)
        if inference:
            dist_a2 = dist_a2.to_deterministic()
        a2 = dist_a2.sample() if actions is None else actions[1]
        out = {Columns.ACTION_DIST_INPUTS: torch.cat([prior_out, posterior_out], dim=-1),
               Columns.ACTIONS: (a1, a2)}
        if not inference:
            out[Columns.ACTION_LOGP] = TorchMultiDistribution((dist_a1, dist_a2)).logp((a1, a2))
        return out


# ---- 3. A curiosity model (self-supervised loss) next to the policy -------------------------


class IntrinsicCuriosityModel(TorchRLModule, SelfSupervisedLossAPI):
    """RLlib's ICM, small: a feature net, an inverse model (phi(s), phi(s') -> a) and a
    forward model (phi(s), a -> phi(s')); its forward error is the intrinsic reward."""

    def setup(self):
        cfg = self.model_config
        feature_dim = cfg.get("feature_dim", 32)
        obs_dim = self.observation_space.shape[0]
        self.num_actions = self.action_space.n
        self._feature_net = nn.Sequential(nn.Linear(obs_dim, 64), nn.ReLU(),
                                          nn.Linear(64, feature_dim))
        self._inverse_net = nn.Sequential(nn.Linear(2 * feature_dim, 64), nn.ReLU(),
                                          nn.Linear(64, self.num_actions))
        self._forward_net = nn.Sequential(nn.Linear(feature_dim + self.num_actions, 64),
                                          nn.ReLU(), nn.Linear(64, feature_dim))

    def _forward(self, batch, **kwargs):
        raise NotImplementedError("IntrinsicCuriosityModel should only be used for training.")

    def _forward_train(self, batch, **kwargs):
        obs = torch.cat([batch[Columns.OBS], batch[Columns.NEXT_OBS]], dim=0)
        phis = self._feature_net(obs)
        phi, next_phi = torch.chunk(phis, 2)
        actions_one_hot = one_hot(batch[Columns.ACTIONS].long(), self.num_actions).float()
        predicted_next_phi = self._forward_net(torch.cat([phi, actions_one_hot], dim=-1))
        forward_l2_norm_sqrt = 0.5 * torch.sum(
            torch.pow(predicted_next_phi - next_phi, 2.0), dim=-1)
        return {
            Columns.INTRINSIC_REWARDS: forward_l2_norm_sqrt,
            "forward_l2_norm_sqrt": forward_l2_norm_sqrt,
            "phi": phi,
            "next_phi": next_phi,
        }

    def compute_self_supervised_loss(self, *, learner, module_id, config, batch, fwd_out):
        forward_loss = torch.mean(fwd_out["forward_l2_norm_sqrt"])
        action_logits = self._inverse_net(
            torch.cat([fwd_out["phi"], fwd_out["next_phi"]], dim=-1))
        inverse_loss = nn.functional.cross_entropy(action_logits,
                                                   batch[Columns.ACTIONS].long())
        weight = config.learner_config_dict.get("forward_loss_weight", 0.2)
        loss = (1.0 - weight) * inverse_loss + weight * forward_loss
        learner.log_metric(module_id, "forward_loss", forward_loss)
        learner.log_metric(module_id, "inverse_loss", inverse_loss)
        return loss


# ---- 4. A learned policy against a numpy heuristic ------------------------------------------


class RockPaperScissors(MultiAgentEnv):
    """Two players move at once; each observes the other's last move (one-hot, all zeros at
    the start). Win +1, loss -1, draw 0; ten rounds."""

    BEATS = {0: 2, 1: 0, 2: 1}  # rock beats scissors, paper beats rock, scissors beat paper

    def __init__(self, config: Optional[dict] = None):
        super().__init__()
        self.agents = self.possible_agents = ["player1", "player2"]
        space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.observation_spaces = {a: space for a in self.agents}
        self.action_spaces = {a: gym.spaces.Discrete(3) for a in self.agents}
        self._t = 0

    def reset(self, *, seed=None, options=None):
        self._t = 0
        zeros = np.zeros(3, np.float32)
        return {"player1": zeros, "player2": zeros.copy()}, {}

    def step(self, action_dict):
        m1, m2 = int(action_dict["player1"]), int(action_dict["player2"])
        r1 = 1.0 if self.BEATS[m1] == m2 else -1.0 if self.BEATS[m2] == m1 else 0.0
        self._t += 1
        obs = {"player1": np.eye(3, dtype=np.float32)[m2],
               "player2": np.eye(3, dtype=np.float32)[m1]}
        done = self._t >= 10
        return (obs, {"player1": r1, "player2": -r1}, {"__all__": False},
                {"__all__": done}, {})


class AlwaysSameHeuristicRLModule(RLModule):
    """RLlib's heuristic opponent: plays the same move all episode, drawn at its start."""

    def setup(self):
        super().setup()
        self._moves: Dict[int, int] = {}
        self._rng = np.random.default_rng(0)

    def _forward_inference(self, batch, **kwargs):
        ret = []
        for i, obs in enumerate(batch[Columns.OBS]):
            if float(obs.sum()) == 0.0 or i not in self._moves:  # An episode starts.
                self._moves[i] = int(self._rng.integers(3))
            ret.append(self._moves[i])
        return {Columns.ACTIONS: np.array(ret)}

    def _forward_exploration(self, batch, **kwargs):
        return self._forward_inference(batch, **kwargs)

    def _forward_train(self, batch, **kwargs):
        raise NotImplementedError(
            "AlwaysSameHeuristicRLModule is not trainable! Make sure you do NOT include it in "
            "your `config.multi_agent(policies_to_train={...})` set.")


# ---- 5. An LSTM module with target networks -------------------------------------------------


class LSTMTargetNetworkRLModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI):
    """An LSTM actor-critic whose policy net has a target copy (as APPO-style modules do)."""

    def setup(self):
        cell = self.model_config.get("lstm_cell_size", 32)
        self._cell = cell
        obs_dim = self.observation_space.shape[0]
        self._encoder = nn.Sequential(nn.Linear(obs_dim, 32), nn.Tanh())
        self._lstm = nn.LSTM(32, cell, batch_first=True)
        self._pi = nn.Linear(cell, self.action_space.n)
        self._values = nn.Linear(cell, 1)

    def get_initial_state(self):
        return {"h": torch.zeros(self._cell), "c": torch.zeros(self._cell)}

    def _features(self, batch):
        obs = batch[Columns.OBS]
        state = batch[Columns.STATE_IN]
        out, (h, c) = self._lstm(self._encoder(obs),
                                 (state["h"].unsqueeze(0), state["c"].unsqueeze(0)))
        return out, {"h": h.squeeze(0), "c": c.squeeze(0)}

    def _forward(self, batch, **kwargs):
        features, state_out = self._features(batch)
        return {Columns.ACTION_DIST_INPUTS: self._pi(features), Columns.STATE_OUT: state_out,
                Columns.EMBEDDINGS: features}

    def compute_values(self, batch, embeddings=None):
        if embeddings is None:
            embeddings, _ = self._features(batch)
        return self._values(embeddings).squeeze(-1)

    def make_target_networks(self):
        self._target_pi = make_target_network(self._pi)

    def get_target_network_pairs(self):
        return [(self._pi, self._target_pi)]

    def forward_target(self, batch, **kwargs):
        features, _ = self._features(batch)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._target_pi(features)}
