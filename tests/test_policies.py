"""ActorCritic: PPO's orthogonal initialization, trunk sharing, and shapes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ppolab import distributions
from ppolab.config import PPOConfig
from ppolab.policies import ActorCritic


@pytest.fixture(autouse=True)
def one_thread():
    """Multi-threaded LAPACK QR (orthogonal_) takes ~0.2 s per 64x64 layer on these 2-core
    machines versus ~0.3 ms single-threaded; ppolab itself builds the policy after
    torch.set_num_threads(cfg.torch_threads), so do the same here and restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make(obs_shape=(4,), n_actions=3, seed=0, **cfg) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(obs_shape, n_actions, PPOConfig(**cfg))


def linears(seq: nn.Sequential) -> list[nn.Linear]:
    return [m for m in seq if isinstance(m, nn.Linear)]


# orthogonal_ is a float32 QR: W W^T deviates from gain^2 I by up to ~1e-6 * gain^2 (measured over
# 300 seeds and several MKL / ATen kernel paths); a wrong gain or a non-orthogonal init is off by
# 1e-2 or more.
ORTHO_RTOL = 1e-5


def assert_same_outputs(got: torch.Tensor, expected: torch.Tensor, scale: float) -> None:
    """The same network outputs computed along two paths (one row alone vs inside a batch, a
    helper vs forward): equal up to float32 summation order, which differs across CPUs and BLAS
    kernels (MKL vs oneDNN, AVX2 vs AVX-512; issue 12: -0.0013 alone and in a batch differed
    by more than allclose's default atol=1e-8). ``scale`` is the size of the outputs (values ~1,
    logits ~1e-2 with the 0.01 head gain); the measured gap is below 5e-7 * scale, and a real
    error (rows mixed up, a layer skipped) moves them by 1e-2 * scale or more."""
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * scale)


def assert_orthogonal(w: torch.Tensor, gain: float) -> None:
    """Rows orthogonal with norm ``gain`` for a wide/square matrix [out <= in]; columns for a
    tall one [out > in] (an orthogonal matrix truncated to the shape)."""
    w = w.detach().double()
    out, inp = w.shape
    gram = w @ w.T if out <= inp else w.T @ w
    eye = torch.eye(min(out, inp), dtype=torch.float64)
    assert torch.allclose(gram, gain**2 * eye, rtol=0, atol=ORTHO_RTOL * max(gain**2, 1e-4)), (w.shape, gain)


@pytest.mark.parametrize("shared", [False, True])
def test_hidden_layers_are_orthogonal_with_gain_sqrt2_and_zero_bias(shared):
    # obs 4 -> 64 (tall), 64 -> 64 (square), 64 -> 16 (wide)
    policy = make(hidden_sizes=(64, 64, 16), shared_trunk=shared)
    trunks = [policy.actor_trunk] + ([] if shared else [policy.critic_trunk])
    for trunk in trunks:
        layers = linears(trunk)
        assert [tuple(layer.weight.shape) for layer in layers] == [(64, 4), (64, 64), (16, 64)]
        for layer in layers:
            assert_orthogonal(layer.weight, math.sqrt(2))
            assert torch.count_nonzero(layer.bias) == 0
    square = linears(policy.actor_trunk)[1].weight.detach().double()
    # square: both W W^T and W^T W are 2 I
    assert torch.allclose(square.T @ square, 2 * torch.eye(64, dtype=torch.float64), rtol=0, atol=ORTHO_RTOL * 2)


def test_wide_first_layer_is_orthogonal_on_rows():
    policy = make(obs_shape=(100,), hidden_sizes=(32,))
    w = linears(policy.actor_trunk)[0].weight.detach().double()
    assert w.shape == (32, 100)
    assert torch.allclose(w @ w.T, 2 * torch.eye(32, dtype=torch.float64), rtol=0, atol=ORTHO_RTOL * 2)
    # every row has norm sqrt(2)
    assert torch.allclose(w.norm(dim=1), torch.full((32,), math.sqrt(2), dtype=torch.float64), rtol=ORTHO_RTOL, atol=0)


def test_policy_head_gain_001_and_value_head_gain_1():
    policy = make(n_actions=6, hidden_sizes=(64, 64))
    w_pi = policy.policy_head.weight.detach().double()
    assert w_pi.shape == (6, 64)
    assert_orthogonal(w_pi, 0.01)
    assert torch.allclose(w_pi.norm(dim=1), torch.full((6,), 0.01, dtype=torch.float64), rtol=ORTHO_RTOL, atol=0)
    assert torch.count_nonzero(policy.policy_head.bias) == 0

    w_v = policy.value_head.weight.detach().double()
    assert w_v.shape == (1, 64)
    assert w_v.norm().item() == pytest.approx(1.0, rel=ORTHO_RTOL)
    assert torch.count_nonzero(policy.value_head.bias) == 0


def test_initial_policy_is_near_uniform():
    policy = make(n_actions=4)
    obs = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    entropy = distributions.entropy(distributions.log_softmax(policy.distribution(obs).logits))
    # head gain 0.01 keeps logits ~1e-2, so the entropy is within 1e-3 of log 4
    assert entropy.min().item() > math.log(4) - 1e-3


def test_actor_and_critic_trunks_are_separate_networks():
    policy = make()
    a, c = linears(policy.actor_trunk)[0].weight, linears(policy.critic_trunk)[0].weight
    assert a.data_ptr() != c.data_ptr() and not torch.allclose(a, c)
    # the value loss does not touch the actor
    obs = torch.randn(8, 4)
    policy.value(obs).pow(2).mean().backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0
               for p in list(policy.actor_trunk.parameters()) + list(policy.policy_head.parameters()))
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in policy.critic_trunk.parameters())


