"""The PPO update on hand-made batches: it improves the surrogate in the right direction,
runs the configured epochs and minibatches, and stops early on target_kl."""

from __future__ import annotations

import pytest
import torch

from ppolab import distributions
from ppolab.algos.ppo import PPOUpdate
from ppolab.config import PPOConfig
from ppolab.policies import ActorCritic
from ppolab.batches import Batch


def make_batch(policy: ActorCritic, n: int = 256, seed: int = 0) -> Batch:
    """Random states; action 0 has advantage +1, action 1 has -1; old log-probs from the policy."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 4, generator=gen)
    actions = torch.randint(0, 2, (n,), generator=gen)
    with torch.no_grad():
        dist, values = policy(obs)
        old_logp = distributions.log_prob(distributions.log_softmax(dist.logits), actions)
    advantages = torch.where(actions == 0, 1.0, -1.0)
    returns = values + advantages
    return Batch(obs, actions, old_logp, values, advantages, returns)


def setup(**overrides) -> tuple[ActorCritic, PPOUpdate, PPOConfig]:
    torch.manual_seed(0)
    config = PPOConfig(n_envs=8, n_steps=32, minibatch_size=64, n_epochs=4, **overrides)
    policy = ActorCritic((4,), 2, config)
    return policy, PPOUpdate(policy, config), config


def prob_of_action0(policy: ActorCritic, obs: torch.Tensor) -> float:
    with torch.no_grad():
        return distributions.log_softmax(policy.distribution(obs).logits)[:, 0].exp().mean().item()


def test_update_moves_probability_towards_positive_advantages():
    policy, update, _ = setup()
    batch = make_batch(policy)
    before = prob_of_action0(policy, batch.observations)
    stats = update.update(batch, lr=1e-3, generator=torch.Generator().manual_seed(0))
    after = prob_of_action0(policy, batch.observations)
    assert after > before + 0.01, (before, after)
    # the diagnostics are finite and in range
    assert stats["clip_fraction"] >= 0.0 and stats["approx_kl"] >= 0.0 and stats["entropy"] > 0.0
    assert all(v == v for v in stats.values())


def test_runs_every_epoch_and_minibatch_without_target_kl():
    policy, update, config = setup()
    stats = update.update(make_batch(policy), lr=1e-3, generator=torch.Generator().manual_seed(0))
    # 256 samples in minibatches of 64: 4 per epoch, 4 epochs
    assert stats["epochs"] == 4 and stats["gradient_steps"] == 16 and stats["stopped_early"] == 0


def test_target_kl_stops_the_epoch_loop():
    policy, update, _ = setup(target_kl=1e-4)
    stats = update.update(make_batch(policy), lr=5e-2, generator=torch.Generator().manual_seed(0))
    assert stats["stopped_early"] == 1
    assert stats["gradient_steps"] < 16 and stats["epochs"] < 4
    assert stats["gradient_steps"] >= 1  # the first minibatch has ratio 1, so KL 0: always one step


def test_the_update_is_the_same_with_the_same_generator_seed():
    results = []
    for _ in range(2):
        policy, update, _ = setup()
        update.update(make_batch(policy), lr=1e-3, generator=torch.Generator().manual_seed(7))
        results.append(torch.cat([p.detach().flatten() for p in policy.parameters()]))
    assert torch.equal(results[0], results[1])  # same machine, same seed, same code path: bit-identical by design


@pytest.mark.parametrize("shared", [False, True])
def test_value_loss_falls_on_a_fixed_batch(shared):
    policy, update, _ = setup(shared_trunk=shared, ent_coef=0.0)
    batch = make_batch(policy)
    batch.returns = 2.0 * batch.observations[:, 0] + 1.0  # a function of the state the critic can fit
    gen = torch.Generator().manual_seed(0)
    first = update.update(batch, lr=3e-3, generator=gen)["value_loss"]
    for _ in range(5):
        last = update.update(batch, lr=3e-3, generator=gen)["value_loss"]
    assert last < 0.5 * first


def test_constant_learning_rate_without_annealing():
    from ppolab import PPO

    rates = []
    agent = PPO("CartPole-v1", seed=0, n_envs=2, n_steps=64, minibatch_size=64, anneal_lr=False,
                learning_rate=1e-3, stop_when_solved=False)
    try:
        agent.learn(512, callback=lambda row: rates.append(row["learning_rate"]))
    finally:
        agent.close()
    assert rates == [1e-3] * 4


# --------------------------------------------------------------------------- PPO-KL and no clipping


@pytest.mark.parametrize("lr, expected", [(1e-6, 0.5), (1e-1, 2.0)], ids=["barely-moved", "moved-far"])
def test_kl_penalty_beta_adapts_in_the_right_direction(lr, expected):
    """beta halves when the update's KL is below kl_target / 1.5 and doubles above 1.5 kl_target."""
    policy, update, config = setup(policy_objective="kl_penalty", kl_target=0.01, kl_beta_init=1.0)
    stats = update.update(make_batch(policy), lr=lr, generator=torch.Generator().manual_seed(0))
    assert stats["kl_beta"] == 1.0  # the coefficient this update used
    assert update.kl_beta == expected * config.kl_beta_init


def probability_moved(**overrides) -> float:
    """How much one update (lr 1e-2) raises the probability of the positive-advantage action."""
    policy, update, _ = setup(**overrides)
    batch = make_batch(policy)
    before = prob_of_action0(policy, batch.observations)
    update.update(batch, lr=1e-2, generator=torch.Generator().manual_seed(0))
    return prob_of_action0(policy, batch.observations) - before


def test_kl_penalty_holds_the_policy_closer_than_no_penalty():
    """A large beta keeps the policy nearer pi_old than the unconstrained surrogate does."""
    free = probability_moved(policy_objective="none")
    penalized = probability_moved(policy_objective="kl_penalty", kl_beta_init=100.0)
    assert free > penalized > 0.0, (free, penalized)


def test_no_clipping_moves_further_than_clipping():
    free = probability_moved(policy_objective="none", clip_coef=0.05)
    clipped = probability_moved(policy_objective="clip", clip_coef=0.05)
    assert free > clipped > 0.0, (free, clipped)


def test_kl_beta_survives_save_and_load():
    policy, update, _ = setup(policy_objective="kl_penalty")
    update.kl_beta = 0.125
    _, other, _ = setup(policy_objective="kl_penalty")
    other.load_state_dict(update.state_dict())
    assert other.kl_beta == 0.125
