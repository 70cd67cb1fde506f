"""The standard Atari preprocessing for ALE ids (``"ALE/Breakout-v5"``, ``"ALE/Pong-v5"``, ...).

:func:`make_atari_env` builds, from the inside out::

    gymnasium.make(id, frameskip=1)   the raw game; v5 keeps its sticky actions (p = 0.25)
    AtariPreprocessing                up to 30 no-ops on reset, repeat each action 4 frames,
                                      max over the last two frames, grayscale, 84x84 uint8
    GameScore                         whole-game score and length -> info (ppolab_score/_length)
    EpisodicLife      (training)      a lost life ends the episode, not the game
    FireReset         (FIRE games)    press FIRE (then action 2) after every reset
    sign(reward)      (training)      rewards clipped to {-1, 0, 1}
    FrameStackObservation(4)          Box(0, 255, (4, 84, 84), uint8): the last 4 frames

Why each piece (Mnih et al. 2015, "Human-level control through deep reinforcement learning";
Machado et al. 2018, "Revisiting the Arcade Learning Environment"; Huang et al. 2022, "The 37
implementation details of PPO", Atari details 1-9):

* Sticky actions. v5 ids repeat the previous action with probability 0.25 on every frame, which
  is how Machado et al. make the deterministic emulator stochastic; we keep it (pass
  ``repeat_action_probability=0.0`` to turn it off). No-op starts (up to 30, Mnih et al.) add
  start-state variety on top. The emulator's own frame skip must be 1 because
  ``AtariPreprocessing`` does the skipping itself (it refuses an env that skips).
* Frame skip 4 with a max over the last two frames: the agent acts at 15 Hz, and the max removes
  the flicker of sprites drawn only on every other frame.
* Grayscale, 84x84, uint8 and a stack of 4 frames: the network's input in Mnih et al.; the
  stack gives it velocities. Frames stay uint8 (the network divides by 255) to keep rollout
  memory four times smaller.
* EpisodicLife: a lost life is a terminal for learning (a strong signal that dying is bad), but
  the game goes on; Machado et al. advise against it for evaluation, so evaluation never has it.
* FireReset: games such as Breakout wait for FIRE after a reset or a lost life; without it a
  random policy can sit idle until the time limit.
* Reward sign: scores differ by orders of magnitude between games; clipping lets one set of
  hyperparameters learn them all.

Order. ``GameScore`` sits below ``EpisodicLife`` and the clipping, so the score it reports is
the unclipped sum over a whole game (all lives) - the number papers report - and it counts the
agent steps of the whole game (including the no-op / FIRE steps the reset wrappers take; their
rewards count in the score but are not returned as rewards). ``FireReset`` sits above
``EpisodicLife`` so it also fires after each lost life. The clipping sits above both, so nothing
below it sees clipped rewards, and the frame stack is outermost so it restarts on every reset
the agent sees (including a lost life).

``training=False`` (evaluation, video) drops ``EpisodicLife`` and the clipping: an episode is a
whole game and its return is the game score.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

from ppolab.errors import EnvironmentSpecError

ATARI_NAMESPACE = "ALE/"
SCORE_KEY = "ppolab_score"
LENGTH_KEY = "ppolab_length"

Step = tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]
Reset = tuple[Any, dict[str, Any]]

MISSING_EXTRA = ("ALE/... ids need the Atari extra: pip install 'ppolab[atari]' "
                 "(ale-py ships the ROMs; the preprocessing needs opencv-python-headless)")


def is_atari(env_id: str) -> bool:
    """Whether ``env_id`` names an Arcade Learning Environment game."""
    return env_id.startswith(ATARI_NAMESPACE)


def register() -> None:
    """Register the ``ALE/`` ids with Gymnasium (idempotent); a clear error without the extra."""
    try:
        import ale_py
        import cv2  # noqa: F401  (AtariPreprocessing resizes with it)
    except ImportError as e:
        raise EnvironmentSpecError(MISSING_EXTRA) from e
    gym.register_envs(ale_py)


class GameScore(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds the raw score and the agent-step count of a whole game to the info of the step
    where the game really ends (terminated or truncated below any life-loss wrapper). Any env
    with this wrapper reports its episodes this way to ppolab's collector (see
    :func:`reports_game_scores`)."""

    reports_game_scores = True

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.score = 0.0
        self.length = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Reset:
        self.score, self.length = 0.0, 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Step:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        self.length += 1
        if terminated or truncated:
            info = {**info, SCORE_KEY: float(self.score), LENGTH_KEY: int(self.length)}
        return obs, reward, terminated, truncated, info


