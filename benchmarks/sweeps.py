"""What running a sweep costs: the same `ppolab sweep` on one local worker, on every core, and on
a local Ray instance, repeated, with the median wall-clock time of each and their ratios.

    python benchmarks/sweeps.py                 # 2 clip values x 4 seeds x 8,192 steps, 3 repeats
    python benchmarks/sweeps.py --seeds 8 --repeats 5

Each run is timed from the command's start to its exit (process start-up, Ray start-up and the
report included), each trial in a process (or task) of its own (``--population off``). The per-trial scores of every run are compared: they must be identical.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common import (
    Results,
    add_run_arguments,
    benchmark_parser,
    format_machine,
    log_tail,
    machine_info,
    parse_run_arguments,
    ppolab_executable,
    results_stem,
    run_process,
)

PACKAGES = ("ppolab", "torch", "gymnasium", "ray")
# A process (or Ray task) per trial in every variant: this compares executors, and populations
# (see benchmarks/population.py) would change the per-trial scores that must be identical here.
VARIANTS = {"local, 1 worker": ["--workers", "1", "--population", "off"],
            "local, all cores": ["--population", "off"],
            "ray (local instance), all cores": ["--backend", "ray", "--population", "off"]}


@dataclass
class SweepRow:
    variant: str
    repeat: int
    seconds: float
    exit_code: int | None
    scores: str  # JSON: trial -> score


def run_one(variant: str, repeat: int, seeds: int, steps: int, tmp: Path, timeout: float | None) -> SweepRow:
    out = tmp / f"repeat{repeat}-variant{list(VARIANTS).index(variant)}"
    command = [ppolab_executable(), "sweep", "CartPole-v1", "--grid", "clip_coef=0.1,0.2", "--seeds", str(seeds),
               "--steps", str(steps), "--out", str(out), "--quiet", *VARIANTS[variant]]
    code, seconds = run_process(command, out.with_suffix(".log"), timeout)
    if code != 0:
        print(f"  {variant}: exit {code}\n    {log_tail(out.with_suffix('.log'))}", file=sys.stderr)
        return SweepRow(variant, repeat, seconds, code, "{}")
    status = json.loads((out / "status.json").read_text())["trials"]
    scores = {name: entry["result"]["score"] for name, entry in status.items()}
    return SweepRow(variant, repeat, round(seconds, 2), code, json.dumps(scores, sort_keys=True))


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__ or "")
    add_run_arguments(parser, default_seeds=4)
    parser.add_argument("--steps", type=int, default=8192, help="steps per trial (default: 8192)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant (default: 3)")
    args = parse_run_arguments(parser, argv)
    machine = machine_info(PACKAGES)
    settings = {"seeds": args.seeds, "steps": args.steps, "repeats": args.repeats, "grid": "clip_coef=0.1,0.2"}
    results = Results(results_stem(args.out, "sweeps"), SweepRow, machine, settings)
    print(format_machine(machine))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="sweeps-") as tmp:
        for repeat in range(args.repeats):  # variants interleaved, so that drifting load hits each alike
            for variant in VARIANTS:
                row = run_one(variant, repeat, args.seeds, args.steps, Path(tmp), args.timeout)
                results.add(row)
                print(f"{variant:<32} repeat {repeat}: {row.seconds:6.1f} s (exit {row.exit_code})", flush=True)
    medians = {v: statistics.median(r.seconds for r in results.rows if r.variant == v and r.exit_code == 0)
               for v in VARIANTS if any(r.variant == v and r.exit_code == 0 for r in results.rows)}
    same = len({r.scores for r in results.rows if r.exit_code == 0}) == 1
    baseline = medians.get("local, 1 worker")
    summary = {"median_seconds": medians, "identical_scores": same,
               "ratio_to_one_worker": {v: round(baseline / s, 2) for v, s in medians.items()} if baseline else None}
    results.write_json(summary)
    print(f"\n{'variant':<32} {'median s':>9} {'speed-up vs 1 worker':>21}")
    for variant, seconds in medians.items():
        ratio = f"{baseline / seconds:.2f}x" if baseline else "-"
        print(f"{variant:<32} {seconds:9.1f} {ratio:>21}")
    print(f"per-trial scores identical in every run: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
