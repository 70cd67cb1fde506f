"""Partially observed tasks that ppolab ships, for the "does memory help?" exercise and the
recurrent policies' tests; registered under ``ppolab/`` on first use (``ppolab train
ppolab/CartPoleNoVelocity-v1``).

* ``ppolab/CartPoleNoVelocity-v1``: CartPole-v1 showing only the cart's position and the pole's
  angle. The velocities must be inferred from successive observations, so a feed-forward
  policy stays far from the 500 a recurrent one reaches (the task of sb3-contrib's
  ``CartPoleNoVel`` and RLlib's ``StatelessCartPole``).
* ``ppolab/PendulumNoVelocity-v1``: Pendulum-v1 showing only the angle (cos, sin), without the
  angular velocity: a continuous-control task that needs memory (sb3-contrib's and the RL Zoo's
  ``PendulumNoVel``). Reaching the threshold of -250 means swinging up and balancing from
  random starts.
* ``ppolab/CueMemory-v0``: a cue (one of two) is shown at the first step only; the action
  taken at the last step pays +1 if it names the cue, -1 otherwise. A feed-forward policy can
  do no better than chance (0 on average); a recurrent one scores 1.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.classic_control.pendulum import PendulumEnv

NAMESPACE = "ppolab/"


class HideVelocity(gym.ObservationWrapper):
    """An observation without its velocities: only the entries ``kept`` (positions, angles)."""

    def __init__(self, env: gym.Env, kept: list[int]) -> None:
        super().__init__(env)
        self.kept = kept
        low, high = env.observation_space.low[kept], env.observation_space.high[kept]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[self.kept]


def cartpole_no_velocity(render_mode: str | None = None) -> gym.Env:
    return HideVelocity(CartPoleEnv(render_mode=render_mode), kept=[0, 2])  # (x, theta)


def pendulum_no_velocity(render_mode: str | None = None) -> gym.Env:
    return HideVelocity(PendulumEnv(render_mode=render_mode), kept=[0, 1])  # (cos theta, sin theta)


class CueMemory(gym.Env):
    """See the module docstring. Observations: the cue one-hot (first step only, zeros after)
    and a flag that is 1 at the last step, where the choice counts; 2 actions; ``length``
    steps per episode."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 6, render_mode: str | None = None) -> None:
        self.length, self.render_mode = length, render_mode
        self.observation_space = spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.cue, self.t = 0, 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, dtype=np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        if self.t == self.length - 1:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return self._observation(), {}

    def step(self, action: Any):
        last = self.t == self.length - 1
        reward = (1.0 if int(action) == self.cue else -1.0) if last else 0.0
        self.t += 1
        return (self._observation() if not last else np.zeros(3, dtype=np.float32)), reward, last, False, {}


def register() -> None:
    """Register the ``ppolab/`` ids (once)."""
    if "ppolab/CartPoleNoVelocity-v1" in gym.registry:
        return
    gym.register("ppolab/CartPoleNoVelocity-v1", entry_point=cartpole_no_velocity, max_episode_steps=500,
                 reward_threshold=475.0)
    gym.register("ppolab/PendulumNoVelocity-v1", entry_point=pendulum_no_velocity, max_episode_steps=200,
                 reward_threshold=-250.0)
    gym.register("ppolab/CueMemory-v0", entry_point=CueMemory, reward_threshold=0.9)
