"""SIGKILL a training run again and again, at random moments and in the middle of checkpoint
writes: every time the run directory loads, ``ppolab resume`` continues it, and no completed
checkpoint is ever lost."""

from __future__ import annotations

import json
import random
import subprocess
import time
from pathlib import Path

from conftest import TINY, cli_env, ppolab_command
from test_checkpoints import BATCH, assert_run_files_continuous

from ppolab import Agent
from ppolab.checkpoints import CheckpointDir

UPDATES = 60
# Wide layers make each checkpoint a few MB, so that a write takes long enough to be hit.
ARGS = [*TINY, "--steps", UPDATES * BATCH, "--no-early-stop", "--quiet",
        "--set", "checkpoint_every=1", "--set", "keep_checkpoints=2", "--set", "hidden_sizes=384,384"]


def newest_update(run_dir: Path) -> int:
    found = CheckpointDir(run_dir).all()
    return int(found[-1].name[5:14]) if found else -1


def launch(run_dir: Path, first: bool) -> subprocess.Popen[bytes]:
    args = (["train", "CartPole-v1", "--out", run_dir.parent, "--name", run_dir.name, *ARGS] if first
            else ["resume", run_dir, "--quiet"])
    return subprocess.Popen([*ppolab_command(), *map(str, args)], env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_while_writing(proc: subprocess.Popen[bytes], folder: Path, timeout: float) -> bool:
    """SIGKILL as soon as a checkpoint's temporary file appears; True if it was still there
    after the kill (the process died in the middle of that write)."""
    deadline = time.monotonic() + timeout
    stale = {n for n in _names(folder) if n.endswith(".tmp")}  # left by an earlier kill
    while time.monotonic() < deadline and proc.poll() is None:
        fresh = {n for n in _names(folder) if n.endswith(".tmp")} - stale
        if fresh:
            proc.kill()
            proc.wait()
            return bool(fresh & set(_names(folder)))
        time.sleep(0.0005)
    proc.kill()
    proc.wait()
    return False


def _names(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except FileNotFoundError:
        return []


def test_sigkill_at_random_moments_never_loses_a_completed_checkpoint(tmp_path):
    rng = random.Random(20261125)
    run_dir = tmp_path / "run"
    folder = run_dir / "checkpoints"
    floor = -1  # the newest checkpoint known complete before a kill
    kills = mid_write = 0
    proc = launch(run_dir, first=True)
    while kills < 12:
        if kills % 2 == 0:  # a random moment: start-up, rollout, update, CSV or checkpoint writing
            time.sleep(rng.uniform(1.0, 4.0))
            floor = max(floor, newest_update(run_dir))
            proc.kill()
            proc.wait()
        else:  # aim at a checkpoint write
            floor = max(floor, newest_update(run_dir))
            mid_write += kill_while_writing(proc, folder, timeout=30)
        kills += 1
        if (run_dir / "summary.json").is_file():
            break  # it finished before this kill landed
        if not run_dir.exists():  # killed while starting up: nothing was written, start again
            proc = launch(run_dir, first=True)
            continue
        newest = newest_update(run_dir)
        assert newest >= floor, f"kill {kills}: newest checkpoint {newest} is older than {floor}"
        agent = Agent.load(CheckpointDir(run_dir).all()[-1])  # loads without a fault
        assert agent.updates == newest and agent.global_step >= newest * BATCH
        floor = newest
        proc = launch(run_dir, first=False)

    if not (run_dir / "summary.json").is_file():  # let the last resume finish
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
    assert mid_write >= 1, "no kill landed in the middle of a checkpoint write"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["updates"] == UPDATES and summary["total_steps"] == UPDATES * BATCH
    assert_run_files_continuous(run_dir)
    assert not [n for n in _names(folder) if n.endswith(".tmp")]
