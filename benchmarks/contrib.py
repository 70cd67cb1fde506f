"""Race ppolab against sb3-contrib's RecurrentPPO and MaskablePPO: time to solve at the same settings.

    python benchmarks/contrib.py [--tasks TASK ...] [--seeds N] [--timeout S] [--out DIR] [--smoke]

Tasks (ppolab's ids; thresholds from the env specs):
  memory  ppolab/CartPoleNoVelocity-v1 (475): ppolab's LSTM preset against RecurrentPPO.
  cue     ppolab/CueMemory-v0 (0.9): ppolab's GRU preset against RecurrentPPO, which has LSTMs
          only (so an LSTM of the same width, all else equal), and ppolab with
          ``--set recurrent=lstm`` as a third library, ``ppolab-lstm``: the like-for-like row.
  pendulum  ppolab/PendulumNoVelocity-v1 (-250): continuous actions, swing-up and balance from
          the angle alone; ppolab's LSTM preset against RecurrentPPO (the harder memory task).
  masks   Taxi-v4 (8), whose info["action_mask"] ppolab reads by itself: ppolab's defaults
          against MaskablePPO.

What is measured: for each task and seed 0..N-1 (default 3), the seconds from *process start*
(interpreter start-up and imports included) until the mean return of the last 100 finished
episodes first reaches the threshold, and the environment step at which that happened (both
sides read the clock with ``ppolab.clock.since_process_start``); and the final score, the mean
return of the last 100 training episodes when training ended (a run that solves stops there).

How:
  * ppolab runs as ``ppolab train ENV --seed S --quiet --no-tensorboard`` (its preset and
    budget, early stop); the result is its run directory's summary.json.
  * sb3-contrib runs as ``benchmarks/contrib_run.py ALGO ENV S OUTFILE``: ppolab's preset for
    ENV, read at run time and translated field by field (see contrib_run.py), the same budget,
    DummyVecEnv, device="cpu", torch threads at their default, stopped by the same rule.
  * Every run is a fresh subprocess, one at a time, alternating the libraries seed by seed, so
    runs never compete for the CPU and slow drifts of the machine hit every library alike.
  * A run that ends its budget unsolved, fails, or passes --timeout (it is killed) is unsolved.
  * --smoke: 2,048 steps per run on every side, to check the pipeline end to end; nothing solves.

Steps are not quite one unit: ppolab's vector env resets on the step after an episode ends
(Gymnasium's next-step autoreset) and counts that step; SB3 resets within the last step. On
CueMemory's 6-step episodes ppolab takes 7 steps per episode, so for the same number of episodes
its step counts (and a budget in steps) are 7/6 of sb3-contrib's; on the other tasks the
difference is under 1%.

Output: one line per run as it finishes, appended to a CSV and a JSON under --out (so partial
results survive an interruption), then a table per task and library: solved / seeds, the median
seconds and median steps to the threshold (unsolved runs count as infinitely slow, so a median is
only finite when at least half the seeds solved), the median final score, and sb3-contrib's
median seconds divided by each ppolab row's. The JSON also records the machine, the library
versions and ppolab's presets as they were.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (Results, add_run_arguments, benchmark_parser, format_machine, log_tail, machine_info,
                    median_or_inf, parse_run_arguments, ppolab_executable, results_stem, run_process, shown,
                    solve_outcome, solved_or_inf)
from time_to_solve import speedup

HERE = Path(__file__).resolve().parent
CONTRIB_RUN = HERE / "contrib_run.py"
# task -> (env id, contrib_run.py's algorithm, libraries in the order they run each seed)
TASKS = {
    "memory": ("ppolab/CartPoleNoVelocity-v1", "recurrent", ("ppolab", "sb3-contrib")),
    "cue": ("ppolab/CueMemory-v0", "recurrent", ("ppolab", "sb3-contrib", "ppolab-lstm")),
    "pendulum": ("ppolab/PendulumNoVelocity-v1", "recurrent", ("ppolab", "sb3-contrib")),
    "masks": ("Taxi-v4", "maskable", ("ppolab", "sb3-contrib")),
}
PPOLAB_OVERRIDES = {"ppolab": [], "ppolab-lstm": ["--set", "recurrent=lstm"]}
SMOKE_STEPS = 2048
PACKAGES = ("ppolab", "torch", "gymnasium", "stable_baselines3", "sb3_contrib", "numpy")


@dataclass
class RunRow:
    """The outcome of one run."""

    task: str
    env_id: str
    library: str
    core: str  # the policy's memory: "lstm 64", "gru 32", or "none"
    seed: int
    status: str  # "ok", "timeout", or "error (exit N)"
    solved: bool
    solved_at_step: int | None
    solved_at_seconds: float | None
    final_mean_return_100: float | None
    total_steps: int | None
    wall_seconds: float | None  # the run's own measure, from its process start to the end of training
    process_seconds: float  # measured here, from launching the process until it exited
    torch_threads: int | None
    load_before: float  # 1-minute load average just before the run; high values mean a busy machine


# ---------------------------------------------------------------------------------------------
# What each library trains


def core(library: str, task: str) -> str:
    """The recurrent core a library's run has: ppolab's preset's, LSTM for ppolab-lstm, and
    sb3-contrib's LSTM (RecurrentPPO) or none (MaskablePPO), all of the preset's width."""
    from ppolab.config import preset

    env_id, algo, _ = TASKS[task]
    config = preset(env_id)
    kind = {"ppolab": config.recurrent, "ppolab-lstm": "lstm",
            "sb3-contrib": "lstm" if algo == "recurrent" else "none"}[library]
    return kind if kind == "none" else f"{kind} {config.recurrent_hidden_size}"


def task_settings(task: str, steps: int | None) -> dict[str, Any]:
    """The threshold, the budget and ppolab's preset (the source of both sides' settings)."""
    import gymnasium as gym
    from ppolab.config import defaults_origin, preset
    from ppolab.tasks import register

    register()
    env_id, algo, libraries = TASKS[task]
    config = preset(env_id)
    threshold = config.reward_threshold if config.reward_threshold is not None else gym.spec(env_id).reward_threshold
    return {"env_id": env_id, "sb3_contrib_algorithm": algo, "libraries": list(libraries),
            "cores": {library: core(library, task) for library in libraries}, "reward_threshold": threshold,
            "budget_steps": steps or config.total_steps, "ppolab_settings": defaults_origin(env_id),
            "ppolab_preset": config.to_dict()}


# ---------------------------------------------------------------------------------------------
# Running one process


def command_for(library: str, task: str, seed: int, steps: int | None, workdir: Path) -> tuple[list[str], Path]:
    """The command line of one run and the summary JSON it writes."""
    env_id, algo, _ = TASKS[task]
    budget = [] if steps is None else ["--steps", str(steps)]
    if library in PPOLAB_OVERRIDES:
        name = f"{library}-{task}-s{seed}"
        command = [ppolab_executable(), "train", env_id, "--seed", str(seed), "--out", str(workdir),
                   "--name", name, "--quiet", "--no-tensorboard", *PPOLAB_OVERRIDES[library], *budget]
        return command, workdir / name / "summary.json"
    summary = workdir / f"{library}-{task}-s{seed}.json"
    return [sys.executable, str(CONTRIB_RUN), algo, env_id, str(seed), str(summary), *budget], summary


def run_one(library: str, task: str, seed: int, steps: int | None, workdir: Path, timeout: float | None) -> RunRow:
    command, summary = command_for(library, task, seed, steps, workdir)
    log = workdir / f"{library}-{task}-s{seed}.log"
    env_id, load_before = TASKS[task][0], os.getloadavg()[0]
    code, seconds = run_process(command, log, timeout)
    if code != 0 or not summary.exists():
        if code is not None:
            print(f"  {library} failed; last lines of its output:\n    {log_tail(log)}", file=sys.stderr)
        return RunRow(task, env_id, library, core(library, task), seed,
                      "timeout" if code is None else f"error (exit {code})", False, None, None, None, None, None,
                      round(seconds, 3), None, load_before)
    data = json.loads(summary.read_text())
    return RunRow(task, env_id, library, core(library, task), seed, "ok", bool(data["solved"]),
                  data["solved_at_step"], data["solved_at_seconds"], data["final_mean_return_100"],
                  data["total_steps"], data["wall_seconds"], round(seconds, 3), data.get("torch_threads"),
                  load_before)


def describe(row: RunRow) -> str:
    outcome = solve_outcome(row.solved, row.solved_at_step, row.solved_at_seconds, row.status)
    threads = "" if row.torch_threads is None else f", {row.torch_threads} torch thread(s)"
    return (f"{row.task:<6} seed {row.seed}  {row.library:<11} ({row.core})  {outcome}; "
            f"final {shown(row.final_mean_return_100, '{:.2f}', 'n/a')}; process {row.process_seconds:.1f} s"
            f"{threads}, load before {row.load_before:.2f}")


# ---------------------------------------------------------------------------------------------
# The summary table


def median_present(values: list[float | None]) -> float | None:
    """The median final score of the runs that have one."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    """One entry per (task, library): solved count and medians, unsolved runs counting as inf
    for the seconds and steps to the threshold; each ppolab row also gets sb3-contrib's median
    seconds over its own."""
    table = []
    for task in dict.fromkeys(row.task for row in rows):
        entries, seconds = [], {}
        for library in TASKS[task][2]:
            runs = [row for row in rows if row.task == task and row.library == library]
            if not runs:
                continue
            seconds[library] = median_or_inf([solved_or_inf(row.solved_at_seconds) for row in runs])
            steps = median_or_inf([solved_or_inf(row.solved_at_step) for row in runs])
            entries.append({"task": task, "env_id": runs[0].env_id, "library": library, "core": runs[0].core,
                            "seeds": len(runs), "solved": sum(row.solved for row in runs),
                            "median_seconds_to_solve": None if math.isinf(seconds[library]) else seconds[library],
                            "median_steps_to_solve": None if math.isinf(steps) else steps,
                            "median_final_mean_return_100": median_present([r.final_mean_return_100 for r in runs])})
        for entry in entries:
            mine = entry["library"] in PPOLAB_OVERRIDES
            entry["sb3_contrib_over_this_seconds"] = (speedup(seconds.get("sb3-contrib"), seconds[entry["library"]])
                                                      if mine else None)
        table += entries
    return table


def format_table(table: list[dict[str, Any]], settings: dict[str, dict[str, Any]]) -> str:
    header = (f"{'library':<11} {'core':<8} {'solved':>6} {'median s':>11} {'median steps':>13} "
              f"{'median final':>12} {'sb3-contrib s / ppolab s':>24}")
    blocks = []
    for task in dict.fromkeys(entry["task"] for entry in table):
        s = settings[task]
        lines = [f"{s['env_id']} ({task}): threshold {s['reward_threshold']:g}, budget {s['budget_steps']:,} steps",
                 header, "-" * len(header)]
        for e in (entry for entry in table if entry["task"] == task):
            ratio = e["sb3_contrib_over_this_seconds"]
            ratio_text = "" if e["library"] not in PPOLAB_OVERRIDES else "n/a" if ratio is None else f"{ratio:.2f}x"
            lines.append(f"{e['library']:<11} {e['core']:<8} {e['solved']:>3}/{e['seeds']:<2} "
                         f"{shown(e['median_seconds_to_solve'], '{:.1f}', 'not solved'):>11} "
                         f"{shown(e['median_steps_to_solve'], '{:,.0f}', 'not solved'):>13} "
                         f"{shown(e['median_final_mean_return_100'], '{:.2f}', 'n/a'):>12} {ratio_text:>24}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, metavar="TASK",
                        help=f"tasks (default: {' '.join(TASKS)})")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_STEPS:,} steps per run instead of the presets' budgets (checks the pipeline)")
    add_run_arguments(parser, default_seeds=3)
    return parse_run_arguments(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("sb3_contrib") is None:
        sys.exit("contrib: sb3-contrib is not installed; pip install sb3-contrib")
    ppolab_executable()  # fail now, not after the first sb3-contrib run
    steps = SMOKE_STEPS if args.smoke else None
    machine = machine_info(PACKAGES)
    tasks = {task: task_settings(task, steps) for task in args.tasks}
    settings = {"tasks": tasks, "seeds": list(range(args.seeds)), "timeout": args.timeout, "smoke": args.smoke}
    results = Results(results_stem(args.out, "contrib"), RunRow, machine, settings)
    print(format_machine(machine))
    print("sb3-contrib has LSTMs only: on cue it trains an LSTM against ppolab's GRU preset; "
          "ppolab-lstm is ppolab with --set recurrent=lstm")
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="contrib-") as tmp:
        for task in args.tasks:
            for seed in range(args.seeds):
                for library in TASKS[task][2]:
                    row = run_one(library, task, seed, steps, Path(tmp), args.timeout)
                    results.add(row)
                    print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_table(table, tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
