"""Population training (ppolab.population): a member is the same algorithm as a lone run.

The comparisons with lone runs are between two computation paths (batched matmuls against
per-agent linear layers), so they use float tolerances, not bit-identity.
"""

from __future__ import annotations

import csv
import json
import math

import envs_for_tests as E
import pytest
import torch

from ppolab import PPO, TRPO, load
from ppolab.errors import ConfigError, EnvironmentFaultError, TrainingDivergedError
from ppolab.evaluation import evaluate
from ppolab.population import Population, why_not
from ppolab.progress import Progress
from ppolab.rundir import RunReporter

DIAGNOSTICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm",
               "explained_variance", "epochs", "gradient_steps", "stopped_early", "rolling_return")
SMALL = dict(n_envs=4, n_steps=64, minibatch_size=64, n_epochs=4)


class Rows:
    """A reporter that keeps the rows (the loop's Reporter protocol, nothing written)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_start(self, agent, total_steps) -> None: ...
    def on_episodes(self, episodes) -> None: ...
    def on_update(self, row) -> None: self.rows.append(row)
    def on_end(self, agent, result) -> None: ...
    def on_diverged(self, agent) -> str: return ""
    def on_fault(self, agent) -> str: return ""


def lone_rows(env, steps, **hyperparameters):
    agent = PPO(env, **hyperparameters)
    rows: list[dict] = []
    try:
        agent.learn(steps, callback=rows.append)
    finally:
        agent.close()
    return agent, rows


def assert_rows_close(lone, member, updates):
    """The first update's diagnostics to float rounding; later ones looser, since rounding
    differences in the weights grow with every step (most in the small differences of
    log-probabilities that the policy loss and KL are)."""
    assert len(lone) == len(member) >= updates
    for k, (a, b) in enumerate(zip(lone[:updates], member[:updates])):
        rel, abs_ = (1e-4, 1e-6) if k == 0 else (3e-3, 1e-5)
        for key in DIAGNOSTICS:
            if a[key] is None:
                assert b[key] is None
            else:
                assert b[key] == pytest.approx(a[key], rel=rel, abs=abs_), (k, key)


@pytest.mark.parametrize(("env", "members"), [
    ("CartPole-v1", [dict(seed=0), dict(seed=1, clip_coef=0.1, learning_rate=1e-3, anneal_lr=False),
                     dict(seed=2, ent_coef=0.01, gamma=0.95, gae_lambda=0.8, vf_coef=1.0, max_grad_norm=0.1),
                     dict(seed=3, normalize_observations=True, normalize_rewards=True, target_kl=0.002)]),
    ("Pendulum-v1", [dict(seed=0, **SMALL), dict(seed=5, **SMALL, learning_rate=3e-3, clip_coef=0.3,
                                                 normalize_observations=True)]),
])
def test_members_train_as_their_lone_runs(env, members):
    """Each member's diagnostics for its first updates, and its weights after them, equal a
    lone run's with the same seed and hyperparameters, to float rounding."""
    steps = 3 * (members[0].get("n_envs", 16) * members[0].get("n_steps", 32))
    agents = [PPO(env, **m) for m in members]
    reporters = [Rows() for _ in agents]
    try:
        outcomes = Population(agents).learn(steps, reporters)
    finally:
        Population(agents).close()
    assert all(o.error is None for o in outcomes)
    for m, agent, reporter, outcome in zip(members, agents, reporters, outcomes):
        lone, rows = lone_rows(env, steps, **m)
        assert_rows_close(rows, reporter.rows, 3)
        assert outcome.result.total_steps == steps and outcome.result.updates == 3
        for p_lone, p_member in zip(lone.policy.parameters(), agent.policy.parameters()):
            torch.testing.assert_close(p_member, p_lone, rtol=1e-3, atol=1e-4)
        assert agent.algorithm.optimizer.step_count == lone.algorithm.optimizer.step_count


def test_per_member_learning_rate_and_gradient_clip_are_applied():
    """Members that share a seed and differ in one setting take different steps, each the lone
    run's with that setting."""
    for key, values in (("learning_rate", (1e-3, 1e-2)), ("max_grad_norm", (0.05, 10.0))):
        settings = [{"seed": 0, key: v} for v in values]
        agents = [PPO("CartPole-v1", **s) for s in settings]
        reporters = [Rows(), Rows()]
        Population(agents).learn(512, reporters)
        assert reporters[0].rows[0]["approx_kl"] != pytest.approx(reporters[1].rows[0]["approx_kl"], rel=0.05), key
        assert not torch.allclose(agents[0].policy.policy_head.weight, agents[1].policy.policy_head.weight)
        for s, agent, reporter in zip(settings, agents, reporters):
            lone, rows = lone_rows("CartPole-v1", 512, **s)
            assert_rows_close(rows, reporter.rows, 1)
            for a, b in zip(lone.policy.parameters(), agent.policy.parameters()):
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
            agent.close()


def test_a_member_stopped_by_target_kl_stops_alone():
    """target_kl stops one member's epochs (a masked step) while the other takes all of its."""
    agents = [PPO("CartPole-v1", seed=0, target_kl=1e-4), PPO("CartPole-v1", seed=1)]
    reporters = [Rows(), Rows()]
    Population(agents).learn(512, reporters)
    stopped, full = reporters[0].rows[0], reporters[1].rows[0]
    assert stopped["stopped_early"] == 1.0 and stopped["gradient_steps"] < 8
    assert full["stopped_early"] == 0.0 and full["gradient_steps"] == 8 and full["epochs"] == 8
    assert_rows_close(lone_rows("CartPole-v1", 512, seed=0, target_kl=1e-4)[1], reporters[0].rows, 1)


