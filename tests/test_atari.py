"""The Atari preprocessing stack (ppolab.atari): spaces, life loss, reward clipping against the
whole-game score, vector envs, FIRE on reset, and the message when the extra is missing."""

from __future__ import annotations

import functools
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")
pytest.importorskip("cv2")

from ppolab import atari  # noqa: E402
from ppolab.atari import (  # noqa: E402
    LENGTH_KEY, SCORE_KEY, EpisodicLife, FireReset, GameScore, make_atari_env)
from ppolab.errors import EnvironmentSpecError  # noqa: E402

BREAKOUT = "ALE/Breakout-v5"
MAX_STEPS = 5_000  # a random Breakout game ends in a few hundred steps


def layer(env: gym.Env, cls: type) -> gym.Wrapper | None:
    """The wrapper of type ``cls`` in ``env``'s stack, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return env
        env = env.env
    return None


def test_is_atari() -> None:
    assert atari.is_atari("ALE/Breakout-v5")
    assert not atari.is_atari("CartPole-v1")
    assert not atari.is_atari("BreakoutNoFrameskip-v4")


@pytest.mark.parametrize("module", ["ale_py", "cv2"])
def test_missing_extra_names_the_install_command(
        monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    for call in (atari.register, functools.partial(make_atari_env, BREAKOUT)):
        with pytest.raises(EnvironmentSpecError) as raised:
            call()
        assert str(raised.value) == (
            "ALE/... ids need the Atari extra: pip install 'ppolab[atari]' "
            "(ale-py ships the ROMs; the preprocessing needs opencv-python-headless)")


def test_not_an_atari_id() -> None:
    with pytest.raises(EnvironmentSpecError, match="not an Atari id"):
        make_atari_env("CartPole-v1")


@pytest.mark.parametrize("training", [True, False])
def test_observations_are_four_stacked_84x84_uint8_frames(training: bool) -> None:
    env = make_atari_env(BREAKOUT, training=training)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs in env.observation_space
    for _ in range(10):
        obs, *_ = env.step(env.action_space.sample())
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs in env.observation_space
    env.close()


def test_a_lost_life_ends_the_episode_but_not_the_game() -> None:
    env = make_atari_env(BREAKOUT, training=True)
    ale, score = env.unwrapped.ale, layer(env, GameScore)
    env.action_space.seed(1)
    _, info = env.reset(seed=1)
    lives, frame = ale.lives(), info["episode_frame_number"]
    assert lives == 5
    life_losses = 0
    for _ in range(MAX_STEPS):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not truncated
        now = ale.lives()
        assert terminated == (now < lives), "terminated exactly when a life is lost"
        assert info["episode_frame_number"] > frame  # ALE restarts this count with each new game
        lives, frame = now, info["episode_frame_number"]
        if not terminated:
            continue
        if now == 0:  # the real game over
            assert SCORE_KEY in info and info[LENGTH_KEY] == score.length
            break
        life_losses += 1
        assert SCORE_KEY not in info
        length, points = score.length, score.score
        _, info = env.reset()
        # Same game: lives, the emulator's frame count and the score counters carry on.
        assert ale.lives() == lives
        assert info["episode_frame_number"] > frame
        assert score.length > length and score.score == points
        frame = info["episode_frame_number"]
    else:
        pytest.fail(f"no game over in {MAX_STEPS} steps")
    assert life_losses == 4
    env.reset()  # after a real game over, a real new game
    assert ale.lives() == 5 and score.length == 2  # the two FireReset steps
    env.close()


def play(env: gym.Env, actions: list[int] | None, seed: int) -> tuple[float, dict, list[float]]:
    """One whole game through ``env`` (resetting after life losses): the return the agent saw,
    the info of the step that ended the game, and the rewards. Random actions when ``actions``
    is None, else exactly those."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    total, rewards = 0.0, []
    steps = range(MAX_STEPS) if actions is None else range(len(actions))
    for t in steps:
        action = int(rng.integers(env.action_space.n)) if actions is None else actions[t]
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        rewards.append(reward)
        if SCORE_KEY in info:
            return total, info, rewards
        if terminated or truncated:
            env.reset()
    pytest.fail("the game did not end")


