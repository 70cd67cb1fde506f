"""Action spaces: what the policy stores, what the env receives, and round trips through files."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppolab import PPO
from ppolab.action_spaces import ActionSpec
from ppolab.distributions import Categorical, DiagGaussian, MultiCategorical, PolicyHead
from ppolab.errors import EnvironmentSpecError


def distribution_for(spec: ActionSpec, head: torch.Tensor, log_std: torch.Tensor | None = None):
    """The distribution that a :class:`PolicyHead` for ``spec`` makes when its linear layer
    outputs ``head`` (identity weights, zero bias) and, for Box actions, its log-std is ``log_std``."""
    policy_head = PolicyHead(spec.head_dim, spec)
    with torch.no_grad():
        policy_head.weight.copy_(torch.eye(spec.head_dim))
        policy_head.bias.zero_()
        if log_std is not None and spec.kind == "box":
            policy_head.log_std.copy_(log_std)
    dist = policy_head(head)
    expected_type = {"discrete": Categorical, "multidiscrete": MultiCategorical, "box": DiagGaussian}[spec.kind]
    assert type(dist) is expected_type
    return dist


def test_specs_from_spaces():
    assert ActionSpec.from_space(gym.spaces.Discrete(3, start=1)) == ActionSpec("discrete", (3,), (1,))
    multi = ActionSpec.from_space(gym.spaces.MultiDiscrete([3, 4]))
    assert (multi.kind, multi.nvec, multi.head_dim, multi.shape) == ("multidiscrete", (3, 4), 7, (2,))
    box = ActionSpec.from_space(gym.spaces.Box(-2.0, 1.0, shape=(3,)))
    assert (box.kind, box.low, box.high, box.head_dim, box.shape) == ("box", (-2.0,) * 3, (1.0,) * 3, 3, (3,))
    assert box.dtype == torch.float32 and multi.dtype == torch.long


@pytest.mark.parametrize("space", [
    gym.spaces.Box(-1.0, 1.0, shape=(2, 2)),
    gym.spaces.Tuple((gym.spaces.Discrete(2),)),
    gym.spaces.MultiBinary(3),
])
def test_unsupported_action_spaces_are_refused(space):
    with pytest.raises(EnvironmentSpecError) as info:
        ActionSpec.from_space(space)
    assert "unsupported action space" in str(info.value) and "Box" in str(info.value)


def test_squashing_needs_finite_bounds():
    with pytest.raises(EnvironmentSpecError) as info:
        ActionSpec.from_space(gym.spaces.Box(-np.inf, np.inf, shape=(2,)), squash=True)
    assert "finite action bounds" in str(info.value)


def test_box_actions_are_clipped_for_the_env_but_stored_unclipped():
    spec = ActionSpec.from_space(gym.spaces.Box(-1.0, 1.0, shape=(2,)))
    mean, log_std = torch.tensor([[3.0, -3.0]]), torch.zeros(2)
    with torch.no_grad():  # as when acting
        dist = distribution_for(spec, mean, log_std)
        action = dist.sample(torch.Generator().manual_seed(0))
        logp = dist.log_prob(action)
    assert not dist.squash
    assert np.all(np.abs(spec.to_env(action.numpy())) <= 1.0)
    # the stored sample is the unclipped one, and its log-prob is the Gaussian's
    expected = -0.5 * ((action - mean) ** 2).sum() - 2 * 0.5 * math.log(2 * math.pi)
    assert torch.allclose(logp, expected.reshape(1), atol=1e-5)
    again = DiagGaussian(mean, log_std).log_prob(action)
    assert torch.allclose(again, logp)
    assert dist.mode().tolist() == [[3.0, -3.0]]


def test_squashed_actions_map_into_the_bounds():
    spec = ActionSpec.from_space(gym.spaces.Box(0.0, 4.0, shape=(1,)), squash=True)
    u = np.array([[-50.0], [0.0], [50.0]], dtype=np.float32)
    assert spec.to_env(u).ravel().tolist() == pytest.approx([0.0, 2.0, 4.0])
    assert distribution_for(spec, torch.zeros(1, 1)).squash  # the head scores the pre-squash sample


def test_multidiscrete_offsets_reach_the_env():
    spec = ActionSpec.from_space(gym.spaces.MultiDiscrete([2, 3], start=[1, -1]))
    assert spec.to_env(np.array([[0, 0], [1, 2]])).tolist() == [[1, -1], [2, 1]]
    head = torch.tensor([[0.0, 5.0, 5.0, 0.0, 0.0]])
    assert distribution_for(spec, head).mode().tolist() == [[1, 0]]


@pytest.mark.parametrize("env_id, squash", [
    ("envs_for_tests:TargetBoxEnv", False),
    ("envs_for_tests:TargetBoxEnv", True),
    ("envs_for_tests:MatchMultiDiscreteEnv", False),
])
def test_save_load_predict_round_trip(tmp_path, env_id, squash):
    agent = PPO(env_id, seed=0, n_envs=2, n_steps=32, minibatch_size=32, squash_actions=squash)
    agent.learn(128)
    path = agent.save(tmp_path / "model.pt")
    loaded = PPO.load(path)
    obs = np.stack([agent.vec_env.single_observation_space.sample() for _ in range(5)])
    # the same weights through the same code on the same machine: bit-identical by design
    np.testing.assert_array_equal(loaded.predict(obs), agent.predict(obs))
    space = agent.vec_env.single_action_space
    assert all(space.contains(a.astype(space.dtype)) for a in loaded.predict(obs, deterministic=False))
    agent.close()


def test_gaussian_log_std_is_learned_and_initialized_from_config():
    agent = PPO("envs_for_tests:TargetBoxEnv", seed=0, n_envs=2, n_steps=32, minibatch_size=32, log_std_init=-0.5)
    assert torch.allclose(agent.policy.policy_head.log_std, torch.full((2,), -0.5))
    agent.learn(256)
    assert not torch.allclose(agent.policy.policy_head.log_std, torch.full((2,), -0.5))
    agent.close()


@pytest.mark.parametrize("space, squash", [
    (gym.spaces.Discrete(4), False),
    (gym.spaces.MultiDiscrete([3, 2]), False),
    (gym.spaces.Box(-1.0, 1.0, (2,)), False),
    (gym.spaces.Box(-1.0, 1.0, (2,)), True),
])
def test_policy_kl_against_torch_distributions(space, squash):
    """dist.kl(other) is the exact KL(dist || other), per state, for every action space."""
    spec = ActionSpec.from_space(space, squash=squash)
    g = torch.Generator().manual_seed(0)
    old_head, head = torch.randn(5, spec.head_dim, generator=g), torch.randn(5, spec.head_dim, generator=g)
    old_log_std, log_std = torch.randn(spec.head_dim, generator=g) * 0.3, torch.randn(spec.head_dim, generator=g) * 0.3

    def make(h: torch.Tensor, s: torch.Tensor):
        return distribution_for(spec, h, s)

    got = make(old_head, old_log_std).kl(make(head, log_std))
    td = torch.distributions
    if spec.kind == "box":
        expected = td.kl_divergence(td.Normal(old_head, old_log_std.exp()), td.Normal(head, log_std.exp())).sum(-1)
    else:
        sizes = [space.n] if spec.kind == "discrete" else list(space.nvec)
        expected = sum(td.kl_divergence(td.Categorical(logits=a), td.Categorical(logits=b))
                       for a, b in zip(old_head.split(sizes, -1), head.split(sizes, -1)))
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(make(head, log_std).kl(make(head, log_std)), torch.zeros(5), atol=1e-6)
