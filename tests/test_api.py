"""The Python API in-process: PPO(...).learn / predict / save / load, env sources, callbacks,
model-file safety, and episode boundaries in real rollouts."""

from __future__ import annotations

import json
import os
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs_for_tests as E
from ppolab import PPO, evaluate
from ppolab.config import preset
from ppolab.errors import ConfigError, EnvironmentFaultError, ModelFileError
from ppolab.train import TrainResult

SMALL = dict(seed=0, n_envs=4, n_steps=64, minibatch_size=128)  # 256 steps per update


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """PPO on CartPole for 2048 steps (8 updates), saved to a file."""
    threads = torch.get_num_threads()
    agent = PPO("CartPole-v1", **SMALL)
    result = agent.learn(2048)
    path = agent.save(tmp_path_factory.mktemp("api") / "cartpole.pt")
    torch.set_num_threads(threads)
    yield agent, result, path
    agent.close()


def cartpole_observations(n: int, seed: int = 0) -> np.ndarray:
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(out)


def test_learn_returns_a_train_result(trained):
    agent, result, _ = trained
    assert isinstance(result, TrainResult)
    assert result.total_steps == 2048 == agent.global_step
    assert result.updates == 8 == agent.updates
    assert result.episodes == agent.episode_count > 0
    assert result.solved is False and result.solved_at_step is None and result.solved_at_seconds is None
    assert result.reward_threshold == 475.0
    assert result.final_mean_return_100 == pytest.approx(np.mean(result.episode_returns))
    assert agent.config.n_envs == 4  # the override
    assert agent.config.learning_rate == pytest.approx(preset("CartPole-v1").learning_rate)  # the preset


def test_predict_single_and_batch(trained):
    agent, _, path = trained
    loaded = PPO.load(path)
    space = gym.spaces.Discrete(2)
    batch = cartpole_observations(32)
    single = loaded.predict(batch[0])
    assert np.ndim(single) == 0 and space.contains(single)
    actions = loaded.predict(batch)
    assert isinstance(actions, np.ndarray) and actions.shape == (32,)
    assert all(space.contains(a) for a in actions)
    stochastic = loaded.predict(batch, deterministic=False)
    assert stochastic.shape == (32,) and set(stochastic.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match=r"got an observation of shape \(5, 3\) instead of \(5, 4\)"):
        loaded.predict(np.zeros((5, 3), dtype=np.float32))


def test_loaded_agent_acts_like_the_original(trained):
    agent, _, path = trained
    loaded = PPO.load(path)
    batch = cartpole_observations(200, seed=1)
    # the same weights (saved and loaded, not recomputed) through the same code on the same
    # machine: bit-identical by design
    np.testing.assert_array_equal(loaded.predict(batch), agent.predict(batch))
    for key, value in agent.policy.state_dict().items():
        assert torch.equal(loaded.policy.state_dict()[key], value), key
    assert loaded.config == agent.config
    assert (loaded.global_step, loaded.updates, loaded.episode_count) == (2048, 8, agent.episode_count)
    # and plays the same deterministic evaluation episodes
    a = evaluate(agent, episodes=2, deterministic=True, seed=5)
    b = evaluate(loaded, episodes=2, deterministic=True, seed=5)
    assert a.returns == b.returns and a.lengths == b.lengths


def test_loaded_agent_without_env_cannot_learn(trained):
    _, _, path = trained
    with pytest.raises(ModelFileError, match="env="):
        PPO.load(path).learn(256)


def test_load_with_env_continues_the_counters(trained):
    agent, _, path = trained
    resumed = PPO.load(path, env="CartPole-v1")
    before = {k: v.clone() for k, v in resumed.policy.state_dict().items()}
    result = resumed.learn(512)
    assert resumed.global_step == 2048 + 512 == result.total_steps
    assert resumed.updates == 8 + 2 == result.updates
    assert resumed.episode_count > agent.episode_count
    assert any(not torch.equal(before[k], v) for k, v in resumed.policy.state_dict().items())
    resumed.close()


def test_learn_is_reproducible_in_process():
    def run(seed: int) -> tuple[list[float], torch.Tensor]:
        agent = PPO("CartPole-v1", **{**SMALL, "seed": seed})
        rows: list[dict] = []
        agent.learn(512, callback=rows.append)
        agent.close()
        return [r["approx_kl"] for r in rows], torch.cat([p.flatten() for p in agent.policy.parameters()])

    kl_a, params_a = run(0)
    kl_b, params_b = run(0)
    kl_c, params_c = run(1)
    # same machine, same seed, same code path: bit-identical by design
    assert kl_a == kl_b and torch.equal(params_a, params_b)
    assert not torch.equal(params_a, params_c)


