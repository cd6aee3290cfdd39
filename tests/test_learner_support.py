"""Small modules, a behaviour-cloning learner and hand-made fragments for the learner tests."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from learners import TorchLearner, masked_mean
from rlmodules import (Columns, MultiRLModuleSpec, RLModuleSpec, TorchRLModule,
                       ValueFunctionAPI)
from runners.fragment import Fragment

OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT_SPACE = gym.spaces.Discrete(3)


def make_config(**overrides) -> SimpleNamespace:
    """Stands in for AlgorithmConfig: only the keys learners read."""
    config = dict(lr=1e-2, grad_clip=None, num_epochs=1, minibatch_size=None,
                  train_batch_size_per_learner=None, policies_to_train=None, seed=0,
                  num_learners=0, num_cpus_per_learner=0.5, num_gpus_per_learner=0)
    config.update(overrides)
    return SimpleNamespace(**config)


class TinyActorCritic(TorchRLModule, ValueFunctionAPI):
    """MLP policy plus a value head that inference-only copies leave out."""

    def setup(self):
        hidden = self.model_config.get("hidden", 16)
        self.pi = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 3))
        if not self.inference_only:
            self.vf = nn.Linear(4, 1)

    def get_non_inference_attributes(self):
        return ["vf"]

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}

    def compute_values(self, batch, embeddings=None):
        return self.vf(batch[Columns.OBS]).squeeze(-1)


class TinyPolicy(TorchRLModule):
    """Policy only: lacks ValueFunctionAPI."""

    def setup(self):
        self.pi = nn.Linear(4, 3)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


class TinyLSTM(TorchRLModule, ValueFunctionAPI):
    """Recurrent policy and value: obs [B, T, 4], state {h, c: [B, 8]}."""

    def setup(self):
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.pi = nn.Linear(8, 3)
        self.vf = nn.Linear(8, 1)

    def get_initial_state(self):
        return {"h": torch.zeros(8), "c": torch.zeros(8)}

    def _core(self, batch):
        state = batch[Columns.STATE_IN]
        out, (h, c) = self.lstm(batch[Columns.OBS], (state["h"][None], state["c"][None]))
        return out, {"h": h[0], "c": c[0]}

    def _forward(self, batch, **kwargs):
        out, state = self._core(batch)
        return {Columns.ACTION_DIST_INPUTS: self.pi(out), Columns.STATE_OUT: state}

    def compute_values(self, batch, embeddings=None):
        return self.vf(self._core(batch)[0]).squeeze(-1)


class BCLearner(TorchLearner):
    """Behaviour cloning: cross-entropy of the module's logits with the fragments' actions."""

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        logits = fwd_out[Columns.ACTION_DIST_INPUTS]
        actions = batch[Columns.ACTIONS]
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), actions.reshape(-1),
                              reduction="none").view_as(actions)
        loss = masked_mean(nll, batch.get(Columns.LOSS_MASK))
        self.log_metric(module_id, "bc_loss", loss)
        return loss


def spec_for(**module_classes) -> MultiRLModuleSpec:
    """A MultiRLModuleSpec with one module per keyword: module_id=ModuleClass."""
    return MultiRLModuleSpec(rl_module_specs={
        mid: RLModuleSpec(module_class=cls, observation_space=OBS_SPACE, action_space=ACT_SPACE)
        for mid, cls in module_classes.items()})


def make_fragments(num: int, length: int, module_id: str = "default_policy", seed: int = 0,
                   stateful: bool = False) -> list[Fragment]:
    """Fragments whose action is a fixed function of the observation, so BC can learn it."""
    rng = np.random.default_rng(seed)
    fragments = []
    for i in range(num):
        obs = rng.normal(size=(length, 4)).astype(np.float32)
        columns = {
            Columns.OBS: obs,
            Columns.ACTIONS: np.argmax(obs[:, :3], axis=1).astype(np.int64),
            Columns.REWARDS: rng.normal(size=length).astype(np.float32),
            Columns.TERMINATEDS: np.zeros(length, bool),
            Columns.TRUNCATEDS: np.zeros(length, bool),
        }
        if stateful:
            columns[Columns.STATE_IN] = {
                k: rng.normal(size=(length, 8)).astype(np.float32) for k in ("h", "c")}
        fragments.append(Fragment(
            module_id=module_id, agent_id=None, episode_id=f"{module_id}-{seed}-{i}",
            columns=columns, last_obs=rng.normal(size=4).astype(np.float32),
            terminated=False, truncated=False))
    return fragments


def build_learner(learner_class=BCLearner, spec=None, **config) -> TorchLearner:
    learner = learner_class(config=make_config(**config),
                            module_spec=spec or spec_for(default_policy=TinyActorCritic))
    learner.build()
    return learner


def test_learner_builds_and_steps_without_importing_torch_dynamo():
    """The start path stays free of torch._dynamo (~1.5 s); optimizer steps match torch's."""
    import subprocess
    import sys

    code = """
import sys, torch
from learners.optim import skip_dynamo_import, step
skip_dynamo_import()
def run(ours):
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    for i in range(3):
        opt.zero_grad()
        m(torch.ones(3, 4) * i).pow(2).sum().backward()
        step(opt) if ours else opt.step()
        sched.step()
    return [p.detach().clone() for p in m.parameters()], opt.state_dict()
ours, state = run(True)
assert 'torch._dynamo' not in sys.modules
from algorithms.ppo import PPOConfig
PPOConfig().environment('CartPole-v1').build_algo().train()
assert 'torch._dynamo' not in sys.modules
theirs, _ = run(False)  # torch's own step (imports torch._dynamo)
assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
"""
    subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], check=True)