def test_shared_trunk_has_no_critic_trunk_and_fewer_parameters():
    separate = make(hidden_sizes=(64, 64))
    shared = make(hidden_sizes=(64, 64), shared_trunk=True)
    assert shared.critic_trunk is None and separate.critic_trunk is not None
    n_sep = sum(p.numel() for p in separate.parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    trunk = (4 * 64 + 64) + (64 * 64 + 64)
    heads = (64 * 3 + 3) + (64 + 1)
    assert n_shared == trunk + heads
    assert n_sep == 2 * trunk + heads
    # the shared trunk receives gradient from the value loss
    obs = torch.randn(8, 4)
    shared.value(obs).pow(2).mean().backward()
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in shared.actor_trunk.parameters())


@pytest.mark.parametrize("shared", [False, True])
def test_forward_shapes_for_time_major_input(shared):
    T, N, A = 5, 3, 2
    policy = make(obs_shape=(4,), n_actions=A, shared_trunk=shared)
    obs = torch.randn(T, N, 4)
    dist, values = policy(obs)
    assert isinstance(dist, distributions.Categorical)
    logits = dist.logits
    assert logits.shape == (T, N, A) and values.shape == (T, N)
    # the single-output helpers agree with forward
    assert_same_outputs(policy.value(obs), values, scale=1.0)
    assert_same_outputs(policy.distribution(obs).logits, logits, scale=1e-2)
    # row-independent: evaluating one (t, n) alone gives the same numbers, up to summation order
    d1, v1 = policy(obs[2, 1])
    assert_same_outputs(d1.logits, logits[2, 1], scale=1e-2)
    assert_same_outputs(v1, values[2, 1], scale=1.0)


def test_multidimensional_observations_are_flattened():
    policy = make(obs_shape=(2, 3), n_actions=4)
    obs = torch.randn(5, 3, 2, 3)
    dist, values = policy(obs)
    logits = dist.logits
    assert logits.shape == (5, 3, 4) and values.shape == (5, 3)
    assert linears(policy.actor_trunk)[0].in_features == 6
    (one, _), flat_values = policy(obs[0, 0]), policy.value(obs[0, 0])
    flat_logits = one.logits
    # one observation alone vs inside the batch: equal up to summation order
    assert_same_outputs(flat_logits, logits[0, 0], scale=1e-2)
    assert_same_outputs(flat_values, values[0, 0], scale=1.0)


@pytest.mark.parametrize("activation, cls", [("tanh", nn.Tanh), ("relu", nn.ReLU)])
def test_activation(activation, cls):
    policy = make(activation=activation, hidden_sizes=(8, 8))
    acts = [m for m in policy.actor_trunk if not isinstance(m, nn.Linear)]
    assert len(acts) == 2 and all(isinstance(m, cls) for m in acts)


def test_no_hidden_layers_the_heads_read_the_observation():
    policy = make(obs_shape=(4,), n_actions=3, hidden_sizes=())
    assert len(policy.actor_trunk) == 0 and len(policy.critic_trunk) == 0
    assert policy.policy_head.weight.shape == (3, 4) and policy.value_head.weight.shape == (1, 4)
    obs = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    dist, values = policy(obs)
    # linear in the observation: the heads' layers and nothing else
    w, b = policy.policy_head.weight, policy.policy_head.bias
    assert_same_outputs(dist.logits, obs @ w.T + b, scale=1e-2)
    assert_same_outputs(values, (obs @ policy.value_head.weight.T + policy.value_head.bias).squeeze(-1), scale=1.0)
    assert sum(p.numel() for p in policy.parameters()) == (4 * 3 + 3) + (4 + 1)


@pytest.mark.parametrize("shared", [False, True])
def test_actor_and_critic_parameters_split_the_network(shared):
    policy = make(hidden_sizes=(8, 8), shared_trunk=shared)
    actor, critic = policy.actor_parameters(), policy.critic_parameters()
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert not ids(actor) & ids(critic)  # disjoint
    assert ids(actor) | ids(critic) == ids(policy.parameters())  # and together everything
    assert ids(policy.policy_head.parameters()) <= ids(actor)
    own_trunk = set() if shared else ids(policy.critic_trunk.parameters())
    assert ids(critic) == ids(policy.value_head.parameters()) | own_trunk
    assert policy.critic_encoder is None  # one encoder by default (shared_encoder)
    assert policy.device == torch.device("cpu")


def test_a_box_head_owns_the_learned_log_std():
    from ppolab.action_spaces import ActionSpec

    spec = ActionSpec("box", low=(-1.0, -2.0), high=(1.0, 2.0))
    torch.manual_seed(0)
    policy = ActorCritic((4,), spec, PPOConfig(hidden_sizes=(8,), log_std_init=-0.7))
    log_std = policy.policy_head.log_std
    assert isinstance(log_std, nn.Parameter) and torch.equal(log_std.detach(), torch.full((2,), -0.7))
    assert any(p is log_std for p in policy.actor_parameters())
    assert all(p is not log_std for p in policy.critic_parameters())
    obs = torch.randn(5, 4)
    dist, _ = policy(obs)
    assert isinstance(dist, distributions.DiagGaussian) and dist.mean.shape == (5, 2)
    torch.testing.assert_close(dist.log_std, torch.full((5, 2), -0.7))  # state-independent
    # the log-prob's gradient reaches the log-std parameter
    dist.log_prob(torch.zeros(5, 2)).sum().backward()
    assert log_std.grad is not None and torch.count_nonzero(log_std.grad) == 2
    # no log-std for discrete actions
    assert not hasattr(make().policy_head, "log_std")