# Breakout is the cheap game; random play only hits its 1-point bricks, so SpaceInvaders (5 to 30
# points an alien) shows the clipping. Seeds chosen so that the random game scores.
@pytest.mark.parametrize(("env_id", "seed"), [(BREAKOUT, 6), ("ALE/SpaceInvaders-v5", 2)])
def test_clipped_training_rewards_and_the_unclipped_game_score(env_id: str, seed: int) -> None:
    train = make_atari_env(env_id, training=True)
    # Record what reaches the game: the agent's actions plus the NOOP / FIRE steps the reset
    # wrappers insert after each lost life, and the raw rewards below the clipping.
    score_layer = layer(train, GameScore)
    game_actions, raw_rewards = [], []
    step = score_layer.step

    def recording_step(action):
        out = step(action)
        game_actions.append(int(action))
        raw_rewards.append(float(out[1]))
        return out

    score_layer.step = recording_step
    clipped_return, end_info, rewards = play(train, None, seed=seed)
    assert set(rewards) <= {-1.0, 0.0, 1.0} and all(type(r) is float for r in rewards)
    score = end_info[SCORE_KEY]
    assert isinstance(score, float) and score > 0
    assert score == sum(raw_rewards) and end_info[LENGTH_KEY] == len(game_actions)
    assert clipped_return == sum(np.sign(raw_rewards))
    if env_id != BREAKOUT:
        assert clipped_return < score

    # Replay the same game in the evaluation stack. Same seed, so the same no-op count and the
    # same sticky-action draws (ALE seeds its RNG from reset(seed=...)), and the same emulator
    # inputs: evaluation's own reset presses FIRE, 2 (the first two recorded actions), and it
    # never resets on a lost life, so the agent replays the inserted NOOP, FIRE, 2 itself.
    evaluate = make_atari_env(env_id, training=False)
    assert game_actions[:2] == [1, 2]
    eval_return, eval_end, eval_rewards = play(evaluate, game_actions[2:], seed=seed)
    assert eval_return == score == eval_end[SCORE_KEY]
    assert eval_rewards == raw_rewards[2:]  # the rewards of the two FIRE steps are 0 here
    assert eval_end[LENGTH_KEY] == end_info[LENGTH_KEY]
    train.close()
    evaluate.close()


def test_truncation_is_a_real_game_end() -> None:
    # 400 emulator frames = ~100 agent steps: the ALE truncates long before Breakout ends.
    env = make_atari_env(BREAKOUT, training=True, max_num_frames_per_episode=400)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(MAX_STEPS):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if truncated:
            break
        if terminated:
            env.reset()
    else:
        pytest.fail("no truncation")
    assert SCORE_KEY in info
    _, info = env.reset()
    assert env.unwrapped.ale.lives() == 5 and layer(env, GameScore).length == 2
    assert info["episode_frame_number"] < 100  # a new game: ALE restarted its frame count


def test_vector_env_reports_scores_only_at_game_end() -> None:
    envs = gym.vector.SyncVectorEnv([functools.partial(make_atari_env, BREAKOUT)] * 2)
    assert envs.single_observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    envs.action_space.seed(0)
    games, life_losses = np.zeros(2, int), np.zeros(2, int)
    for _ in range(MAX_STEPS):
        obs, _, terminated, truncated, infos = envs.step(envs.action_space.sample())
        lives = np.array([env.unwrapped.ale.lives() for env in envs.envs])
        game_over = (terminated & (lives == 0)) | truncated
        scored = infos.get("_" + SCORE_KEY, np.zeros(2, bool))
        np.testing.assert_array_equal(scored, game_over)
        games += game_over
        life_losses += terminated & ~game_over
        if scored.any():
            assert np.all(infos[SCORE_KEY][scored] >= 0) and np.all(infos[LENGTH_KEY][scored] > 0)
        if games.min() >= 1:
            break
    else:
        pytest.fail("the games did not end")
    assert np.all(life_losses >= 4)
    envs.close()