@pytest.mark.parametrize("source", [
    pytest.param(lambda: gym.make("CartPole-v1"), id="instance"),  # called below to make the instance
    pytest.param(lambda: (lambda: gym.make("CartPole-v1")), id="factory"),
    pytest.param(lambda: E.SignEnv, id="class"),
    pytest.param(lambda: "envs_for_tests:SignEnv", id="module-attr"),
])
def test_env_sources_train(source):
    agent = PPO(source(), seed=0, n_envs=2, n_steps=32, minibatch_size=32)
    result = agent.learn(3 * 64)
    assert result.updates == 3 and result.total_steps == 192
    assert result.episodes > 0
    for ep_return in result.episode_returns:
        assert np.isfinite(ep_return)
    obs = np.zeros((3, *agent.env_info.obs_shape), dtype=np.float32)
    actions = agent.predict(obs)
    start, n = agent.env_info.action_start, agent.env_info.n_actions
    assert all(start <= a < start + n for a in actions)
    agent.close()


def test_user_env_with_action_offset_round_trips(tmp_path):
    agent = PPO(E.SignEnv, seed=0, n_envs=2, n_steps=32, minibatch_size=32)
    agent.learn(64)
    assert agent.env_info.action_start == 1
    loaded = PPO.load(agent.save(tmp_path / "sign.pt"))
    obs = np.random.default_rng(0).uniform(-1, 1, size=(50, 3)).astype(np.float32)
    assert set(loaded.predict(obs).tolist()) <= {1, 2}
    # the same weights through the same code on the same machine: bit-identical by design
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    agent.close()


def test_callback_false_stops_after_the_first_update():
    agent = PPO("CartPole-v1", **SMALL)
    calls: list[dict] = []

    def callback(row: dict) -> bool:
        calls.append(row)
        return False

    result = agent.learn(4096, callback=callback)
    assert len(calls) == 1 and calls[0]["update"] == 1
    assert result.updates == 1 and result.total_steps == 256
    agent.close()


def test_callback_none_keeps_going():
    agent = PPO("CartPole-v1", **SMALL)
    calls: list[int] = []
    result = agent.learn(768, callback=lambda row: calls.append(row["global_step"]))
    assert calls == [256, 512, 768] and result.updates == 3
    agent.close()


def test_inf_reward_raises_environment_fault_with_finite_weights():
    agent = PPO("envs_for_tests:InfRewardEnv", seed=0, n_envs=2, n_steps=64, minibatch_size=64)
    # Both envs pay inf from their 301st step, vector step 300 of rollout 5: 600 env steps before it.
    with pytest.raises(EnvironmentFaultError) as excinfo:
        agent.learn(4096)
    assert str(excinfo.value).startswith(
        "env 0 returned a non-finite reward at step 600: reward = inf (2 of 2 envs did)")
    assert agent.updates == 4
    assert all(bool(torch.isfinite(p).all()) for p in agent.policy.parameters())
    agent.close()


# --------------------------------------------------------------------------- model-file safety


def test_random_bytes_are_not_a_model(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError):
        PPO.load(path)


def test_json_is_not_a_model(tmp_path):
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "ppolab-model", "algo": "ppo"}))
    with pytest.raises(ModelFileError):
        PPO.load(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        PPO.load(tmp_path / "missing.pt")


def test_plain_tensor_file_is_not_a_model(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(ModelFileError, match="not a ppolab model file"):
        PPO.load(path)


class _Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda evil: evil, id="bare"),
    pytest.param(lambda evil: {"format": "ppolab-model", "format_version": 1, "algo": "ppo", "x": evil},
                 id="inside-a-model-dict"),
])
def test_pickle_exploit_is_refused_without_running(tmp_path, wrap):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    torch.save(wrap(_Exploit(str(marker))), path)
    # sanity: unpickling it for real would create the marker
    assert b"system" in path.read_bytes() or b"posix" in path.read_bytes()
    with pytest.raises(ModelFileError):
        PPO.load(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_exploit_plain_pickle_file(tmp_path):
    # control: the payload really does run when unpickled
    control = tmp_path / "CONTROL"
    assert pickle.loads(pickle.dumps(_Exploit(str(control)))) == 0 and control.exists()

    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ModelFileError):
        PPO.load(path)
    assert not marker.exists()


def test_load_with_a_different_observation_shape(trained):
    _, _, path = trained
    with pytest.raises(ModelFileError, match=r"observations vector 4 \(4 values\).*this env has 4 envs, "
                                             r"observations vector 2 \(2 values\)"):
        PPO.load(path, env=E.TwoFloatObsEnv)


