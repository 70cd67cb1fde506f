"""One trial of a sweep: an ordinary training run in its own run directory, then its score.

``run_trial`` is what every executor calls: :func:`trial_process` in a process of its own (the
local executor), :func:`packed_outcome` in a Ray task.
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import tarfile
import tempfile
import traceback
from pathlib import Path
from typing import Any

from ppolab.lab.plan import TrialSpec

EVAL_SEED = 1_000_000  # every trial is scored on the same evaluation episodes


def run_trial(spec: TrialSpec, run_dir: Path) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir`` (replacing what a previous attempt left there) and return
    its result: the score the plan asks for, the step and second at which the rolling mean
    first reached the reward threshold (training is not stopped there), and the totals."""
    from ppolab import clock
    from ppolab.agent import Agent, default_config
    from ppolab.evaluation import evaluate
    from ppolab.progress import Progress
    from ppolab.rundir import RunReporter

    clock.restart()  # the Agent sets torch's threads from config.torch_threads (1 for MLPs unless swept)
    # A trial that is interrupted starts again from scratch, so periodic checkpoints would only
    # cost time and disk; a grid or --set value still wins.
    overrides: dict[str, Any] = {"checkpoint_every": 0, "keep_checkpoints": 1, **spec.overrides,
                                 "seed": spec.seed, "stop_when_solved": False}
    if spec.steps is not None:
        overrides["total_steps"] = spec.steps
    config = default_config(spec.env_id, spec.algo)[0].replace(**overrides)
    if run_dir.exists() and not (run_dir / "config.yaml").is_file():
        shutil.rmtree(run_dir)  # a staging leftover of a killed attempt, never a user's directory
    agent = Agent.registry[spec.algo](spec.env_id, config=config)
    reporter = RunReporter(run_dir, Progress(spec.name, quiet=True))
    try:
        agent.plan()
        reporter.create(agent, overwrite=True)  # refused while another process trains in run_dir
        result = agent.resume(reporter=reporter)
        if spec.score_kind == "eval":
            returns = evaluate(agent, episodes=spec.score_episodes, seed=EVAL_SEED).returns
            score = float(sum(returns) / len(returns))
        else:
            returns = None
            score = _last_training_mean(run_dir / "episodes.csv", spec.score_episodes)
    finally:
        reporter.close()  # its run directory's lock too, after a failure (a Ray worker goes on)
        agent.close()
    return {
        "score": score,
        "eval_returns": None if returns is None else [float(r) for r in returns],
        "final_mean_return": result.final_mean_return_100,
        "total_steps": result.total_steps,
        "wall_seconds": round(result.wall_seconds, 3),
        "reward_threshold": result.reward_threshold,
        "solved_at_step": result.solved_at_step,
        "solved_at_seconds": None if result.solved_at_seconds is None else round(result.solved_at_seconds, 3),
    }


def _last_training_mean(episodes_csv: Path, n: int) -> float:
    with open(episodes_csv, newline="") as f:
        returns = [float(row["return"]) for row in csv.DictReader(f)]
    if not returns:
        raise RuntimeError(f"no training episode finished, so there is no score (see {episodes_csv})")
    return sum(returns[-n:]) / len(returns[-n:])


def error_line(exc: BaseException) -> str:
    """A failed trial's record: ppolab's own errors are already one clear line; anything else
    gets its type and the innermost frame, so that a bug can be found without the log."""
    from ppolab.errors import PPOLabError

    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PPOLabError) else str(exc)
    if not isinstance(exc, PPOLabError) and exc.__traceback__ is not None:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        text += f" ({Path(frame.filename).name}:{frame.lineno})"
    return text.replace("\n", " ")


def outcome(spec: TrialSpec, run_dir: Path) -> dict[str, Any]:
    """``{"result": ...}`` or ``{"error": "one line"}``: a trial's failure is data, not a crash."""
    try:
        return {"result": run_trial(spec, run_dir)}
    except Exception as exc:  # noqa: BLE001  (any failure of the user's env or config is recorded)
        traceback.print_exc()
        return {"error": error_line(exc)}


def packed_outcome(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """Run a trial where the driver's disk is not reachable (a Ray worker): train into a
    temporary directory and send the run directory back as a gzipped tar with the outcome."""
    spec = TrialSpec(**spec_dict)
    log = io.StringIO()  # what the local backend's log file would hold, for the driver to write
    with tempfile.TemporaryDirectory(prefix="ppolab-trial-") as tmp:
        run_dir = Path(tmp) / spec.name
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            result = outcome(spec, run_dir)
        result["log"] = log.getvalue()
        buffer = io.BytesIO()
        if run_dir.is_dir():
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(run_dir, arcname=spec.name)
        result["archive"] = buffer.getvalue()
    return result


def unpack(archive: bytes, runs_dir: Path, name: str) -> None:
    """Replace ``runs_dir/name`` with the run directory in ``archive`` (see :func:`packed_outcome`)."""
    target = runs_dir / name
    if target.exists():
        shutil.rmtree(target)
    if not archive:
        return
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
        if any(not (m.name == name or m.name.startswith(name + "/")) for m in members):
            raise RuntimeError(f"the archive of trial {name} holds files outside its run directory")
        tar.extractall(runs_dir, members=members, filter="data")


def trial_process(spec: TrialSpec, run_dir: Path, result_path: Path, log_path: Path) -> None:
    """A local trial's process: its own process group (so the sweep can kill it with the env
    workers it starts), killed if its parent dies (a trial must not outlive a killed sweep and
    write into a run directory that the re-run starts again), its output in ``log_path``, and
    its outcome in ``result_path``."""
    import ctypes
    import os
    import signal

    from ppolab.files import write_json

    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    write_json(result_path, outcome(spec, run_dir))
