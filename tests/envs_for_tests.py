"""Small Gymnasium environments for the CLI, API and bad-input tests.

Importable in subprocesses as ``envs_for_tests:Name`` once the tests directory is on
PYTHONPATH (the ``run_cli`` fixture in conftest.py does that).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle
from gymnasium.wrappers import TimeLimit


class _BoxObsDiscreteActions(gym.Env):
    """Base: a 4-float Box observation, two actions, never ends on its own."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 1.0, False, False, {}


# --------------------------------------------------------------------------- unsupported spaces


class TextObsEnv(_BoxObsDiscreteActions):
    """Text observations: no encoder handles them, ppolab must refuse it."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Text(8)


class DictWithTextEnv(_BoxObsDiscreteActions):
    """A Dict with a text part (like MiniGrid's mission): dropped with a notice, or refused."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({
            "position": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "note": spaces.Text(8),
        })


class TinyImageEnv(_BoxObsDiscreteActions):
    """A 6x6 uint8 image: too small for the default (Nature) CNN."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, shape=(6, 6, 3), dtype=np.uint8)


class TupleActionEnv(_BoxObsDiscreteActions):
    """Tuple actions: ppolab must refuse it (Discrete, MultiDiscrete and Box only)."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))


# --------------------------------------------------------------------------- trivially learnable


