"""Where a sweep's trials run: a pool of local processes, or Ray tasks.

Both take units of work, each one trial or the members of a population
(:mod:`ppolab.lab.grouping`), run :mod:`ppolab.lab.trial` on them, and yield the same events,
one per trial; the run directories end up in the sweep directory either way. A population
occupies one worker. When a population's process or task dies, its members that have no
outcome are retried once, each in a process (or task) of its own.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import tarfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from ppolab.errors import ConfigError
from ppolab.lab.plan import TrialSpec

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Started:
    name: str
    pid: int | None = None  # the trial's process, where it runs on this machine


@dataclass(frozen=True)
class Finished:
    name: str
    result: dict[str, Any] | None
    error: str | None


Unit = list[TrialSpec]  # one trial, or a population's members


class Executor(Protocol):
    workers: int

    def run(self, units: list[Unit], sweep_dir: Path,
            should_stop: Callable[[], bool]) -> Iterator[Started | Finished]: ...

    def close(self) -> None: ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_executor(backend: str, workers: int | None = None, address: str | None = None) -> Executor:
    if backend == "local":
        if address is not None:
            raise ConfigError("--address is for --backend ray")
        return LocalExecutor(workers)
    if backend == "ray":
        return RayExecutor(address, workers)
    raise ConfigError(f"unknown backend {backend!r}: choose local or ray")


# Imported once by the fork server, so that a trial's process starts with them loaded: a trial
# of a small sweep otherwise spends longer importing torch, gymnasium and matplotlib than training.
PRELOAD = ["ppolab.lab.trial", "ppolab.agent", "ppolab.rundir", "ppolab.evaluation", "ppolab.plots",
           "gymnasium.envs.classic_control", "gymnasium.envs.box2d"]


def _fork_server() -> multiprocessing.context.BaseContext:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # one thread per trial; read by the libraries as they load
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class LocalExecutor:
    """One process per trial, at most ``workers`` at a time, each with one torch thread. A
    process per trial isolates trials: a segfault or an out-of-memory kill fails that trial
    alone, and no state leaks from one trial to the next. The processes are forked from a
    server that has imported ppolab, torch and gymnasium once (multiprocessing's forkserver), so
    a trial starts in milliseconds instead of the second and a half those imports take."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or available_cores()

    def run(self, units: list[Unit], sweep_dir: Path,
            should_stop: Callable[[], bool]) -> Iterator[Started | Finished]:
        from ppolab.lab.trial import population_process, trial_process

        context = _fork_server()
        work, logs = sweep_dir / ".trials", sweep_dir / "logs"
        work.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        queue = deque(units)
        running: dict[int, tuple[multiprocessing.process.BaseProcess, Unit, Path]] = {}
        try:
            while (queue or running) and not should_stop():
                while queue and len(running) < self.workers:
                    unit = queue.popleft()
                    log_path = logs / f"{unit[0].name}.log"
                    results = [work / f"{spec.name}.result.json" for spec in unit]
                    for path in results:
                        path.unlink(missing_ok=True)
                    run_dirs = [sweep_dir / "runs" / spec.name for spec in unit]
                    if len(unit) == 1:
                        target, args = trial_process, (unit[0], run_dirs[0], results[0], log_path)
                    else:
                        target, args = population_process, (unit, run_dirs, results, log_path)
                    process = context.Process(target=target, name=f"ppolab trial {unit[0].name}", args=args)
                    process.start()
                    running[process.pid] = (process, unit, log_path)
                    for spec in unit:
                        yield Started(spec.name, process.pid)
                for pid, (process, unit, log_path) in list(running.items()):
                    if process.exitcode is None:
                        continue
                    del running[pid]
                    for spec in unit:
                        result_path = work / f"{spec.name}.result.json"
                        if len(unit) > 1 and not result_path.is_file():
                            queue.append([spec])  # its population died before its outcome: again, alone
                            continue
                        if spec is not unit[0]:
                            (logs / f"{spec.name}.log").write_text(
                                f"trained in a population with {unit[0].name} and others: its output is in {log_path.name}\n")
                        yield self._finished(spec.name, process.exitcode, result_path, log_path)
                time.sleep(POLL_SECONDS)
        finally:
            for process, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)  # the trial and any env workers it started
                process.kill()  # in case it was killed before it made its own process group
                process.join()

    @staticmethod
    def _finished(name: str, exitcode: int, result_path: Path, log_path: Path) -> Finished:
        try:
            outcome = json.loads(result_path.read_text())
        except (OSError, ValueError):
            how = (f"was killed by {signal.Signals(-exitcode).name}" if exitcode < 0
                   else f"exited with code {exitcode}")
            return Finished(name, None, f"the trial's process {how} before it finished; see {log_path}")
        return Finished(name, outcome.get("result"), outcome.get("error"))

    def close(self) -> None:
        pass


class RayExecutor:
    """Trials as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray
    instance started for the sweep. Each task trains into a temporary directory on its node and
    returns the run directory as an archive, unpacked into the sweep directory here."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'ppolab[ray]'") from None
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                # address "local" starts a new instance even where a cluster runs on this machine
                # (ray.init() would join that one)
                ray.init(address=address or "local", num_cpus=None if address else (workers or available_cores()),
                         include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, units: list[Unit], sweep_dir: Path,
            should_stop: Callable[[], bool]) -> Iterator[Started | Finished]:
        from ppolab.lab.trial import packed_outcome, packed_population

        ray = self._ray
        task = ray.remote(num_cpus=1, max_retries=0)(packed_outcome)
        population_task = ray.remote(num_cpus=1, max_retries=0)(packed_population)
        queue = deque(units)
        in_flight: dict[Any, Unit] = {}
        try:
            while (queue or in_flight) and not should_stop():
                while queue and len(in_flight) < self.workers:
                    unit = queue.popleft()
                    if len(unit) == 1:
                        in_flight[task.remote(asdict(unit[0]))] = unit
                    else:
                        in_flight[population_task.remote([asdict(spec) for spec in unit])] = unit
                    for spec in unit:
                        yield Started(spec.name)
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_SECONDS * 5)
                for ref in ready:
                    unit = in_flight.pop(ref)
                    try:
                        outcomes = self._ray.get(ref)
                    except self._ray.exceptions.RayError as exc:
                        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                        if len(unit) > 1:
                            queue.extend([spec] for spec in unit)  # the population died: each again, alone
                            continue
                        yield Finished(unit[0].name, None, f"Ray task failed: {first_line}")
                        continue
                    for spec, outcome in zip(unit, outcomes if len(unit) > 1 else [outcomes]):
                        yield self._finished(outcome, spec.name, sweep_dir)
        finally:
            for ref in in_flight:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _finished(self, outcome: dict[str, Any], name: str, sweep_dir: Path) -> Finished:
        """The task's outcome, with its run directory unpacked and its output in logs/."""
        from ppolab.lab.trial import unpack

        try:
            (sweep_dir / "logs").mkdir(exist_ok=True)
            (sweep_dir / "logs" / f"{name}.log").write_text(outcome.get("log", ""))
            unpack(outcome["archive"], sweep_dir / "runs", name)
        except (OSError, RuntimeError, tarfile.TarError) as exc:
            return Finished(name, None, f"the trial's run directory could not be unpacked: {exc}")
        return Finished(name, outcome.get("result"), outcome.get("error"))

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
