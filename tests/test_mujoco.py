"""The MuJoCo presets end to end (the ``[mujoco]`` extra; the dev install includes it): each
trains with its preset, and ``ppolab train`` / ``ppolab eval`` work on Hopper-v5 with the
observation statistics saved, restored and frozen. How well the presets learn is measured by
``benchmarks/continuous.py`` (1M steps per run is beyond the test budget)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from ppolab import PPO, evaluate
from ppolab.config import preset

pytest.importorskip("mujoco", reason="the [mujoco] extra is not installed")

MUJOCO_PRESETS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]
EVAL_LINE = re.compile(r"mean return (-?[\d.]+) \+- ([\d.]+) over (\d+) episodes \((\w+) policy")


@pytest.mark.parametrize("env_id", MUJOCO_PRESETS)
def test_preset_trains_one_update(env_id: str) -> None:
    """One update with the preset (1 env x 2048 steps, 10 epochs of 64-sample minibatches):
    the statistics see every observation and the policy moves, within the trust region."""
    agent = PPO(env_id, seed=0)
    try:
        before = [p.detach().clone() for p in agent.policy.parameters()]
        rows: list[dict] = []
        result = agent.learn(2048, callback=rows.append)
    finally:
        agent.close()
    assert result.total_steps == 2048 and result.updates == 1
    assert agent.obs_normalizer is not None and agent.reward_scaler is not None
    assert agent.obs_normalizer.stats.count == 2048 + 1  # the first reset, then one per step
    (row,) = rows
    assert row["gradient_steps"] == 10 * 2048 // 64
    assert 0 < row["approx_kl"] < 0.1 and math.isfinite(row["value_loss"])
    assert any(not np.array_equal(a.detach(), b) for a, b in zip(agent.policy.parameters(), before))


@pytest.fixture(scope="module")
def hopper_run(tmp_path_factory, run_cli):
    out = tmp_path_factory.mktemp("mujoco")
    proc = run_cli(["train", "Hopper-v5", "--steps", 4096, "--out", out, "--name", "hop", "--quiet"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out / "hop"


def test_cli_trains_hopper_with_the_preset(hopper_run) -> None:
    import json

    import yaml

    config = yaml.safe_load((hopper_run / "config.yaml").read_text())
    expected = preset("Hopper-v5").to_dict()
    for key in ("n_envs", "n_steps", "minibatch_size", "n_epochs", "learning_rate", "normalize_observations",
                "normalize_rewards", "clip_value_loss"):
        assert config[key] == expected[key], key
    summary = json.loads((hopper_run / "summary.json").read_text())
    assert summary["env_id"] == "Hopper-v5" and summary["total_steps"] == 4096 and summary["updates"] == 2


def eval_cli(run_cli, run, *flags) -> tuple[float, float, str]:
    proc = run_cli(["eval", run, "--episodes", 2, *flags], timeout=300)
    assert proc.returncode == 0, proc.stderr
    match = EVAL_LINE.search(proc.stdout)
    assert match and match.group(3) == "2", proc.stdout
    return float(match.group(1)), float(match.group(2)), match.group(4)


def test_eval_deterministic_uses_the_saved_statistics(hopper_run, run_cli) -> None:
    mean, _, mode = eval_cli(run_cli, hopper_run, "--deterministic")
    assert mode == "deterministic"
    agent = PPO.load(hopper_run)
    stats = agent.obs_normalizer.stats
    assert stats.count == 4096 + 1 and np.all(stats.var > 0)
    frozen = agent.obs_normalizer.state_dict()  # what a model file keeps: here, the one leaf's statistics
    assert frozen == stats.state_dict()
    result = evaluate(agent, episodes=2, deterministic=True, seed=1_000_000)
    # the CLI calls the same evaluate() on the same machine: the same episodes by design (the
    # tolerance is only the printed rounding)
    assert mean == pytest.approx(result.mean, abs=0.006)
    # evaluation does not move the statistics
    assert all(np.array_equal(frozen[k], v) for k, v in agent.obs_normalizer.state_dict().items())


def test_eval_stochastic_samples_actions(hopper_run) -> None:
    agent = PPO.load(hopper_run)
    assert agent.env_info.observation.shape == agent.env_info.obs_shape == (11,)
    obs = np.zeros(agent.env_info.obs_shape, dtype=np.float32)
    sampled = np.stack([agent.predict(obs, deterministic=False) for _ in range(20)])
    mean_action = agent.predict(obs, deterministic=True)
    assert sampled.shape == (20, 3) and np.all(np.abs(sampled) <= 1.0)  # clipped to Hopper's bounds
    assert np.ptp(sampled, axis=0).min() > 0.05  # they differ from one another ...
    assert np.array_equal(mean_action, agent.predict(obs, deterministic=True))  # ... the mean does not
