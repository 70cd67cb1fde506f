"""Running normalization: statistics against batch statistics, the reward scaler's return by hand,
and the statistics' round trip through model files."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from ppolab import PPO
from ppolab.normalize import EPS, ObservationNormalizer, RewardScaler, RunningMeanStd
from ppolab.observations import ObservationSpec


def test_running_statistics_equal_batch_statistics():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 3)) * np.array([1.0, 10.0, 0.1])
    stats = RunningMeanStd((3,))
    for chunk in np.split(data, [1, 7, 100, 101, 500, 999]):  # uneven batches, one of size 1
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, data.var(axis=0), rtol=1e-10)
    assert stats.count == 1000


def test_observation_normalizer_standardizes_clips_and_can_be_frozen():
    rng = np.random.default_rng(1)
    norm = ObservationNormalizer((2,), clip=3.0)
    for _ in range(50):
        out = norm(rng.normal([100.0, -5.0], [10.0, 0.5], size=(64, 2)), update=True)
    assert out.dtype == np.float32
    batch = rng.normal([100.0, -5.0], [10.0, 0.5], size=(4096, 2))
    normalized = norm(batch, update=False)
    np.testing.assert_allclose(normalized.mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(normalized.std(axis=0), 1.0, atol=0.05)
    before = norm.stats.state_dict()
    far = norm(np.array([[1e6, -1e6]]), update=False)
    assert far.tolist() == [[3.0, -3.0]]
    assert norm.stats.state_dict() == before  # frozen: nothing was added
    # a single-leaf normalizer's state is its statistics' (the format of model files before
    # observation specs), and it round-trips into a normalizer built from the equivalent spec
    assert norm.state_dict() == before
    again = ObservationNormalizer(ObservationSpec.vector((2,)), clip=3.0)
    again.load_state_dict(norm.state_dict())
    np.testing.assert_array_equal(again(batch, update=False), normalized)


def test_structured_observations_normalize_each_vector_leaf_and_pass_the_rest_through():
    space = gym.spaces.Dict({
        "position": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        "velocity": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        "image": gym.spaces.Box(0, 255, (3, 8, 8), np.uint8),
        "mode": gym.spaces.Discrete(4),
    })
    spec = ObservationSpec.from_space(space)
    assert ObservationNormalizer.applies(spec)
    assert not ObservationNormalizer.applies(ObservationSpec.from_space(gym.spaces.Dict({"image": space["image"]})))
    norm = ObservationNormalizer(spec, clip=5.0)
    assert set(norm.by_key) == {"position", "velocity"}
    rng = np.random.default_rng(2)

    def batch(n: int) -> dict[str, np.ndarray]:
        return {"position": rng.normal([10.0, -10.0], [2.0, 0.1], size=(n, 2)),
                "velocity": rng.normal(-3.0, 7.0, size=(n, 3)),
                "image": rng.integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8),
                "mode": rng.integers(0, 4, size=(n,))}

    for _ in range(20):
        norm(batch(64), update=True)
    assert norm.by_key["position"].count == norm.by_key["velocity"].count == 20 * 64
    test = batch(4096)
    out = norm(test, update=False)
    assert set(out) == set(test)
    for key in ("position", "velocity"):  # each with its own statistics
        assert out[key].dtype == np.float32
        np.testing.assert_allclose(out[key].mean(axis=0), 0.0, atol=0.05)
        np.testing.assert_allclose(out[key].std(axis=0), 1.0, atol=0.05)
    for key in ("image", "mode"):  # not vectors: the very arrays that came in
        assert out[key] is test[key]
    # the state is per leaf and round-trips
    state = norm.state_dict()
    assert set(state) == {"position", "velocity"}
    again = ObservationNormalizer(spec, clip=5.0)
    again.load_state_dict(state)
    reloaded = again(test, update=False)
    for key in ("position", "velocity"):
        np.testing.assert_array_equal(reloaded[key], out[key])


def test_reward_scaler_tracks_the_discounted_return_by_hand():
    scaler = RewardScaler(n_envs=2, gamma=0.5, clip=100.0)
    yes, no = np.array([True, True]), np.array([False, False])
    # step 1: returns [1, 2]; env 0's episode ends
    scaler(np.array([1.0, 2.0]), valid=yes, episode_end=np.array([True, False]))
    # step 2: env 0 is an autoreset step (reward 0, not counted); env 1: 0.5 * 2 + 4 = 5
    out = scaler(np.array([0.0, 4.0]), valid=np.array([False, True]), episode_end=no)
    seen = np.array([1.0, 2.0, 5.0])  # every running return the statistics have seen
    assert scaler.stats.count == 3
    assert math.isclose(scaler.stats.var, seen.var(), rel_tol=1e-12)
    assert out[1] == pytest.approx(4.0 / math.sqrt(seen.var() + EPS))
    assert scaler.returns.tolist() == [0.0, 5.0]  # env 0 reset at its episode end


def test_rewards_keep_their_sign_and_are_clipped():
    scaler = RewardScaler(n_envs=1, gamma=0.99, clip=2.0)
    for r in (1.0, -1.0, 1.0, -1.0):
        scaler(np.array([r]), valid=np.array([True]), episode_end=np.array([False]))
    assert scaler(np.array([-1e6]), valid=np.array([True]), episode_end=np.array([False]))[0] == -2.0


def test_statistics_round_trip_through_the_model_file(tmp_path):
    agent = PPO("envs_for_tests:ShiftedTargetBoxEnv", seed=0, n_envs=2, n_steps=32, minibatch_size=32,
                normalize_observations=True, normalize_rewards=True)
    agent.learn(256)
    path = agent.save(tmp_path / "model.pt")
    loaded = PPO.load(path)
    np.testing.assert_array_equal(loaded.obs_normalizer.stats.mean, agent.obs_normalizer.stats.mean)
    np.testing.assert_array_equal(loaded.reward_scaler.stats.var, agent.reward_scaler.stats.var)
    obs = np.array([[50.0, 60.0], [140.0, -40.0], [0.0, 100.0]], dtype=np.float32)
    # the same weights and statistics through the same code on the same machine: bit-identical
    # by design (Box actions: these are floats, the Gaussian means)
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    # predicting (evaluation) does not move the statistics
    count = loaded.obs_normalizer.stats.count
    loaded.predict(obs)
    assert loaded.obs_normalizer.stats.count == count
    # the statistics are really used: without them the actions differ
    raw = PPO.load(path)
    raw.obs_normalizer = None
    assert not np.array_equal(raw.predict(obs), agent.predict(obs))
    agent.close()
