"""Checkpoints, resume and clean stops: real files, real signals, real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, cli_env, ppolab_command

from ppolab import PPO, Agent
from ppolab.checkpoints import CheckpointDir
from ppolab.errors import ConfigError, RunDirectoryError
from ppolab.metrics import truncate_run_files

BATCH = 4 * 128  # TINY's steps per update


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def raw_tensorboard_steps(run_dir: Path) -> dict[str, list[int]]:
    """Every scalar event's step per tag, straight from the event files in order (no purging)."""
    from tensorboard.backend.event_processing.event_file_loader import (
        RawEventFileLoader,
    )
    from tensorboard.compat.proto.event_pb2 import Event

    steps: dict[str, list[int]] = {}
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def assert_run_files_continuous(run_dir: Path) -> None:
    """metrics.csv has updates 1..U once each, episodes.csv episodes 1..E once each, both in
    step order, and TensorBoard holds each update's step exactly once."""
    metrics = read_rows(run_dir / "metrics.csv")
    assert [int(r["update"]) for r in metrics] == list(range(1, len(metrics) + 1))
    steps = [int(r["global_step"]) for r in metrics]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    seconds = [float(r["wall_seconds"]) for r in metrics]
    assert seconds == sorted(seconds)
    episodes = read_rows(run_dir / "episodes.csv")
    assert [int(r["episode"]) for r in episodes] == list(range(1, len(episodes) + 1))
    ends = [int(r["global_step"]) for r in episodes]
    assert ends == sorted(ends)
    if (run_dir / "tensorboard").is_dir():
        assert tensorboard_steps(run_dir, "train/learning_rate") == steps
        # the files themselves hold each point once (readers that ignore purge events see the same)
        raw = raw_tensorboard_steps(run_dir)
        assert raw["train/learning_rate"] == steps
        assert raw["episode/return"] == ends


