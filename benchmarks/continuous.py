"""Continuous control at a fixed budget: ppolab's MuJoCo presets (and optionally SB3's PPO with
the same settings) trained for 1M steps, then evaluated.

    python benchmarks/continuous.py [--envs ENV ...] [--seeds N] [--jobs J] [--sb3] [--steps N] [--out DIR]

What is measured, for each environment and seed:
  * the final mean return over 10 evaluation episodes with the deterministic (mean) action and
    the observation statistics frozen, on env seeds 10_000.. (never used in training);
  * the rolling mean training return of the last 100 episodes at the end of training;
  * the wall-clock seconds of training (process start to the end of training) and the
    environment steps per second it implies.

How:
  * ppolab runs as ``ppolab train ENV --seed S --no-early-stop --quiet``: the preset for ENV
    (CleanRL's ppo_continuous_action.py settings, 1M steps), the full budget. The evaluation
    loads the run directory's model.pt here, with ``ppolab.evaluation.evaluate``.
  * ``--sb3`` adds Stable-Baselines3's PPO with the same hyperparameters (``sb3_run.py
    --fixed-budget``): a peer measured on the same machine in the same session.
  * ``--jobs J`` runs J trainings at once (one torch thread each). The times of runs that
    shared the CPU are not comparable to those of runs that did not; the JSON records J.

Reference returns at 1M steps: CleanRL's PPO about 2380 on Hopper-v4 and 1440 on
HalfCheetah-v4; the RL Zoo's PPO about 2410 on Hopper-v3.

Output: one line per run, the rows in a CSV and a JSON under --out, then a table per
environment and library with medians over seeds.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (Results, add_run_arguments, benchmark_parser, format_machine, log_tail, machine_info,
                    parse_run_arguments, ppolab_executable, results_stem, run_process, shown)

HERE = Path(__file__).resolve().parent
SB3_RUN = HERE / "sb3_run.py"
DEFAULT_ENVS = ("Hopper-v5", "HalfCheetah-v5")
ENVS = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
PACKAGES = ("ppolab", "torch", "gymnasium", "mujoco", "stable-baselines3", "numpy")
REFERENCE = {"Hopper-v5": "CleanRL ~2380 (v4), RL Zoo ~2410 (v3)", "HalfCheetah-v5": "CleanRL ~1440 (v4)",
             "Walker2d-v5": "CleanRL ~3420 (v4)"}
EVAL_EPISODES = 10
EVAL_SEED = 10_000


@dataclass
class RunRow:
    """The outcome of one training run and its evaluation."""

    env_id: str
    library: str
    seed: int
    status: str  # "ok", "timeout", or "error (exit N)"
    total_steps: int | None
    wall_seconds: float | None  # the run's own measure, process start to the end of training
    steps_per_second: float | None
    train_mean_return_100: float | None
    eval_mean_return: float | None
    eval_std_return: float | None
    load_before: float  # 1-minute load average just before the run
    jobs: int  # trainings running at once


def command_for(library: str, env_id: str, seed: int, workdir: Path, steps: int | None) -> tuple[list[str], Path]:
    """The command line of one run and the summary JSON it writes."""
    budget = [] if steps is None else ["--steps", str(steps)]
    if library == "ppolab":
        name = f"{env_id}-s{seed}"
        command = [ppolab_executable(), "train", env_id, "--seed", str(seed), "--no-early-stop",
                   "--out", str(workdir), "--name", name, "--quiet", *budget]
        return command, workdir / name / "summary.json"
    summary = workdir / f"sb3-{env_id}-s{seed}.json"
    return [sys.executable, str(SB3_RUN), env_id, str(seed), str(summary), "--fixed-budget", *budget,
            "--eval-episodes", str(EVAL_EPISODES), "--eval-seed", str(EVAL_SEED)], summary


def evaluate_ppolab(run_dir: Path) -> tuple[float, float]:
    from ppolab.agent import PPO
    from ppolab.evaluation import evaluate

    result = evaluate(PPO.load(run_dir), episodes=EVAL_EPISODES, deterministic=True, seed=EVAL_SEED)
    return result.mean, result.std


def run_one(library: str, env_id: str, seed: int, workdir: Path, args: argparse.Namespace) -> RunRow:
    command, summary = command_for(library, env_id, seed, workdir, args.steps)
    timeout, jobs = args.timeout, args.jobs
    log = workdir / f"{library}-{env_id}-s{seed}.log"
    load_before = os.getloadavg()[0]
    code, _ = run_process(command, log, timeout)
    if code != 0 or not summary.exists():
        if code is not None:
            print(f"  {library} {env_id} seed {seed} failed; last lines of its output:\n    {log_tail(log)}",
                  file=sys.stderr)
        status = "timeout" if code is None else f"error (exit {code})"
        return RunRow(env_id, library, seed, status, None, None, None, None, None, None, load_before, jobs)
    data = json.loads(summary.read_text())
    if library == "ppolab":
        eval_mean, eval_std = evaluate_ppolab(summary.parent)
    else:
        eval_mean, eval_std = data["eval_mean_return"], data["eval_std_return"]
    steps, seconds = data["total_steps"], data["wall_seconds"]
    return RunRow(env_id, library, seed, "ok", steps, seconds, round(steps / seconds, 1),
                  data["final_mean_return_100"], round(eval_mean, 2), round(eval_std, 2), load_before, jobs)


def describe(row: RunRow) -> str:
    if row.status != "ok":
        return f"{row.env_id:<15} seed {row.seed}  {row.library:<6}  FAILED ({row.status})"
    return (f"{row.env_id:<15} seed {row.seed}  {row.library:<6}  eval {row.eval_mean_return:8.1f} "
            f"+- {row.eval_std_return:6.1f}; training rolling return {row.train_mean_return_100:8.1f}; "
            f"{row.total_steps:,} steps in {row.wall_seconds:.0f} s ({row.steps_per_second:,.0f} steps/s); "
            f"load before {row.load_before:.2f}, {row.jobs} job(s)")


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    """One entry per (env, library): medians over the seeds that finished."""
    table = []
    for env_id in dict.fromkeys(row.env_id for row in rows):
        for library in dict.fromkeys(row.library for row in rows):
            runs = [row for row in rows if row.env_id == env_id and row.library == library]
            if not runs:
                continue
            ok = [row for row in runs if row.status == "ok"]
            table.append({
                "env_id": env_id, "library": library, "seeds": len(runs), "finished": len(ok),
                "median_eval_return": median([row.eval_mean_return for row in ok]),
                "eval_returns": [row.eval_mean_return for row in ok],
                "median_train_return_100": median([row.train_mean_return_100 for row in ok]),
                "median_wall_seconds": median([row.wall_seconds for row in ok]),
                "median_steps_per_second": median([row.steps_per_second for row in ok]),
                "reference": REFERENCE.get(env_id, ""),
            })
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    header = (f"{'env':<15} {'library':<7} {'runs':>5} {'median eval':>12} {'median train':>13} "
              f"{'median s':>9} {'steps/s':>8}  reference at 1M steps")
    lines = [header, "-" * len(header)]
    for entry in table:
        lines.append(f"{entry['env_id']:<15} {entry['library']:<7} {entry['finished']:>2}/{entry['seeds']:<2} "
                     f"{shown(entry['median_eval_return'], '{:.1f}', 'n/a'):>12} "
                     f"{shown(entry['median_train_return_100'], '{:.1f}', 'n/a'):>13} "
                     f"{shown(entry['median_wall_seconds'], '{:.0f}', 'n/a'):>9} "
                     f"{shown(entry['median_steps_per_second'], '{:,.0f}', 'n/a'):>8}  {entry['reference']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), choices=ENVS, metavar="ENV",
                        help=f"environments (default: {' '.join(DEFAULT_ENVS)}; also Walker2d-v5)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="trainings at once (default: 1; more shares the CPU and slows each run)")
    parser.add_argument("--sb3", action="store_true", help="also run SB3's PPO with the same settings")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="train N steps instead of the preset's 1M (for a quick check of this script)")
    add_run_arguments(parser, default_seeds=3)
    args = parse_run_arguments(parser, argv)
    if args.jobs < 1 or (args.steps is not None and args.steps < 1):
        parser.error("--jobs and --steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("mujoco") is None:
        sys.exit("continuous: MuJoCo is not installed; pip install -e '.[mujoco,bench]'")
    if args.sb3 and importlib.util.find_spec("stable_baselines3") is None:
        sys.exit("continuous: stable-baselines3 is not installed; pip install -e '.[bench]'")
    ppolab_executable()
    libraries = ("ppolab", "sb3") if args.sb3 else ("ppolab",)
    machine = machine_info(PACKAGES)
    settings = {"envs": args.envs, "seeds": list(range(args.seeds)), "jobs": args.jobs,
                "libraries": list(libraries), "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED,
                "steps": args.steps, "timeout": args.timeout}
    results = Results(results_stem(args.out, "continuous"), RunRow, machine, settings)
    print(format_machine(machine))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    plan = [(library, env_id, seed) for env_id in args.envs for seed in range(args.seeds) for library in libraries]
    with tempfile.TemporaryDirectory(prefix="continuous-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, library, env_id, seed, Path(tmp), args)
                   for library, env_id, seed in plan]
        for future in futures:
            row = future.result()
            results.add(row)
            print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
