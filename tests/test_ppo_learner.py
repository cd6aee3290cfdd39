"""PPOTorchLearner on hand-made fragments: the loss terms, clipping, KL adaptation, state."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.ppo import DefaultPPOTorchRLModule, PPOConfig, PPOTorchLearner
from rlmodules import MultiRLModuleSpec, RLModuleSpec
from runners.fragment import Fragment

torch.set_num_threads(1)  # Tiny nets: one thread is fastest (and what algorithms use).

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Discrete(2)


def make_learner(**training):
    config = PPOConfig().training(**{"train_batch_size_per_learner": 256,
                                     "minibatch_size": 64, **training}).debugging(seed=0)
    spec = MultiRLModuleSpec(rl_module_specs={"default_policy": RLModuleSpec(
        module_class=DefaultPPOTorchRLModule, observation_space=OBS, action_space=ACT,
        model_config={"fcnet_hiddens": [16]})})
    learner = PPOTorchLearner(config=config, module_spec=spec)
    learner.build()
    return learner


def bandit_fragments(learner, n=256, seed=0, logp_shift=0.0, reward=1.0):
    """One-step episodes: action 0 pays ``reward``, action 1 nothing; actions from the policy."""
    rng = np.random.default_rng(seed)
    module = learner.module["default_policy"]
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    with torch.no_grad():
        logits = module.forward_inference({"obs": torch.from_numpy(obs)})["action_dist_inputs"]
    dist = torch.distributions.Categorical(logits=logits)
    actions = dist.sample()
    logp = dist.log_prob(actions) + logp_shift
    frags = []
    for i in range(n):
        frags.append(Fragment(
            module_id="default_policy", agent_id=None, episode_id=str(i),
            columns={"obs": obs[i:i + 1], "actions": actions[i:i + 1].numpy(),
                     "rewards": np.array([reward if actions[i] == 0 else 0.0], np.float32),
                     "terminateds": np.array([True]), "truncateds": np.array([False]),
                     "action_logp": logp[i:i + 1].numpy().astype(np.float32),
                     "action_dist_inputs": logits[i:i + 1].numpy()},
            last_obs=obs[i], terminated=True, truncated=False))
    return frags


def prob_of_action_0(learner, seed=1):
    obs = torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, (512, 4)).astype(np.float32))
    with torch.no_grad():
        logits = learner.module["default_policy"].forward_inference({"obs": obs})[
            "action_dist_inputs"]
    return torch.softmax(logits, -1)[:, 0].mean().item()


def test_requires_value_function_api():
    from rlmodules import ValueFunctionAPI

    assert PPOConfig().get_default_learner_class().rl_module_required_apis() == [ValueFunctionAPI]


def test_update_prefers_the_rewarded_action_and_reports_every_term():
    learner = make_learner(grad_clip=100.0)
    before = prob_of_action_0(learner)
    for i in range(5):
        results = learner.update(bandit_fragments(learner, seed=i))
    assert prob_of_action_0(learner) > before + 0.15
    metrics = results["default_policy"]
    for key in ("total_loss", "policy_loss", "vf_loss", "vf_explained_var", "entropy",
                "gradients_default_optimizer_global_norm", "default_optimizer_lr"):
        assert isinstance(metrics[key], float), key
    assert results["__all_modules__"]["num_env_steps_trained"] == 256


def test_value_head_learns_the_returns():
    learner = make_learner(lr=3e-3)
    first = learner.update(bandit_fragments(learner, seed=0))["default_policy"]["vf_loss"]
    for i in range(1, 10):
        last = learner.update(bandit_fragments(learner, seed=i))["default_policy"]["vf_loss"]
    assert last < 0.5 * first


def test_ratios_beyond_the_clip_range_give_no_policy_gradient():
    # Recorded logp far below the current one: ratio = e^3 >> 1.2 for every sample, so the
    # clipped term (constant) is the minimum wherever advantages are positive; with
    # negative advantages the unclipped term would still pull. Rewards of 10 >> V(s) here.
    learner = make_learner(vf_loss_coeff=0.0, normalize_advantages=None, num_epochs=1)
    frags = [f for f in bandit_fragments(learner, logp_shift=-3.0, reward=10.0)
             if f.columns["rewards"][0] > 0]
    pi_before = [p.clone() for p in learner.module["default_policy"].pi.parameters()]
    learner.config.train_batch_size_per_learner = len(frags)
    learner.config.minibatch_size = len(frags)
    learner.update(frags)
    for before, after in zip(pi_before, learner.module["default_policy"].pi.parameters()):
        torch.testing.assert_close(before, after)


def test_value_errors_beyond_vf_clip_param_give_no_value_gradient():
    # Returns of 10 against V(s) ~ 0: every squared error (~100) is above the bound of 1.
    learner = make_learner(vf_clip_param=1.0)
    frags = [f for f in bandit_fragments(learner, reward=10.0) if f.columns["rewards"][0] > 0]
    module = learner.module["default_policy"]
    value_params = [*module.encoder.critic_encoder.parameters(), *module.vf.parameters()]
    vf_before = [p.clone() for p in value_params]
    results = learner.update(frags)
    assert results["default_policy"]["vf_loss"] <= 1.0
    for before, after in zip(vf_before, value_params):
        torch.testing.assert_close(before, after)


@pytest.mark.parametrize("target, factor", [(1e-9, 1.5), (1e3, 0.5)])
def test_kl_coefficient_adapts_towards_the_target(target, factor):
    learner = make_learner(use_kl_loss=True, kl_coeff=0.2, kl_target=target, lr=1e-2)
    results = learner.update(bandit_fragments(learner))
    assert results["default_policy"]["mean_kl_loss"] >= 0.0
    assert results["default_policy"]["curr_kl_coeff"] == pytest.approx(0.2 * factor)
    # The adapted coefficient is part of the learner state, so checkpoints keep it.
    state = learner.get_state()
    fresh = make_learner(use_kl_loss=True, kl_coeff=0.2, kl_target=target)
    fresh.set_state(state)
    assert fresh.kl_coeffs["default_policy"] == pytest.approx(0.2 * factor)


def test_minibatch_normalization_also_learns():
    learner = make_learner(normalize_advantages="minibatch")
    before = prob_of_action_0(learner)
    for i in range(5):
        learner.update(bandit_fragments(learner, seed=i))
    assert prob_of_action_0(learner) > before + 0.15


def test_bad_ppo_keys_are_named():
    with pytest.raises(ValueError, match="clip_param=-0.1 is invalid"):
        PPOConfig().training(clip_param=-0.1)
    with pytest.raises(ValueError, match="normalize_advantages='episode'"):
        PPOConfig().training(normalize_advantages="episode")
    with pytest.raises(TypeError, match="unknown key 'lambda'; did you mean 'lambda_'"):
        PPOConfig().training(**{"lambda": 0.9})


def rollout(learner, n, seed, old_logit_shift):
    """One terminated n-step fragment, acted by an "old" policy: the current logits plus
    ``old_logit_shift`` (0: the current policy itself, so the KL to it starts at 0)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    with torch.no_grad():
        logits = learner.module["default_policy"].forward_inference(
            {"obs": torch.from_numpy(obs)})["action_dist_inputs"] + old_logit_shift
    dist = torch.distributions.Categorical(logits=logits)
    actions = dist.sample()
    return Fragment(
        module_id="default_policy", agent_id=None, episode_id=f"kl-{seed}",
        columns={"obs": obs, "actions": actions.numpy(),
                 "rewards": rng.normal(size=n).astype(np.float32),
                 "terminateds": np.arange(n) == n - 1, "truncateds": np.zeros(n, bool),
                 "action_logp": dist.log_prob(actions).numpy(),
                 "action_dist_inputs": logits.numpy()},
        last_obs=obs[-1], terminated=True, truncated=False)


