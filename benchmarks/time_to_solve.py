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
import importlib.util
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (Results, add_run_arguments, benchmark_parser, format_machine, log_tail, machine_info,
                    median_or_inf, parse_run_arguments, ppolab_executable, results_stem, run_process, shown,
                    solve_outcome, solved_or_inf)

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
    """Both record the thread count they ran with in their summary."""
    return summary_data.get("torch_threads")


def run_one(library: str, env_id: str, seed: int, workdir: Path, timeout: float | None) -> RunRow:
    command, summary = command_for(library, env_id, seed, workdir)
    log = workdir / f"{library}-{env_id}-s{seed}.log"
    load_before = os.getloadavg()[0]
    code, seconds = run_process(command, log, timeout)
    failed = RunRow(env_id, library, seed, "timeout" if code is None else f"error (exit {code})", False,
                    None, None, None, None, round(seconds, 3), None, load_before)
    if code != 0 or not summary.exists():
        if code is not None:
            print(f"  {library} failed; last lines of its output:\n    {log_tail(log)}", file=sys.stderr)
        return failed
    data = json.loads(summary.read_text())
    return RunRow(env_id, library, seed, "ok", bool(data["solved"]), data["solved_at_step"],
                  data["solved_at_seconds"], data["total_steps"], data["wall_seconds"], round(seconds, 3),
                  torch_threads_of(library, summary, data), load_before)


def describe(row: RunRow) -> str:
    outcome = solve_outcome(row.solved, row.solved_at_step, row.solved_at_seconds, row.status)
    threads = "" if row.torch_threads is None else f", {row.torch_threads} torch thread(s)"
    return (f"{row.env_id:<15} seed {row.seed}  {row.library:<6}  {outcome}; process {row.process_seconds:.1f} s"
            f"{threads}, load before {row.load_before:.2f}")


# ---------------------------------------------------------------------------------------------
# The summary table


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
    header = f"{'env':<15} {'library':<7} {'solved':>6} {'median s':>11} {'median steps':>13} {'SB3 s / ppolab s':>17}"
    lines = [header, "-" * len(header)]
    for entry in table:
        ratio = entry["sb3_over_ppolab_seconds"]
        lines.append(f"{entry['env_id']:<15} {entry['library']:<7} {entry['solved']:>3}/{entry['seeds']:<2} "
                     f"{shown(entry['median_seconds_to_solve'], '{:.1f}', 'not solved'):>11} "
                     f"{shown(entry['median_steps_to_solve'], '{:,.0f}', 'not solved'):>13} "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}x':>17}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), choices=DEFAULT_ENVS, metavar="ENV",
                        help=f"environments (default: {' '.join(DEFAULT_ENVS)})")
    add_run_arguments(parser, default_seeds=5)
    return parse_run_arguments(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("stable_baselines3") is None:
        sys.exit("time_to_solve: stable-baselines3 is not installed; pip install -e '.[bench]'")
    ppolab_executable()  # fail now, not after the first SB3 run
    machine = machine_info(PACKAGES)
    settings = {"envs": args.envs, "seeds": list(range(args.seeds)), "timeout": args.timeout}
    results = Results(results_stem(args.out, "time_to_solve"), RunRow, machine, settings)
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