def reports_game_scores(env: gym.Env) -> bool:
    """Whether ``env`` has a :class:`GameScore` wrapper: its episode returns are then the scores
    in ``info``, not the sum of the (clipped, per-life) rewards it trains on."""
    try:
        return bool(env.get_wrapper_attr("reports_game_scores"))
    except AttributeError:
        return False


def _keep_score(ended: dict, info: dict) -> dict:
    """``info`` plus the game score of ``ended``, a step a reset wrapper took and then reset
    after: the score then arrives with the reset rather than being lost."""
    kept = {k: ended[k] for k in (SCORE_KEY, LENGTH_KEY) if k in ended}
    return {**info, **kept} if kept else info


class EpisodicLife(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A lost life ends the episode (``terminated=True``) but not the game: the next ``reset()``
    takes one NOOP step instead of restarting, unless the game is really over (terminated or
    truncated below this wrapper) or the caller passes a seed or options."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.lives = 0
        self.game_over = True

    def step(self, action: Any) -> Step:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self.env.unwrapped.ale.lives()
        # Not at 0 lives (as DeepMind's wrapper): some games reach 0 a few frames before the game
        # over; the real terminal follows, and signalling here would make a few-frame episode.
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Reset:
        if self.game_over or seed is not None or options is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, reset_info = self.env.reset()
                info = _keep_score(info, reset_info)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """After every reset, take FIRE (action 1) then action 2, as DeepMind's wrapper does, so
    games that wait for FIRE to start (or to serve after a lost life) start."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs FIRE as action 1 and 3+ actions; got {meanings}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Reset:
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            obs, _, terminated, truncated, step_info = self.env.step(action)
            info = step_info
            if terminated or truncated:
                obs, info = self.env.reset()
                info = _keep_score(step_info, info)
        return obs, info


def _sign(reward: SupportsFloat) -> float:
    return float(np.sign(float(reward)))


def make_atari_env(env_id: str, training: bool = True, render_mode: str | None = None,
                   **kwargs: Any) -> gym.Env:
    """One preprocessed Atari env (see the module docstring); ``kwargs`` go to ``gymnasium.make``
    (e.g. ``repeat_action_probability``, ``mode``, ``difficulty``, ``full_action_space``).

    ``training=True`` adds the life-loss terminals and reward clipping; ``training=False``
    (evaluation) returns whole games with their raw rewards. Either way the step that ends a game
    carries ``info[SCORE_KEY]`` (raw score) and ``info[LENGTH_KEY]`` (agent steps).
    """
    if not is_atari(env_id):
        raise EnvironmentSpecError(
            f"{env_id!r} is not an Atari id; Atari ids start with {ATARI_NAMESPACE!r}")
    register()
    try:
        env = gym.make(env_id, frameskip=1, render_mode=render_mode, **kwargs)
    except (gym.error.UnregisteredEnv, gym.error.DeprecatedEnv) as e:
        raise EnvironmentSpecError(f"{env_id}: {e}") from e
    return wrap_atari(env, training)


def wrap_atari(env: gym.Env, training: bool = True) -> gym.Env:
    """The preprocessing stack around an ALE env made with ``frameskip=1`` (what
    :func:`make_atari_env` does after ``gymnasium.make``)."""
    meanings = env.unwrapped.get_action_meanings()
    # Backgammon and VideoCheckers have no NOOP, which AtariPreprocessing's no-op starts need.
    noop_max = 30 if meanings[0] == "NOOP" else 0
    env = gym.wrappers.AtariPreprocessing(env, noop_max=noop_max, frame_skip=4, screen_size=84,
                                          terminal_on_life_loss=False, grayscale_obs=True,
                                          scale_obs=False)
    env = GameScore(env)
    if training:
        env = EpisodicLife(env)
    # FIRE is action 1 in every game that has it except those two board games, where it is a
    # move, not a start button.
    if len(meanings) >= 3 and meanings[1] == "FIRE":
        env = FireReset(env)
    if training:
        env = gym.wrappers.TransformReward(env, _sign)
    return gym.wrappers.FrameStackObservation(env, 4)
