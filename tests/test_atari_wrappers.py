"""runners.envs.wrap_atari_for_new_api_stack: RLlib's Atari preprocessing, on ale-py's Pong and
on a synthetic Atari-like env whose frames say which raw frame they are."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmodules import Columns, RLModuleSpec
from runners.envs import FrameStack, wrap_atari_for_new_api_stack

pytest.importorskip("cv2", reason="the Atari wrappers resize with OpenCV (pip install -e '.[bench]')")


class FakeALE:
    def __init__(self) -> None:
        self.num_lives = 3

    def lives(self) -> int:
        return self.num_lives


class FakeAtari(gym.Env):
    """210x160 RGB frames: the left half shows the raw frame count t, the right half 200 - t.
    Reward 1 per raw frame; a life is lost every ``life_frames`` frames, 3 lives per game."""

    observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, life_frames: int = 200) -> None:
        self.ale = FakeALE()
        self.life_frames = life_frames
        self.t = 0
        self.resets = 0
        self.actions: list[int] = []

    def get_action_meanings(self) -> list[str]:
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def _frame(self) -> np.ndarray:
        frame = np.empty((210, 160, 3), np.uint8)
        frame[:, :80], frame[:, 80:] = self.t % 256, (200 - self.t) % 256
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.ale.num_lives = 0, 3
        self.resets += 1
        self.actions = []
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        self.actions.append(int(action))
        if self.t % self.life_frames == 0:
            self.ale.num_lives -= 1
        return self._frame(), 1.0, self.ale.num_lives == 0, False, {}


def pixel_values(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per stacked frame: the raw value of the left and of the right half (away from the seam)."""
    raw = (obs + 1) * 128
    return raw[:, :20].mean(axis=(0, 1)), raw[:, -20:].mean(axis=(0, 1))


def test_synthetic_atari_frames_are_stacked_oldest_first_and_max_pooled():
    fake = FakeAtari()
    env = wrap_atari_for_new_api_stack(fake, framestack=4)
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (64, 64, 4), np.float32)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 4) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    # Reset: 1-30 no-ops (4 frames each), then FIRE and action 2 (4 frames each).
    noops = len(fake.actions) - 8
    assert 4 <= noops <= 120 and noops % 4 == 0 and fake.actions[:noops] == [0] * noops
    assert fake.actions[noops:] == [1] * 4 + [2] * 4
    t0 = fake.t
    left, right = pixel_values(obs)
    assert list(left) == [t0] * 4 and list(right) == [201 - t0] * 4  # The first frame 4 times.
    for step in range(1, 3):
        obs, reward, terminated, truncated, _ = env.step(3)
        assert (reward, terminated, truncated) == (4.0, False, False)  # Summed over 4 frames.
    left, right = pixel_values(obs)
    assert list(left) == [t0, t0, t0 + 4, t0 + 8]  # Oldest first, newest last.
    # Each frame is the max of the last two raw frames: the right half is that of the one before.
    assert list(right) == [201 - t0, 201 - t0, 200 - (t0 + 3), 200 - (t0 + 7)]


def test_a_lost_life_ends_the_episode_but_not_the_game():
    fake = FakeAtari(life_frames=200)
    env = wrap_atari_for_new_api_stack(fake, dim=32)
    assert env.observation_space.shape == (32, 32, 1)
    env.reset(seed=1)
    episodes = []
    for _ in range(3):  # Three lives, three episodes, one game.
        steps = 1
        while not env.step(0)[2]:
            steps += 1
        episodes.append((steps, fake.ale.lives(), fake.resets))
        env.reset()
    assert [(lives, resets) for _, lives, resets in episodes] == [(2, 1), (1, 1), (0, 1)]
    assert all(steps < 200 / 4 + 1 for steps, _, _ in episodes)
    assert fake.resets == 2 and fake.ale.lives() == 3  # Game over: then a real reset.


def test_colour_frames_and_no_frameskip():
    fake = FakeAtari()
    env = wrap_atari_for_new_api_stack(fake, dim=48, frameskip=1, framestack=2, grayscale=False)
    assert env.observation_space.shape == (48, 48, 6)
    obs, _ = env.reset(seed=2)
    t0 = fake.t
    obs, reward, *_ = env.step(0)
    assert reward == 1.0 and fake.t == t0 + 1
    assert list(pixel_values(obs)[0]) == [t0] * 3 + [t0 + 1] * 3  # RGB of each frame, oldest first.


def test_non_atari_envs_are_refused_with_what_is_needed():
    with pytest.raises(ValueError, match=r"not an Atari env of RGB frames.*Box\(0, 255, \(H, W, 3\)"):
        wrap_atari_for_new_api_stack(gym.make("CartPole-v1"))


def test_frame_stack_wrapper_keeps_bounds_and_dtype():
    env = FrameStack(gym.wrappers.TransformObservation(
        FakeAtari(), lambda f: f[:4, :4, :1], gym.spaces.Box(0, 255, (4, 4, 1), np.uint8)), 3)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    obs, _ = env.reset()
    assert obs.dtype == np.uint8 and (obs == 0).all()
    obs = env.step(0)[0]
    assert list(obs[0, 0]) == [0, 0, 1]


def test_default_ppo_module_acts_on_wrapped_observations():
    from algorithms.ppo import DefaultPPOTorchRLModule

    env = wrap_atari_for_new_api_stack(FakeAtari(), framestack=4)
    module = RLModuleSpec(module_class=DefaultPPOTorchRLModule,
                          observation_space=env.observation_space,
                          action_space=env.action_space).build()
    obs = np.stack([env.reset(seed=0)[0], env.step(1)[0]])
    out = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})
    assert out[Columns.ACTION_DIST_INPUTS].shape == (2, 4)
    assert module.compute_values({Columns.OBS: torch.from_numpy(obs)}).shape == (2,)


def test_ale_pong():
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    env = wrap_atari_for_new_api_stack(
        gym.make("ale_py:ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0),
        dim=64, framestack=4)
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (64, 64, 4), np.float32)
    assert env.action_space == gym.spaces.Discrete(6)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs.std() > 0  # A real picture.
    for _ in range(50):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert obs.shape == (64, 64, 4) and obs.dtype == np.float32
        assert not (terminated or truncated)  # Pong has no lives; 50 steps are no game.
    assert not np.array_equal(obs[..., 0], obs[..., 3])  # The ball and paddles moved.
