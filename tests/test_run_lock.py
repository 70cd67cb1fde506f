"""One process at a time in a run directory, and the leftovers of killed ones: real ``ppolab``
processes, real locks, real SIGKILLs."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import TINY, cli_env, ppolab_command

from ppolab.errors import RunDirectoryError
from ppolab.runlock import LOCK_NAME, RunLock, holder

# Quick updates (2 envs x 16 steps, one epoch, a small net): a budget of 100,000 of them is never
# reached while a test looks, and a resume of a few of them is over in a second.
SMALL = ["--set", "n_envs=2", "--set", "n_steps=16", "--set", "minibatch_size=32", "--set", "n_epochs=1",
         "--set", "hidden_sizes=16,16"]
ENDLESS = [*SMALL, "--steps", 100_000 * 32, "--no-early-stop", "--quiet", "--no-tensorboard"]


def start(args: list[object]) -> subprocess.Popen[str]:
    return subprocess.Popen([*ppolab_command(), *map(str, args)], env=cli_env(), text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def command_line(args: list[object]) -> str:
    """What a ``ppolab`` process started with ``args`` writes into the lock it holds."""
    return shlex.join([Path(ppolab_command()[-1]).name if len(ppolab_command()) == 1 else "cli.py",
                       *map(str, args)])


def wait_until_holding(run_dir: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Block until ``proc`` holds the lock of ``run_dir`` (and has named itself in it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ppolab ended before it held {run_dir}: {proc.communicate()}")
        found = holder(run_dir)
        if found is not None and found.startswith(f"{proc.pid} "):
            return
        time.sleep(0.01)
    raise AssertionError(f"{proc.pid} did not lock {run_dir} in {timeout} s")


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def kill(proc: subprocess.Popen[str]) -> None:
    proc.kill()  # SIGKILL: no handler, no cleanup, the lock goes with the process
    proc.communicate()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def in_use(run_dir: Path, pid: int, args: list[object]) -> str:
    return (f"ppolab: error: run directory {run_dir} is in use by process {pid} ({command_line(args)}); "
            "wait for it to finish or stop it")


def leftovers(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory whose training was SIGKILLed: resumable, with a few updates done."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    proc = start(["train", "CartPole-v1", "--out", run_dir.parent, "--name", "run", *ENDLESS,
                  "--set", "checkpoint_every=5"])
    wait_until_holding(run_dir, proc)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "ckpt-000000005.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.01)
    kill(proc)
    assert (run_dir / "checkpoints" / "ckpt-000000005.pt").is_file()
    for name in leftovers(run_dir):  # should the kill have landed in a write: the tests add their own
        (run_dir / name).unlink()
    return run_dir


def copy_run(interrupted: Path, tmp_path: Path, name: str = "run") -> Path:
    run_dir = tmp_path / name
    shutil.copytree(interrupted, run_dir)
    return run_dir


# --- the lock


def test_a_second_process_is_refused_at_once_and_writes_nothing(interrupted, tmp_path, run_cli):
    run_dir = copy_run(interrupted, tmp_path)
    # ppolab resume holds it; SIGSTOP keeps its files still while the second process tries
    holder_args = ["resume", run_dir, "--quiet"]
    first = start(holder_args)
    try:
        wait_until_holding(run_dir, first)
        first.send_signal(signal.SIGSTOP)
        before = snapshot(tmp_path)

        second = run_cli(["resume", run_dir, "--quiet"])
        assert second.returncode == 2
        assert second.stderr == in_use(run_dir, first.pid, holder_args) + "\n"
        assert second.stdout == ""

        overwrite = run_cli(["train", "CartPole-v1", "--out", tmp_path, "--name", "run", "--overwrite", *ENDLESS])
        assert overwrite.returncode == 2
        assert overwrite.stderr == in_use(run_dir, first.pid, holder_args) + "\n"

        assert snapshot(tmp_path) == before  # not a file written, renamed or touched, beside it neither
    finally:
        kill(first)  # stopped or not


def test_a_killed_holder_does_not_block(interrupted, tmp_path):
    run_dir = copy_run(interrupted, tmp_path)
    train_args = ["train", "CartPole-v1", "--out", tmp_path, "--name", "run", "--overwrite", *ENDLESS,
                  "--seed", 7]
    trainer = start(train_args)  # replaces the copy: the old directory's lock, then its own
    deadline = time.monotonic() + 120
    while "seed: 7\n" not in read(run_dir / "config.yaml") and time.monotonic() < deadline:
        time.sleep(0.01)  # the old run's config.yaml, none between the two renames, then the new one's
    wait_until_holding(run_dir, trainer)  # the new run directory, locked since it exists
    kill(trainer)
    assert (run_dir / LOCK_NAME).read_text().startswith(f"{trainer.pid} ")  # its name stays; its lock went

    resumer = start(["resume", run_dir, "--quiet"])
    try:
        wait_until_holding(run_dir, resumer)  # the killed holder's lock did not stop it
    finally:
        kill(resumer)


def test_the_python_api_locks_through_the_run_reporter(tmp_path):
    from ppolab import PPO
    from ppolab.progress import Progress
    from ppolab.rundir import RunReporter

    run_dir = tmp_path / "run"
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32, hidden_sizes=(16, 16), n_epochs=1)
    agent.plan(64)
    first = RunReporter(run_dir, Progress("t", quiet=True), tensorboard=False)
    first.create(agent)
    assert holder(run_dir).startswith(f"{os.getpid()} ")
    other = RunReporter(run_dir, Progress("t", quiet=True), tensorboard=False)
    with pytest.raises(RunDirectoryError, match=rf"^run directory {run_dir} is in use by process {os.getpid()} "):
        other.create(agent, overwrite=True)
    agent.resume(reporter=first)  # on_end releases it once summary.json is written
    assert holder(run_dir) is None and (run_dir / "summary.json").is_file()
    agent.close()


def test_a_sweep_trial_on_a_run_directory_in_use_fails_with_the_message(tmp_path):
    from ppolab.lab.plan import TrialSpec
    from ppolab.lab.trial import outcome

    run_dir = tmp_path / "trial"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("algo: ppo\n")
    lock = RunLock.acquire(run_dir)  # this process stands for another one training there
    try:
        spec = TrialSpec(name="trial", config="", env_id="CartPole-v1", algo="ppo", seed=0,
                         overrides={"n_envs": "2", "n_steps": "16", "minibatch_size": "32"}, steps=64,
                         score_kind="train", score_episodes=1)
        result = outcome(spec, run_dir)
    finally:
        lock.release()
    assert result["error"].startswith(f"run directory {run_dir} is in use by process {os.getpid()} (")
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME, "config.yaml"]


# --- what killed processes leave behind


def test_resume_removes_and_reports_the_temporary_files_of_a_killed_writer(tmp_path, run_cli):
    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    # wide layers: each checkpoint is megabytes, so its temporary file lives long enough to be seen
    args = ["train", "CartPole-v1", "--out", tmp_path, "--name", "run", *TINY, "--steps", 4 * 512,
            "--no-early-stop", "--quiet", "--no-tensorboard", "--set", "checkpoint_every=1",
            "--set", "hidden_sizes=768,768", "--set", "n_epochs=1"]
    left: list[str] = []
    for _ in range(5):  # a kill can land just after the rename: try again
        proc = start(args if not run_dir.exists() else ["resume", run_dir, "--quiet"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
                break
            time.sleep(0.0005)
        kill(proc)
        left = leftovers(run_dir) if run_dir.exists() else []
        if left or (run_dir / "summary.json").exists():
            break
    assert left and all(name.startswith("checkpoints/.ckpt-") for name in left), left

    proc = run_cli(["resume", run_dir, "--quiet"])
    assert proc.returncode == 0, proc.stderr
    removed = f"{len(left)} temporary file{'s' if len(left) > 1 else ''}"
    assert (f"ppolab: removed {removed} left by a killed process in {run_dir}: {', '.join(left)}\n"
            in proc.stderr), proc.stderr
    assert leftovers(run_dir) == []
    assert (run_dir / "summary.json").is_file()


def test_eval_restores_a_run_directory_a_killed_overwrite_had_set_aside(interrupted, tmp_path, run_cli):
    # What SIGKILL between --overwrite's two renames leaves (that instant is too short to hit):
    # the old run directory renamed aside, the new one complete under its temporary name, and
    # no run directory.
    old = copy_run(interrupted, tmp_path, ".run.replaced-4242")
    copy_run(interrupted, tmp_path, ".run.k3j5h7g9.tmp")
    run_dir = tmp_path / "run"

    proc = run_cli(["eval", run_dir, "--episodes", 1])
    assert proc.returncode == 0, proc.stderr
    assert "CartPole-v1: mean return" in proc.stdout
    assert proc.stderr.splitlines() == [
        f"ppolab: restored {run_dir} from .run.replaced-4242, where a process killed while replacing it "
        "(--overwrite) had set it aside",
        f"ppolab: removed 1 folder left beside {run_dir} by a process killed while creating or replacing it: "
        ".run.k3j5h7g9.tmp",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and not old.exists()
    assert snapshot(run_dir).keys() == snapshot(interrupted).keys()


def test_overwrite_removes_folders_of_killed_processes_but_not_one_in_use(interrupted, tmp_path, run_cli):
    run_dir = copy_run(interrupted, tmp_path)
    # SIGKILL while --overwrite deleted the old directory leaves part of it set aside
    partial = copy_run(interrupted, tmp_path, ".run.replaced-4242")
    shutil.rmtree(partial / "checkpoints")
    (partial / LOCK_NAME).unlink()
    # a folder whose lock is held belongs to a live process (this one stands for it)
    live = tmp_path / ".run.zzzzzzzz.tmp"
    live.mkdir()
    lock = RunLock.acquire(live)
    try:
        proc = run_cli(["train", "CartPole-v1", "--out", tmp_path, "--name", "run", "--overwrite", *SMALL,
                        "--steps", 64, "--quiet", "--no-tensorboard"])
    finally:
        lock.release()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (f"ppolab: removed 1 folder left beside {run_dir} by a process killed while "
                           "creating or replacing it: .run.replaced-4242\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.zzzzzzzz.tmp", "run"]
    assert (run_dir / "summary.json").is_file()


def test_eval_during_training_works_and_removes_nothing(interrupted, tmp_path, run_cli):
    run_dir = copy_run(interrupted, tmp_path)
    trainer = start(["resume", run_dir, "--quiet"])
    try:
        wait_until_holding(run_dir, trainer)
        trainer.send_signal(signal.SIGSTOP)  # it holds the lock; its pruning cannot race the load
        # names of temporary files, as a killed writer leaves them; the trainer's lock protects them
        stray = [run_dir / ".summary.json.a1b2c3d4.tmp", run_dir / "checkpoints" / ".ckpt-000000099.pt.e5f6g7h8.tmp"]
        for path in stray:
            path.write_bytes(b"half a file")
        busy = run_cli(["eval", run_dir, "--episodes", 2])
        assert busy.returncode == 0, busy.stderr
        assert "mean return" in busy.stdout and busy.stderr == ""
        assert all(path.exists() for path in stray)
    finally:
        kill(trainer)

    idle = run_cli(["eval", run_dir, "--episodes", 2])
    assert idle.returncode == 0, idle.stderr
    assert idle.stderr.startswith(f"ppolab: removed ") and "left by a killed process in" in idle.stderr
    assert ".summary.json.a1b2c3d4.tmp" in idle.stderr and "checkpoints/.ckpt-000000099.pt.e5f6g7h8.tmp" in idle.stderr
    assert leftovers(run_dir) == []
