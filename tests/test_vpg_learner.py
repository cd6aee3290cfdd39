"""VPG learners on hand-made episodes: returns-to-go, the REINFORCE step, optimizer layouts."""

import gymnasium as gym
import numpy as np
import torch

from algorithms.vpg import (DefaultVPGTorchRLModule, VPGConfig, VPGTorchLearner,
                            VPGTorchLearnerSharedOptimizer)
from rlmodules import MultiRLModuleSpec, RLModuleSpec
from runners.fragment import Fragment

torch.set_num_threads(1)

OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Discrete(2)


def make_learner(learner_class=VPGTorchLearner, module_ids=("default_policy",), **training):
    config = VPGConfig().training(**training).debugging(seed=0)
    spec = MultiRLModuleSpec(rl_module_specs={mid: RLModuleSpec(
        module_class=DefaultVPGTorchRLModule, observation_space=OBS, action_space=ACT,
        model_config={"fcnet_hiddens": [16]}) for mid in module_ids})
    learner = learner_class(config=config, module_spec=spec)
    learner.build()
    return learner


def episode(rewards, actions=None, module_id="default_policy", obs=None):
    t = len(rewards)
    actions = np.zeros(t, np.int64) if actions is None else np.asarray(actions)
    return Fragment(module_id=module_id, agent_id=None, episode_id=str(id(rewards)),
                    columns={"obs": np.zeros((t, 3), np.float32) if obs is None else obs,
                             "actions": actions, "rewards": np.asarray(rewards, np.float32),
                             "terminateds": np.arange(t) == t - 1,
                             "truncateds": np.zeros(t, bool)},
                    last_obs=np.zeros(3, np.float32), terminated=True, truncated=False)


def test_returns_to_go_are_discounted_within_each_episode():
    learner = make_learner(gamma=0.5, normalize_returns=False)
    batch = learner.build_module_batch("default_policy",
                                       [episode([1.0, 1.0, 1.0]), episode([2.0])])
    np.testing.assert_allclose(batch["returns_to_go"].numpy(),
                               [1.75, 1.5, 1.0, 2.0])


def test_normalized_returns_have_zero_mean_unit_std():
    learner = make_learner(gamma=0.9)
    returns = learner.build_module_batch(
        "default_policy", [episode([1.0] * 5), episode([3.0, 0.0])])["returns_to_go"].numpy()
    assert abs(returns.mean()) < 1e-5 and abs(returns.std() - 1) < 1e-3


def test_update_raises_the_probability_of_the_rewarded_action():
    learner = make_learner(lr=1e-2)
    rng = np.random.default_rng(0)
    obs = torch.from_numpy(rng.uniform(-1, 1, (64, 3)).astype(np.float32))

    def p_action_1():
        logits = learner.module["default_policy"].forward_inference({"obs": obs})[
            "action_dist_inputs"]
        return torch.softmax(logits, -1)[:, 1].mean().item()

    before = p_action_1()
    for _ in range(10):  # One-step episodes: action 1 pays 1, action 0 pays 0.
        actions = rng.integers(2, size=32)
        learner.update([episode([float(a)], [a], obs=obs[i:i + 1].numpy())
                        for i, a in enumerate(actions)])
    assert p_action_1() > before + 0.2


def test_default_learner_has_one_optimizer_per_module_shared_variant_one_for_all():
    ids = ("p0", "p1")
    per_module = make_learner(module_ids=ids).get_state()["optimizer"]
    shared = make_learner(VPGTorchLearnerSharedOptimizer, module_ids=ids, grad_clip=100.0)
    assert sorted(per_module) == ["p0_default_optimizer", "p1_default_optimizer"]
    assert list(shared.get_state()["optimizer"]) == ["__all_modules___shared_optimizer"]
    # A step on p0's data alone leaves p1 as it was: no gradient reaches it.
    before = {k: v.copy() for k, v in shared.get_weights()["p1"].items()}
    results = shared.update([episode([1.0, 0.0], [1, 0], module_id="p0")])
    assert "gradients_shared_optimizer_global_norm" in results["__all_modules__"]
    for name, value in shared.get_weights()["p1"].items():
        np.testing.assert_array_equal(value, before[name])
