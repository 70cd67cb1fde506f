"""``ppolab check-env`` and :func:`ppolab.checkenv.check_environment` on good and bad envs."""

from __future__ import annotations

import subprocess
import sys

import envs_for_tests as E
import pytest

from ppolab.checkenv import check_environment
from ppolab.errors import EnvironmentSpecError


def check_lines(stdout: str) -> dict[str, str]:
    """``{check name: outcome line}`` from the report's checks section."""
    lines = stdout.split("checks:\n", 1)[1].splitlines()
    checks = [line.strip() for line in lines if line.startswith("  ") and not line.startswith("  - ")]
    return {line.split(None, 1)[1].split(":", 1)[0]: line for line in checks}


def test_cartpole_passes_every_check(run_cli):
    proc = run_cli(["check-env", "CartPole-v1", "--steps", 300])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: ok, ppolab can train on CartPole-v1" in proc.stdout
    assert "actions: Discrete(2)" in proc.stdout
    assert "ppolab will use: a categorical policy over 2 actions" in proc.stdout
    checks = check_lines(proc.stdout)
    assert set(checks) == {"Gymnasium's environment checker", "ppolab supports the spaces", "300 random steps"}
    assert all(line.startswith("ok ") for line in checks.values()), proc.stdout


def test_nan_observation_fails_the_random_steps(run_cli):
    proc = run_cli(["check-env", "envs_for_tests:NaNObsInEpisodeEnv"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = check_lines(proc.stdout)
    assert checks["1000 random steps"] == (
        f"FAILED  1000 random steps: non-finite observation at step {E.FAULT_IN_EPISODE_AT} (episode 1): "
        "observation[2] = nan"
    )
    assert checks["Gymnasium's environment checker"].startswith("ok ")
    assert "verdict: FAILED (1 of 3 checks failed)" in proc.stdout


@pytest.mark.parametrize(("env_name", "expected"), [
    ("TextObsEnv", "unsupported observation space Text("),
    ("TupleActionEnv", "unsupported action space Tuple(Discrete(2), Discrete(3))"),
])
def test_unsupported_space_fails_and_is_named(run_cli, env_name, expected):
    proc = run_cli(["check-env", f"envs_for_tests:{env_name}"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = check_lines(proc.stdout)
    assert checks["ppolab supports the spaces"].startswith("FAILED ")
    assert expected in checks["ppolab supports the spaces"]
    assert checks["1000 random steps"].startswith("skipped ")
    assert "verdict: FAILED" in proc.stdout


def test_gymnasium_api_violation_fails_the_gymnasium_check(run_cli):
    proc = run_cli(["check-env", "envs_for_tests:ResetReturnsObsOnlyEnv"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    checks = check_lines(proc.stdout)
    line = checks["Gymnasium's environment checker"]
    assert line.startswith("FAILED ") and "env.reset()` was not a tuple" in line, line
    assert checks["1000 random steps"] == (
        "FAILED  1000 random steps: reset() returned ndarray at the first reset, not a tuple of 2"
    )


def test_unknown_id_is_a_one_line_error(run_cli):
    proc = run_cli(["check-env", "CartPole-v9"])
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        "ppolab: error: unknown environment 'CartPole-v9'; closest registered ids: CartPole-v1, ")


def test_module_without_the_class_is_a_one_line_error(run_cli):
    proc = run_cli(["check-env", "envs_for_tests:NoSuchEnv"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "ppolab: error: 'envs_for_tests:NoSuchEnv': module 'envs_for_tests' has no env class or "
        "factory named 'NoSuchEnv'"
    )


# --------------------------------------------------------------------------- in process


@pytest.mark.parametrize(("env_name", "detail"), [
    ("InfRewardInEpisodeEnv", "non-finite reward at step 20 (episode 1): reward = inf"),
    ("WrongShapeInEpisodeEnv", "observation of shape (3, 1) instead of (3,) at step 20 (episode 1)"),
    ("StepRaisesInEpisodeEnv",
     "step() raised ZeroDivisionError: division by zero in the dynamics at step 20 (episode 1)"),
])
def test_random_steps_find_each_fault(env_name, detail):
    report = check_environment(f"envs_for_tests:{env_name}", steps=50)
    assert not report.ok
    assert [(c.name, c.passed, c.detail) for c in report.checks] == [
        ("Gymnasium's environment checker", True, ""),
        ("ppolab supports the spaces", True, ""),
        ("50 random steps", False, detail),
    ]


def test_a_good_user_env_passes_and_episodes_are_counted():
    # SignEnv's episodes last 10 steps: 95 steps end 9 of them.
    report = check_environment("envs_for_tests:SignEnv", steps=95)
    assert report.ok, report.render()
    assert report.checks[-1].detail == "9 episodes ended"
    assert "ppolab will use: a categorical policy over 2 actions (1..2)" in report.description
    assert "  encoder: vector 3 (3 values) -> 3 values to the MLP" in report.description


def test_check_env_says_which_encoders_it_would_build():
    report = check_environment("envs_for_tests:DictWithTextEnv", steps=10)
    spaces_check = next(c for c in report.checks if c.name == "ppolab supports the spaces")
    assert spaces_check.passed, report.render()
    assert "  encoder: position: vector 2 (2 values) -> 2 values to the MLP" in report.description
    assert "  encoder: dropped (no encoder): note: Text" in report.description
    assert "dropping observation note: Text" in report.render()
    report = check_environment("envs_for_tests:PixelSideEnv", steps=10)
    assert ("  encoder: image 12x12x1 uint8 (channel-last) -> CNN (the Nature CNN): /255, conv 32 8x8/4, "
            "64 4x4/2, 64 3x3/1, linear 512, relu") in report.description
    spaces_check = next(c for c in report.checks if c.name == "ppolab supports the spaces")
    assert not spaces_check.passed and "12x12 pixels is too small for the CNN" in spaces_check.detail



def test_gymnasium_warnings_are_reported_as_warnings():
    report = check_environment("CartPole-v1", steps=10)
    assert report.ok
    assert "A Box observation space maximum value is infinity. This is probably too high." in report.warnings
    assert "warnings:\n  - A Box observation space" in report.render()


def test_a_class_that_cannot_be_made_is_a_spec_error():
    with pytest.raises(EnvironmentSpecError, match=r"^'envs_for_tests:NeedsArgumentEnv' failed to create an env "
                       r"\(TypeError: .*missing 1 required positional argument: 'level'\); pass a class or factory that "
                       r"can be called with no arguments$"):
        check_environment("envs_for_tests:NeedsArgumentEnv")


def test_check_env_does_not_import_torch():
    """check-env answers after gymnasium's imports alone: describing spaces needs no torch."""
    code = ("import sys; from ppolab.cli import main; code = main(['check-env', 'CartPole-v1', '--steps', '5']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "verdict: ok" in proc.stdout


@pytest.mark.parametrize(("target", "expected"), [
    ("CartPole-v1", "ppolab train starts from: the tuned ppo preset for CartPole-v1"),
    ("MountainCarContinuous-v0", "ppolab train starts from: the ppo continuous-control defaults (continuous actions"),
    ("Acrobot-v1", "ppolab train starts from: the ppo defaults (no preset for this env; discrete actions)"),
])
def test_check_env_says_which_settings_train_starts_from(target, expected):
    assert expected in check_environment(target, 5).render()
