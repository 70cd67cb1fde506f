"""Race ppolab's PPO against Stable-Baselines3's PPO: wall-clock time to solve.

    python benchmarks/time_to_solve.py [--envs ENV ...] [--seeds N] [--timeout S] [--out DIR]

What is measured: for each environment and seed, the seconds from *process start* (interpreter
start-up and imports included, as a user at the terminal waits) until the mean return of the
last 100 finished episodes first reaches the environment's reward threshold (CartPole-v1: 475,
LunarLander-v3: 200), and the environment step at which that happened. Both sides read the
clock with ``ppolab.clock.since_process_start``.

How:
  * ppolab runs as ``ppolab train ENV --seed S --quiet`` (its tuned preset and budget, early
    stop, and TensorBoard on, as in a normal run); the result is its run directory's summary.json.
  * SB3 runs as ``benchmarks/sb3_run.py ENV S OUTFILE``: RL Zoo hyperparameters and budget,
    DummyVecEnv, device="cpu", torch threads at SB3's default, stopped by the same rule.
  * Every run is a fresh subprocess, one at a time, alternating ppolab and SB3 seed by seed, so
    runs never compete for the CPU and slow drifts of the machine hit both libraries alike.
  * A run that ends its budget unsolved, fails, or passes --timeout (it is killed) is unsolved.

Output: one line per run as it finishes, appended to a CSV and a JSON under --out (so partial
results survive an interruption), then a table per environment and library: solved / seeds,
the median seconds and median steps to solve (unsolved runs count as infinitely slow, so a
median is only finite when at least half the seeds solved), and SB3's median seconds divided
by ppolab's. The JSON also records the machine and the library versions.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SB3_RUN = HERE / "sb3_run.py"
DEFAULT_ENVS = ("CartPole-v1", "LunarLander-v3")
LIBRARIES = ("ppolab", "sb3")
PACKAGES = ("ppolab", "torch", "gymnasium", "stable-baselines3", "numpy")


@dataclass
class RunRow:
    """The outcome of one run."""

    env_id: str
    library: str
    seed: int
    status: str  # "ok", "timeout", or "error (exit N)"
    solved: bool
    solved_at_step: int | None
    solved_at_seconds: float | None
    total_steps: int | None
    wall_seconds: float | None  # the run's own measure, from its process start to the end of training
    process_seconds: float  # measured here, from launching the process until it exited
    torch_threads: int | None
    load_before: float  # 1-minute load average just before the run; high values mean a busy machine


# ---------------------------------------------------------------------------------------------
# Running one process


def ppolab_executable() -> str:
    """The ``ppolab`` script of the environment this script runs in (else the one on PATH)."""
    found = shutil.which("ppolab", path=str(Path(sys.executable).parent)) or shutil.which("ppolab")
    if found is None:
        sys.exit("time_to_solve: no `ppolab` command; install with: pip install -e '.[bench]'")
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


def command_for(library: str, env_id: str, seed: int, workdir: Path) -> tuple[list[str], Path]:
    """The command line of one run and the summary JSON it writes."""
    if library == "ppolab":
        name = f"{env_id}-s{seed}"
        command = [ppolab_executable(), "train", env_id, "--seed", str(seed),
                   "--out", str(workdir), "--name", name, "--quiet"]
        return command, workdir / name / "summary.json"
    summary = workdir / f"sb3-{env_id}-s{seed}.json"
    return [sys.executable, str(SB3_RUN), env_id, str(seed), str(summary)], summary


def torch_threads_of(library: str, summary: Path, summary_data: dict[str, Any]) -> int | None:
    """ppolab records its thread count in the run's config.yaml; sb3_run.py in its summary."""
    if library == "sb3":
        return summary_data.get("torch_threads")
    for line in (summary.parent / "config.yaml").read_text().splitlines():
        if line.startswith("torch_threads:"):
            return int(line.split(":", 1)[1])
    return None


def run_one(library: str, env_id: str, seed: int, workdir: Path, timeout: float | None) -> RunRow:
    command, summary = command_for(library, env_id, seed, workdir)
    log = workdir / f"{library}-{env_id}-s{seed}.log"
    load_before = os.getloadavg()[0]
    code, seconds = run_process(command, log, timeout)
    failed = RunRow(env_id, library, seed, "timeout" if code is None else f"error (exit {code})", False,
                    None, None, None, None, round(seconds, 3), None, load_before)
    if code != 0 or not summary.exists():
        if code is not None:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"  {library} failed; last lines of its output:\n    " + "\n    ".join(tail), file=sys.stderr)
        return failed
    data = json.loads(summary.read_text())
    return RunRow(env_id, library, seed, "ok", bool(data["solved"]), data["solved_at_step"],
                  data["solved_at_seconds"], data["total_steps"], data["wall_seconds"], round(seconds, 3),
                  torch_threads_of(library, summary, data), load_before)


def describe(row: RunRow) -> str:
    outcome = (f"solved at step {row.solved_at_step:,} after {row.solved_at_seconds:.1f} s" if row.solved
               else f"NOT solved ({row.status})")
    threads = "" if row.torch_threads is None else f", {row.torch_threads} torch thread(s)"
    return (f"{row.env_id:<15} seed {row.seed}  {row.library:<6}  {outcome}; process {row.process_seconds:.1f} s"
            f"{threads}, load before {row.load_before:.2f}")