def test_a_member_that_diverges_or_faults_leaves_and_the_others_go_on():
    """A member with a poisoned network diverges at its first update, a member whose env
    faults at its 37th step stops with the lone run's error; the third trains to the end."""
    common = dict(n_envs=4, n_steps=8, minibatch_size=16, n_epochs=2)
    healthy = PPO("envs_for_tests:StepRaisesEnv", seed=10, **common)  # sub-env seeds 10-13: none faulty
    faulty = PPO("envs_for_tests:StepRaisesEnv", seed=0, **common)  # sub-env 2 raises at its step 37
    poisoned = PPO("envs_for_tests:StepRaisesEnv", seed=20, **common)
    with torch.no_grad():
        poisoned.policy.value_head.weight.fill_(math.inf)
    outcomes = Population([healthy, faulty, poisoned]).learn(10 * 32)
    assert outcomes[0].error is None and outcomes[0].result.updates == 10
    assert isinstance(outcomes[1].error, EnvironmentFaultError)
    assert str(outcomes[1].error).startswith(f"env {E.FAULTY_SEED} raised ValueError: simulated physics blew up "
                                             f"in step() at step {(E.FAULT_CALL - 1) * 4}")
    assert faulty.updates == (E.FAULT_CALL - 1) // 8
    assert isinstance(outcomes[2].error, TrainingDivergedError)
    assert str(outcomes[2].error).startswith("training diverged at update 1 (step 32): non-finite loss")
    assert poisoned.updates == 0
    Population([healthy]).close()
    faulty.close()
    poisoned.close()


def test_each_member_leaves_an_ordinary_run_directory(tmp_path):
    agents = [PPO("CartPole-v1", seed=s, clip_coef=c, checkpoint_every=2) for s, c in ((0, 0.1), (1, 0.3))]
    reporters = []
    for k, agent in enumerate(agents):
        reporter = RunReporter(tmp_path / f"m{k}", Progress(f"m{k}", quiet=True))
        agent.plan(5 * 512)
        reporter.create(agent)
        reporters.append(reporter)
    population = Population(agents)
    outcomes = population.learn(5 * 512, reporters)
    population.close()
    for k, (agent, outcome) in enumerate(zip(agents, outcomes)):
        run = tmp_path / f"m{k}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["total_steps"] == 5 * 512 == outcome.result.total_steps
        with open(run / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [int(r["update"]) for r in rows] == [1, 2, 3, 4, 5]
        assert (run / "learning_curve.png").is_file() and (run / "tensorboard").is_dir()
        loaded = load(run)
        assert loaded.config.clip_coef == agent.config.clip_coef and loaded.global_step == 5 * 512
        for a, b in zip(loaded.policy.parameters(), agent.policy.parameters()):
            assert torch.equal(a, b)  # what was saved is the member's own weights
        assert (evaluate(loaded, episodes=2, seed=7, deterministic=True).returns
                == evaluate(agent, episodes=2, seed=7, deterministic=True).returns)
        # a member's checkpoint resumes as a lone run, continuing its episodes, and goes on as
        # the member did (to the drift of two float paths)
        resumed = PPO.load(run / "checkpoints" / "ckpt-000000002.pt", env="CartPole-v1")
        rows: list[dict] = []
        result = resumed.resume(callback=rows.append)
        assert result.total_steps == 5 * 512 and [r["update"] for r in rows] == [3, 4, 5]
        with open(run / "metrics.csv", newline="") as f:
            member_rows = [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]
        for mine, theirs in zip(rows, member_rows[2:]):
            for key in ("policy_loss", "value_loss", "approx_kl", "clip_fraction"):
                assert mine[key] == pytest.approx(theirs[key], rel=3e-3, abs=1e-5), key
        resumed.close()


def test_agents_that_cannot_share_a_population_are_refused_with_the_reason():
    cartpole = PPO("CartPole-v1")
    cases = [
        ([cartpole, PPO("CartPole-v1", n_envs=32)], "n_envs differs (16 and 32)"),
        ([cartpole, PPO("CartPole-v1", hidden_sizes=(32,))], "hidden_sizes differs"),
        ([cartpole, PPO("CartPole-v1", recurrent="lstm")], "recurrent policies train one per process"),
        ([cartpole, TRPO("CartPole-v1")], "TRPO agents train one per process"),
        ([cartpole, PPO("CartPole-v1", policy_objective="kl_penalty")], "policy_objective=kl_penalty"),
        ([cartpole, PPO("Acrobot-v1", config=cartpole.config)], "the same observation and action spaces"),
        ([PPO("envs_for_tests:TinyImageEnv", cnn_channels=(4,), cnn_kernels=(3,), cnn_strides=(1,))],
         "observations train one per process"),
        ([], "at least one agent"),
    ]
    for agents, reason in cases:
        assert reason in why_not(agents)
        with pytest.raises(ConfigError, match="cannot train as one population"):
            Population(agents)
        for agent in agents:
            agent.close()
    assert why_not([PPO("CartPole-v1", seed=s, learning_rate=lr) for s, lr in ((0, 1e-3), (1, 3e-3))]) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_members_on_a_gpu_train_as_their_lone_runs():
    members = [dict(seed=0, device="cuda"), dict(seed=1, device="cuda", clip_coef=0.1, target_kl=0.01)]
    agents = [PPO("CartPole-v1", **m) for m in members]
    reporters = [Rows() for _ in agents]
    outcomes = Population(agents).learn(2 * 512, reporters)
    assert all(o.error is None for o in outcomes)
    for m, reporter in zip(members, reporters):
        assert_rows_close(lone_rows("CartPole-v1", 2 * 512, **m)[1], reporter.rows, 2)