def test_load_with_a_different_number_of_actions(trained):
    _, _, path = trained
    with pytest.raises(ModelFileError):
        PPO.load(path, env="Acrobot-v1")  # 6 observations, 3 actions


def test_truncated_model_file(tmp_path, trained):
    _, _, path = trained
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError):
        PPO.load(cut)


# --------------------------------------------------------------------------- episode boundaries

# Two scripted envs (see envs_for_tests.ScriptedEpisodesEnv), observation [step, episode]:
#   env 0: episode 0 terminates after 5 steps, episode 1 is truncated after 7, episode 2 terminates...
#   env 1: episode 0 is truncated after 7, episode 1 terminates after 5, ...
# The step after an episode's last step is the autoreset step: invalid, reward 0, and its
# observation is the episode's final observation.
T = 16
EXPECTED = {
    0: dict(  # env 0
        obs=[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0),
             (0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1),
             (0, 2), (1, 2)],
        invalid=[5, 13], terminated=[4], truncated=[12],
    ),
    1: dict(  # env 1
        obs=[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0),
             (0, 1), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1),
             (0, 2), (1, 2)],
        invalid=[7, 13], terminated=[12], truncated=[6],
    ),
}


def test_rollout_episode_boundaries():
    from ppolab.rollout import Episode

    agent = PPO(E.ScriptedFactory(), seed=0, n_envs=2, n_steps=8, minibatch_size=16)
    collector = agent.collector
    first, episodes_1 = collector.collect(0)
    first = {name: getattr(first, name).clone() for name in
             ("observations", "rewards", "terminated", "truncated", "valid")}
    second, episodes_2 = collector.collect(16)
    both = {name: torch.cat([first[name], getattr(second, name)]) for name in first}

    for i, script in EXPECTED.items():
        obs = both["observations"][:, i].tolist()
        assert [tuple(o) for o in obs] == [tuple(map(float, o)) for o in script["obs"]], f"env {i}"
        invalid = [t for t in range(T) if not both["valid"][t, i]]
        assert invalid == script["invalid"], f"env {i}"
        expected_rewards = [0.0 if t in script["invalid"] else E.REWARD for t in range(T)]
        assert both["rewards"][:, i].tolist() == expected_rewards, f"env {i}"
        assert [t for t in range(T) if both["terminated"][t, i]] == script["terminated"], f"env {i}"
        assert [t for t in range(T) if both["truncated"][t, i]] == script["truncated"], f"env {i}"

    # the second rollout continues env 0's episode 1 mid-way: no reset between rollouts
    assert tuple(second.observations[0, 0].tolist()) == (2.0, 1.0)
    # and env 1's autoreset step was the first rollout's last step; its next step is valid
    assert bool(second.valid[0, 1])

    # episodes in order of ending; end_step = global_step before the rollout + (t + 1) * n_envs
    assert episodes_1 == [Episode(5 * E.REWARD, 5, 5 * 2), Episode(7 * E.REWARD, 7, 7 * 2)]
    assert episodes_2 == [Episode(7 * E.REWARD, 7, 16 + 5 * 2), Episode(5 * E.REWARD, 5, 16 + 5 * 2)]
    agent.close()


def test_training_on_scripted_episodes_counts_whole_episodes():
    """learn() over the same envs: the episode returns and lengths follow the script exactly."""
    agent = PPO(E.ScriptedFactory(), seed=0, n_envs=2, n_steps=8, minibatch_size=16, rolling_window=1000)
    result = agent.learn(64)  # 4 updates x 16 steps; every env runs 32 steps
    returns = result.episode_returns
    assert set(returns) == {5 * E.REWARD, 7 * E.REWARD}
    # per env 32 steps = 5+1 +7+1 +5+1 +7+1 (=28) + 4 more: 4 episodes each
    assert result.episodes == 8 == len(returns)
    agent.close()


def test_learn_rounds_the_budget_up_to_whole_rollouts_and_refuses_less_than_one():
    agent = PPO("CartPole-v1", n_envs=2, n_steps=8, minibatch_size=16, stop_when_solved=False)
    try:
        assert agent.learn(20).total_steps == 32  # two rollouts of 16: at least the 20 asked for
        assert agent.learn(16).total_steps == 48  # a whole number of rollouts: exactly that
        with pytest.raises(ConfigError, match=r"total_steps=15: must be at least one rollout, n_envs \* n_steps = 2 \* 8 = 16"):
            agent.learn(15)
    finally:
        agent.close()