def start_train(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    args = ["train", "CartPole-v1", "--out", run_dir.parent, "--name", run_dir.name, *TINY,
            "--no-early-stop", "--quiet", *extra]
    return subprocess.Popen([*ppolab_command(), *map(str, args)], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def wait_for_checkpoint(run_dir: Path, update: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Block until the checkpoint of ``update`` exists (the run is training past it)."""
    deadline = time.monotonic() + timeout
    path = run_dir / "checkpoints" / f"ckpt-{update:09d}.pt"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()}")
        if path.is_file():
            return
        time.sleep(0.01)
    raise AssertionError(f"no {path} after {timeout} s")


# --- the checkpoint folder


def test_checkpoints_are_numbered_pruned_and_hold_the_state(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32, seed=3)
    folder = CheckpointDir(tmp_path, keep=2)
    for _ in range(3):
        agent.learn(64)
        folder.write(agent)
    assert [p.name for p in folder.all()] == ["ckpt-000000002.pt", "ckpt-000000003.pt"]
    loaded = Agent.load(folder.all()[-1])
    assert (loaded.global_step, loaded.updates, loaded.episode_count) == (
        agent.global_step, agent.updates, agent.episode_count)
    for a, b in zip(agent.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert torch.equal(a, b)  # saved and loaded, not recomputed: bit-identical by design
    agent.close()


def test_a_stray_temporary_file_is_ignored_and_cleaned(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    folder = CheckpointDir(tmp_path)
    good = folder.write(agent)
    stray = folder.path / ".ckpt-000000009.pt.abc123.tmp"
    stray.write_bytes(b"half a checkpoint")
    assert folder.all() == [good]
    folder.clean()
    assert not stray.exists() and good.exists()
    agent.close()


def test_a_corrupted_newest_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    folder = CheckpointDir(tmp_path)
    agent.learn(64)
    folder.write(agent)
    agent.learn(64)
    newest = folder.write(agent)
    newest.write_bytes(newest.read_bytes()[:1000])  # a disk that lost the end of the file
    loaded = folder.load_newest(lambda path: PPO.load(path, env="CartPole-v1"))
    assert loaded.updates == 1
    assert "skipping checkpoint ckpt-000000002.pt (renamed to ckpt-000000002.pt.bad)" in capsys.readouterr().err
    assert [p.name for p in folder.all()] == ["ckpt-000000001.pt"]  # it never counts again
    assert (folder.path / "ckpt-000000002.pt.bad").is_file()
    loaded.close()
    agent.close()


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunDirectoryError, match="has no checkpoint to resume from"):
        CheckpointDir(tmp_path).load_newest(PPO.load)


# --- resume through the API


def test_resume_continues_the_schedule_and_counters(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=64, minibatch_size=64, seed=5)
    rows: list[dict] = []
    agent.learn(1280, callback=lambda row: rows.append(row) or len(rows) < 4)  # 10 updates planned
    assert agent.updates == 4 and agent.schedule == (0, 1280)
    path = agent.save(tmp_path / "ckpt.pt")
    agent.close()

    loaded = PPO.load(path, env="CartPole-v1")
    assert loaded.schedule == (0, 1280)
    resumed: list[dict] = []
    result = loaded.resume(callback=resumed.append)
    assert [r["update"] for r in resumed] == [5, 6, 7, 8, 9, 10]
    assert result.total_steps == 1280 and loaded.schedule is None
    # the learning rate continues the same linear schedule: lr0 * (1 - k / 10) at update k + 1
    lr0 = loaded.config.learning_rate
    assert [r["learning_rate"] for r in rows + resumed] == pytest.approx([lr0 * (1 - k / 10) for k in range(10)])
    loaded.close()


def test_resume_restores_the_saved_generator_states(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=64, minibatch_size=64, seed=5)
    agent.learn(1280, callback=lambda row: False)
    path = agent.save(tmp_path / "ckpt.pt")
    expected = (torch.get_rng_state(), np.random.get_state()[1].copy(), agent.generator.get_state())
    agent.close()
    torch.manual_seed(99)  # something else uses the generators in between
    np.random.seed(99)
    loaded = PPO.load(path, env="CartPole-v1")
    seen: list[tuple] = []
    collect = loaded.collector.collect

    def spy(global_step: int):  # type: ignore[no-untyped-def]
        seen.append((torch.get_rng_state(), np.random.get_state()[1].copy(), loaded.generator.get_state()))
        return collect(global_step)

    loaded.collector.collect = spy  # type: ignore[method-assign]
    loaded.resume(callback=lambda row: False)
    assert seen, "resume did not train"
    for got, want in zip(seen[0], expected, strict=True):
        assert np.array_equal(np.asarray(got), np.asarray(want))
    loaded.close()


def test_resume_after_a_finished_learn_is_refused():
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    agent.learn(64)
    with pytest.raises(ConfigError, match="nothing to resume"):
        agent.resume()
    agent.close()


# --- resume continues the episodes in flight

EXACT_RUNS = {
    "native vector env": ("CartPole-v1", {}),
    "recurrent, normalized, sync": ("ppolab/CartPoleNoVelocity-v1", {"recurrent": "lstm", "sequence_length": 8}),
    "masks, autoreset due, sync": ("envs_for_tests:MaskedChoiceEnv", {"n_steps": 8, "minibatch_size": 8}),
    "masks, autoreset due, async": ("envs_for_tests:MaskedChoiceEnv",
                                    {"n_steps": 8, "minibatch_size": 8, "vectorization": "async"}),
}


def _train(env: str, settings: dict, stop_after: int | None, tmp_path: Path, **resume_kwargs) -> tuple:
    """Rows and final weights of 4 updates in one go, or stopped after ``stop_after``, saved,
    loaded with a new env and resumed; also the episodes the checkpoint held."""
    agent = PPO(env, **{"seed": 3, "n_envs": 2, "n_steps": 32, "minibatch_size": 32, **settings})
    rows: list[dict] = []
    in_flight = None
    agent.learn(4 * agent.config.batch_size,
                callback=lambda row: rows.append(row) or stop_after is None or row["update"] < stop_after)
    if stop_after is not None:
        path = agent.save(tmp_path / "ckpt.pt")
        agent.close()
        agent = PPO.load(path, env=env)
        in_flight = agent._in_flight
        agent.resume(callback=rows.append, **resume_kwargs)
    weights = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    agent.close()
    return rows, weights, in_flight


def _diagnostics(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("wall_seconds", "sps")} for row in rows]


@pytest.mark.parametrize("case", EXACT_RUNS)
def test_a_resumed_run_continues_its_episodes_exactly(tmp_path, case):
    """Stopped, saved, loaded with a new env and resumed, a run trains exactly as if it had never
    stopped: same diagnostics at every update, same final weights (same machine: bit-identical).
    Stopping after update 1 of the MaskedChoiceEnv runs (episodes of 8 steps, rollouts of 8) leaves
    every env due for Gymnasium's next-step autoreset, which the restored envs must replay."""
    env, settings = EXACT_RUNS[case]
    rows, weights, _ = _train(env, settings, None, tmp_path)
    for stop_after in (1, 2):
        resumed_rows, resumed_weights, in_flight = _train(env, settings, stop_after, tmp_path)
        assert "problem" not in in_flight["envs"]
        if "autoreset due" in case and stop_after == 1:
            assert in_flight["autoreset_next"].all()
        assert _diagnostics(resumed_rows) == _diagnostics(rows)
        for name, value in weights.items():
            assert torch.equal(resumed_weights[name], value), name


def test_new_episodes_declines_the_saved_envs(tmp_path, monkeypatch):
    from ppolab import snapshots

    def refuse(blob: bytes) -> None:
        raise AssertionError("resume(new_episodes=True) unpickled a saved env")

    monkeypatch.setattr(snapshots, "loads", refuse)
    rows, _, in_flight = _train("envs_for_tests:MaskedChoiceEnv", {"n_steps": 8, "minibatch_size": 8}, 1, tmp_path,
                                new_episodes=True)
    assert "sub_envs" in in_flight["envs"] and [r["update"] for r in rows] == [1, 2, 3, 4]


def test_envs_that_cannot_be_saved_start_new_episodes_with_a_note(tmp_path, capsys):
    rows, _, in_flight = _train("envs_for_tests:ConstructorPickleEnv", {"n_steps": 8, "minibatch_size": 8}, 2,
                                tmp_path)
    assert in_flight["envs"] == {"problem": "ConstructorPickleEnv pickles only its constructor arguments (EzPickle)"}
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    assert ("the episodes in flight at the checkpoint cannot be continued (ConstructorPickleEnv pickles only its "
            "constructor arguments (EzPickle)); the resumed run starts new ones") in capsys.readouterr().err


@pytest.mark.parametrize("saved", [True, False])
def test_checkpoint_episodes_decides_whether_checkpoints_hold_the_envs(tmp_path, saved):
    from ppolab import modelfile

    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32, checkpoint_episodes=saved)
    agent.learn(128, callback=lambda row: False)
    in_flight = modelfile.load(agent.save(tmp_path / "ckpt.pt"))["in_flight"]
    agent.close()
    assert (in_flight is not None and "vector" in in_flight["envs"]) if saved else in_flight is None


def test_a_checkpoint_after_an_env_fault_holds_no_episodes(tmp_path):
    """After a fault the collector puts the learning state back, but not the envs: their
    episodes cannot be saved, and the checkpoint resumes with new ones."""
    from ppolab import modelfile
    from ppolab.errors import EnvironmentFaultError

    agent = PPO("envs_for_tests:StepRaisesInEpisodeEnv", n_envs=2, n_steps=8, minibatch_size=16)
    with pytest.raises(EnvironmentFaultError):
        agent.learn(10_000)
    assert agent.schedule is not None  # a resumable checkpoint, yet without episodes
    assert modelfile.load(agent.save(tmp_path / "fault.pt"))["in_flight"] is None
    agent.close()


# --- run files


def test_truncate_run_files_drops_rows_after_the_checkpoint(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "update,global_step,wall_seconds,x\n1,10,0.5,a\n2,20,1.5,b\n3,30,2.5,c\n4,40,3.")
    (tmp_path / "episodes.csv").write_text("episode,global_step\n1,5\n2,15\n3,25\n")
    assert truncate_run_files(tmp_path, updates=2, episodes=2) == 1.5
    assert (tmp_path / "metrics.csv").read_text() == "update,global_step,wall_seconds,x\n1,10,0.5,a\n2,20,1.5,b\n"
    assert (tmp_path / "episodes.csv").read_text() == "episode,global_step\n1,5\n2,15\n"


def test_truncate_run_files_refuses_a_missing_file(tmp_path):
    (tmp_path / "episodes.csv").write_text("episode,global_step\n")
    with pytest.raises(RunDirectoryError, match="metrics.csv is missing but the checkpoint counts 2 rows"):
        truncate_run_files(tmp_path, updates=2, episodes=0)


def test_truncate_run_files_refuses_missing_rows(tmp_path):
    (tmp_path / "metrics.csv").write_text("update,global_step,wall_seconds\n1,10,0.5\n")
    with pytest.raises(RunDirectoryError, match="has 1 complete rows but the checkpoint counts 3"):
        truncate_run_files(tmp_path, updates=3, episodes=0)


# --- the CLI: signals, resume, refusals


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_checkpoints_and_resume_finishes_the_run(tmp_path, run_cli, sig, code):
    run_dir = tmp_path / "run"
    # 2 envs x 16 steps, one epoch: quick updates, so that 400 of them outlast the signal
    small = ["--set", "n_envs=2", "--set", "n_steps=16", "--set", "minibatch_size=32", "--set", "n_epochs=1"]
    proc = start_train(run_dir, "--steps", 400 * 32, "--set", "checkpoint_every=3", *small)
    wait_for_checkpoint(run_dir, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted by {sig.name}" in err and f"ppolab resume {run_dir}" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted_by"] == sig.name
    stopped_at = summary["updates"]
    assert 3 <= stopped_at < 400
    # the checkpoint written on the way out holds the last update, not the newest periodic one
    assert CheckpointDir(run_dir).all()[-1].name == f"ckpt-{stopped_at:09d}.pt"
    assert len(read_rows(run_dir / "metrics.csv")) == stopped_at

    proc = run_cli(["resume", run_dir, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == 400 * 32 and summary["updates"] == 400
    assert summary["interrupted_by"] is None
    assert_run_files_continuous(run_dir)
    assert Agent.load(run_dir).updates == 400

    again = run_cli(["resume", run_dir])
    assert again.returncode == 2 and "finished its training" in again.stderr


def test_ppolab_resume_continues_the_run_exactly(tmp_path, run_cli):
    """A run cut back to its checkpoint after update 3 (as a kill would leave it) and resumed
    writes the same metrics and episodes as the run that went through (same machine)."""
    import shutil

    run_dir, cut = tmp_path / "run", tmp_path / "cut"
    proc = run_cli(["train", "CartPole-v1", "--steps", 6 * 256, "--set", "n_envs=4", "--set", "n_steps=64",
                    "--set", "minibatch_size=128", "--set", "checkpoint_every=1", "--set", "keep_checkpoints=10",
                    "--out", tmp_path, "--name", "run", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(run_dir, cut)
    for path in [cut / "summary.json", cut / "model.pt", *CheckpointDir(cut).all()[4:]]:
        path.unlink()
    assert CheckpointDir(cut).all()[-1].name == "ckpt-000000003.pt"
    proc = run_cli(["resume", cut, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "new ones" not in proc.stderr

    def without_clock(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k not in ("wall_seconds", "sps")} for row in read_rows(path)]

    for name in ("metrics.csv", "episodes.csv"):
        assert without_clock(cut / name) == without_clock(run_dir / name), name
    assert len(read_rows(cut / "metrics.csv")) == 6


def test_resume_refuses_what_is_not_a_run_directory(tmp_path, run_cli):
    proc = run_cli(["resume", tmp_path])
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"ppolab: error: {tmp_path} is not a ppolab run directory (no config.yaml in it)"


def test_existing_run_directory_message_names_the_ways_out(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("algo: ppo\n")
    proc = run_cli(["train", "CartPole-v1", "--out", tmp_path, "--name", "run", *TINY, "--steps", 512])
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr and f"ppolab resume {run_dir}" in proc.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


def test_overwrite_replaces_a_run_directory(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    args = ["train", "CartPole-v1", "--out", tmp_path, "--name", "run", *TINY, "--quiet", "--no-tensorboard"]
    assert run_cli([*args, "--steps", 3 * BATCH]).returncode == 0
    (run_dir / "stale.txt").write_text("from the first run")
    proc = run_cli([*args, "--steps", BATCH, "--overwrite"])
    assert proc.returncode == 0, proc.stderr
    assert not (run_dir / "stale.txt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["updates"] == 1


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, run_cli):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    proc = run_cli(["train", "CartPole-v1", "--out", tmp_path, "--name", "precious", "--overwrite"])
    assert proc.returncode == 2 and "is not a ppolab run directory" in proc.stderr
    assert (target / "thesis.tex").read_text() == "years of work"


def test_a_full_disk_stops_the_run_and_resume_continues_it(tmp_path, run_cli):
    # RLIMIT_FSIZE makes every write past LIMIT bytes of one file fail with EFBIG, as a full disk
    # fails with ENOSPC: metrics.csv outgrows it after some hundred updates.
    limit = 64_000
    run_dir = tmp_path / "run"
    small = ["--set", "n_envs=2", "--set", "n_steps=16", "--set", "minibatch_size=32",
             "--set", "hidden_sizes=16,16", "--set", "checkpoint_every=10", "--set", "n_epochs=1"]
    args = ["train", "CartPole-v1", "--out", tmp_path, "--name", "run", *small, "--steps", 32 * 600,
            "--no-early-stop", "--no-tensorboard", "--quiet"]
    proc = subprocess.run(
        [*ppolab_command(), *map(str, args)], env=cli_env(), capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ppolab: error: writing to {run_dir} failed at step ")
    assert "File too large" in message and message.endswith(f"continue with: ppolab resume {run_dir}")
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    stopped = Agent.load(CheckpointDir(run_dir).all()[-1])
    assert 0 < stopped.updates < 600

    proc = run_cli(["resume", run_dir, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["updates"] == 600
    assert_run_files_continuous(run_dir)


def test_ctrl_c_with_async_workers_still_checkpoints(tmp_path):
    # A terminal sends SIGINT to the whole process group, async env workers included; they must
    # leave it to the main process, which finishes its update and checkpoints.
    run_dir = tmp_path / "run"
    args = ["train", "CartPole-v1", "--out", tmp_path, "--name", "run", "--quiet", "--no-tensorboard",
            "--set", "vectorization=async", "--set", "n_envs=2", "--set", "n_steps=64",
            "--set", "minibatch_size=128", "--set", "checkpoint_every=2", "--steps", 400 * 128,
            "--no-early-stop"]
    proc = subprocess.Popen([*ppolab_command(), *map(str, args)], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for_checkpoint(run_dir, 2, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted_by"] == "SIGINT"
    assert CheckpointDir(run_dir).all()[-1].name == f"ckpt-{summary['updates']:09d}.pt"
