"""MinAtar at a fixed budget: ppolab's MinAtar presets, speed and score.

    python benchmarks/minatar.py [--envs ENV ...] [--steps N] [--seeds K] [--timeout S] [--out DIR]

What is measured, for each environment (default MinAtar/Breakout-v1 and
MinAtar/SpaceInvaders-v1) and seed 0..K-1 (default 3), at N environment steps (default
1,000,000, rounded up as ppolab rounds it, to whole rollouts of the preset's 16 envs x 128 steps
= 2048; the preset's own budget is larger, about 3M steps):
  * the mean of the last 100 training episodes' returns at the end of training
    (summary.json's final_mean_return_100) and the number of episodes;
  * the wall-clock seconds from the process start to the end of training (ppolab's own clock)
    and the steps per second they imply (total steps / those seconds); also the median steps
    per second of one rollout + update (metrics.csv's ``sps``), which leaves out start-up;
  * the peak resident set size of the run's process (``ru_maxrss`` from ``os.wait4``).

How: ``ppolab train ENV --steps N --seed S --no-early-stop --quiet``, the preset for ENV (the
MinAtar paper's network: one 3x3 convolution of 16 channels, 128 hidden units; 16 envs x 128
steps, 4 epochs of minibatches of 512, lr 5e-4, clip 0.2, ent 0.01), each run a fresh
subprocess, one at a time, the environments alternating seed by seed.

Reference at 10M steps: the PPO agents in gymnax's README ("Implemented Accelerated
Environments" table, github.com/RobertTLange/gymnax; trained by gymnax-blines,
agents/<game>-MinAtar/ppo.yaml: 10M steps, 64 envs x 128 steps, an MLP of 2 x 256 on the
flattened grid, gamma 0.999): Breakout-MinAtar 28, SpaceInvaders-MinAtar 131. Those are gymnax's
JAX reimplementations of the games, scored on test rollouts of the final policy: a rough
reference for the end of a longer run, not a number to match at 1M steps.

Output: one line per run, the rows in a CSV and a JSON under --out (rewritten after each run),
then the medians per environment with the reference beside them.
"""

from __future__ import annotations

import argparse
import csv
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
                    parse_run_arguments, ppolab_executable, results_stem, run_process_peak_rss, shown)

ENVS = ("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1")
PACKAGES = ("ppolab", "torch", "gymnasium", "minatar", "numpy")
DEFAULT_STEPS = 1_000_000
REFERENCE_10M = {"MinAtar/Breakout-v1": "gymnax PPO 28 (Breakout-MinAtar)",
                 "MinAtar/SpaceInvaders-v1": "gymnax PPO 131 (SpaceInvaders-MinAtar)"}


@dataclass
class RunRow:
    """The outcome of one training run."""

    env_id: str
    seed: int
    status: str  # "ok", "timeout", or "error (exit N)"
    steps: int | None
    wall_seconds: float | None  # process start to the end of training, the run's own clock
    sps: float | None  # steps / wall_seconds
    median_update_sps: float | None  # median over updates of metrics.csv's sps
    final_mean_return_100: float | None
    episodes: int | None
    peak_rss_mib: float  # ru_maxrss from os.wait4 on the run's process
    load_before: float  # 1-minute load average just before the run


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def rollout_size(env_id: str) -> int:
    from ppolab.config import preset

    config = preset(env_id)
    return config.n_envs * config.n_steps


def preset_budget(env_id: str) -> int:
    from ppolab.config import preset

    return preset(env_id).total_steps


def run_one(env_id: str, seed: int, steps: int, workdir: Path, timeout: float | None) -> RunRow:
    name = f"{env_id.replace('/', '-')}-s{seed}"
    log = workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    command = [ppolab_executable(), "train", env_id, "--steps", str(steps), "--seed", str(seed),
               "--no-early-stop", "--out", str(workdir), "--name", name, "--quiet"]
    code, _, rss_kib = run_process_peak_rss(command, log, timeout)
    summary = workdir / name / "summary.json"
    if code != 0 or not summary.exists():
        if code is not None:
            print(f"  {env_id} seed {seed} failed; last lines of its output:\n    {log_tail(log)}", file=sys.stderr)
        status = "timeout" if code is None else f"error (exit {code})"
        return RunRow(env_id, seed, status, None, None, None, None, None, None, round(rss_kib / 1024, 1),
                      load_before)
    data = json.loads(summary.read_text())
    with (workdir / name / "metrics.csv").open(newline="") as f:
        update_sps = median([float(row["sps"]) for row in csv.DictReader(f) if row.get("sps")])
    total, seconds = data["total_steps"], data["wall_seconds"]
    return RunRow(env_id, seed, "ok", total, seconds, round(total / seconds, 1), update_sps,
                  data["final_mean_return_100"], data["episodes"], round(rss_kib / 1024, 1), load_before)


