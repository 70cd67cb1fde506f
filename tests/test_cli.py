"""The ``ppolab`` command end to end, in subprocesses: train, the run directory it writes,
eval (with videos), help, early stopping, seeding, and renamed environment ids."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import TINY, cli_env
from ppolab.config import field_help, preset
from ppolab.algos.ppo import PPOUpdate
from ppolab.metrics import EPISODE_COLUMNS, metric_columns

DIAGNOSTICS = ("policy_loss", "value_loss", "entropy", "approx_kl", "approx_kl_logr", "clip_fraction",
               "explained_variance", "grad_norm", "learning_rate", "sps")
TIME_COLUMNS = ("wall_seconds", "sps")
EVAL_LINE = re.compile(r"mean return (-?\d+(?:\.\d+)?) \+- (\d+(?:\.\d+)?) over (\d+) episodes")
MIN_MAX = re.compile(r"min (-?\d+(?:\.\d+)?), max (-?\d+(?:\.\d+)?)")

STEPS, N_ENVS, N_STEPS = 4096, 4, 128
N_UPDATES = STEPS // (N_ENVS * N_STEPS)  # 8


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def assert_ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr


def parse_eval(stdout: str, episodes: int) -> tuple[float, float, float, float]:
    match = EVAL_LINE.search(stdout)
    assert match, f"no 'mean return X +- Y over N episodes' in {stdout!r}"
    assert int(match.group(3)) == episodes
    bounds = MIN_MAX.search(stdout)
    assert bounds, stdout
    return float(match.group(1)), float(match.group(2)), float(bounds.group(1)), float(bounds.group(2))


def first_solving_step(episodes: list[dict[str, str]], window: int, threshold: float) -> int | None:
    """The global step of the first episode after which the mean of the last ``window`` returns
    (a full window) reaches ``threshold``, from episodes.csv rows."""
    returns = [float(r["return"]) for r in episodes]
    for i in range(window - 1, len(returns)):
        if sum(returns[i - window + 1:i + 1]) / window >= threshold:
            return int(episodes[i]["global_step"])
    return None


# --------------------------------------------------------------------------- one real training run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_cli):
    """``ppolab train CartPole-v1`` for 4096 steps (8 updates), with TensorBoard."""
    out = tmp_path_factory.mktemp("cli") / "runs"
    proc = run_cli(["train", "CartPole-v1", "--steps", STEPS, "--seed", 0, "--out", out, "--name", "r",
                    "--quiet", *TINY, "--no-early-stop"])
    assert_ok(proc)
    return out / "r", proc


def test_train_reports_and_writes_the_run_directory(trained):
    run, proc = trained
    assert f"run directory: {run}" in proc.stdout
    assert "4,096 steps" in proc.stdout
    for name in ("config.yaml", "metrics.csv", "episodes.csv", "model.pt", "learning_curve.png",
                 "summary.json", "tensorboard"):
        assert (run / name).exists(), name
    # atomic writes leave no temporary files behind
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_config_yaml_has_env_algo_and_overrides(trained):
    run, _ = trained
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env_id"] == "CartPole-v1"
    assert config["algo"] == "ppo"
    assert config["n_envs"] == N_ENVS and config["n_steps"] == N_STEPS
    assert config["minibatch_size"] == 256
    assert config["seed"] == 0 and config["total_steps"] == STEPS
    assert config["stop_when_solved"] is False
    assert set(field_help()) <= set(config)
    # the CartPole preset still supplies what was not overridden
    assert config["learning_rate"] == pytest.approx(preset("CartPole-v1").learning_rate)
    # and the file is reusable as --config (PPOConfig accepts it)
    from ppolab.config import PPOConfig, load_config_file

    assert PPOConfig.from_dict(load_config_file(run / "config.yaml")).n_steps == N_STEPS


def test_metrics_csv_one_finite_row_per_update(trained):
    run, _ = trained
    columns, rows = read_csv(run / "metrics.csv")
    assert columns == list(metric_columns(PPOUpdate.STATS))
    assert len(rows) == N_UPDATES
    assert [int(r["update"]) for r in rows] == list(range(1, N_UPDATES + 1))
    assert [int(r["global_step"]) for r in rows] == [512 * k for k in range(1, N_UPDATES + 1)]
    for row in rows:
        for name in DIAGNOSTICS:
            value = float(row[name])
            assert math.isfinite(value), (name, row)
        assert float(row["entropy"]) > 0
        assert 0.0 <= float(row["clip_fraction"]) <= 1.0
        assert float(row["grad_norm"]) >= 0 and float(row["sps"]) > 0
    rates = [float(r["learning_rate"]) for r in rows]
    assert rates[0] == pytest.approx(preset("CartPole-v1").learning_rate)
    assert rates == sorted(rates, reverse=True)  # annealed


def test_episodes_csv_rows_match_the_summary(trained):
    run, _ = trained
    columns, rows = read_csv(run / "episodes.csv")
    assert columns == list(EPISODE_COLUMNS)
    summary = json.loads((run / "summary.json").read_text())
    assert len(rows) == summary["episodes"] > 0
    assert [int(r["episode"]) for r in rows] == list(range(1, len(rows) + 1))
    steps = [int(r["global_step"]) for r in rows]
    assert steps == sorted(steps) and 0 < steps[0] and steps[-1] <= STEPS
    assert all(s % N_ENVS == 0 for s in steps)  # an episode ends after a whole vector step
    for r in rows:
        assert float(r["return"]) == int(r["length"]) >= 1  # CartPole pays 1 per step
        assert int(r["length"]) <= 500
    window = [float(r["return"]) for r in rows][-100:]
    assert summary["final_mean_return_100"] == pytest.approx(sum(window) / len(window))


def test_summary_json(trained):
    run, _ = trained
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_id"] == "CartPole-v1"
    assert summary["algo"] == "ppo"
    assert summary["seed"] == 0
    assert summary["total_steps"] == STEPS
    assert summary["updates"] == N_UPDATES
    assert isinstance(summary["wall_seconds"], (int, float)) and summary["wall_seconds"] > 0
    assert isinstance(summary["solved"], bool)
    assert summary["solved"] is False  # 475 is out of reach in 4096 steps
    assert summary["solved_at_step"] is None
    assert summary["solved_at_seconds"] is None
    assert isinstance(summary["final_mean_return_100"], float)


def test_tensorboard_events_read_back(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = trained
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "episode/return" in tags
    kl = acc.Scalars("train/approx_kl")
    assert len(kl) == N_UPDATES
    assert [e.step for e in kl] == [512 * k for k in range(1, N_UPDATES + 1)]
    _, rows = read_csv(run / "metrics.csv")
    assert [e.value for e in kl] == pytest.approx([float(r["approx_kl"]) for r in rows], rel=1e-5)
    _, episodes = read_csv(run / "episodes.csv")
    assert len(acc.Scalars("episode/return")) == len(episodes)


def test_learning_curve_png(trained):
    from PIL import Image

    run, _ = trained
    with Image.open(run / "learning_curve.png") as img:
        assert img.format == "PNG"
        width, height = img.size
    assert 400 <= width <= 4000 and 250 <= height <= 4000 and width > height


def test_model_pt_loads(trained):
    from ppolab import PPO

    run, _ = trained
    agent = PPO.load(run / "model.pt")
    assert agent.env_id == "CartPole-v1"
    assert agent.global_step == STEPS and agent.updates == N_UPDATES
    assert agent.config.n_envs == N_ENVS
    same = PPO.load(run)  # a run directory works too
    obs = [0.01, -0.02, 0.03, 0.04]
    assert int(same.predict(obs)) == int(agent.predict(obs)) in (0, 1)  # one file, same code path


# --------------------------------------------------------------------------- eval


def test_eval_prints_mean_and_std(trained, run_cli):
    run, _ = trained
    proc = run_cli(["eval", run, "--episodes", 3])
    assert_ok(proc)
    mean, std, lo, hi = parse_eval(proc.stdout, 3)
    assert "CartPole-v1" in proc.stdout and "stochastic" in proc.stdout
    assert 8 <= lo <= mean <= hi <= 500
    assert 0 <= std <= (hi - lo) / 2 + 0.01


def test_eval_deterministic_matches_the_python_api(trained, run_cli):
    from ppolab import PPO, evaluate

    run, _ = trained
    proc = run_cli(["eval", run, "--episodes", 3, "--deterministic"])
    assert_ok(proc)
    mean, std, lo, hi = parse_eval(proc.stdout, 3)
    assert "deterministic" in proc.stdout
    result = evaluate(PPO.load(run), episodes=3, deterministic=True, seed=1_000_000)
    # the CLI calls the same evaluate() on the same machine: the same episodes by design (the
    # tolerance is only the printed rounding to 2 decimals)
    assert mean == pytest.approx(round(result.mean, 2), abs=0.006)
    assert std == pytest.approx(round(result.std, 2), abs=0.006)
    assert (lo, hi) == (min(result.returns), max(result.returns))


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    """A CartPole model that has not learned: short episodes, so videos are quick to render."""
    import torch

    from ppolab import PPO

    threads = torch.get_num_threads()
    path = tmp_path_factory.mktemp("untrained") / "model.pt"
    agent = PPO("CartPole-v1", seed=3, n_envs=1, n_steps=32, minibatch_size=32)
    agent.save(path)
    agent.close()
    torch.set_num_threads(threads)
    return path


def test_eval_video_gif(untrained_model, run_cli, tmp_path):
    from PIL import Image

    video = tmp_path / "videos" / "v.gif"
    proc = run_cli(["eval", untrained_model, "--episodes", 2, "--video", video])
    assert_ok(proc)
    mean, _, _, _ = parse_eval(proc.stdout, 2)
    assert f"video: {video}" in proc.stdout
    with Image.open(video) as gif:
        assert gif.format == "GIF"
        assert gif.size == (600, 400)  # CartPole's rgb_array frames
        frames = gif.n_frames
    steps = round(2 * mean)  # CartPole: return == length
    assert 5 <= frames <= steps + 1


def test_eval_video_mp4(untrained_model, run_cli, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    imageio = pytest.importorskip("imageio.v2")
    video = tmp_path / "v.mp4"
    proc = run_cli(["eval", untrained_model, "--episodes", 1, "--video", video])
    assert_ok(proc)
    frames = imageio.mimread(video)
    assert len(frames) >= 5 and frames[0].shape[:2] == (400, 600)


def test_eval_missing_run_directory(run_cli, tmp_path):
    proc = run_cli(["eval", tmp_path / "nope", "--episodes", 1])
    assert proc.returncode == 2
    assert "no model file" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- help


def test_help(run_cli):
    proc = run_cli(["--help"])
    assert_ok(proc)
    assert "train" in proc.stdout and "eval" in proc.stdout


def test_train_help_lists_every_hyperparameter(run_cli):
    proc = run_cli(["train", "--help"])
    assert_ok(proc)
    for name in field_help():
        assert re.search(rf"\b{name}\b", proc.stdout), f"{name} missing from 'ppolab train --help'"
    for option in ("--steps", "--seed", "--set", "--config", "--out", "--name", "--no-early-stop",
                   "--no-tensorboard", "--quiet"):
        assert option in proc.stdout


def test_eval_help(run_cli):
    proc = run_cli(["eval", "--help"])
    assert_ok(proc)
    for option in ("--episodes", "--deterministic", "--video", "--seed", "RUN_DIR"):
        assert option in proc.stdout


def test_help_does_not_import_torch():
    """cli.py promises that heavy imports happen inside the commands so that --help is instant."""
    code = ("import sys\nfrom ppolab.cli import main\ntry:\n    main(['train', '--help'])\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'gymnasium') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout.splitlines()[-1]


# --------------------------------------------------------------------------- early stopping

EARLY = ["--set", "reward_threshold=20", "--set", "rolling_window=5", "--set", "n_envs=4",
         "--set", "n_steps=64", "--set", "minibatch_size=128", "--quiet", "--no-tensorboard", "--seed", 0]


def test_early_stop_when_solved(run_cli, tmp_path):
    budget = 40_000
    proc = run_cli(["train", "CartPole-v1", "--steps", budget, "--out", tmp_path, "--name", "r", *EARLY])
    assert_ok(proc)
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["solved"] is True
    assert summary["reward_threshold"] == 20
    assert isinstance(summary["solved_at_step"], int)
    assert 0 < summary["solved_at_step"] <= summary["total_steps"]
    assert summary["total_steps"] <= budget // 4  # well below the budget
    assert summary["total_steps"] - summary["solved_at_step"] < 4 * 64  # stopped in that rollout
    assert summary["total_steps"] % (4 * 64) == 0
    assert isinstance(summary["solved_at_seconds"], float) and summary["solved_at_seconds"] > 0
    _, episodes = read_csv(run / "episodes.csv")
    assert first_solving_step(episodes, 5, 20.0) == summary["solved_at_step"]
    assert f"solved at step {summary['solved_at_step']:,}" in proc.stdout
    assert (run / "model.pt").is_file()


def test_no_early_stop_runs_the_budget_and_reports_the_first_solve(run_cli, tmp_path):
    budget = 2048
    proc = run_cli(["train", "CartPole-v1", "--steps", budget, "--out", tmp_path, "--name", "r", *EARLY,
                    "--no-early-stop"])
    assert_ok(proc)
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["total_steps"] == budget
    assert summary["updates"] == budget // (4 * 64)
    assert summary["solved"] is True
    _, episodes = read_csv(run / "episodes.csv")
    first = first_solving_step(episodes, 5, 20.0)
    assert first is not None and first < budget
    assert summary["solved_at_step"] == first
    assert len(read_csv(run / "metrics.csv")[1]) == budget // (4 * 64)


# --------------------------------------------------------------------------- seeds


def test_same_seed_same_run_different_seed_different_run(run_cli, tmp_path):
    base = ["train", "CartPole-v1", "--steps", 1024, "--out", tmp_path, "--quiet", "--no-tensorboard",
            "--no-early-stop", "--set", "n_envs=4", "--set", "n_steps=64", "--set", "minibatch_size=128"]
    jobs = {"a": ["--seed", 7, "--name", "a"], "b": ["--seed", 7, "--name", "b"], "c": ["--seed", 8, "--name", "c"]}
    with ThreadPoolExecutor(len(jobs)) as pool:
        procs = dict(zip(jobs, pool.map(lambda extra: run_cli(base + extra), jobs.values())))
    for proc in procs.values():
        assert_ok(proc)

    def metrics(name: str) -> list[dict[str, str]]:
        _, rows = read_csv(tmp_path / name / "metrics.csv")
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in rows]

    def episodes(name: str) -> list[tuple[str, str, str]]:
        _, rows = read_csv(tmp_path / name / "episodes.csv")
        return [(r["global_step"], r["return"], r["length"]) for r in rows]

    assert len(metrics("a")) == 4
    # same machine, same seed, same code path: bit-identical by design (the metrics are floats, compared as written)
    assert metrics("a") == metrics("b")
    assert episodes("a") == episodes("b") and len(episodes("a")) > 5
    assert metrics("a") != metrics("c")
    assert episodes("a") != episodes("c")


# --------------------------------------------------------------------------- renamed ids


def test_lunarlander_v2_resolves_to_v3_with_one_notice(run_cli, tmp_path):
    proc = run_cli(["train", "LunarLander-v2", "--steps", 256, "--out", tmp_path, "--name", "r", "--quiet",
                    "--no-tensorboard", "--set", "n_envs=2", "--set", "n_steps=128",
                    "--set", "minibatch_size=128"])
    assert_ok(proc)
    notices = [line for line in proc.stderr.splitlines() if "LunarLander-v2" in line]
    assert len(notices) == 1, proc.stderr
    assert "LunarLander-v3" in notices[0]
    config = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert config["env_id"] == "LunarLander-v3"
    assert config["gamma"] == pytest.approx(0.999)  # the LunarLander-v3 preset applies
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["env_id"] == "LunarLander-v3" and summary["total_steps"] == 256


@pytest.mark.parametrize("algo", ["trpo", "a2c", "vpg"])
def test_train_and_eval_with_another_algorithm(run_cli, tmp_path, algo):
    """--algo picks the agent: its config fields, its metrics columns, and eval loads it back."""
    from ppolab import Agent

    proc = run_cli(["train", "CartPole-v1", "--algo", algo, "--steps", 1024, "--out", tmp_path,
                    "--set", "n_envs=4", "--set", "n_steps=64", "--quiet", "--no-tensorboard"])
    assert_ok(proc)
    (run,) = tmp_path.iterdir()
    assert f"-{algo}-s0-" in run.name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["algo"] == algo and config["n_steps"] == 64
    cls = Agent.registry[algo]
    assert set(cls.config_class().to_dict()) == set(config) - {"algo", "env_id"}
    columns, rows = read_csv(run / "metrics.csv")
    assert columns == list(metric_columns(cls.update_class.STATS)) and len(rows) == 4
    assert json.loads((run / "summary.json").read_text())["algo"] == algo
    proc = run_cli(["eval", run, "--episodes", 2, "--deterministic"])
    assert_ok(proc)
    assert parse_eval(proc.stdout, 2)[0] >= 8


def test_unknown_algo_and_misplaced_hyperparameters_are_one_line_errors(run_cli, tmp_path):
    proc = run_cli(["train", "CartPole-v1", "--algo", "trop", "--out", tmp_path])
    assert proc.returncode == 2 and "unknown algorithm 'trop'" in proc.stderr and "trpo" in proc.stderr
    proc = run_cli(["train", "CartPole-v1", "--algo", "trpo", "--set", "clip_coef=0.1", "--out", tmp_path])
    assert proc.returncode == 2 and "belongs to ppo" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


def test_a_run_config_brings_its_algorithm(run_cli, tmp_path):
    """--config RUN/config.yaml trains the same algorithm again; a conflicting --algo is an error."""
    first = ["train", "CartPole-v1", "--algo", "a2c", "--steps", 160, "--quiet", "--no-tensorboard",
             "--set", "n_envs=4", "--out", tmp_path]
    assert_ok(run_cli([*first, "--name", "first"]))
    config = tmp_path / "first" / "config.yaml"
    assert_ok(run_cli(["train", "CartPole-v1", "--config", config, "--steps", 160, "--quiet",
                       "--no-tensorboard", "--out", tmp_path, "--name", "again"]))
    assert yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())["algo"] == "a2c"
    proc = run_cli(["train", "CartPole-v1", "--config", config, "--algo", "ppo", "--out", tmp_path])
    assert proc.returncode == 2 and "holds a 'a2c' config but --algo is 'ppo'" in proc.stderr


@pytest.mark.parametrize("algo", ["ppo", "trpo", "a2c", "vpg"])
def test_steps_is_a_minimum_rounded_up_to_whole_rollouts(run_cli, tmp_path, algo):
    """Asked for N steps, a run trains at least N (the next multiple of its rollout), and the
    first line, summary.json and metrics.csv agree on it."""
    config = preset("CartPole-v1", algo)
    batch = config.batch_size
    proc = run_cli(["train", "CartPole-v1", "--algo", algo, "--steps", 20000, "--no-early-stop", "--quiet",
                    "--no-tensorboard", "--out", tmp_path, "--name", "r"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    expected = -(-20000 // batch) * batch
    assert 20000 <= expected < 20000 + batch
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["total_steps"] == expected
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        assert int(list(csv.DictReader(f))[-1]["global_step"]) == expected
    assert f"{expected:,} steps" in proc.stdout


def test_a_budget_smaller_than_one_rollout_is_refused_with_the_numbers(run_cli, tmp_path):
    proc = run_cli(["train", "CartPole-v1", "--set", "n_envs=1000", "--steps", 1000, "--out", tmp_path / "o"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ppolab: error: invalid total_steps=1000: must be at least one rollout, n_envs * n_steps = 1000 * 32 "
        "= 32,000 steps; raise the budget (--steps) or lower n_envs or n_steps"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", ".", ".hidden", ""])
def test_name_must_be_one_directory_name(run_cli, tmp_path, name):
    proc = run_cli(["train", "CartPole-v1", "--steps", 512, "--out", tmp_path / "o", "--name", name], cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--name" in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, inside --out or beside it
