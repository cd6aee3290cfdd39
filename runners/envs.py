"""Example envs, and RLlib's Atari preprocessing (wrap_atari_for_new_api_stack)."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from runners.multi_agent_env import MultiAgentEnv


class MultiAgentCartPole(MultiAgentEnv):
    """``num_agents`` independent CartPole-v1 games, agent ids ``0..num_agents-1``.

    An agent is done when its pole falls (or its game hits the 500-step limit); the episode
    ends when every agent is done.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        num_agents = int((config or {}).get("num_agents", 2))
        self._games = [gym.make("CartPole-v1") for _ in range(num_agents)]
        self.possible_agents = list(range(num_agents))
        self.observation_spaces = {i: g.observation_space for i, g in enumerate(self._games)}
        self.action_spaces = {i: g.action_space for i, g in enumerate(self._games)}
        self.agents: list[int] = []
        self._terminated: set[int] = set()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        self._terminated = set()
        obs, infos = {}, {}
        for i, game in enumerate(self._games):
            obs[i], infos[i] = game.reset(seed=None if seed is None else seed + i)
        return obs, infos

    def step(self, action_dict: dict[int, Any]):
        obs, rewards, terminateds, truncateds, infos = {}, {}, {}, {}, {}
        for i, action in action_dict.items():
            if i not in self.agents:
                raise KeyError(f"MultiAgentCartPole: agent {i!r} is done or unknown; only the "
                               f"agents in the last observations act ({self.agents}).")
            obs[i], rewards[i], terminateds[i], truncateds[i], infos[i] = \
                self._games[i].step(action)
            if terminateds[i] or truncateds[i]:
                self.agents.remove(i)
                if terminateds[i]:
                    self._terminated.add(i)
        all_done = not self.agents
        terminateds["__all__"] = all_done and len(self._terminated) == len(self._games)
        truncateds["__all__"] = all_done and not terminateds["__all__"]
        return obs, rewards, terminateds, truncateds, infos

    def close(self) -> None:
        for game in self._games:
            game.close()


# ---- Atari (ale-py) -----------------------------------------------------------------------


def wrap_atari_for_new_api_stack(env: gym.Env, dim: int = 64, frameskip: int = 4,
                                 framestack: int | None = None, grayscale: bool = True
                                 ) -> gym.Env:
    """RLlib 2.60's Atari preprocessing for the new API stack, on an ale-py env of RGB frames.

    In order: a 108000-step time limit; each frame turned gray (if ``grayscale``) and resized
    to ``dim`` x ``dim`` as OpenCV's INTER_AREA does; ``frameskip`` frames per step with the
    action repeated, rewards summed and the max of the last two frames; observations as
    float32 ``frame / 128 - 1`` in [-1, 1); 1-30 random no-ops after a reset; a lost life ends
    the episode (the game resets only when it is over); FIRE pressed after each reset where the
    game has it; the last ``framestack`` frames stacked. Observations are channels-last,
    ``[dim, dim, framestack or 1]`` (x3 in colour), the layout the default CNN encoder reads.
    Make the env with ``frameskip=1`` (as RLlib's Atari examples do, e.g.
    ``gym.make("ale_py:ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)``), since
    this wrapper skips frames itself. Rewards are not clipped here: see
    ``config.environment(clip_rewards=...)``. Needs ale-py and OpenCV: pip install -e ".[bench]".
    """
    try:
        import cv2
    except ImportError:
        raise ImportError("wrap_atari_for_new_api_stack needs OpenCV to resize frames: "
                          "pip install -e '.[bench]' (or opencv-python-headless).") from None
    space, atari = env.observation_space, env.unwrapped
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
            and len(space.shape) == 3 and space.shape[-1] == 3
            and hasattr(atari, "ale") and hasattr(atari, "get_action_meanings")):
        raise ValueError(
            f"wrap_atari_for_new_api_stack: {env} is not an Atari env of RGB frames; it needs a "
            f"Box(0, 255, (H, W, 3), uint8) observation space (got {space}) and an unwrapped env "
            "with .ale and get_action_meanings(), as ale-py's AtariEnv, e.g. "
            "gym.make('ale_py:ALE/Pong-v5', frameskip=1).")
    env = gym.wrappers.TimeLimit(env, max_episode_steps=108_000)
    if grayscale:  # OpenCV's weights (RLlib's), not gymnasium's GrayscaleObservation ones.
        env = gym.wrappers.TransformObservation(
            env, lambda frame: cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[:, :, None],
            gym.spaces.Box(0, 255, (*space.shape[:2], 1), np.uint8))
    env = gym.wrappers.ResizeObservation(env, (dim, dim))
    if frameskip > 1:
        env = gym.wrappers.MaxAndSkipObservation(env, skip=frameskip)
    # After the max, which commutes with this map: once per step rather than once per frame.
    env = gym.wrappers.TransformObservation(
        env, lambda frame: frame.astype(np.float32) / 128 - 1,
        gym.spaces.Box(-1.0, 1.0, env.observation_space.shape, np.float32))
    env = EpisodicLifeEnv(NoopResetEnv(env, noop_max=30))
    if "FIRE" in atari.get_action_meanings():
        env = FireResetEnv(env)
    return FrameStack(env, framestack) if framestack else env


class NoopResetEnv(gym.Wrapper):
    """Starts each game with 1 to ``noop_max`` no-ops (drawn from the env's np_random), so
    episodes start in varied states; the no-op steps are not part of the episode."""

    def __init__(self, env: gym.Env, noop_max: int = 30) -> None:
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError(f"NoopResetEnv: action 0 of {env.unwrapped} is "
                             f"{env.unwrapped.get_action_meanings()[0]!r}, not NOOP.")
        self.noop_max = noop_max

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.unwrapped.np_random.integers(1, self.noop_max + 1)):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class EpisodicLifeEnv(gym.Wrapper):
    """A lost life ends the episode (terminated), as in DeepMind's DQN, which helps value
    estimates; reset() then plays on with a no-op and resets the game only once it is over,
    so its later stages stay reachable. A truncated game (time limit) is over too."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self._game_over = True

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives:  # At 0 the game itself says when it is over.
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        if not self._game_over:  # A life was lost: play on (ending the game if it does).
            obs, _, terminated, truncated, info = self.env.step(0)
            self._game_over = terminated or truncated
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireResetEnv(gym.Wrapper):
    """Presses FIRE (then action 2) after each reset, for games that wait for it to start."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireResetEnv: {env.unwrapped} needs FIRE as action 1 and at "
                             f"least 3 actions; its actions are {meanings}.")

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


class FrameStack(gym.Wrapper):
    """The last ``k`` observations concatenated on the channel axis, oldest first: [H, W, k*C],
    which the default CNN encoder reads (gymnasium's FrameStackObservation adds a leading
    axis instead). After a reset the stack holds ``k`` copies of the first observation."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(np.repeat(space.low, k, axis=-1),
                                                np.repeat(space.high, k, axis=-1),
                                                dtype=space.dtype)
        self._frames: deque = deque(maxlen=k)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        self._frames.extend([obs] * self._frames.maxlen)
        return np.concatenate(self._frames, axis=-1), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs)
        return np.concatenate(self._frames, axis=-1), reward, terminated, truncated, info
