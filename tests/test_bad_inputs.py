"""Bad input to ``ppolab train``: a clear one-line error on stderr, exit status 2, no traceback,
and nothing written (no run directory, not even the --out parent). Plus the NaN guard.

Most cases call ``ppolab.cli.main`` in-process (an unexpected exception there is the traceback a
user would see, and fails the test); a few representative ones also run the real command.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest
import torch

from ppolab.checkpoints import CheckpointDir

from ppolab import cli
from ppolab.errors import PPOLabError

FAST = ["--quiet", "--no-tensorboard", "--name", "r"]

# (id, train arguments after ENV_ID-or-not, substrings the error message must contain)
CASES = [
    ("unknown-env", ["CartPol-v1"], ["unknown environment", "'CartPol-v1'", "CartPole-v1"]),
    ("unknown-version", ["LunarLander-v9"], ["LunarLander-v9", "LunarLander-v3"]),
    ("text-obs", ["envs_for_tests:TextObsEnv"], ["observation space", "Text(", "Box", "Discrete", "Dict"]),
    ("refused-part", ["envs_for_tests:DictWithTextEnv", "--set", "unsupported_observations=refuse"],
     ["observation 'note' is Text", "unsupported_observations=drop"]),
    ("tiny-image", ["envs_for_tests:TinyImageEnv"], ["6x6 pixels is too small for the CNN", "cnn_kernels"]),
    ("bad-encoder", ["CartPole-v1", "--set", "encoder=envs_for_tests:not_a_module_encoder"],
     ["encoder='envs_for_tests:not_a_module_encoder'", "not a torch.nn.Module"]),
    ("bad-device", ["CartPole-v1", "--set", "device=gpu"], ["device", "auto | cpu | cuda | cuda:N | mps"]),
    ("tuple-actions", ["envs_for_tests:TupleActionEnv"], ["action space", "Tuple", "Discrete", "Box"]),
    ("missing-attr", ["envs_for_tests:NoSuchEnv"], ["NoSuchEnv", "envs_for_tests"]),
    ("missing-module", ["no_such_module_for_ppolab_tests:Env"], ["cannot import module",
                                                                 "no_such_module_for_ppolab_tests"]),
    ("clip-zero", ["CartPole-v1", "--set", "clip_coef=0"], ["clip_coef", "(0, 1]"]),
    ("clip-negative", ["CartPole-v1", "--set", "clip_coef=-0.1"], ["clip_coef", "-0.1"]),
    ("gamma", ["CartPole-v1", "--set", "gamma=1.5"], ["gamma", "1.5", "[0, 1]"]),
    ("gae-lambda", ["CartPole-v1", "--set", "gae_lambda=-0.1"], ["gae_lambda", "[0, 1]"]),
    ("minibatch", ["CartPole-v1", "--set", "n_envs=2", "--set", "n_steps=16", "--set", "minibatch_size=64"],
     ["minibatch_size", "64", "32"]),
    ("minibatch-preset", ["CartPole-v1", "--set", "minibatch_size=1024"], ["minibatch_size", "512"]),
    ("n-envs", ["CartPole-v1", "--set", "n_envs=0"], ["n_envs", "[1, 65_536]"]),
    ("n-steps", ["CartPole-v1", "--set", "n_steps=-1"], ["n_steps", "-1"]),
    ("steps-zero", ["CartPole-v1", "--steps", "0"], ["total_steps", "0"]),
    ("unknown-key", ["CartPole-v1", "--set", "learning_rat=1e-3"], ["learning_rat'", "learning_rate"]),
    ("bad-type", ["CartPole-v1", "--set", "n_epochs=abc"], ["n_epochs", "abc", "integer"]),
    ("bad-bool", ["CartPole-v1", "--set", "anneal_lr=maybe"], ["anneal_lr", "true or false"]),
    ("no-equals", ["CartPole-v1", "--set", "gamma"], ["key=value"]),
    ("missing-config", ["CartPole-v1", "--config", "{tmp}/nope.yaml"], ["cannot read config file", "nope.yaml"]),
    ("typo-config", ["CartPole-v1", "--config", "{tmp}/typo.yaml"], ["learnig_rate", "learning_rate"]),
    ("bad-yaml", ["CartPole-v1", "--config", "{tmp}/broken.yaml"], ["cannot parse config file", "broken.yaml"]),
    ("list-config", ["CartPole-v1", "--config", "{tmp}/list.yaml"], ["mapping"]),
    ("config-value", ["CartPole-v1", "--config", "{tmp}/value.json"], ["gamma", "[0, 1]"]),
]


def write_config_files(folder: Path) -> None:
    (folder / "typo.yaml").write_text("learnig_rate: 0.001\nn_steps: 64\n")
    (folder / "broken.yaml").write_text("n_steps: [64\n")
    (folder / "list.yaml").write_text("- n_steps\n- 64\n")
    (folder / "value.json").write_text('{"gamma": 2.0}\n')


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("out_exists", [False, True], ids=["new-out", "empty-out"])
@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_train_input_is_refused_before_writing(tmp_path, capsys, args, expected, out_exists):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_config_files(inputs)
    out = tmp_path / "runs" / "nested"
    if out_exists:
        out.mkdir(parents=True)
    args = [a.replace("{tmp}", str(inputs)) for a in args]

    status = cli.main(["train", *args, "--out", str(out), *FAST])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if line.startswith("ppolab: error: ")]
    assert len(errors) == 1, captured.err
    for text in expected:
        assert text in errors[0], f"{text!r} not in {errors[0]!r}"
    if out_exists:
        assert list(out.iterdir()) == []
    else:
        assert not (tmp_path / "runs").exists()


def test_non_integer_steps_exit_2(tmp_path, capsys):
    status = cli.main(["train", "CartPole-v1", "--steps", "abc", "--out", str(tmp_path / "runs")])
    assert status == 2
    assert "invalid --steps='abc': must be an integer" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_steps_accepts_scientific_notation(tmp_path):
    from ppolab.config import parse_value

    assert parse_value("--steps", "2e5", int) == 200_000


def test_existing_run_directory_is_refused_and_untouched(tmp_path, capsys):
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("update\n1\n")
    (run / "notes.txt").write_text("keep me")
    before = snapshot(tmp_path / "runs")

    status = cli.main(["train", "CartPole-v1", "--out", str(tmp_path / "runs"), *FAST])

    err = capsys.readouterr().err
    assert status == 2
    assert "already exists" in err and str(run) in err
    assert snapshot(tmp_path / "runs") == before


def test_eval_episodes_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # rejected by the argument parser
        cli.main(["eval", str(tmp_path), "--episodes", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--episodes" in err and "must be >= 1" in err


@pytest.mark.parametrize("seed", ["-1", "4294967296", "x"])
def test_eval_seed_must_be_in_range(tmp_path, capsys, seed):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", str(tmp_path), "--seed", seed])
    assert exit_info.value.code == 2
    assert "--seed" in capsys.readouterr().err


def test_eval_of_a_file_that_is_not_a_model(tmp_path, capsys):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(os.urandom(256))
    status = cli.main(["eval", str(bogus), "--episodes", "1"])
    assert status == 2
    assert "not a readable ppolab model file" in capsys.readouterr().err


def _main_without_traceback(argv: list[str]) -> int:
    """``cli.main(argv)``; an exception escaping it is what a user would see as a traceback."""
    try:
        return cli.main(argv)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"ppolab {' '.join(argv[:2])} ... escaped with {type(exc).__name__}: {exc} "
                    "(a traceback and exit status 1 for the user, instead of a clean error and 2)")


def test_registered_env_with_a_missing_dependency(tmp_path, capsys, monkeypatch):
    # as if the [mujoco] extra were not installed (the dev install has it)
    monkeypatch.setitem(sys.modules, "mujoco", None)
    for name in [m for m in sys.modules if m.startswith("gymnasium.envs.mujoco")]:
        monkeypatch.delitem(sys.modules, name)
    out = tmp_path / "runs"
    status = _main_without_traceback(["train", "HalfCheetah-v5", "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert status == 2
    assert "HalfCheetah-v5" in err and "mujoco" in err.lower()
    assert not out.exists()


@pytest.fixture
def untrained_cartpole(tmp_path):
    from ppolab import PPO

    agent = PPO("CartPole-v1", seed=0, n_envs=1, n_steps=32, minibatch_size=32)
    path = agent.save(tmp_path / "model.pt")
    agent.close()
    return path


def test_eval_mp4_without_imageio_is_a_clean_error(untrained_cartpole, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio", None)  # as if ppolab[video] were not installed
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    status = _main_without_traceback(["eval", str(untrained_cartpole), "--episodes", "1",
                                      "--video", str(tmp_path / "v.mp4")])
    err = capsys.readouterr().err
    assert status == 2
    assert "ppolab: error: " in err and "imageio" in err
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("kind", ["factory", "instance"])
def test_eval_of_a_model_trained_on_an_unnamed_env(tmp_path, capsys, kind):
    """A model trained through the API on a lambda (or an env instance) records env id '<lambda>'
    (or 'CartPoleEnv'). ``ppolab eval`` must either find the env again (e.g. from the env's spec
    id) or refuse cleanly, never crash."""
    import gymnasium as gym

    from ppolab import PPO

    source = (lambda: gym.make("CartPole-v1")) if kind == "factory" else gym.make("CartPole-v1")
    agent = PPO(source, seed=0, n_envs=1, n_steps=32, minibatch_size=32)
    path = agent.save(tmp_path / "model.pt")
    agent.close()
    status = _main_without_traceback(["eval", str(path), "--episodes", "1"])
    captured = capsys.readouterr()
    assert status in (0, 2)
    if status == 2:
        assert "ppolab: error: " in captured.err
    else:
        assert "mean return" in captured.out


# --------------------------------------------------------------------------- the real command

SUBPROCESS_CASES = [
    (["CartPol-v1"], "CartPole-v1"),
    (["CartPole-v1", "--set", "gamma=1.5"], "gamma"),
    (["envs_for_tests:TupleActionEnv"], "Discrete"),
]


@pytest.mark.parametrize("args, expected", SUBPROCESS_CASES, ids=["unknown-env", "gamma", "tuple-actions"])
def test_bad_input_in_a_subprocess(run_cli, tmp_path, args, expected):
    out = tmp_path / "runs"
    proc = run_cli(["train", *args, "--out", out, *FAST])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ppolab: error: " in proc.stderr and expected in proc.stderr
    assert proc.stdout == ""
    assert not out.exists()


def test_existing_run_directory_in_a_subprocess(run_cli, tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "model.pt").write_bytes(b"precious")
    before = snapshot(tmp_path)
    proc = run_cli(["train", "CartPole-v1", "--out", tmp_path, *FAST])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "already exists" in proc.stderr
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- NaN guard


def test_nan_reward_stops_training_and_keeps_the_last_good_model(run_cli, tmp_path):
    from ppolab import PPO

    proc = run_cli(["train", "envs_for_tests:NaNRewardEnv", "--out", tmp_path, *FAST, "--steps", 4096,
                    "--set", "n_envs=2", "--set", "n_steps=64", "--set", "minibatch_size=64"])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    model = tmp_path / "r" / "model.pt"
    # NaNRewardEnv pays NaN from its 301st step (vector step 300, in rollout 5), so the collector
    # stops before update 5; 300 vector steps of 2 envs came before it.
    assert "ppolab: error: env 0 returned a non-finite reward at step 600: reward = nan (2 of 2 envs did)" \
        in proc.stderr
    assert "checkpoint ckpt-000000004.pt" in proc.stderr
    assert model.is_file()
    assert PPO.load(tmp_path / "r" / "checkpoints" / "ckpt-000000004.pt").updates == 4

    agent = PPO.load(model)
    assert agent.updates == 4
    params = list(agent.policy.parameters())
    assert params and all(bool(torch.isfinite(p).all()) for p in params)
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["update"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["value_loss"]) == float(r["value_loss"]) for r in rows)  # no NaN logged


def test_a_loss_that_overflows_stops_training_and_keeps_the_last_good_state(run_cli, tmp_path):
    from ppolab import PPO

    proc = run_cli(["train", "envs_for_tests:HugeRewardEnv", "--out", tmp_path, *FAST, "--steps", 4096,
                    "--set", "n_envs=2", "--set", "n_steps=64", "--set", "minibatch_size=64"])
    assert proc.returncode == 2, proc.stderr
    run = tmp_path / "r"
    # rewards of 1e30 from rollout 5 on: finite, but the squared value error overflows float32
    assert proc.stderr.startswith("ppolab: error: training diverged at update 5 (step 640): ")
    # the weights may hold part of the failed update: no new checkpoint, resume from the newest
    assert proc.stderr.rstrip().endswith(
        f"the model is saved at {run / 'model.pt'}, and ppolab resume {run} continues from checkpoint "
        "ckpt-000000000.pt")
    assert [p.name for p in CheckpointDir(run).all()] == ["ckpt-000000000.pt"]
    assert all(bool(torch.isfinite(p).all()) for p in PPO.load(run / "model.pt").policy.parameters())
    # Resuming starts again from update 0 with fresh env instances: the same blow-up.
    resumed = run_cli(["resume", run, "--quiet"])
    assert resumed.returncode == 2
    assert resumed.stderr.startswith("ppolab: error: training diverged at update 5 (step 640): ")


def test_errors_are_ppolab_errors():
    """Everything the CLI turns into exit status 2 derives from PPOLabError."""
    from ppolab import errors

    for name in ("ConfigError", "EnvironmentSpecError", "ModelFileError", "RunDirectoryError",
                 "TrainingDivergedError", "EnvironmentFaultError"):
        assert issubclass(getattr(errors, name), PPOLabError)


def test_an_output_path_under_a_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a directory")
    status = cli.main(["train", "CartPole-v1", "--out", str(blocker / "runs"), *FAST])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip() == (f"ppolab: error: cannot create {blocker / 'runs' / 'r'}: {blocker} is not a "
                           "writable directory")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_read_only_output_directory_is_refused_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status = cli.main(["train", "CartPole-v1", "--out", str(locked), *FAST])
    finally:
        locked.chmod(0o700)
    assert status == 2
    assert f"{locked} is not a writable directory" in capsys.readouterr().err
    assert list(locked.iterdir()) == []
