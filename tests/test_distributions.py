"""Action distributions: sampling, scoring, entropy, KL and their deterministic versions."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
from torch import distributions as td

from rlmodules import Columns
from rlmodules.distributions import (TorchCategorical, TorchDeterministic, TorchDiagGaussian,
                                     TorchDistributionWrapper, TorchMultiCategorical,
                                     action_dist_from_output, default_dist_cls)


def test_categorical_matches_torch_and_argmaxes_when_deterministic():
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    dist, ref = TorchCategorical.from_logits(logits), td.Categorical(logits=logits)
    actions = dist.sample()
    assert actions.shape == (5,) and actions.dtype == torch.int64
    assert torch.allclose(dist.logp(actions.float()), ref.log_prob(actions))
    assert torch.allclose(dist.entropy(), ref.entropy())
    other = TorchCategorical.from_logits(torch.randn(5, 3))
    assert torch.allclose(dist.kl(other), td.kl_divergence(ref, other.dist))
    greedy = dist.to_deterministic()
    assert torch.equal(greedy.sample(), logits.argmax(-1))
    assert greedy.entropy().shape == (5,)
    assert TorchCategorical.required_input_dim(gym.spaces.Discrete(7)) == 7


def test_diag_gaussian_splits_mean_and_log_std_and_sums_over_action_dims():
    mean, log_std = torch.randn(4, 2), torch.randn(4, 2)
    dist = TorchDiagGaussian.from_logits(torch.cat([mean, log_std], -1))
    ref = td.Normal(mean, log_std.exp())
    value = torch.randn(4, 2)
    assert torch.allclose(dist.logp(value), ref.log_prob(value).sum(-1))
    assert torch.allclose(dist.entropy(), ref.entropy().sum(-1))
    assert dist.sample().shape == (4, 2)
    rsample = TorchDiagGaussian.from_logits(torch.zeros(1, 4, requires_grad=True)).rsample()
    assert rsample.requires_grad
    same = TorchDiagGaussian.from_logits(torch.cat([mean, log_std], -1))
    assert torch.allclose(dist.kl(same), torch.zeros(4))
    assert torch.equal(dist.to_deterministic().sample(), mean)
    assert dist.to_deterministic().entropy().shape == (4,)
    assert TorchDiagGaussian.required_input_dim(gym.spaces.Box(-1, 1, (3,))) == 6


def test_multi_categorical_needs_input_lens_and_scores_each_component():
    space = gym.spaces.MultiDiscrete([2, 3])
    dist_cls = default_dist_cls(space)
    logits = torch.randn(6, 5)
    dist = dist_cls.from_logits(logits)
    actions = dist.sample()
    assert actions.shape == (6, 2)
    expected = (td.Categorical(logits=logits[:, :2]).log_prob(actions[:, 0])
                + td.Categorical(logits=logits[:, 2:]).log_prob(actions[:, 1]))
    assert torch.allclose(dist.logp(actions), expected)
    assert dist.entropy().shape == (6,) and torch.allclose(dist.kl(dist), torch.zeros(6))
    assert torch.equal(dist.to_deterministic().sample(),
                       torch.stack([logits[:, :2].argmax(-1), logits[:, 2:].argmax(-1)], -1))
    assert TorchMultiCategorical.required_input_dim(space) == 5
    with pytest.raises(ValueError, match="needs `input_lens`"):
        TorchMultiCategorical.from_logits(logits)
    with pytest.raises(ValueError, match=r"input_lens \[2, 2\] sum to 4.*last dim is 5"):
        TorchMultiCategorical.from_logits(logits, input_lens=[2, 2])


def test_deterministic_logp_and_entropy_are_zeros_per_row():
    point = TorchDeterministic.from_logits(torch.ones(3, 2))
    assert torch.equal(point.sample(), point.rsample())
    assert point.to_deterministic() is point
    assert torch.equal(point.logp(torch.ones(3, 2)), torch.zeros(3))
    assert torch.equal(point.entropy(), torch.zeros(3))
    with pytest.raises(NotImplementedError, match="no KL"):
        point.kl(point)


def test_action_dist_from_output_handles_inputs_torch_objects_and_actions_only():
    logits = torch.randn(2, 3)
    from_inputs = action_dist_from_output({Columns.ACTION_DIST_INPUTS: logits}, TorchCategorical)
    assert isinstance(from_inputs, TorchCategorical)
    wrapped = action_dist_from_output(
        {Columns.ACTION_DIST_INPUTS: td.Categorical(logits=logits)}, TorchCategorical)
    assert isinstance(wrapped, TorchDistributionWrapper)
    assert torch.allclose(wrapped.logp(torch.tensor([0, 1])),
                          from_inputs.logp(torch.tensor([0, 1])))
    assert torch.equal(wrapped.to_deterministic().sample(), logits.argmax(-1))
    alpha = action_dist_from_output({Columns.ACTION_DIST: td.Categorical(logits=logits)},
                                    TorchCategorical)
    assert torch.allclose(alpha.entropy(), from_inputs.entropy())
    assert action_dist_from_output({Columns.ACTIONS: torch.zeros(2)}, TorchCategorical) is None


def test_partial_dist_cls_binds_keyword_arguments():
    bound = TorchMultiCategorical.get_partial_dist_cls(input_lens=[1, 2])
    assert issubclass(bound, TorchMultiCategorical)
    assert bound.from_logits(torch.zeros(3)).sample().shape == (2,)
