"""One trial of a sweep: an ordinary training run in its own run directory, then its score.

``run_trial`` is what every executor calls: :func:`trial_process` in a process of its own (the
local executor), :func:`packed_outcome` in a Ray task. Trials that can share a process train
as one population (:mod:`ppolab.population`): :func:`run_population`, in
:func:`population_process` or :func:`packed_population`, leaves each member's run directory and
result exactly where and as its lone trial would.
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


def trial_config(spec: TrialSpec) -> Any:
    """The config ``spec`` trains with: its algorithm's preset or defaults on its env, its
    overrides, its seed and budget."""
    from ppolab.agent import default_config

    # A trial that is interrupted starts again from scratch, so periodic checkpoints would only
    # cost time and disk; a grid or --set value still wins.
    overrides: dict[str, Any] = {"checkpoint_every": 0, "keep_checkpoints": 1, **spec.overrides,
                                 "seed": spec.seed, "stop_when_solved": False}
    if spec.steps is not None:
        overrides["total_steps"] = spec.steps
    return default_config(spec.env_id, spec.algo)[0].replace(**overrides)


def _start(spec: TrialSpec, run_dir: Path) -> tuple[Any, Any]:
    """The trial's agent, planned, and the reporter of its (new) run directory."""
    from ppolab.agent import Agent
    from ppolab.progress import Progress
    from ppolab.rundir import RunReporter

    config = trial_config(spec)
    if run_dir.exists() and not (run_dir / "config.yaml").is_file():
        shutil.rmtree(run_dir)  # a staging leftover of a killed attempt, never a user's directory
    agent = Agent.registry[spec.algo](spec.env_id, config=config)
    reporter = RunReporter(run_dir, Progress(spec.name, quiet=True))
    try:
        agent.plan()
        reporter.create(agent, overwrite=True)  # refused while another process trains in run_dir
    except BaseException:
        reporter.close()
        agent.close()
        raise
    return agent, reporter


def run_trial(spec: TrialSpec, run_dir: Path) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir`` (replacing what a previous attempt left there) and return
    its result: the score the plan asks for, the step and second at which the rolling mean
    first reached the reward threshold (training is not stopped there), and the totals."""
    from ppolab import clock

    clock.restart()  # the Agent sets torch's threads from config.torch_threads (1 for MLPs unless swept)
    agent, reporter = _start(spec, run_dir)
    try:
        return _scored(spec, agent, run_dir, agent.resume(reporter=reporter))
    finally:
        reporter.close()  # its run directory's lock too, after a failure (a Ray worker goes on)
        agent.close()


def run_population(specs: list[TrialSpec], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Train ``specs`` as one population (:mod:`ppolab.population`), each into its run
    directory, and return each one's :func:`outcome`: a member that fails to start, diverges or
    faults fails alone. Members' seconds count from the population's start."""
    from ppolab import clock
    from ppolab.population import Population

    clock.restart()
    outcomes: list[dict[str, Any] | None] = [None] * len(specs)
    members: list[tuple[int, Any, Any]] = []
    try:
        for k, (spec, run_dir) in enumerate(zip(specs, run_dirs)):
            try:
                agent, reporter = _start(spec, run_dir)
            except Exception as exc:  # noqa: BLE001  (this member fails; the others train)
                traceback.print_exc()
                outcomes[k] = {"error": error_line(exc)}
                continue
            members.append((k, agent, reporter))
        if members:
            trained = Population([agent for _, agent, _ in members]).resume([r for _, _, r in members])
            try:
                evaluated = _evaluate_members(specs, members, trained)
            except Exception:  # noqa: BLE001  (then each member is evaluated, and fails, alone)
                traceback.print_exc()
                evaluated = {}
            for (k, agent, _), result in zip(members, trained):
                try:
                    if result.error is not None:
                        raise result.error
                    outcomes[k] = {"result": _scored(specs[k], agent, run_dirs[k], result.result, evaluated.get(k))}
                except Exception as exc:  # noqa: BLE001
                    outcomes[k] = {"error": error_line(exc)}
    finally:
        for _, agent, reporter in members:
            reporter.close()
            agent.close()
    return [o if o is not None else {"error": "not trained"} for o in outcomes]


def _evaluate_members(specs: list[TrialSpec], members: list[tuple[int, Any, Any]], trained: list[Any]
                      ) -> dict[int, list[float]]:
    """The evaluation returns of the members that trained and are scored by evaluation, all
    evaluated side by side (:func:`ppolab.population.evaluation.evaluate_members`)."""
    from ppolab.population.evaluation import evaluate_members

    scored = [(k, agent) for (k, agent, _), result in zip(members, trained)
              if result.error is None and specs[k].score_kind == "eval"]
    if not scored:
        return {}
    results = evaluate_members([agent for _, agent in scored], specs[scored[0][0]].score_episodes, EVAL_SEED)
    return {k: r.returns for (k, _), r in zip(scored, results)}


def _scored(spec: TrialSpec, agent: Any, run_dir: Path, result: Any,
            returns: list[float] | None = None) -> dict[str, Any]:
    """A trained trial's result (see :func:`run_trial`); ``returns``: its evaluation returns,
    if already played."""
    from ppolab.evaluation import evaluate

    if spec.score_kind == "eval":
        if returns is None:
            returns = evaluate(agent, episodes=spec.score_episodes, seed=EVAL_SEED).returns
        score = float(sum(returns) / len(returns))
    else:
        returns = None
        score = _last_training_mean(run_dir / "episodes.csv", spec.score_episodes)
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
        result["archive"] = _archive(run_dir, spec.name)
    return result


def _archive(run_dir: Path, name: str) -> bytes:
    """``run_dir`` as a gzipped tar holding ``name/...`` (empty if it was never made)."""
    buffer = io.BytesIO()
    if run_dir.is_dir():
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(run_dir, arcname=name)
    return buffer.getvalue()


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


def packed_population(spec_dicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`packed_outcome` for a population: each member's outcome with its run directory's
    archive; the population's output is every member's log."""
    specs = [TrialSpec(**d) for d in spec_dicts]
    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="ppolab-population-") as tmp:
        run_dirs = [Path(tmp) / spec.name for spec in specs]
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            results = run_population(specs, run_dirs)
        for result, run_dir, spec in zip(results, run_dirs, specs):
            result["log"] = log.getvalue()
            result["archive"] = _archive(run_dir, spec.name)
    return results


def _own_process(log_path: Path) -> None:
    """Make this process a trial's: its own process group (so the sweep can kill it with the
    env workers it starts), killed if its parent dies (a trial must not outlive a killed sweep
    and write into a run directory that the re-run starts again), its output in ``log_path``."""
    import ctypes
    import os
    import signal

    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def trial_process(spec: TrialSpec, run_dir: Path, result_path: Path, log_path: Path) -> None:
    """A local trial's process (see :func:`_own_process`): its outcome in ``result_path``."""
    from ppolab.files import write_json

    _own_process(log_path)
    write_json(result_path, outcome(spec, run_dir))


def population_process(specs: list[TrialSpec], run_dirs: list[Path], result_paths: list[Path],
                       log_path: Path) -> None:
    """A local population's process: member k's outcome in ``result_paths[k]``."""
    from ppolab.files import write_json

    _own_process(log_path)
    for result, path in zip(run_population(specs, run_dirs), result_paths):
        write_json(path, result)
