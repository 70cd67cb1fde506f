"""TRPO, A2C and VPG on the shared machinery: each update does what its objective says, the
trust region holds, every algorithm saves, loads and reports through the same paths as PPO."""

from __future__ import annotations

import math

import pytest
import torch

import ppolab
from ppolab import A2C, PPO, TRPO, VPG, Agent
from ppolab.algos import trpo as trpo_module
from ppolab.config import A2CConfig, TRPOConfig, VPGConfig
from ppolab.errors import ConfigError, ModelFileError
from ppolab.metrics import metric_columns

SMALL = dict(n_envs=4, n_steps=64)  # 256 steps per update


def collect_batch(agent: Agent):
    """One real rollout of ``agent`` on its env, as the training loop builds it."""
    from ppolab import advantages
    from ppolab.batches import to_batch

    rollout, _ = agent.collector.collect(0)
    c = agent.config
    adv = advantages.estimate_advantages(c.advantage_estimator, rollout.rewards, rollout.values,
                                         rollout.next_values, rollout.terminated, rollout.episode_end,
                                         c.gamma, c.gae_lambda, c.n_step)
    return to_batch(rollout, adv, advantages.value_targets(adv, rollout.values))


def actor_vector(agent: Agent) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in agent.policy.actor_parameters()]).clone()


def mean_kl(agent: Agent, batch, old) -> float:
    """Mean KL(pi_old || pi_now) over the batch's states, ``old`` a frozen distribution."""
    with torch.no_grad():
        return old.kl(agent.policy.distribution(batch.observations)).mean().item()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_trpo_step_stays_in_the_trust_region_and_improves_the_surrogate(env_id, seed):
    agent = TRPO(env_id, seed=seed, max_kl=0.01, **SMALL)
    try:
        batch = collect_batch(agent)
        policy = agent.policy
        with torch.no_grad():
            old = policy.distribution(batch.observations).detach()
        stats = agent.algorithm.update(batch, agent.config.learning_rate, agent.generator)
        kl = mean_kl(agent, batch, old)
    finally:
        agent.close()
    assert stats["accepted"] == 1.0
    assert 0.0 < kl <= 0.01 and kl == pytest.approx(stats["kl"], rel=1e-4)
    assert stats["actual_improvement"] > 0.0 and stats["expected_improvement"] > 0.0
    assert 1 <= stats["line_search_steps"] <= agent.config.line_search_steps


def test_trpo_rejects_a_step_that_breaks_the_trust_region(monkeypatch):
    """A full step far outside the trust region, with one line-search try: the old policy stays."""
    real = trpo_module.step_to_trust_region_boundary
    monkeypatch.setattr(trpo_module, "step_to_trust_region_boundary", lambda *a: 100.0 * real(*a))
    agent = TRPO("CartPole-v1", seed=0, line_search_steps=1, **SMALL)
    try:
        batch = collect_batch(agent)
        before = actor_vector(agent)
        critic_before = agent.policy.value_head.weight.detach().clone()
        stats = agent.algorithm.update(batch, agent.config.learning_rate, agent.generator)
    finally:
        agent.close()
    assert stats["accepted"] == 0.0 and stats["step_fraction"] == 0.0 and stats["line_search_steps"] == 1
    assert torch.equal(actor_vector(agent), before)  # restored by a copy: bit-identical by design
    assert not torch.equal(agent.policy.value_head.weight, critic_before)  # the critic still learns


@pytest.mark.parametrize("cls, optimizer", [(A2C, "rmsprop"), (A2C, "adam"), (VPG, None)],
                         ids=["a2c-rmsprop", "a2c-adam", "vpg"])
def test_policy_gradient_step_ascends_the_policy_gradient_objective(cls, optimizer):
    """After one small step, E[(log pi_new - log pi_old) A] > 0: probability moved towards the
    actions with positive advantage (the first-order effect of the policy-gradient step)."""
    from ppolab.batches import normalized

    extra = {"optimizer": optimizer} if optimizer else {}
    agent = cls("CartPole-v1", seed=0, **SMALL, **extra)
    try:
        batch = collect_batch(agent)
        policy = agent.policy
        stats = agent.algorithm.update(batch, 1e-4, agent.generator)
        with torch.no_grad():
            new_logp = policy.distribution(batch.observations).log_prob(batch.actions)
    finally:
        agent.close()
    used = normalized(batch.advantages) if agent.config.normalize_advantages else batch.advantages
    assert ((new_logp - batch.log_probs) * used).mean() > 0
    assert stats["approx_kl"] > 0 and all(math.isfinite(v) for v in stats.values())