def describe(row: RunRow) -> str:
    if row.status != "ok":
        return f"{row.env_id:<26} seed {row.seed}  FAILED ({row.status})"
    return (f"{row.env_id:<26} seed {row.seed}  return {shown(row.final_mean_return_100, '{:.2f}', 'n/a')} "
            f"(last {min(row.episodes or 0, 100)} of {row.episodes:,} episodes); "
            f"{row.steps:,} steps in {row.wall_seconds:.0f} s: "
            f"{row.sps:,.0f} steps/s (median per update {shown(row.median_update_sps, '{:,.0f}', 'n/a')}); "
            f"peak RSS {row.peak_rss_mib:,.0f} MiB; load before {row.load_before:.2f}")


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    """One entry per environment: medians over the seeds that finished."""
    table = []
    for env_id in dict.fromkeys(row.env_id for row in rows):
        runs = [row for row in rows if row.env_id == env_id]
        ok = [row for row in runs if row.status == "ok"]
        table.append({
            "env_id": env_id, "seeds": len(runs), "finished": len(ok),
            "steps": sorted({row.steps for row in ok}),
            "median_return_100": median([row.final_mean_return_100 for row in ok]),
            "returns": {row.seed: row.final_mean_return_100 for row in ok},
            "median_wall_seconds": median([row.wall_seconds for row in ok]),
            "median_sps": median([row.sps for row in ok]),
            "median_update_sps": median([row.median_update_sps for row in ok]),
            "median_peak_rss_mib": median([row.peak_rss_mib for row in ok]),
            "reference_10M": REFERENCE_10M.get(env_id, ""),
        })
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    header = (f"{'env':<26} {'runs':>5} {'steps':>10} {'median return':>14} {'median s':>9} {'steps/s':>8} "
              f"{'per update':>11}  reference at 10M steps")
    lines = [header, "-" * len(header)]
    for e in table:
        steps = ", ".join(f"{s:,}" for s in e["steps"]) or "n/a"
        lines.append(f"{e['env_id']:<26} {e['finished']:>2}/{e['seeds']:<2} {steps:>10} "
                     f"{shown(e['median_return_100'], '{:.2f}', 'n/a'):>14} "
                     f"{shown(e['median_wall_seconds'], '{:,.0f}', 'n/a'):>9} "
                     f"{shown(e['median_sps'], '{:,.0f}', 'n/a'):>8} "
                     f"{shown(e['median_update_sps'], '{:,.0f}', 'n/a'):>11}  {e['reference_10M']}")
    for e in table:
        returns = ", ".join(f"seed {seed}: {shown(r, '{:.2f}', 'n/a')}" for seed, r in e["returns"].items())
        lines.append(f"{e['env_id']} returns: {returns or 'n/a'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS, metavar="ENV",
                        help=f"environments (default: {' '.join(ENVS)})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                        help=f"training steps, rounded up to whole rollouts (default: {DEFAULT_STEPS:,}; "
                             "the presets' own budget is about 3M)")
    add_run_arguments(parser, default_seeds=3)
    args = parse_run_arguments(parser, argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("minatar") is None:
        sys.exit("minatar: the MinAtar package is not installed; pip install -e '.[minatar]'")
    ppolab_executable()
    budgets = {env_id: math.ceil(args.steps / rollout_size(env_id)) * rollout_size(env_id) for env_id in args.envs}
    machine = machine_info(PACKAGES)
    settings = {"envs": args.envs, "steps": args.steps, "budget_steps": budgets,
                "preset_budget_steps": {env_id: preset_budget(env_id) for env_id in args.envs},
                "seeds": list(range(args.seeds)), "timeout": args.timeout,
                "sps": "total env steps / wall seconds from process start to the end of training"}
    results = Results(results_stem(args.out, "minatar"), RunRow, machine, settings)
    print(format_machine(machine))
    print("budget: " + ", ".join(f"{env_id} {budgets[env_id]:,} steps (preset: {preset_budget(env_id):,})"
                                 for env_id in args.envs))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="minatar-") as tmp:
        for seed in range(args.seeds):
            for env_id in args.envs:
                row = run_one(env_id, seed, args.steps, Path(tmp), args.timeout)
                results.add(row)
                print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
