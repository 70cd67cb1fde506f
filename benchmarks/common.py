"""What the benchmark scripts share: launching one run as a process, and describing the machine."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, fields
from importlib import metadata
from pathlib import Path
from typing import Any


def ppolab_executable() -> str:
    """The ``ppolab`` script of the environment this script runs in (else the one on PATH)."""
    found = shutil.which("ppolab", path=str(Path(sys.executable).parent)) or shutil.which("ppolab")
    if found is None:
        sys.exit("benchmarks: no `ppolab` command; install with: pip install -e '.[bench]'")
    return found


def run_process(command: list[str], log: Path, timeout: float | None) -> tuple[int | None, float]:
    """Run ``command`` with its output in ``log``; return (exit code or None if killed at
    ``timeout``, seconds it ran). The process gets its own session so that a kill reaches any
    child it started."""
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    return code, time.perf_counter() - started


def run_process_peak_rss(command: list[str], log: Path, timeout: float | None) -> tuple[int | None, float, int]:
    """As :func:`run_process`, and also the peak resident set size of the run, in KiB.

    The peak is the ``ru_maxrss`` that ``os.wait4`` returns when it reaps this one child: the
    largest RSS the child reached, or any descendant it waited for (Linux merges a reaped
    child's peak into its parent's). ``getrusage(RUSAGE_CHILDREN)`` cannot give this per run:
    its ``ru_maxrss`` is the largest peak of *all* children reaped so far, a high-water mark
    that a smaller later run leaves unchanged, so before/after deltas are meaningless.
    A timeout kills the process group from a timer thread; Ctrl-C here kills it too."""
    started = time.perf_counter()
    killed = threading.Event()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def kill() -> None:
            killed.set()
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            kill()
            process.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    code = None if killed.is_set() and os.WIFSIGNALED(status) else process.returncode
    return code, time.perf_counter() - started, usage.ru_maxrss


def log_tail(log: Path, lines: int = 15) -> str:
    return "\n    ".join(log.read_text(errors="replace").splitlines()[-lines:])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(packages: tuple[str, ...]) -> dict[str, Any]:
    """CPU count and model, Python, the versions of ``packages``, and the load average now."""
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {package: version(package) for package in packages},
        "load_average_at_start": os.getloadavg()[0],
    }


def format_machine(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return (f"machine: {machine['nproc']} CPU(s), {machine['cpu_model']}; Python {machine['python']}\n"
            f"versions: {versions}\n1-minute load average at start: {machine['load_average_at_start']:.2f}")


def results_stem(out_dir: Path, name: str) -> Path:
    """``out_dir/name-YYYYmmdd-HHMMSS`` (the directory is created)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


class Results:
    """A CSV (``stem.csv``) that grows a row per run and a JSON (``stem.json``) rewritten after
    each run, so partial results survive an interruption. Rows are instances of the dataclass
    ``row_type``; the JSON also holds the machine, the settings and, at the end, the summary."""

    def __init__(self, stem: Path, row_type: type, machine: dict[str, Any], settings: dict[str, Any]) -> None:
        self.csv_path, self.json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
        self.machine, self.settings = machine, settings
        self.rows: list[Any] = []
        with self.csv_path.open("w", newline="") as f:
            csv.writer(f).writerow([field.name for field in fields(row_type)])

    def add(self, row: Any) -> None:
        self.rows.append(row)
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow(asdict(row).values())
        self.write_json()

    def write_json(self, summary: Any = None) -> None:
        data = {"machine": self.machine, "settings": self.settings,
                "runs": [asdict(row) for row in self.rows], "summary": summary}
        partial = self.json_path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        partial.replace(self.json_path)


def solved_or_inf(value: float | None) -> float:
    """A run's seconds (or steps) to solve; infinity when it did not solve."""
    return math.inf if value is None else value


def median_or_inf(values: list[float]) -> float:
    """The median, where unsolved runs count as infinitely slow: finite only when at least
    half the seeds solved."""
    return statistics.median(values) if values else math.inf


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the first paragraph of a script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_run_arguments(parser: argparse.ArgumentParser, default_seeds: int) -> None:
    """--seeds, --timeout and --out, which every benchmark takes."""
    parser.add_argument("--seeds", type=int, default=default_seeds, metavar="N",
                        help=f"run seeds 0..N-1 (default: {default_seeds})")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="kill a run after S seconds of wall-clock time and count it failed (default: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results", metavar="DIR",
                        help="directory for the results CSV and JSON (default: benchmarks/results/)")


def parse_run_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        parser.error("--timeout must be > 0")
    return args


def solve_outcome(solved: bool, step: int | None, seconds: float | None, status: str) -> str:
    """'solved at step N after S s', or 'NOT solved (status)' for one run's line."""
    return f"solved at step {step:,} after {seconds:.1f} s" if solved else f"NOT solved ({status})"


def shown(value: float | None, pattern: str, missing: str) -> str:
    """``value`` formatted with ``pattern`` for a table cell, or ``missing`` when there is none."""
    return missing if value is None else pattern.format(value)