class TargetBoxEnv(gym.Env):
    """Box actions: the observation is a target point in [-1, 1]^2, the reward -||a - target||^2.
    Episodes last 8 steps (truncated). Optimal return 0; a random policy gets about -8 * 2.7."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._target = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._target.copy(), {}

    def step(self, action):
        reward = -float(np.sum((np.asarray(action) - self._target) ** 2))
        self._t += 1
        self._target = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._target.copy(), reward, False, self._t >= 8, {}


class MatchMultiDiscreteEnv(gym.Env):
    """MultiDiscrete([3, 4]) actions: the observation one-hot encodes a target per component; the
    reward is the number of components matched (0..2). Episodes last 8 steps. Optimal return 16,
    random about 8 * (1/3 + 1/4) = 4.7."""

    metadata = {"render_modes": []}
    NVEC = (3, 4)

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, shape=(sum(self.NVEC),), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete(self.NVEC)
        self._t = 0

    def _observe(self) -> np.ndarray:
        self._target = [int(self.np_random.integers(n)) for n in self.NVEC]
        obs = np.zeros(sum(self.NVEC), dtype=np.float32)
        obs[self._target[0]] = 1.0
        obs[self.NVEC[0] + self._target[1]] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(sum(int(a) == t for a, t in zip(action, self._target)))
        self._t += 1
        return self._observe(), reward, False, self._t >= 8, {}


# --------------------------------------------------------------------------- divergence

NAN_FROM_STEP = 300


class NaNRewardEnv(_BoxObsDiscreteActions):
    """Reward 1.0 for the first ``NAN_FROM_STEP`` calls to ``step`` of this instance (over all its
    episodes), then NaN. It never ends an episode, so with ``n_steps=64`` every instance takes
    exactly 64 steps per rollout and the first NaN reward falls in rollout ceil(301 / 64) = 5."""

    bad_reward = float("nan")

    def __init__(self) -> None:
        super().__init__()
        self.steps_taken = 0

    def step(self, action):
        self.steps_taken += 1
        reward = self.bad_reward if self.steps_taken > NAN_FROM_STEP else 1.0
        return self.observation_space.sample(), reward, False, False, {}


class InfRewardEnv(NaNRewardEnv):
    bad_reward = float("inf")


class HugeRewardEnv(NaNRewardEnv):
    """A finite reward whose square overflows float32: the value loss becomes inf."""

    bad_reward = 1e30


# --------------------------------------------------------------------------- a user-defined task


class SignEnv(gym.Env):
    """A contextual bandit-like task in episodes of 10 steps: observe x in [-1, 1]^3, be paid 1
    for action 1 when x[0] < 0 and for action 2 otherwise. Actions are ``Discrete(2, start=1)``,
    so an agent that forgets the action offset sends invalid actions (and this env raises)."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2, start=1)
        self._obs = np.zeros(3, dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self.np_random.uniform(-1.0, 1.0, size=3).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        correct = 1 if self._obs[0] < 0 else 2
        reward = 1.0 if int(action) == correct else 0.0
        self._t += 1
        self._obs = self.np_random.uniform(-1.0, 1.0, size=3).astype(np.float32)
        return self._obs.copy(), reward, self._t >= 10, False, {}


class TwoFloatObsEnv(SignEnv):
    """Like SignEnv but with 2-float observations and Discrete(2) actions (for shape mismatches)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._obs = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        self._t = 0
        self._obs = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action):
        self._t += 1
        self._obs = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        return self._obs.copy(), float(action), self._t >= 10, False, {}


# --------------------------------------------------------------------------- scripted episodes

TERMINATE_AT = 5  # episodes that terminate do so after this many steps
TIME_LIMIT = 7  # the others run into the TimeLimit and are truncated after this many steps
REWARD = 2.0  # per step, so a terminated episode returns 10.0 and a truncated one 14.0


class ScriptedEpisodesEnv(gym.Env):
    """A deterministic env whose observation is ``[step in episode, episode index]``.

    Episode k terminates after ``TERMINATE_AT`` steps when ``(k + offset)`` is even; otherwise it
    never ends by itself (wrap it in ``TimeLimit(.., TIME_LIMIT)``, see :class:`ScriptedFactory`).
    The episode index counts calls to ``reset``, starting at 0 for the first one.
    """

    metadata = {"render_modes": []}

    def __init__(self, offset: int = 0) -> None:
        self.observation_space = spaces.Box(0.0, 1000.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.offset = offset
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        terminated = (self.episode + self.offset) % 2 == 0 and self.t >= TERMINATE_AT
        return self._obs(), REWARD, terminated, False, {}


class ScriptedFactory:
    """Zero-argument env factory: the i-th env it makes has offset i, wrapped in a TimeLimit.
    So env 0 starts with a terminating episode and env 1 with a truncated one."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self) -> gym.Env:
        env = TimeLimit(ScriptedEpisodesEnv(offset=self.made), max_episode_steps=TIME_LIMIT)
        self.made += 1
        return env


class ShiftedTargetBoxEnv(TargetBoxEnv):
    """TargetBoxEnv observed through a badly scaled sensor (obs = 50 + 100 * target) and paid in
    large rewards (x 100): learnable with observation and reward normalization."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(-50.0, 150.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return 50.0 + 100.0 * obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return 50.0 + 100.0 * obs, 100.0 * reward, terminated, truncated, info


# --------------------------------------------------------------------------- faulty environments

FAULTY_SEED = 2  # the env first reset with this seed misbehaves: with seed 0, that is env index 2
FAULT_CALL = 37  # ... on its 37th call to step (it never ends an episode before that)


class _FaultAtCall(_BoxObsDiscreteActions):
    """Behaves until the ``FAULT_CALL``-th call to ``step`` of the env whose first reset got a
    seed in ``faulty_seeds``; there ``fault`` happens. A vector env resets sub-env i with seed
    ``seed + i``, so this singles out one env index even in async worker processes.

    The fault of ``"raise_reset"`` is that the episode terminates at that step and the following
    reset (the vector env's autoreset, one vector step later) raises.
    """

    fault = ""
    faulty_seeds: tuple[int, ...] = (FAULTY_SEED,)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.faulty: bool | None = None  # decided by the first reset
        self.failing_reset = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.faulty is None:
            self.faulty = seed in self.faulty_seeds
        if self.failing_reset:
            raise RuntimeError("cannot restart the simulator")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.calls += 1
        obs = self.observation_space.sample()
        if not self.faulty or self.calls != FAULT_CALL:
            return obs, 1.0, False, False, {}
        reward, terminated = 1.0, False
        if self.fault == "nan_obs":
            obs[1] = np.nan
        elif self.fault == "inf_obs":
            obs[0] = np.inf
        elif self.fault == "nan_reward":
            reward = float("nan")
        elif self.fault == "inf_reward":
            reward = float("-inf")
        elif self.fault == "wrong_shape":
            obs = obs[:3]
        elif self.fault == "raise_step":
            raise ValueError("simulated physics blew up")
        elif self.fault == "raise_reset":
            terminated, self.failing_reset = True, True
        return obs, reward, terminated, False, {}


class NaNObsEnv(_FaultAtCall):
    fault = "nan_obs"


class NaNObsTwoEnvs(_FaultAtCall):
    """Envs 1 and 3 (with seed 0) return NaN observations at the same step."""

    fault = "nan_obs"
    faulty_seeds = (1, 3)


class InfObsEnv(_FaultAtCall):
    fault = "inf_obs"


class NaNRewardAtEnv(_FaultAtCall):
    fault = "nan_reward"


class InfRewardAtEnv(_FaultAtCall):
    fault = "inf_reward"


class WrongShapeObsEnv(_FaultAtCall):
    fault = "wrong_shape"


class StepRaisesEnv(_FaultAtCall):
    fault = "raise_step"


class ResetRaisesEnv(_FaultAtCall):
    fault = "raise_reset"


class FirstResetRaisesEnv(_BoxObsDiscreteActions):
    """The env first reset with seed ``FAULTY_SEED`` raises right there."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed == FAULTY_SEED:
            raise OSError("simulator license not found")
        return super().reset(seed=seed, options=options)


class WrongShapeVectorEnv(gym.vector.VectorEnv):
    """A native vector env (no sub-envs for ppolab to wrap) of ``num_envs`` copies of the base
    task, whose ``FAULT_CALL``-th step returns observations of shape ``[num_envs, 3]``."""

    def __init__(self, num_envs: int = 4) -> None:
        self.num_envs = num_envs
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.single_action_space = spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self.calls = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, actions):
        self.calls += 1
        obs = self.observation_space.sample()
        if self.calls == FAULT_CALL:
            obs = obs[:, :3]
        n = self.num_envs
        return obs, np.ones(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), {}


class ResetReturnsObsOnlyEnv(_BoxObsDiscreteActions):
    """Breaks Gymnasium's API: ``reset`` returns the observation without the info dict."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        return self.observation_space.sample()


FAULT_IN_EPISODE_AT = 20


class _FaultInEpisode(_BoxObsDiscreteActions):
    """Deterministic and well-behaved (Gymnasium's checker passes it) until step
    ``FAULT_IN_EPISODE_AT`` of each episode, where ``fault`` happens. For check-env."""

    fault = ""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return self.np_random.uniform(-1.0, 1.0, size=3).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        obs, reward = self._obs(), 0.5
        if self._t == FAULT_IN_EPISODE_AT:
            if self.fault == "nan_obs":
                obs[2] = np.nan
            elif self.fault == "inf_reward":
                reward = float("inf")
            elif self.fault == "wrong_shape":
                obs = np.zeros((3, 1), dtype=np.float32)
            elif self.fault == "raise_step":
                raise ZeroDivisionError("division by zero in the dynamics")
        return obs, reward, False, self._t >= 100, {}


class NaNObsInEpisodeEnv(_FaultInEpisode):
    fault = "nan_obs"


class InfRewardInEpisodeEnv(_FaultInEpisode):
    fault = "inf_reward"


class WrongShapeInEpisodeEnv(_FaultInEpisode):
    fault = "wrong_shape"


class StepRaisesInEpisodeEnv(_FaultInEpisode):
    fault = "raise_step"


class NeedsArgumentEnv(_BoxObsDiscreteActions):
    """Cannot be made with no arguments."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level


# --------------------------------------------------------------------------- observation kinds


class PixelSideEnv(gym.Env):
    """A pixel task for the CNN: a 12x12 single-channel uint8 image (channel-last) with one
    bright 2x2 square somewhere on a noisy dark background; action 0 is right when the square
    is in the left half, action 1 when it is in the right half. Reward 1 for a right answer, a new
    image every step, 8 steps an episode: a random policy scores 4, a perfect one 8."""

    metadata = {"render_modes": []}
    size, length = 12, 8

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0, 255, shape=(self.size, self.size, 1), dtype=np.uint8)
        self.action_space = spaces.Discrete(2)

    def _draw(self) -> np.ndarray:
        image = self.np_random.integers(0, 40, size=(self.size, self.size, 1), dtype=np.uint8)
        row = int(self.np_random.integers(0, self.size - 1))
        self.side = int(self.np_random.integers(0, 2))
        half = self.size // 2
        col = int(self.np_random.integers(0, half - 1)) + self.side * half
        image[row:row + 2, col:col + 2] = 255
        return image

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        self.t += 1
        return self._draw(), reward, False, self.t >= self.length, {}


class DictMixEnv(gym.Env):
    """Dict observations of three kinds: a 6x6x1 uint8 image, a 2-float vector and a
    Discrete(3) mode. The right action (of 2) depends on the mode: in mode 0 whether the image's
    bright pixel is in its right half, in mode 1 whether vector[0] > 0, in mode 2 always 1.
    Reward 1 for a right action, 8 steps an episode: random scores 4, perfect 8."""

    metadata = {"render_modes": []}
    length = 8

    def __init__(self) -> None:
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, shape=(6, 6, 1), dtype=np.uint8),
            "vector": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
            "mode": spaces.Discrete(3),
        })
        self.action_space = spaces.Discrete(2)

    def _observe(self) -> dict:
        image = np.zeros((6, 6, 1), dtype=np.uint8)
        right = int(self.np_random.integers(0, 2))
        image[int(self.np_random.integers(0, 6)), int(self.np_random.integers(0, 3)) + 3 * right] = 255
        vector = self.np_random.uniform(-1.0, 1.0, size=2).astype(np.float32)
        mode = int(self.np_random.integers(0, 3))
        self.answer = (right, int(vector[0] > 0), 1)[mode]
        return {"image": image, "vector": vector, "mode": mode}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == self.answer)
        self.t += 1
        return self._observe(), reward, False, self.t >= self.length, {}