def test_async_vector_env_with_a_further_wrapper() -> None:
    def make() -> gym.Env:
        return gym.wrappers.RecordEpisodeStatistics(make_atari_env(BREAKOUT))

    envs = gym.vector.AsyncVectorEnv([make] * 2)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        envs.action_space.seed(0)
        for _ in range(MAX_STEPS):
            obs, rewards, _, _, infos = envs.step(envs.action_space.sample())
            assert obs.shape == (2, 4, 84, 84) and set(rewards) <= {-1.0, 0.0, 1.0}
            if SCORE_KEY in infos:
                assert infos["_" + SCORE_KEY].any()
                break
        else:
            pytest.fail("no game ended")
    finally:
        envs.close()


@pytest.mark.parametrize("training", [True, False])
def test_fire_reset_only_for_games_with_fire(training: bool) -> None:
    pong = make_atari_env("ALE/Pong-v5", training=training)
    assert "FIRE" in pong.unwrapped.get_action_meanings()
    assert layer(pong, FireReset) is not None
    pong.reset(seed=0)
    assert layer(pong, GameScore).length == 2  # FIRE, then action 2
    pong.close()

    freeway = make_atari_env("ALE/Freeway-v5", training=training)
    assert "FIRE" not in freeway.unwrapped.get_action_meanings()
    assert layer(freeway, FireReset) is None
    freeway.reset(seed=0)
    assert layer(freeway, GameScore).length == 0
    assert (layer(freeway, EpisodicLife) is not None) == training
    freeway.close()


# --------------------------------------------------------------------------- training on Atari


class RawGameLog(gym.Wrapper):
    """Directly on the raw ALE env (below every preprocessing wrapper): the sum of the raw
    rewards of each finished game, in the order the games end."""

    finished: list[float] = []

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.score = 0.0

    def reset(self, **kwargs):
        self.score = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.score += float(reward)
        if terminated or truncated:
            RawGameLog.finished.append(self.score)
        return obs, reward, terminated, truncated, info


def logged_breakout() -> gym.Env:
    return atari.wrap_atari(RawGameLog(gym.make(BREAKOUT, frameskip=1)), training=True)


def test_a_few_ppo_updates_on_breakout_log_unclipped_game_scores() -> None:
    from ppolab import PPO

    RawGameLog.finished = []
    agent = PPO(logged_breakout, seed=0, n_envs=2, n_steps=128, minibatch_size=64, total_steps=1024)
    assert agent.env_info.scores_from_info and agent.config.clip_coef == 0.2  # a factory: no preset
    rollouts = []
    agent.learn(callback=lambda row: rollouts.append(agent.collector.rollout.observations.clone()) and None)
    assert rollouts[0].dtype == torch.uint8 and tuple(rollouts[0].shape) == (128, 2, 4, 84, 84)
    reported = list(agent.recent_returns)
    assert len(reported) >= 2, "random Breakout games take about 200 steps: several must have ended"
    assert reported == RawGameLog.finished[:len(reported)]
    assert agent.episode_count == len(reported)  # games, not lives
    agent.close()


def test_the_ale_ids_get_the_atari_preset_and_preprocessing() -> None:
    from ppolab import PPO

    agent = PPO(BREAKOUT, total_steps=1024, n_envs=2)
    c = agent.config
    assert (c.n_steps, c.n_epochs, c.learning_rate, c.clip_coef, c.ent_coef, c.clip_value_loss, c.hidden_sizes) == (
        128, 4, 2.5e-4, 0.1, 0.01, True, ())
    assert agent.env_info.observation.single.shape == (4, 84, 84) and agent.env_info.scores_from_info
    assert type(agent.policy.encoder).__name__ == "CNNEncoder" and agent.policy.critic_encoder is None
    agent.close()