# ---------------------------------------------------------------------------------------------
# Machine, results files, and the summary table


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
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
        "versions": {package: version(package) for package in PACKAGES},
        "load_average_at_start": os.getloadavg()[0],
    }


class Results:
    """A CSV that grows a row per run and a JSON rewritten after each run."""

    def __init__(self, out_dir: Path, machine: dict[str, Any], settings: dict[str, Any]) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = out_dir / f"time_to_solve-{time.strftime('%Y%m%d-%H%M%S')}"
        self.csv_path, self.json_path = stem.with_suffix(".csv"), stem.with_suffix(".json")
        self.machine, self.settings = machine, settings
        self.rows: list[RunRow] = []
        with self.csv_path.open("w", newline="") as f:
            csv.writer(f).writerow([field.name for field in fields(RunRow)])

    def add(self, row: RunRow) -> None:
        self.rows.append(row)
        with self.csv_path.open("a", newline="") as f:
            csv.writer(f).writerow(asdict(row).values())
        self.write_json()

    def write_json(self, table: list[dict[str, Any]] | None = None) -> None:
        data = {"machine": self.machine, "settings": self.settings,
                "runs": [asdict(row) for row in self.rows], "summary": table}
        partial = self.json_path.with_suffix(".json.tmp")
        partial.write_text(json.dumps(data, indent=2) + "\n")
        partial.replace(self.json_path)


def solved_or_inf(value: float | None) -> float:
    """A run's seconds (or steps) to solve; infinity when it did not solve."""
    return math.inf if value is None else value


def median_or_inf(values: list[float]) -> float:
    return statistics.median(values) if values else math.inf


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    """One entry per (env, library): solved count and medians, unsolved runs counting as inf."""
    table = []
    for env_id in dict.fromkeys(row.env_id for row in rows):
        medians: dict[str, float] = {}
        for library in LIBRARIES:
            runs = [row for row in rows if row.env_id == env_id and row.library == library]
            if not runs:
                continue
            seconds = median_or_inf([solved_or_inf(row.solved_at_seconds) for row in runs])
            steps = median_or_inf([solved_or_inf(row.solved_at_step) for row in runs])
            medians[library] = seconds
            table.append({"env_id": env_id, "library": library, "seeds": len(runs),
                          "solved": sum(row.solved for row in runs),
                          "median_seconds_to_solve": None if math.isinf(seconds) else seconds,
                          "median_steps_to_solve": None if math.isinf(steps) else steps})
        ratio = speedup(medians.get("sb3"), medians.get("ppolab"))
        for entry in table:
            if entry["env_id"] == env_id:
                entry["sb3_over_ppolab_seconds"] = ratio
    return table


def speedup(sb3_seconds: float | None, ppolab_seconds: float | None) -> float | None:
    """SB3's median seconds over ppolab's; None unless both are finite."""
    if sb3_seconds is None or ppolab_seconds is None or math.isinf(sb3_seconds) or math.isinf(ppolab_seconds):
        return None
    return round(sb3_seconds / ppolab_seconds, 2)


def format_table(table: list[dict[str, Any]]) -> str:
    def shown(value: float | None, pattern: str) -> str:
        return "not solved" if value is None else pattern.format(value)

    header = f"{'env':<15} {'library':<7} {'solved':>6} {'median s':>11} {'median steps':>13} {'SB3 s / ppolab s':>17}"
    lines = [header, "-" * len(header)]
    for entry in table:
        ratio = entry["sb3_over_ppolab_seconds"]
        lines.append(f"{entry['env_id']:<15} {entry['library']:<7} {entry['solved']:>3}/{entry['seeds']:<2} "
                     f"{shown(entry['median_seconds_to_solve'], '{:.1f}'):>11} "
                     f"{shown(entry['median_steps_to_solve'], '{:,.0f}'):>13} "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}x':>17}")
    return "\n".join(lines)


def format_machine(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    return (f"machine: {machine['nproc']} CPU(s), {machine['cpu_model']}; Python {machine['python']}\n"
            f"versions: {versions}\n1-minute load average at start: {machine['load_average_at_start']:.2f}")


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), choices=DEFAULT_ENVS, metavar="ENV",
                        help=f"environments (default: {' '.join(DEFAULT_ENVS)})")
    parser.add_argument("--seeds", type=int, default=5, metavar="N", help="run seeds 0..N-1 (default: 5)")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="kill a run after S seconds of wall-clock time and count it unsolved (default: none)")
    parser.add_argument("--out", type=Path, default=HERE / "results", metavar="DIR",
                        help="directory for the results CSV and JSON (default: benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        parser.error("--timeout must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("stable_baselines3") is None:
        sys.exit("time_to_solve: stable-baselines3 is not installed; pip install -e '.[bench]'")
    ppolab_executable()  # fail now, not after the first SB3 run
    machine = machine_info()
    settings = {"envs": args.envs, "seeds": list(range(args.seeds)), "timeout": args.timeout}
    results = Results(args.out, machine, settings)
    print(format_machine(machine))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="time_to_solve-") as tmp:
        for env_id in args.envs:
            for seed in range(args.seeds):
                for library in LIBRARIES:
                    row = run_one(library, env_id, seed, Path(tmp), args.timeout)
                    results.add(row)
                    print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
