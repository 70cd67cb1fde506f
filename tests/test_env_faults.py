"""Environments that misbehave while training (issue 5): NaN/inf observations or rewards, an
observation of the wrong shape, an exception in ``step`` or ``reset``. Each fault is triggered for
real at a known step (see ``envs_for_tests._FaultAtCall``) and must stop training with an
EnvironmentFaultError naming the env index, the step and the value, keeping the last good state.
"""

from __future__ import annotations

import envs_for_tests as E
import gymnasium as gym
import numpy as np
import pytest
import torch

from ppolab import PPO, load
from ppolab.errors import EnvironmentFaultError

N_ENVS, N_STEPS = 4, 16
SMALL = {"seed": 0, "n_envs": N_ENVS, "n_steps": N_STEPS, "minibatch_size": 32}
# The faulty env's FAULT_CALL-th step is vector step FAULT_CALL - 1; the env steps before it:
FAULT_STEP = (E.FAULT_CALL - 1) * N_ENVS  # 144
UPDATES_BEFORE = (E.FAULT_CALL - 1) // N_STEPS  # 2 complete rollouts and updates
ENV = E.FAULTY_SEED  # seed 0: sub-env i is first reset with seed i

EXPECTED = {
    "NaNObsEnv": f"env {ENV} returned a non-finite observation at step {FAULT_STEP}: observation[1] = nan",
    "InfObsEnv": f"env {ENV} returned a non-finite observation at step {FAULT_STEP}: observation[0] = inf",
    "NaNRewardAtEnv": f"env {ENV} returned a non-finite reward at step {FAULT_STEP}: reward = nan",
    "InfRewardAtEnv": f"env {ENV} returned a non-finite reward at step {FAULT_STEP}: reward = -inf",
    "WrongShapeObsEnv": f"env {ENV} returned an observation of shape (3,) instead of (4,) (its observation "
                        f"space's shape) from step() at step {FAULT_STEP}",
    "StepRaisesEnv": f"env {ENV} raised ValueError: simulated physics blew up in step() at step {FAULT_STEP}",
    # The episode ends at the faulty step; the autoreset one vector step later raises.
    "ResetRaisesEnv": f"env {ENV} raised RuntimeError: cannot restart the simulator in reset() "
                      f"at step {FAULT_STEP + N_ENVS}",
}


def finite_weights(agent) -> bool:
    params = list(agent.policy.parameters())
    return bool(params) and all(bool(torch.isfinite(p).all()) for p in params)


def learn_until_fault(source, **overrides) -> tuple[PPO, str]:
    agent = PPO(source, **{**SMALL, **overrides})
    try:
        with pytest.raises(EnvironmentFaultError) as excinfo:
            agent.learn(50 * N_ENVS * N_STEPS)
    finally:
        agent.close()
    return agent, str(excinfo.value)


@pytest.mark.parametrize("env_name", list(EXPECTED))
def test_fault_in_a_sync_sub_env_names_env_step_and_value(env_name):
    agent, message = learn_until_fault(f"envs_for_tests:{env_name}", vectorization="sync")
    assert message.startswith(EXPECTED[env_name]), message
    assert agent.updates == UPDATES_BEFORE
    assert agent.global_step == UPDATES_BEFORE * N_ENVS * N_STEPS
    assert finite_weights(agent)


# Gymnasium logs a failing worker's traceback as a UserWarning before re-raising its error.
@pytest.mark.filterwarnings("ignore:.*ERROR.*:UserWarning")
@pytest.mark.parametrize("env_name", ["NaNObsEnv", "WrongShapeObsEnv", "StepRaisesEnv", "ResetRaisesEnv"])
def test_fault_in_an_async_sub_env_names_env_step_and_value(env_name):
    """The exception crosses from the worker process; it must still be an EnvironmentFaultError
    with the env index."""
    agent, message = learn_until_fault(f"envs_for_tests:{env_name}", vectorization="async")
    assert message.startswith(EXPECTED[env_name]), message
    assert agent.updates == UPDATES_BEFORE
    assert finite_weights(agent)


def test_several_faulty_envs_name_the_first_and_how_many():
    _, message = learn_until_fault("envs_for_tests:NaNObsTwoEnvs")
    assert message.startswith(
        f"env 1 returned a non-finite observation at step {FAULT_STEP}: observation[1] = nan (2 of 4 envs did)"
    ), message


def test_fault_in_an_instance_copied_per_env_names_its_index():
    """An env instance is deep-copied into the other envs; the copies are guarded too."""
    _, message = learn_until_fault(E.StepRaisesEnv())
    assert message.startswith(EXPECTED["StepRaisesEnv"]), message


