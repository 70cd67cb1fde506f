"""PPO vs TRPO vs A2C (and VPG): steps and wall-clock time to solve, and the final return.

    python benchmarks/algorithms.py [--envs ENV ...] [--algos ALGO ...] [--seeds N] [--out DIR]

Each run is ``ppolab train ENV --algo ALGO --seed S --quiet``: the algorithm's preset for ENV
(or its defaults where it has none; the table says which), stopping once the mean return of the
last 100 episodes reaches the env's threshold (CartPole-v1: 475, LunarLander-v3: 200). One fresh
process at a time, algorithms alternating seed by seed so that drifts of the machine hit all
alike; time counts from process start.

Published at these budgets (RL Zoo): TRPO solves CartPole-v1 in 100k steps and reaches about
133 on LunarLander-v2 at 200k; A2C solves CartPole-v1 in 500k.

Output: a line per run, the rows in a CSV and a JSON under --out, then per environment and
algorithm: solved / seeds, median steps and seconds to solve (unsolved runs count as infinitely
slow), and the median final rolling return.
"""

from __future__ import annotations

import argparse
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

DEFAULT_ENVS = ("CartPole-v1", "LunarLander-v3")
ALGOS = ("ppo", "trpo", "a2c", "vpg")
DEFAULT_ALGOS = ("ppo", "trpo", "a2c")
PACKAGES = ("ppolab", "torch", "gymnasium", "numpy")


@dataclass
class RunRow:
    env_id: str
    algo: str
    seed: int
    preset: bool  # False: the algorithm's defaults (no tuned preset for this env)
    status: str  # "ok", "timeout", or "error (exit N)"
    solved: bool
    solved_at_step: int | None
    solved_at_seconds: float | None
    total_steps: int | None
    final_mean_return_100: float | None
    wall_seconds: float | None
    load_before: float


def has_preset(algo: str, env_id: str) -> bool:
    from ppolab.config import PRESETS

    return env_id in PRESETS.get(algo, {})


def run_one(algo: str, env_id: str, seed: int, workdir: Path, timeout: float | None) -> RunRow:
    name = f"{env_id}-{algo}-s{seed}"
    command = [ppolab_executable(), "train", env_id, "--algo", algo, "--seed", str(seed),
               "--out", str(workdir), "--name", name, "--quiet", "--no-tensorboard"]
    log = workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    code, _ = run_process(command, log, timeout)
    summary = workdir / name / "summary.json"
    if code != 0 or not summary.exists():
        if code is not None:
            print(f"  {algo} failed; last lines of its output:\n    {log_tail(log)}", file=sys.stderr)
        status = "timeout" if code is None else f"error (exit {code})"
        return RunRow(env_id, algo, seed, has_preset(algo, env_id), status, False, None, None, None, None, None,
                      load_before)
    data = json.loads(summary.read_text())
    return RunRow(env_id, algo, seed, has_preset(algo, env_id), "ok", bool(data["solved"]), data["solved_at_step"],
                  data["solved_at_seconds"], data["total_steps"], data["final_mean_return_100"],
                  data["wall_seconds"], load_before)


def describe(row: RunRow) -> str:
    outcome = solve_outcome(row.solved, row.solved_at_step, row.solved_at_seconds, row.status)
    final = "n/a" if row.final_mean_return_100 is None else f"{row.final_mean_return_100:.1f}"
    return (f"{row.env_id:<15} seed {row.seed}  {row.algo:<5} {'' if row.preset else '(defaults) '}{outcome}; "
            f"final rolling return {final}; load before {row.load_before:.2f}")


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    table = []
    for env_id in dict.fromkeys(row.env_id for row in rows):
        for algo in dict.fromkeys(row.algo for row in rows):
            runs = [row for row in rows if row.env_id == env_id and row.algo == algo]
            if not runs:
                continue
            steps = median_or_inf([solved_or_inf(row.solved_at_step) for row in runs])
            seconds = median_or_inf([solved_or_inf(row.solved_at_seconds) for row in runs])
            finals = [row.final_mean_return_100 for row in runs if row.final_mean_return_100 is not None]
            table.append({"env_id": env_id, "algo": algo, "preset": runs[0].preset, "seeds": len(runs),
                          "solved": sum(row.solved for row in runs),
                          "median_steps_to_solve": None if math.isinf(steps) else steps,
                          "median_seconds_to_solve": None if math.isinf(seconds) else seconds,
                          "median_final_return": statistics.median(finals) if finals else None})
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    header = (f"{'env':<15} {'algo':<5} {'settings':<8} {'solved':>6} {'median steps':>13} {'median s':>10} "
              f"{'median final':>13}")
    lines = [header, "-" * len(header)]
    for e in table:
        lines.append(f"{e['env_id']:<15} {e['algo']:<5} {'preset' if e['preset'] else 'defaults':<8} "
                     f"{e['solved']:>3}/{e['seeds']:<2} "
                     f"{shown(e['median_steps_to_solve'], '{:,.0f}', 'not solved'):>13} "
                     f"{shown(e['median_seconds_to_solve'], '{:.1f}', 'not solved'):>10} "
                     f"{shown(e['median_final_return'], '{:.1f}', 'n/a'):>13}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS), metavar="ENV",
                        help=f"environments (default: {' '.join(DEFAULT_ENVS)})")
    parser.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS), choices=ALGOS, metavar="ALGO",
                        help=f"algorithms (default: {' '.join(DEFAULT_ALGOS)}; also vpg)")
    add_run_arguments(parser, default_seeds=5)
    return parse_run_arguments(parser, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ppolab_executable()
    machine = machine_info(PACKAGES)
    settings = {"envs": args.envs, "algos": args.algos, "seeds": list(range(args.seeds)), "timeout": args.timeout}
    results = Results(results_stem(args.out, "algorithms"), RunRow, machine, settings)
    print(format_machine(machine))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="algorithms-") as tmp:
        for env_id in args.envs:
            for seed in range(args.seeds):
                for algo in args.algos:
                    row = run_one(algo, env_id, seed, Path(tmp), args.timeout)
                    results.add(row)
                    print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
