"""Default action distributions for every action space, TorchMultiDistribution, TorchBernoulli,
shaped Box Gaussians, and a custom distribution set through ``action_dist_cls``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as td
from torch import nn

from rlmodules import Columns, TorchRLModule
from rlmodules.distributions import (TorchBernoulli, TorchCategorical, TorchDeterministic,
                                     TorchDiagGaussian, TorchMultiCategorical,
                                     TorchMultiDistribution, action_dist_from_output,
                                     default_dist_cls)
from rlmodules.tree import map_tree

INF = np.inf
SPACES = {
    "discrete": gym.spaces.Discrete(4),
    "multi_discrete": gym.spaces.MultiDiscrete([2, 3]),
    "multi_binary": gym.spaces.MultiBinary(3),
    "multi_binary_2d": gym.spaces.MultiBinary([2, 3]),
    "box_1d": gym.spaces.Box(-INF, INF, (3,)),
    "box_2d": gym.spaces.Box(-INF, INF, (2, 3)),
    "box_scalar": gym.spaces.Box(-INF, INF, ()),
    "tuple": gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-INF, INF, (2,)))),
    "dict_nested": gym.spaces.Dict({
        "move": gym.spaces.Box(-INF, INF, (2, 2)), "fire": gym.spaces.MultiBinary(2),
        "pick": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.MultiDiscrete([3, 2])))}),
}
DIMS = {"discrete": 4, "multi_discrete": 5, "multi_binary": 3, "multi_binary_2d": 6,
        "box_1d": 6, "box_2d": 12, "box_scalar": 2, "tuple": 3 + 4,
        "dict_nested": 8 + 2 + 2 + 5}


def first_row(sample):
    return map_tree(lambda t: t[0].numpy(), sample)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_default_distribution_of_every_space(name):
    space, batch = SPACES[name], 5
    torch.manual_seed(0)
    dist_cls = default_dist_cls(space)
    assert dist_cls.required_input_dim(space) == DIMS[name]
    logits = torch.randn(batch, DIMS[name])
    dist = dist_cls.from_logits(logits)
    sample = dist.sample()
    assert space.contains(first_row(sample)), (space, first_row(sample))
    assert dist.logp(sample).shape == (batch,) and dist.entropy().shape == (batch,)
    assert torch.allclose(dist.kl(dist_cls.from_logits(logits)), torch.zeros(batch), atol=1e-6)
    other = dist_cls.from_logits(torch.randn(batch, DIMS[name]))
    assert dist.kl(other).shape == (batch,) and bool((dist.kl(other) > 0).all())
    greedy = dist.to_deterministic()
    assert space.contains(first_row(greedy.sample()))
    assert greedy.logp(greedy.sample()).shape == (batch,)
    assert torch.equal(greedy.entropy(), torch.zeros(batch))


def test_diag_gaussian_of_a_shaped_box_scores_each_element():
    space = SPACES["box_2d"]
    mean, log_std = torch.randn(4, 6), torch.randn(4, 6)
    dist = default_dist_cls(space).from_logits(torch.cat([mean, log_std], -1))
    assert isinstance(dist, TorchDiagGaussian) and dist.sample().shape == (4, 2, 3)
    value = torch.randn(4, 2, 3)
    ref = td.Normal(mean, log_std.exp())
    assert torch.allclose(dist.logp(value), ref.log_prob(value.reshape(4, 6)).sum(-1))
    assert torch.equal(dist.to_deterministic().sample(), mean.reshape(4, 2, 3))
    assert default_dist_cls(SPACES["box_1d"]) is TorchDiagGaussian


def test_bernoulli_samples_the_space_dtype_and_sums_logp_over_bits():
    logits = torch.randn(6, 3)
    dist = default_dist_cls(SPACES["multi_binary"]).from_logits(logits)
    assert isinstance(dist, TorchBernoulli)
    actions = dist.sample()
    assert actions.shape == (6, 3) and actions.dtype == torch.int8
    ref = td.Bernoulli(logits=logits)
    assert torch.allclose(dist.logp(actions), ref.log_prob(actions.float()).sum(-1))
    assert torch.allclose(dist.entropy(), ref.entropy().sum(-1))
    assert torch.equal(dist.to_deterministic().sample(), (logits > 0).to(torch.int8))
    floats = TorchBernoulli.from_logits(logits).sample()
    assert floats.dtype == torch.float32 and set(floats.unique().tolist()) <= {0.0, 1.0}


def test_multi_distribution_from_logits_with_a_nested_struct():
    struct = {"b": (TorchCategorical, TorchCategorical), "a": TorchDiagGaussian}
    # input_lens in the flattened order, dict keys sorted (RLlib's): a, then b[0], b[1].
    logits = torch.randn(4, 4 + 2 + 3)
    dist = TorchMultiDistribution.from_logits(logits, child_distribution_cls_struct=struct,
                                              input_lens=[4, 2, 3])
    sample = dist.sample()
    assert set(sample) == {"a", "b"} and sample["a"].shape == (4, 2)
    assert isinstance(sample["b"], tuple) and [s.shape for s in sample["b"]] == [(4,), (4,)]
    gauss = TorchDiagGaussian.from_logits(logits[:, :4])
    cat0, cat1 = (TorchCategorical.from_logits(logits[:, 4:6]),
                  TorchCategorical.from_logits(logits[:, 6:]))
    expected = gauss.logp(sample["a"]) + cat0.logp(sample["b"][0]) + cat1.logp(sample["b"][1])
    assert torch.allclose(dist.logp(sample), expected)
    assert torch.allclose(dist.entropy(), gauss.entropy() + cat0.entropy() + cat1.entropy())
    greedy = dist.to_deterministic().sample()
    assert torch.equal(greedy["a"], logits[:, :2]) and torch.equal(
        greedy["b"][1], logits[:, 6:].argmax(-1))
    rsample = TorchMultiDistribution.from_logits(
        torch.zeros(1, 4, requires_grad=True), child_distribution_cls_struct=(
            TorchDiagGaussian,), input_lens=[4]).rsample()
    assert rsample[0].requires_grad
    with pytest.raises(ValueError, match=r"input_lens \[4, 2\].*one size per child "
                                         r"distribution \(3\).*last dim \(9\)"):
        TorchMultiDistribution.from_logits(logits, child_distribution_cls_struct=struct,
                                           input_lens=[4, 2])
    with pytest.raises(ValueError, match="needs `child_distribution_cls_struct`"):
        TorchMultiDistribution.from_logits(logits)


def test_multi_distribution_required_input_dim():
    space = SPACES["tuple"]
    assert TorchMultiDistribution.required_input_dim(space) == 7
    assert TorchMultiDistribution.required_input_dim(space, input_lens=[1, 2]) == 3
    partial = TorchMultiDistribution.get_partial_dist_cls(
        child_distribution_cls_struct=(TorchDeterministic, TorchDeterministic), input_lens=[1, 2])
    assert partial.required_input_dim(space) == 3
    assert TorchMultiCategorical.get_partial_dist_cls(input_lens=[2, 3]).required_input_dim(
        SPACES["multi_discrete"]) == 5


def test_unsupported_space_says_how_to_set_a_distribution():
    with pytest.raises(ValueError, match=r"Text.*self\.action_dist_cls.*override"):
        default_dist_cls(gym.spaces.Text(3))


# ---- a custom distribution (RLlib's custom-distribution example) ----------------------------

def categorical_with_temperature(temperature: float) -> type[TorchCategorical]:
    class TorchCategoricalWithTemperature(TorchCategorical):
        @classmethod
        def from_logits(cls, logits, **kwargs):
            return cls(logits=logits / temperature)

    return TorchCategoricalWithTemperature


class TemperaturePolicy(TorchRLModule):
    def setup(self):
        self.pi = nn.Linear(self.observation_space.shape[0], self.action_space.n)
        self.action_dist_cls = categorical_with_temperature(
            self.model_config.get("action_dist_temperature", 1.0))

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self.pi(batch[Columns.OBS])}


def test_custom_temperature_distribution_stays_in_use():
    module = TemperaturePolicy(observation_space=gym.spaces.Box(-1, 1, (3,)),
                               action_space=gym.spaces.Discrete(4),
                               model_config={"action_dist_temperature": 0.5})
    classes = {module.get_inference_action_dist_cls(), module.get_exploration_action_dist_cls(),
               module.get_train_action_dist_cls()}
    assert len(classes) == 1 and classes.pop() is module.action_dist_cls
    out = module.forward_exploration({Columns.OBS: torch.randn(64, 3)})
    dist = action_dist_from_output(out, module.get_exploration_action_dist_cls())
    assert type(dist) is module.action_dist_cls
    actions = dist.sample()
    sharpened = torch.log_softmax(out[Columns.ACTION_DIST_INPUTS] / 0.5, -1)
    assert torch.allclose(dist.logp(actions), sharpened.gather(-1, actions[:, None])[:, 0])