@pytest.mark.parametrize("cls", [TRPO, A2C, VPG], ids=["trpo", "a2c", "vpg"])
def test_learn_reports_its_statistics_and_round_trips_through_a_model_file(cls, tmp_path):
    agent = cls("CartPole-v1", seed=0, **SMALL)
    rows = []
    try:
        agent.learn(1024, callback=rows.append)
        path = agent.save(tmp_path / "model.pt")
    finally:
        agent.close()
    assert len(rows) == 4 and set(rows[0]) == set(metric_columns(agent.algorithm.STATS))
    assert all(math.isfinite(v) for row in rows for v in row.values() if v is not None)
    loaded = ppolab.load(path)  # dispatches on the algorithm in the file
    assert type(loaded) is cls and loaded.config == agent.config
    obs = torch.randn(16, 4).numpy()
    # the same weights through the same code on the same machine: bit-identical by design
    assert (loaded.predict(obs) == agent.predict(obs)).all()
    continued = cls.load(path, env="CartPole-v1")
    try:
        assert continued.learn(256).total_steps == 1024 + 256
    finally:
        continued.close()
    with pytest.raises(ModelFileError, match="not 'ppo'"):
        PPO.load(path)


def test_configs_refuse_what_their_algorithm_cannot_do():
    with pytest.raises(ConfigError, match="shared_trunk"):
        TRPOConfig(shared_trunk=True)
    with pytest.raises(ConfigError, match="optimizer"):
        A2CConfig(optimizer="sgd")
    with pytest.raises(ConfigError, match="max_kl"):
        TRPOConfig(max_kl=0)
    with pytest.raises(ConfigError, match="backtrack_coef"):
        TRPOConfig(backtrack_coef=1.0)
    with pytest.raises(ConfigError, match="vf_minibatch_size"):
        VPGConfig(n_envs=1, n_steps=8, vf_minibatch_size=64)
    with pytest.raises(ConfigError, match="clip_coef.*belongs to ppo"):
        TRPOConfig().replace(clip_coef=0.1)
    with pytest.raises(ConfigError, match="TRPOConfig"):
        TRPO("CartPole-v1", config=A2CConfig())


def test_loading_a_model_of_an_unknown_algorithm_names_the_known_ones(tmp_path):
    from ppolab import modelfile

    agent = A2C("CartPole-v1", seed=0, **SMALL)
    try:
        path = agent.save(tmp_path / "model.pt")
    finally:
        agent.close()
    data = modelfile.load(path)
    data["algo"] = "sac"
    modelfile.save(path, data)
    with pytest.raises(ModelFileError, match="'sac' model; this ppolab knows ppo, trpo, a2c, vpg"):
        ppolab.load(path)


def test_every_algorithm_has_a_config_class_and_an_agent():
    from ppolab.config import CONFIG_CLASSES

    assert set(Agent.registry) == set(CONFIG_CLASSES) == {"ppo", "trpo", "a2c", "vpg"}
    assert all(Agent.registry[a].config_class is CONFIG_CLASSES[a] for a in CONFIG_CLASSES)

    class MyPPO(PPO):  # a user's subclass does not take PPO's place
        pass

    assert Agent.registry["ppo"] is PPO


@pytest.mark.parametrize("cls, extra", [(PPO, {"policy_objective": "kl_penalty", "minibatch_size": 64}),
                                        (TRPO, {}), (VPG, {})],
                         ids=["ppo-kl", "trpo", "vpg"])
def test_optimizer_states_survive_a_model_file(cls, extra, tmp_path):
    """kl_beta, the critic's Adam moments (TRPO) and both optimizers (VPG) come back from disk."""
    agent = cls("CartPole-v1", seed=0, **SMALL, **extra)
    try:
        agent.learn(512)
        if cls is PPO:
            agent.algorithm.kl_beta = 0.375  # a value no adaptation from 1.0 produces
        before = agent.algorithm.state_dict()
        loaded = Agent.load(agent.save(tmp_path / "model.pt"))
    finally:
        agent.close()
    after = loaded.algorithm.state_dict()

    def flat(state):
        return {k: v for k, v in state.items()} if "policy" not in state else {
            f"{part}.{k}": v for part in ("policy", "critic") for k, v in state[part].items()}

    before, after = flat(before), flat(after)
    assert before.keys() == after.keys()
    n_buffers = 0
    for key, value in before.items():
        if isinstance(value, list) and all(isinstance(v, torch.Tensor) for v in value):  # one per parameter
            assert len(value) == len(after[key]) > 0, key
            for i, (b, a) in enumerate(zip(value, after[key])):
                # saved and loaded, not recomputed: bit-identical
                assert torch.equal(b, a) and b.abs().sum() > 0, (key, i)
            n_buffers += 1
        else:
            assert not isinstance(value, torch.Tensor), key
            assert value == after[key], key
    assert n_buffers == {PPO: 2, TRPO: 2, VPG: 4}[cls]  # Adam's two moments per optimizer
    if cls is PPO:
        assert after["kl_beta"] == 0.375
