"""A sweep directory: its plan, each trial's status, and the loop that runs what is missing.

``sweep.json`` is the plan, ``status.json`` each trial's state (pending, running, done, failed)
with its result or error, ``runs/<trial>/`` the trials' run directories, ``logs/<trial>.log``
their output. The driver alone writes ``status.json``, atomically, at every change, so a sweep
killed at any moment is resumed by running the same command again: finished trials are kept,
the rest (interrupted, failed, never started) run again from the start.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ppolab.errors import ConfigError, RunDirectoryError
from ppolab.files import read_json, write_json
from ppolab.lab.executors import Executor, Finished, Started
from ppolab.lab.grouping import Grouping
from ppolab.lab.plan import SweepPlan, TrialSpec
from ppolab.progress import TrialProgress

PLAN_FILE, STATUS_FILE = "sweep.json", "status.json"
STOPPING = ("stopping the running trials (they start again next time); finished trials are kept, "
            "and the same command continues")


@dataclass
class SweepOutcome:
    done: int
    failed: int
    skipped: int  # finished in an earlier invocation
    interrupted_by: str | None = None
    failures: dict[str, str] = field(default_factory=dict)


class Sweep:
    """A sweep directory, locked while open (one driver at a time). :meth:`open` creates it or
    checks that it holds the same plan; :meth:`close` (or leaving a ``with`` block) unlocks it."""

    def __init__(self, path: Path, plan: SweepPlan, status: dict[str, dict[str, Any]], lock: IO[str]) -> None:
        self.path, self.plan, self.status, self._lock = path, plan, status, lock

    @classmethod
    def open(cls, path: Path, plan: SweepPlan) -> Sweep:
        plan_file = path / PLAN_FILE
        ours = {".lock", "runs"}  # what a sweep killed before its plan was written leaves
        if not plan_file.is_file() and path.exists() and any(p.name not in ours for p in path.iterdir()):
            raise RunDirectoryError(f"{path} exists and is not a sweep directory (no {PLAN_FILE}); choose another --out")
        try:
            (path / "runs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create {path}: {exc}") from None
        lock = _lock(path)
        try:
            if plan_file.is_file():
                saved = read_json(plan_file, "the sweep plan")
                if saved != plan.to_dict():
                    raise RunDirectoryError(
                        f"{path} holds a different sweep ({_difference(saved, plan.to_dict())}); "
                        "choose another --out, or delete that directory")
                status_file = path / STATUS_FILE  # absent if a kill came between the two first writes
                status = read_json(status_file, "the trials' states").get("trials", {}) if status_file.is_file() else {}
            else:
                write_json(plan_file, plan.to_dict())
                status = {}
            sweep = cls(path, plan, status, lock)
            for spec in plan.trials():
                entry = sweep.status.setdefault(spec.name, {"state": "pending", "error": None, "seconds": None,
                                                            "result": None})
                if entry["state"] == "done" and not (path / "runs" / spec.name / "summary.json").is_file():
                    entry.update(state="pending", result=None)  # its run directory was removed since
            sweep._save()
        except BaseException:
            lock.close()
            raise
        return sweep

    def close(self) -> None:
        self._lock.close()  # closing the file releases the lock

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for entry in self.status.values():
            counts[entry["state"]] += 1
        return counts

    def todo(self) -> list[TrialSpec]:
        return [spec for spec in self.plan.trials() if self.status[spec.name]["state"] != "done"]

    def run(self, executor: Executor, progress: TrialProgress | None = None,
            units: list[list[TrialSpec]] | None = None) -> SweepOutcome:
        """Run every trial that is not done, as ``units`` (see :mod:`ppolab.lab.grouping`; default:
        each trial alone); stop early (keeping what finished) on SIGINT/SIGTERM."""
        from ppolab.interrupts import GracefulStop

        if units is None:
            units = [[spec] for spec in self.todo()]
        todo = [spec for unit in units for spec in unit]
        outcome = SweepOutcome(done=0, failed=0, skipped=len(self.status) - len(todo))
        started: dict[str, float] = {}
        for spec in todo:
            self.status[spec.name].update(state="pending", error=None, seconds=None, result=None)
        self._save()
        if progress is not None:
            progress.start(total=len(self.status), done=outcome.skipped, workers=executor.workers)
        try:
            with GracefulStop(STOPPING) as stop, contextlib.closing(
                    executor.run(units, self.path, lambda: stop.requested is not None)) as events:
                for event in events:
                    self._record(event, started, outcome)
                    if progress is not None:
                        progress.update(self.counts(), event.name if isinstance(event, Finished) else None,
                                        self.status[event.name])
                outcome.interrupted_by = stop.requested
        finally:  # also after a second Ctrl-C: the trials killed on the way out start again next time
            for name in started:
                self.status[name].update(state="pending", pid=None)
            self._save()
            if progress is not None:
                progress.stop()
        return outcome

    def _record(self, event: Started | Finished, started: dict[str, float], outcome: SweepOutcome) -> None:
        entry = self.status[event.name]
        if isinstance(event, Started):
            started[event.name] = time.monotonic()
            entry.update(state="running", pid=event.pid)
        else:
            seconds = round(time.monotonic() - started.pop(event.name), 3)
            entry.pop("pid", None)
            if event.error is None:
                entry.update(state="done", error=None, seconds=seconds, result=event.result)
                outcome.done += 1
            else:
                entry.update(state="failed", error=event.error, seconds=seconds, result=None)
                outcome.failed += 1
                outcome.failures[event.name] = event.error
        self._save()

    def _save(self) -> None:
        write_json(self.path / STATUS_FILE, {"trials": self.status})

    def clean_work_files(self) -> None:
        shutil.rmtree(self.path / ".trials", ignore_errors=True)


def run_sweep(plan: SweepPlan, sweep_dir: str | Path | None = None, backend: str = "local",
              workers: int | None = None, address: str | None = None, progress: TrialProgress | None = None,
              on_start: Callable[[Sweep, int, Grouping], None] | None = None,
              population: str = "auto") -> tuple[Sweep, SweepOutcome]:
    """Run ``plan``, or what is left of it, in ``sweep_dir`` (default: ``sweeps/<plan.default_name()>``,
    the same for the same plan) on the ``local`` or ``ray`` backend, the trials that can share a
    process as populations (``population="auto"``, see :mod:`ppolab.lab.grouping`) or each in
    its own (``"off"``); ``on_start(sweep, workers, grouping)`` is called once the executor is up.
    The report is separate: :func:`ppolab.lab.report.write_report`."""
    from ppolab.envs import make_single_env
    from ppolab.lab.executors import make_executor
    from ppolab.lab.grouping import POPULATION_MODES, group

    if population not in POPULATION_MODES:
        raise ConfigError(f"unknown population mode {population!r}: choose {' or '.join(POPULATION_MODES)}")
    make_single_env(plan.env_id).close()  # an unknown env fails here, not in every trial
    with Sweep.open(Path(sweep_dir) if sweep_dir else Path("sweeps") / plan.default_name(), plan) as sweep:
        executor = make_executor(backend, workers, address)
        try:
            grouping = group(sweep.todo(), executor.workers, population)
            if on_start is not None:
                on_start(sweep, executor.workers, grouping)
            outcome = sweep.run(executor, progress, grouping.units)
        finally:
            executor.close()
        if outcome.interrupted_by is None:
            sweep.clean_work_files()
    return sweep, outcome


def _lock(path: Path) -> IO[str]:
    """An exclusive lock on ``path/.lock``, held by the open file; two drivers in one sweep
    directory would run the same trials into the same run directories."""
    lock = open(path / ".lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunDirectoryError(f"another ppolab sweep is running in {path}; wait for it to finish, or stop "
                                "it (Ctrl-C) and run this again") from None
    return lock


def _difference(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = [k for k in wanted if k not in ("configs", "trials") and saved.get(k) != wanted[k]]
    return "; ".join(f"{k}: {saved.get(k)!r} there, {wanted[k]!r} here" for k in keys) or "another plan"