class NestedObsEnv(_BoxObsDiscreteActions):
    """Nested Dict/Tuple observations of every leaf kind (for encoder shape tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.Dict({
            "camera": spaces.Box(0, 255, shape=(3, 40, 40), dtype=np.uint8),
            "state": spaces.Tuple((
                spaces.Box(-1.0, 1.0, shape=(2, 3), dtype=np.float32),
                spaces.Discrete(4, start=1),
                spaces.Dict({"bits": spaces.MultiBinary(5), "dice": spaces.MultiDiscrete([2, 6])}),
            )),
        })


def tiny_encoder(observation_space):
    """A user's encoder factory: a flatten and one linear layer of 16 features."""
    import math

    import torch

    n = math.prod(observation_space.shape)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(16) if n == 0 else torch.nn.Linear(n, 16),
                               torch.nn.Tanh())


def wrong_shape_encoder(observation_space):
    """A user's encoder whose output is not [batch, features]."""
    import torch

    return torch.nn.Identity()


def not_a_module_encoder(observation_space):
    return "not a module"


class MaskedChoiceEnv(gym.Env):
    """A task with action masks: each state allows a random subset of 6 actions, shown in the
    observation as 0/1 flags; the highest valid action pays 1, the other valid ones 0. An invalid
    action raises, so it must never reach the env. Masks come as ``info["action_mask"]`` (int8,
    the Gymnasium convention); episodes last 8 steps. A uniformly random valid action earns
    about 3 per episode, the best policy 8."""

    metadata = {"render_modes": []}
    n = 6
    episode_length = 8

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n)
        self.valid = np.ones(self.n, dtype=bool)
        self.t = 0

    def _draw(self) -> np.ndarray:
        valid = self.np_random.random(self.n) < 0.5
        valid[self.np_random.integers(self.n)] = True  # at least one valid action
        self.valid = valid
        return valid.astype(np.float32)

    def _info(self) -> dict:
        return {"action_mask": self.valid.astype(np.int8)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._draw(), self._info()

    def step(self, action):
        action = int(action)
        if not self.valid[action]:
            raise ValueError(f"invalid action {action} reached the env (valid: {np.flatnonzero(self.valid)})")
        reward = float(action == np.flatnonzero(self.valid)[-1])
        self.t += 1
        return self._draw(), reward, self.t >= self.episode_length, False, self._info()


class MethodMaskedChoiceEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` with its masks from an ``action_masks()`` method (the
    sb3-contrib convention, bool), and none in ``info``."""

    def _info(self) -> dict:
        return {}

    def action_masks(self) -> np.ndarray:
        return self.valid.copy()


class MaskedPairEnv(gym.Env):
    """MultiDiscrete([3, 4]) actions with a mask of 3 + 4 flags, the components' flags one after
    the other: component 0 may not be 0, component 1 may only be 1 or 3. An invalid component
    raises. Pays 1 when the components are (2, 3). Episodes of 4 steps."""

    metadata = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([3, 4])
        self.mask = np.array([0, 1, 1, 0, 1, 0, 1], dtype=bool)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {"action_mask": self.mask}

    def step(self, action):
        a, b = (int(x) for x in action)
        if not (self.mask[a] and self.mask[3 + b]):
            raise ValueError(f"invalid action {(a, b)}")
        self.t += 1
        reward = float((a, b) == (2, 3))
        return np.zeros(2, dtype=np.float32), reward, self.t >= 4, False, {"action_mask": self.mask}


class TerminalMaskEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` whose terminal states allow no action at all (their mask is
    all zeros): that mask belongs to an autoreset step and must not stop training."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated:
            info = {"action_mask": np.zeros(self.n, dtype=np.int8)}
        return obs, reward, terminated, truncated, info


class NoValidActionEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` that, at its 5th step, gives a mask with no valid action."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == 5:
            info = {"action_mask": np.zeros(self.n, dtype=np.int8)}
        return obs, reward, terminated, truncated, info


class WrongMaskShapeEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` with masks of 5 flags for its 6 actions."""

    def _info(self) -> dict:
        return {"action_mask": self.valid[:5].astype(np.int8)}


class FloatMaskEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` with float masks."""

    def _info(self) -> dict:
        return {"action_mask": self.valid.astype(np.float32)}


class PlainChoiceEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` that gives no masks at all (a masked model cannot train on it)."""

    def _info(self) -> dict:
        return {}


class ConstructorPickleEnv(MaskedChoiceEnv, EzPickle):
    """:class:`MaskedChoiceEnv` that pickles only its constructor arguments, as Gymnasium's
    Box2D, MuJoCo and Atari envs do: a pickled copy would be a new episode, so a checkpoint
    cannot save it."""

    def __init__(self) -> None:
        MaskedChoiceEnv.__init__(self)
        EzPickle.__init__(self)