@pytest.mark.ray
def test_data_parallel_learners_adapt_the_kl_coefficient_alike(ray_session):
    # Two fragments, one per learner: one far from the current policy (local KL ~0.5 >
    # 2 * kl_target), one equal to it (local KL 0 < kl_target / 2). Their mean (~0.25)
    # raises the coefficient on both learners; rank-local means would move them apart.
    from learners import LearnerGroup

    training = dict(use_kl_loss=True, kl_coeff=0.2, kl_target=0.05, lr=1e-3, num_epochs=1,
                    train_batch_size_per_learner=64, minibatch_size=64)
    config = (PPOConfig().training(**training).debugging(seed=0)
              .learners(num_learners=2, num_cpus_per_learner=0.5))
    local = make_learner(**training)  # Acts with the group's current weights.
    group = LearnerGroup(config=config, module_spec=local.module_spec,
                         learner_class=PPOTorchLearner)
    try:
        for i in range(3):
            local.set_state(group.get_state("learner/rl_module")["learner"])
            results = group.update([rollout(local, 64, 2 * i, torch.tensor([3.0, 0.0])),
                                    rollout(local, 64, 2 * i + 1, 0.0)])
        coeffs = group.foreach_learner(lambda learner: learner.kl_coeffs["default_policy"])
        assert coeffs[0] == coeffs[1] == pytest.approx(0.2 * 1.5 ** 3)
        assert results["default_policy"]["curr_kl_coeff"] == coeffs[0]
        weights = group.foreach_learner(lambda learner: learner.get_weights())
        for name, value in weights[0]["default_policy"].items():
            np.testing.assert_array_equal(value, weights[1]["default_policy"][name])
    finally:
        group.stop()


def test_entropy_coeff_follows_a_config_changed_in_place():
    learner = make_learner(entropy_coeff=0.01)
    assert learner.entropy_coeff == 0.01
    learner.config = PPOConfig().training(entropy_coeff=[[0, 0.5], [1000, 0.1]])  # As PBT does.
    assert learner.entropy_coeff == 0.5
