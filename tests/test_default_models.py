"""Default building blocks (encoders, heads) and the default PPO / VPG modules."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from algorithms.ppo.default_ppo_rl_module import DefaultPPOTorchRLModule
from algorithms.vpg.default_vpg_rl_module import DefaultVPGTorchRLModule
from rlmodules import ENCODER_OUT, Columns, DefaultModelConfig, InferenceOnlyAPI, ValueFunctionAPI
from rlmodules.distributions import TorchDiagGaussian, default_dist_cls
from rlmodules.encoders import (ACTOR, CRITIC, ActorCriticEncoder, CNNEncoder, LSTMEncoder,
                                MLPEncoder, build_encoder)
from rlmodules.heads import PolicyHead, ValueHead
from rlmodules.layers import activation
from rlmodules.tree import map_tree

VEC = gym.spaces.Box(-1, 1, (4,))
IMG = gym.spaces.Box(0, 255, (12, 10, 3), np.uint8)
DISCRETE = gym.spaces.Discrete(3)


def cfg(**kwargs) -> DefaultModelConfig:
    return DefaultModelConfig(**kwargs)


def ppo(obs_space=VEC, act_space=DISCRETE, **model_config) -> DefaultPPOTorchRLModule:
    return DefaultPPOTorchRLModule(observation_space=obs_space, action_space=act_space,
                                   model_config=model_config)


def encode(encoder, obs: torch.Tensor, state=None) -> torch.Tensor:
    batch = {Columns.OBS: obs} if state is None else {Columns.OBS: obs, Columns.STATE_IN: state}
    return encoder(batch)[ENCODER_OUT]


def lstm_batch(module, obs: torch.Tensor) -> dict:
    state = {k: v.expand(obs.shape[0], *v.shape) for k, v in module.get_initial_state().items()}
    return {Columns.OBS: obs, Columns.STATE_IN: state}


# ---- encoders ------------------------------------------------------------------------------

def test_mlp_encoder_layers_activation_and_initializers_by_name_or_callable():
    def ones(tensor, scale):
        nn.init.constant_(tensor, scale)

    encoder = MLPEncoder(4, cfg(fcnet_hiddens=[8, 5], fcnet_activation="relu",
                                fcnet_kernel_initializer="constant",
                                fcnet_kernel_initializer_kwargs={"val": 0.5},
                                fcnet_bias_initializer=ones,
                                fcnet_bias_initializer_kwargs={"scale": 2.0}))
    linears = [m for m in encoder.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 5)]
    assert sum(isinstance(m, nn.ReLU) for m in encoder.net) == 2
    assert all(torch.all(m.weight == 0.5) and torch.all(m.bias == 2.0) for m in linears)
    out = encoder({Columns.OBS: torch.zeros(2, 7, 4)})  # any leading dims
    assert set(out) == {ENCODER_OUT} and encoder.get_initial_state() == {}
    assert out[ENCODER_OUT].shape == (2, 7, 5) and encoder.output_dim == 5
    assert MLPEncoder(4, cfg(fcnet_hiddens=[])).output_dim == 4


@pytest.mark.parametrize("rows", [8, 1000])  # torch.tanh below the size cut, sigmoid above
def test_tanh_activation_equals_torch_tanh_in_value_and_gradient(rows):
    layer = activation("tanh", "fcnet_activation")
    assert isinstance(layer, nn.Tanh)
    x = torch.randn(rows, 64, requires_grad=True)
    ours = layer(x)
    (ours * torch.arange(64.0)).sum().backward()
    grad, x.grad = x.grad, None
    (torch.tanh(x) * torch.arange(64.0)).sum().backward()
    torch.testing.assert_close(ours, torch.tanh(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(grad, x.grad, atol=1e-4, rtol=0)  # weighted by up to 63


@pytest.mark.parametrize("key, value, match", [
    ("fcnet_activation", "relu6", r"model_config\['fcnet_activation'\] = 'relu6' is not a known"),
    ("fcnet_kernel_initializer", "glorot", r"'fcnet_kernel_initializer'\] = 'glorot' is neither"),
    ("fcnet_hiddens", [32, -1], r"'fcnet_hiddens'\] = \[32, -1\]; expected a list of positive"),
    ("fcnet_hiddens", "64", r"'fcnet_hiddens'\] = '64'"),
    ("head_fcnet_activation", "Tanhh", r"'head_fcnet_activation'\] = 'Tanhh'"),
])
def test_bad_mlp_config_values_name_the_key(key, value, match):
    with pytest.raises(ValueError, match=match):
        ppo(**{key: value})


def test_bad_initializer_kwargs_name_the_key():
    with pytest.raises(ValueError, match=r"'fcnet_kernel_initializer'\] = 'orthogonal' with "
                                         r"kwargs \{'gian': 2\} failed"):
        MLPEncoder(4, cfg(fcnet_kernel_initializer="orthogonal",
                          fcnet_kernel_initializer_kwargs={"gian": 2}))


@pytest.mark.parametrize("filters, out_hw", [
    ([[4, 3, 2]], (6, 5)),                        # "same": ceil(12/2), ceil(10/2)
    ([[4, 3, 1, "valid"]], (10, 8)),
    ([[4, 3, 2, 1]], (6, 5)),                     # int padding: (12+2-3)//2+1, (10+2-3)//2+1
    ([[4, [3, 1], [2, 1], "valid"]], (5, 10)),    # per-dim kernel and stride
    ([[4, 3, 2], [6, 3, 2]], (3, 3)),
])
def test_cnn_encoder_output_sizes(filters, out_hw):
    encoder = CNNEncoder(IMG.shape, cfg(conv_filters=filters, conv_activation="silu"))
    assert encoder.output_dim == filters[-1][0] * out_hw[0] * out_hw[1]
    features = encode(encoder, torch.randint(0, 255, (2, 3, 12, 10, 3), dtype=torch.uint8))
    assert features.shape == (2, 3, encoder.output_dim)
    assert any(isinstance(m, nn.SiLU) for m in encoder.net)


def test_cnn_encoder_default_filters_reduce_any_image():
    encoder = CNNEncoder((7, 7, 1), cfg())
    assert encoder.output_dim == 128  # 7 -> 4 -> 2 -> 1 -> 1 cells, 128 filters
    assert encode(encoder, torch.zeros(1, 7, 7, 1)).shape == (1, 128)


def test_cnn_encoder_reads_channels_last():
    torch.manual_seed(0)
    encoder = CNNEncoder((4, 4, 2), cfg(conv_filters=[[1, 1, 1, "valid"]],
                                        conv_activation="linear"))
    image = torch.zeros(1, 4, 4, 2)
    image[0, 1, 2, 1] = 1.0  # row 1, column 2, channel 1
    conv = [m for m in encoder.net if isinstance(m, nn.Conv2d)][0]
    out = encode(encoder, image).reshape(4, 4) - conv.bias
    expected = torch.zeros(4, 4)
    expected[1, 2] = conv.weight[0, 1, 0, 0]
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("filters, match", [
    ([[16, 4]], r"'conv_filters'\]\[0\] = \[16, 4\]; expected"),
    ([[16, 4, 2], [8, 3, 0]], r"'conv_filters'\]\[1\]"),
    ([[16, 4, 2, "full"]], r"'conv_filters'\]\[0\] = \[16, 4, 2, 'full'\]"),
    ([[16, 13, 1, "valid"]], r"'conv_filters'\]\[0\].*shrinks the image of shape \(12, 10, 3\)"),
])
def test_bad_conv_filters_name_the_entry(filters, match):
    with pytest.raises(ValueError, match=match):
        CNNEncoder(IMG.shape, cfg(conv_filters=filters))


def test_build_encoder_picks_by_observation_space():
    assert isinstance(build_encoder(VEC, cfg()), MLPEncoder)
    assert isinstance(build_encoder(IMG, cfg()), CNNEncoder)
    wrapped = build_encoder(IMG, cfg(use_lstm=True, lstm_cell_size=8))
    assert isinstance(wrapped, LSTMEncoder) and isinstance(wrapped.base, CNNEncoder)
    for space in (gym.spaces.Discrete(4), gym.spaces.Dict({"a": VEC}),
                  gym.spaces.Box(-1, 1, (3, 3))):
        with pytest.raises(ValueError, match="FlattenObservations"):
            build_encoder(space, cfg())


class GrayFrames(gym.Env):
    """84x84 grayscale frames, as a GrayscaleObservation-wrapped Atari env gives."""

    observation_space = gym.spaces.Box(0, 255, (84, 84), np.uint8)
    action_space = DISCRETE


def test_channels_first_images_are_refused_with_the_fix():
    stacked = gym.wrappers.FrameStackObservation(GrayFrames(), 4).observation_space
    assert stacked.shape == (4, 84, 84)
    for model_config in ({}, {"use_lstm": True}):
        with pytest.raises(ValueError, match=r"shape \(4, 84, 84\) looks channels-first "
                                             r"\[C, H, W\].*np.moveaxis\(obs, 0, -1\), <Box of "
                                             r"shape \(84, 84, 4\)>"):
            ppo(obs_space=stacked, **model_config)
    channels_last = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    encoder = build_encoder(channels_last, cfg())
    assert encoder.net[1].in_channels == 4  # after the "same" padding layer
    assert isinstance(build_encoder(gym.spaces.Box(0, 1, (3, 5, 7)), cfg()), CNNEncoder)


def test_lstm_step_by_step_equals_whole_sequence():
    torch.manual_seed(0)
    encoder = build_encoder(VEC, cfg(fcnet_hiddens=[8], use_lstm=True, lstm_cell_size=6))
    initial = encoder.get_initial_state()
    assert set(initial) == {"h", "c"} and initial["h"].shape == (6,)
    obs = torch.randn(3, 5, 4)
    state = {k: v.expand(3, 6) for k, v in initial.items()}
    whole = encoder({Columns.OBS: obs, Columns.STATE_IN: state})
    final = whole[Columns.STATE_OUT]
    whole = whole[ENCODER_OUT]
    assert whole.shape == (3, 5, 6)
    steps = []
    for t in range(5):  # how a runner acts: T=1, carrying the state
        out = encoder({Columns.OBS: obs[:, t:t + 1], Columns.STATE_IN: state})
        steps.append(out[ENCODER_OUT])
        state = out[Columns.STATE_OUT]
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-6)
    assert torch.allclose(state["h"], final["h"], atol=1e-6)


def test_lstm_input_errors_explain_the_expected_layout():
    encoder = build_encoder(VEC, cfg(fcnet_hiddens=[8], use_lstm=True, lstm_cell_size=6))
    with pytest.raises(ValueError, match=r"obs must be \[B, T, \*obs_shape\] \(3 dims\), got "
                                         r"shape \(2, 4\)"):
        encode(encoder, torch.zeros(2, 4), {"h": torch.zeros(2, 6), "c": torch.zeros(2, 6)})
    with pytest.raises(ValueError, match=r"no 'state_in'.*'h': \[B, 6\]"):
        encode(encoder, torch.zeros(2, 1, 4))
    with pytest.raises(ValueError, match=r"'lstm_cell_size'\] = 0; expected a positive int"):
        build_encoder(VEC, cfg(use_lstm=True, lstm_cell_size=0))
    with pytest.raises(ValueError, match=r"'max_seq_len'\] = 2.5"):
        build_encoder(VEC, cfg(use_lstm=True, max_seq_len=2.5))


# ---- heads ---------------------------------------------------------------------------------

def test_policy_head_mlp_and_box_output_size():
    features = torch.randn(5, 8)
    assert PolicyHead(8, DISCRETE, cfg())(features).shape == (5, 3)
    assert PolicyHead(8, gym.spaces.MultiDiscrete([2, 4]), cfg())(features).shape == (5, 6)
    box = PolicyHead(8, gym.spaces.Box(-1, 1, (2,)), cfg(head_fcnet_hiddens=[16]))
    assert box(features).shape == (5, 4)
    assert sum(isinstance(m, nn.Linear) for m in box.net) == 2
    with pytest.raises(ValueError, match="No default action distribution for action space "
                                         "Text"):
        PolicyHead(8, gym.spaces.Text(5), cfg())


def to_space_value(space: gym.Space, x):
    """One sampled row of a distribution (tensors, dicts, tuples) as a value of ``space``."""
    if isinstance(space, gym.spaces.Dict):
        return {k: to_space_value(sub, x[k]) for k, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(to_space_value(sub, v) for sub, v in zip(space.spaces, x))
    value = np.asarray(x.detach().numpy())
    if isinstance(space, gym.spaces.Discrete):
        return np.int64(value.item())
    value = value.reshape(space.shape).astype(space.dtype)
    # Gaussian samples are unbounded; runners clip them to the Box before env.step().
    return np.clip(value, space.low, space.high) if isinstance(space, gym.spaces.Box) else value


ACTION_SPACES = {
    "discrete": DISCRETE,
    "multi_discrete": gym.spaces.MultiDiscrete([2, 5]),
    "multi_binary": gym.spaces.MultiBinary(3),
    "box_1d": gym.spaces.Box(-2, 2, (3,)),
    "box_2d": gym.spaces.Box(-1, 1, (2, 3)),
    "tuple": gym.spaces.Tuple((DISCRETE, gym.spaces.Box(-1, 1, (2,)))),
    "dict": gym.spaces.Dict({"move": gym.spaces.Box(-1, 1, (2, 2)),
                             "fire": gym.spaces.MultiBinary(2)}),
}


@pytest.mark.parametrize("name", sorted(ACTION_SPACES))
def test_policy_head_feeds_the_default_distribution_of_every_action_space(name):
    space = ACTION_SPACES[name]
    try:
        dist_cls = default_dist_cls(space)
    except ValueError:
        pytest.skip(f"rlmodules.distributions has no default distribution for {space} yet")
    torch.manual_seed(0)
    head = PolicyHead(8, space, cfg(head_fcnet_hiddens=[16]))
    inputs = head(torch.randn(4, 8))
    assert inputs.shape == (4, dist_cls.required_input_dim(space))
    dist = dist_cls.from_logits(inputs)
    sample = dist.sample()
    assert dist.logp(sample).shape == (4,)
    value = to_space_value(space, map_tree(lambda t: t[0], sample))
    assert space.contains(value), (space, value)
    # The log-stds are clipped only where the head feeds a TorchDiagGaussian (Box actions).
    assert head.is_gaussian == isinstance(space, gym.spaces.Box)


def test_box_head_clips_log_stds_of_any_shape():
    space = gym.spaces.Box(-1, 1, (2, 3))
    head = PolicyHead(4, space, cfg(log_std_clip_param=1.5))
    with torch.no_grad():
        head.net[-1].weight.fill_(0.0)
        head.net[-1].bias.fill_(10.0)
    out = head(torch.zeros(2, 4))
    assert out.shape == (2, 12)
    assert torch.all(out[:, :6] == 10.0) and torch.all(out[:, 6:] == 1.5)


def test_policy_output_layer_starts_near_uniform():
    torch.manual_seed(0)
    logits = PolicyHead(64, DISCRETE, cfg())(torch.randn(100, 64))
    assert logits.abs().max() < 0.2


def test_free_log_std_is_learned_and_state_independent():
    head = PolicyHead(8, gym.spaces.Box(-1, 1, (2,)), cfg(free_log_std=True))
    assert head.net[-1].out_features == 2
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-1.0, 50.0]))
    out = head(torch.randn(4, 8))
    assert torch.equal(out[:, 2:], torch.tensor([[-1.0, 20.0]]).expand(4, 2))  # clipped at 20
    TorchDiagGaussian.from_logits(out).logp(torch.zeros(4, 2)).sum().backward()
    assert head.log_std.grad is not None
    for space in (DISCRETE, gym.spaces.MultiDiscrete([2, 2])):
        with pytest.raises(ValueError, match=r"'free_log_std'\] = True needs Box actions"):
            PolicyHead(8, space, cfg(free_log_std=True))


def test_value_head_returns_one_value_per_row():
    assert ValueHead(8, cfg(head_fcnet_hiddens=[4]))(torch.randn(3, 2, 8)).shape == (3, 2, 1)


# ---- default PPO / VPG modules --------------------------------------------------------------

def test_ppo_default_config_and_unknown_key_error():
    module = ppo()
    assert isinstance(module, ValueFunctionAPI)
    assert module.model_config["fcnet_hiddens"] == [256, 256]
    assert module.model_config["fcnet_activation"] == "tanh"
    assert isinstance(module.encoder.actor_encoder.net[1], nn.Tanh)
    with pytest.raises(ValueError, match=r"DefaultPPOTorchRLModule: unknown model_config "
                                         r"key\(s\) \['fcnet_hidden'\]"):
        ppo(fcnet_hidden=[32])


def test_ppo_forward_outputs_and_values():
    module = ppo(fcnet_hiddens=[16])
    obs = np.random.randn(6, 4).astype(np.float32)
    for method in (module.forward_exploration, module.forward_inference):
        assert set(method({Columns.OBS: obs})) == {Columns.ACTION_DIST_INPUTS}
    train = module.forward_train({Columns.OBS: obs})
    assert set(train) == {Columns.ACTION_DIST_INPUTS, Columns.EMBEDDINGS}
    values = module.compute_values({Columns.OBS: obs}, train[Columns.EMBEDDINGS])
    assert values.shape == (6,) and values.requires_grad
    assert torch.allclose(values, module.compute_values({Columns.OBS: obs}))  # numpy batch ok


def test_ppo_structure_is_rllibs_actor_critic_layout():
    module = ppo(fcnet_hiddens=[16])
    assert isinstance(module, InferenceOnlyAPI) and isinstance(module.encoder, ActorCriticEncoder)
    assert {k.split(".net.")[0] for k in module.state_dict()} == {
        "encoder.actor_encoder", "encoder.critic_encoder", "pi", "vf"}
    assert module.get_non_inference_attributes() == ["vf", "encoder.critic_encoder"]
    obs = {Columns.OBS: torch.randn(3, 4)}
    encoded = module.encoder(obs)[ENCODER_OUT]  # what RLlib code reaching in reads
    assert set(encoded) == {ACTOR, CRITIC}
    assert torch.equal(encoded[ACTOR], module.encoder.actor_encoder(obs)[ENCODER_OUT])
    assert torch.equal(encoded[CRITIC], module.encoder.critic_encoder(obs)[ENCODER_OUT])
    assert not torch.equal(encoded[ACTOR], encoded[CRITIC])  # two encoders, two inits
    train = module.forward_train(obs)
    assert torch.equal(train[Columns.EMBEDDINGS], encoded[CRITIC])
    assert torch.equal(train[Columns.ACTION_DIST_INPUTS], module.pi(encoded[ACTOR]))
    assert torch.equal(module.compute_values(obs), module.vf(encoded[CRITIC]).squeeze(-1))


def test_ppo_shared_encoder_with_vf_share_layers():
    module = ppo(fcnet_hiddens=[16], vf_share_layers=True)
    assert {k.split(".net.")[0] for k in module.state_dict()} == {"encoder.encoder", "pi", "vf"}
    assert module.get_non_inference_attributes() == ["vf"]
    assert not hasattr(module.encoder, "critic_encoder")
    obs = {Columns.OBS: torch.randn(3, 4)}
    train = module.forward_train(obs)
    assert torch.equal(train[Columns.EMBEDDINGS], module.encoder.encoder(obs)[ENCODER_OUT])
    values = module.compute_values(obs)
    assert torch.equal(values, module.compute_values(obs, train[Columns.EMBEDDINGS]))


def test_compute_values_with_embeddings_reuses_them():
    module = ppo(fcnet_hiddens=[16])
    obs = {Columns.OBS: torch.randn(5, 4)}
    embeddings = module.forward_train(obs)[Columns.EMBEDDINGS]
    assert torch.allclose(module.compute_values(obs, embeddings), module.compute_values(obs))
    other = torch.zeros_like(embeddings)  # given embeddings are used, not recomputed
    assert torch.allclose(module.compute_values(obs, other),
                          module.vf(other).squeeze(-1).expand(5))


@pytest.mark.parametrize("act_space, dist_dim", [
    (DISCRETE, 3), (gym.spaces.MultiDiscrete([2, 5]), 7), (gym.spaces.Box(-2, 2, (3,)), 6)])
def test_ppo_action_spaces(act_space, dist_dim):
    module = ppo(act_space=act_space, fcnet_hiddens=[8])
    out = module.forward_exploration({Columns.OBS: torch.randn(4, 4)})
    dist = module.get_exploration_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    assert out[Columns.ACTION_DIST_INPUTS].shape == (4, dist_dim)
    assert dist.logp(dist.sample()).shape == (4,)


def test_ppo_inference_only_drops_the_critic_and_takes_the_full_state():
    full = ppo(fcnet_hiddens=[8])
    actor = DefaultPPOTorchRLModule(observation_space=VEC, action_space=DISCRETE,
                                    model_config={"fcnet_hiddens": [8]}, inference_only=True)
    assert not hasattr(actor, "vf") and not hasattr(actor.encoder, "critic_encoder")
    assert {k.split(".net.")[0] for k in actor.get_state()} == {"encoder.actor_encoder", "pi"}
    assert set(full.get_state(inference_only=True)) == set(actor.get_state())
    assert set(actor.forward_inference({Columns.OBS: torch.randn(2, 4)})) == {
        Columns.ACTION_DIST_INPUTS}
    actor.set_state(full.get_state())
    obs = {Columns.OBS: torch.randn(3, 4)}
    assert torch.equal(actor.forward_inference(obs)[Columns.ACTION_DIST_INPUTS],
                       full.forward_inference(obs)[Columns.ACTION_DIST_INPUTS])


def test_ppo_lstm_shapes_state_and_shared_recurrent_trunk():
    module = ppo(obs_space=IMG, fcnet_hiddens=[8], conv_filters=[[4, 3, 2]], use_lstm=True,
                 lstm_cell_size=8, max_seq_len=5)
    assert module.model_config["max_seq_len"] == 5 and module.is_stateful()
    # The recurrent encoder is always shared: one state, carried by the acting module.
    assert module.encoder.shared and isinstance(module.encoder.encoder, LSTMEncoder)
    assert module.get_non_inference_attributes() == ["vf"]
    obs = torch.randint(0, 255, (2, 5, 12, 10, 3), dtype=torch.uint8)
    train = module.forward_train(lstm_batch(module, obs))
    assert train[Columns.ACTION_DIST_INPUTS].shape == (2, 5, 3)
    assert train[Columns.STATE_OUT]["h"].shape == (2, 8)
    assert module.compute_values(lstm_batch(module, obs)).shape == (2, 5)
    step = module.forward_exploration(lstm_batch(module, obs[:, :1]))
    assert step[Columns.ACTION_DIST_INPUTS].shape == (2, 1, 3)
    assert set(step[Columns.STATE_OUT]) == {"h", "c"}
    actor = DefaultPPOTorchRLModule(observation_space=IMG, action_space=DISCRETE,
                                    model_config=module.model_config, inference_only=True)
    actor.set_state(module.get_state())
    assert not hasattr(actor, "vf") and actor.get_initial_state().keys() == {"h", "c"}
    acted = actor.forward_exploration(lstm_batch(actor, obs[:, :1]))
    assert torch.equal(acted[Columns.STATE_OUT]["h"], step[Columns.STATE_OUT]["h"])


def test_vpg_is_policy_only():
    module = DefaultVPGTorchRLModule(observation_space=VEC, action_space=DISCRETE,
                                     model_config={"fcnet_hiddens": [8]})
    assert not isinstance(module, ValueFunctionAPI)
    assert {k.split(".")[0] for k in module.get_state()} == {"encoder", "pi"}
    out = module.forward_train({Columns.OBS: torch.randn(2, 4)})
    assert set(out) == {Columns.ACTION_DIST_INPUTS}
    with pytest.raises(ValueError, match="DefaultVPGTorchRLModule: unknown model_config"):
        DefaultVPGTorchRLModule(observation_space=VEC, action_space=DISCRETE,
                                model_config={"hidden": 1})


# ---- learning ------------------------------------------------------------------------------

def test_ppo_module_learns_a_contextual_bandit_and_its_values():
    """Policy gradient with a learned baseline: acting right on sign(obs[0]) pays 1."""
    torch.manual_seed(0)
    module = ppo(fcnet_hiddens=[32])
    optim = torch.optim.Adam(module.parameters(), lr=0.01)
    dist_cls = module.get_train_action_dist_cls()

    def greedy_accuracy() -> float:
        obs = torch.randn(512, 4)
        logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        return (logits.argmax(-1) == (obs[:, 0] > 0).long()).float().mean().item()

    before = greedy_accuracy()
    for _ in range(80):
        obs = torch.randn(128, 4)
        out = module.forward_train({Columns.OBS: obs})
        dist = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS])
        actions = dist.sample()
        rewards = (actions == (obs[:, 0] > 0).long()).float()
        values = module.compute_values({Columns.OBS: obs}, out[Columns.EMBEDDINGS])
        advantages = rewards - values.detach()
        loss = -(dist.logp(actions) * advantages).mean() + ((values - rewards) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert greedy_accuracy() > max(0.9, before + 0.2)
    # Acting greedily earns 1, so the critic should predict close to the policy's success rate.
    obs = torch.randn(256, 4)
    assert module.compute_values({Columns.OBS: obs}).mean().item() > 0.7


def test_lstm_vpg_module_learns_to_remember_a_cue():
    """The cue is only in the first observation; the action at the last step must match it."""
    torch.manual_seed(0)
    module = DefaultVPGTorchRLModule(
        observation_space=VEC, action_space=gym.spaces.Discrete(2),
        model_config={"fcnet_hiddens": [16], "use_lstm": True, "lstm_cell_size": 16})
    optim = torch.optim.Adam(module.parameters(), lr=0.02)

    def batch(n: int) -> tuple[dict, torch.Tensor]:
        cue = torch.randint(0, 2, (n,))
        obs = torch.zeros(n, 6, 4)
        obs[:, 0, 0] = cue.float() * 2 - 1
        obs[:, 1:, 1:] = torch.randn(n, 5, 3)  # distractors
        return lstm_batch(module, obs), cue

    def last_step_accuracy() -> float:
        b, cue = batch(256)
        logits = module.forward_inference(b)[Columns.ACTION_DIST_INPUTS][:, -1]
        return (logits.argmax(-1) == cue).float().mean().item()

    before = last_step_accuracy()
    for _ in range(80):
        b, cue = batch(64)
        logits = module.forward_train(b)[Columns.ACTION_DIST_INPUTS][:, -1]
        loss = -module.get_train_action_dist_cls().from_logits(logits).logp(cue).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert last_step_accuracy() > max(0.95, before + 0.3)