def test_fault_in_the_first_reset_stops_construction():
    with pytest.raises(EnvironmentFaultError) as excinfo:
        PPO("envs_for_tests:FirstResetRaisesEnv", **SMALL)
    assert str(excinfo.value) == (
        f"env {ENV} raised OSError: simulator license not found in reset() at the start of training"
    )


def test_wrong_shape_from_a_native_vector_env_is_caught_by_the_collector():
    _, message = learn_until_fault(E.WrongShapeVectorEnv(N_ENVS))
    assert message.startswith(
        f"the vector env returned observations of shape (4, 3) instead of (4, 4) "
        f"([n_envs, *observation shape]) at step {FAULT_STEP}"
    ), message


def test_exception_in_a_user_vector_env_names_the_vector_env_and_keeps_the_cause():
    vec_env = gym.vector.SyncVectorEnv([E.StepRaisesEnv for _ in range(N_ENVS)])
    agent = PPO(vec_env, **SMALL)
    try:
        for k in range(UPDATES_BEFORE):
            agent.collector.collect(k * N_ENVS * N_STEPS)
        with pytest.raises(EnvironmentFaultError) as excinfo:
            agent.collector.collect(UPDATES_BEFORE * N_ENVS * N_STEPS)
    finally:
        agent.close()
    assert str(excinfo.value) == (
        f"the vector env raised ValueError: simulated physics blew up in step() at step {FAULT_STEP}"
    )
    cause = excinfo.value.__cause__
    assert isinstance(cause, ValueError) and str(cause) == "simulated physics blew up"


def learning_state(agent) -> tuple:
    return (agent.generator.get_state(), agent.obs_normalizer.stats.state_dict(),
            agent.reward_scaler.stats.state_dict(), agent.reward_scaler.returns.copy())


def assert_same_state(a: tuple, b: tuple) -> None:
    # the state is put back as it was, not recomputed: bit-identical by design
    assert torch.equal(a[0], b[0])
    assert a[1] == b[1]
    assert a[2] == b[2]
    assert np.array_equal(a[3], b[3])


def test_a_faulting_rollout_leaves_normalizers_and_generator_as_they_were():
    agent = PPO("envs_for_tests:NaNRewardAtEnv", **SMALL, normalize_observations=True, normalize_rewards=True)
    try:
        first = learning_state(agent)
        agent.collector.collect(0)
        second = learning_state(agent)
        # A rollout does change all of them, so the comparison below can fail.
        assert not torch.equal(first[0], second[0])
        assert first[1] != second[1] and first[2] != second[2]
        agent.collector.collect(N_ENVS * N_STEPS)
        before = learning_state(agent)
        with pytest.raises(EnvironmentFaultError, match="non-finite reward"):
            agent.collector.collect(2 * N_ENVS * N_STEPS)  # faults at its 5th vector step
        assert_same_state(learning_state(agent), before)
    finally:
        agent.close()


def test_after_a_fault_in_learn_the_agent_is_as_after_the_last_update():
    agent = PPO("envs_for_tests:InfObsEnv", **SMALL, normalize_observations=True, normalize_rewards=True)
    after_update: list[tuple] = []
    try:
        with pytest.raises(EnvironmentFaultError):
            agent.learn(50 * N_ENVS * N_STEPS, callback=lambda row: after_update.append(learning_state(agent)))
    finally:
        agent.close()
    assert len(after_update) == UPDATES_BEFORE
    assert_same_state(learning_state(agent), after_update[-1])


# --------------------------------------------------------------------------- through the CLI

CLI_ARGS = ["--quiet", "--no-tensorboard", "--name", "r", "--seed", 0, "--steps", 50 * N_ENVS * N_STEPS,
            "--set", f"n_envs={N_ENVS}", "--set", f"n_steps={N_STEPS}", "--set", "minibatch_size=32"]


@pytest.mark.parametrize(("env_name", "vectorization"), [
    ("NaNObsEnv", "sync"), ("StepRaisesEnv", "sync"), ("WrongShapeObsEnv", "sync"),
    ("StepRaisesEnv", "async"), ("ResetRaisesEnv", "async"),
])
def test_cli_train_stops_with_one_line_and_keeps_the_last_good_model(run_cli, tmp_path, env_name, vectorization):
    proc = run_cli(["train", f"envs_for_tests:{env_name}", "--out", tmp_path, *CLI_ARGS,
                    "--set", f"vectorization={vectorization}"])
    assert proc.returncode == 2, proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"ppolab: error: {EXPECTED[env_name]}"), proc.stderr
    if vectorization == "sync":  # async workers also log their traceback through Gymnasium
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
    agent = load(tmp_path / "r" / "model.pt")
    assert agent.updates == UPDATES_BEFORE
    assert finite_weights(agent)
