"""Atari at a fixed budget: ppolab's PPO against Stable-Baselines3's PPO, speed and score.

    python benchmarks/atari.py [--env ALE/Breakout-v5] [--steps N] [--seeds K] [--timeout S] [--out DIR]

What is measured, for each seed 0..K-1, at the same budget of N environment steps (default
250,000, rounded up as ppolab rounds it, to whole rollouts of 8 envs x 128 steps = 1024; both
libraries train exactly that many steps, with no early stop):
  * steps per second, defined identically for both: the total environment steps divided by the
    wall-clock seconds from the *process start* to the end of training (interpreter start-up,
    imports, env and network construction included). Both read the clock with
    ``ppolab.clock.since_process_start``. Also each library's median steps per second of one
    rollout + update (ppolab: the ``sps`` column of metrics.csv; SB3: 1024 steps over the time
    from one rollout's start to the next), which leaves out start-up;
  * the score: the mean of the last 100 whole-game, unclipped scores at the end of training
    (ppolab: summary.json's final_mean_return_100; SB3: its Monitor's episodes, see
    sb3_atari_run.py), and the number of games played;
  * the peak resident set size of the run's process, from the resource usage ``os.wait4``
    returns when reaping it (``ru_maxrss``; see ``common.run_process_peak_rss``).

How:
  * ppolab runs as ``ppolab train ENV --steps N --seed S --no-early-stop --quiet``: its Atari
    preset (8 envs x 128 steps, 4 epochs of minibatches of 256, lr 2.5e-4 annealed to 0, clip
    0.1 held constant as in CleanRL, ent 0.01, clipped value loss, the Nature CNN with the heads
    on its 512 features) and its Atari preprocessing (ppolab.atari: noop 30, skip 4 with max-pool,
    84x84 gray, life loss ends an episode in training, FIRE on reset, reward sign, 4 frames
    stacked; v5 sticky actions 0.25). It writes checkpoints, TensorBoard and CSVs as in a normal
    run; its time includes them.
  * SB3 runs as ``benchmarks/sb3_atari_run.py ENV S N OUTFILE``: ``PPO("CnnPolicy")`` with the
    RL Zoo's ``atari`` hyperparameters (n_steps 128, 8 envs, 4 epochs, batch 256, lr and clip
    range linear from 2.5e-4 and 0.1, vf 0.5, ent 0.01; no value clipping) on
    ``make_atari_env(ENV, frameskip=1)`` + ``VecFrameStack(4)``: the same ALE game with the same
    sticky actions, and the same kind of preprocessing (AtariWrapper). Both vectorize in-process
    (SB3's DummyVecEnv, ppolab's SyncVectorEnv) and leave torch's threads and the device at
    their defaults (ppolab: one thread per core for a CNN; SB3: torch's default; both
    ``device=auto``, CUDA where there is one); the rows record them.
  * Every run is a fresh subprocess, one at a time, ppolab then SB3 for each seed, so runs never
    compete for the CPU and slow drifts of the machine hit both libraries alike.

Output: one line per run, the rows in a CSV and a JSON under --out (rewritten after each run),
then the medians per library, ppolab's steps per second over SB3's per seed and their median,
each library's score per seed at this budget, CleanRL's published 10M-step scores as a
reference, and the rollout bytes per transition of ppolab's uint8 observation storage.
"""

from __future__ import annotations

import argparse
import csv
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
                    parse_run_arguments, ppolab_executable, results_stem, run_process_peak_rss, shown)

HERE = Path(__file__).resolve().parent
SB3_ATARI_RUN = HERE / "sb3_atari_run.py"
LIBRARIES = ("ppolab", "sb3")
PACKAGES = ("ppolab", "torch", "gymnasium", "ale-py", "opencv-python-headless", "stable-baselines3", "numpy")
DEFAULT_ENV = "ALE/Breakout-v5"
DEFAULT_STEPS = 250_000
ROLLOUT = 8 * 128  # both libraries' transitions per rollout: 8 envs x 128 steps
# CleanRL's docs, "ppo_atari.py" section of docs/rl-algorithms/ppo.md: average episodic return
# after 10M steps, 3 seeds, on the NoFrameskip-v4 games (no sticky actions, which v5 adds, so a
# v5 score is typically somewhat lower); openai/baselines' PPO beside it.
CLEANRL_10M = {
    "Breakout": "CleanRL ppo_atari.py 416.31 +- 43.92 (openai/baselines PPO 406.57), BreakoutNoFrameskip-v4",
    "Pong": "CleanRL ppo_atari.py 20.59 +- 0.35 (openai/baselines PPO 20.51), PongNoFrameskip-v4",
    "BeamRider": "CleanRL ppo_atari.py 2445.38 +- 528.91 (openai/baselines PPO 2642.97), BeamRiderNoFrameskip-v4",
}


@dataclass
class RunRow:
    """The outcome of one training run."""

    env_id: str
    library: str
    seed: int
    status: str  # "ok", "timeout", or "error (exit N)"
    steps: int | None
    wall_seconds: float | None  # process start to the end of training, the run's own clock
    sps: float | None  # steps / wall_seconds
    median_update_sps: float | None  # median over updates of one rollout + update's steps/s
    final_mean_return_100: float | None  # last 100 whole-game unclipped scores
    episodes: int | None  # whole games finished
    peak_rss_mib: float  # ru_maxrss from os.wait4 on the run's process
    torch_threads: int | None
    device: str | None
    load_before: float  # 1-minute load average just before the run


def rounded_budget(steps: int) -> int:
    """``steps`` rounded up to whole rollouts of 1024, as ``ppolab train --steps`` rounds it."""
    return math.ceil(steps / ROLLOUT) * ROLLOUT


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None


def median_column(metrics_csv: Path, column: str) -> float | None:
    with metrics_csv.open(newline="") as f:
        return median([float(row[column]) for row in csv.DictReader(f) if row.get(column)])


def ppolab_defaults() -> tuple[int, str]:
    """The torch threads and device ``ppolab train`` picks for a CNN with no --set (its rule in
    ppolab.agent / ppolab.devices: one thread per available core; CUDA when available)."""
    from ppolab.devices import available_cores, resolve_device

    return available_cores(), str(resolve_device("auto", heavy_encoder=True))


def run_ppolab(env_id: str, seed: int, budget: int, workdir: Path, timeout: float | None) -> RunRow:
    name = f"ppolab-s{seed}"
    log = workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    command = [ppolab_executable(), "train", env_id, "--steps", str(budget), "--seed", str(seed),
               "--no-early-stop", "--out", str(workdir), "--name", name, "--quiet"]
    code, _, rss_kib = run_process_peak_rss(command, log, timeout)
    summary = workdir / name / "summary.json"
    threads, device = ppolab_defaults()
    if code != 0 or not summary.exists():
        return failed(env_id, "ppolab", seed, code, log, rss_kib, load_before)
    data = json.loads(summary.read_text())
    steps, seconds = data["total_steps"], data["wall_seconds"]
    return RunRow(env_id, "ppolab", seed, "ok", steps, seconds, round(steps / seconds, 2),
                  median_column(workdir / name / "metrics.csv", "sps"), data["final_mean_return_100"],
                  data["episodes"], round(rss_kib / 1024, 1), threads, device, load_before)


def run_sb3(env_id: str, seed: int, budget: int, workdir: Path, timeout: float | None) -> RunRow:
    name = f"sb3-s{seed}"
    summary, log = workdir / f"{name}.json", workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    command = [sys.executable, str(SB3_ATARI_RUN), env_id, str(seed), str(budget), str(summary)]
    code, _, rss_kib = run_process_peak_rss(command, log, timeout)
    if code != 0 or not summary.exists():
        return failed(env_id, "sb3", seed, code, log, rss_kib, load_before)
    data = json.loads(summary.read_text())
    steps, seconds = data["total_steps"], data["wall_seconds"]
    return RunRow(env_id, "sb3", seed, "ok", steps, seconds, round(steps / seconds, 2), data["median_update_sps"],
                  data["final_mean_return_100"], data["episodes"], round(rss_kib / 1024, 1),
                  data["torch_threads"], data["device"], load_before)


def failed(env_id: str, library: str, seed: int, code: int | None, log: Path, rss_kib: int,
           load_before: float) -> RunRow:
    if code is not None:
        print(f"  {library} seed {seed} failed; last lines of its output:\n    {log_tail(log)}", file=sys.stderr)
    status = "timeout" if code is None else f"error (exit {code})"
    return RunRow(env_id, library, seed, status, None, None, None, None, None, None, round(rss_kib / 1024, 1),
                  None, None, load_before)


def describe(row: RunRow) -> str:
    if row.status != "ok":
        return f"{row.env_id} seed {row.seed}  {row.library:<6}  FAILED ({row.status})"
    score = shown(row.final_mean_return_100, "{:.1f}", "n/a")
    return (f"{row.env_id} seed {row.seed}  {row.library:<6}  {row.steps:,} steps in {row.wall_seconds:.0f} s: "
            f"{row.sps:,.1f} steps/s (median per update {shown(row.median_update_sps, '{:,.1f}', 'n/a')}); "
            f"score {score} over the last {min(row.episodes or 0, 100)} of {row.episodes} games; "
            f"peak RSS {row.peak_rss_mib:,.0f} MiB; {row.torch_threads} torch threads on {row.device}; "
            f"load before {row.load_before:.2f}")


def rollout_bytes() -> dict[str, Any]:
    """Bytes per stored transition of a 4x84x84 uint8 observation in ppolab's rollout (measured
    on the tensor ``ppolab.rollout.allocate`` makes for the Atari spec), against float32
    storage of the same observation, and SB3 2.9.2's RolloutBuffer for the same space."""
    import gymnasium
    import numpy as np

    from ppolab.observations import ObservationSpec
    from ppolab.rollout import allocate

    space = gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    T, N = 128, 8
    observations = allocate(ObservationSpec.from_space(space), T, N)
    per_uint8 = observations.nbytes / (T * N)
    per_float32 = observations.numel() * 4 / (T * N)
    result = {"observation": "Box(0, 255, (4, 84, 84), uint8)", "rollout": f"{T} steps x {N} envs",
              "ppolab_dtype": str(observations.dtype), "ppolab_bytes_per_transition": per_uint8,
              "float32_bytes_per_transition": per_float32,
              "ppolab_rollout_mib": round(observations.nbytes / 2**20, 1),
              "float32_rollout_mib": round(per_float32 * T * N / 2**20, 1)}
    if importlib.util.find_spec("stable_baselines3") is not None:
        from stable_baselines3.common.buffers import RolloutBuffer

        buffer = RolloutBuffer(T, space, gymnasium.spaces.Discrete(4), device="cpu", n_envs=N)
        result["sb3_dtype"] = str(buffer.observations.dtype)
        result["sb3_bytes_per_transition"] = buffer.observations.nbytes / (T * N)
    return result


def reference_for(env_id: str) -> str:
    game = env_id.removeprefix("ALE/").split("-")[0]
    return CLEANRL_10M.get(game, "none recorded here")


def summarize(rows: list[RunRow], env_id: str, budget: int) -> dict[str, Any]:
    """Medians per library, the per-seed speed ratio and its median, the per-seed scores."""
    libraries: dict[str, Any] = {}
    for library in LIBRARIES:
        runs = [row for row in rows if row.library == library]
        ok = [row for row in runs if row.status == "ok"]
        libraries[library] = {
            "seeds": len(runs), "finished": len(ok),
            "median_sps": median([row.sps for row in ok]),
            "median_update_sps": median([row.median_update_sps for row in ok]),
            "median_wall_seconds": median([row.wall_seconds for row in ok]),
            "median_score": median([row.final_mean_return_100 for row in ok]),
            "scores": {row.seed: row.final_mean_return_100 for row in ok},
            "median_episodes": median([row.episodes for row in ok]),
            "median_peak_rss_mib": median([row.peak_rss_mib for row in ok]),
        }
    ratios = {}
    for seed in sorted({row.seed for row in rows}):
        pair = {row.library: row for row in rows if row.seed == seed and row.status == "ok"}
        if len(pair) == 2:
            ratios[seed] = round(pair["ppolab"].sps / pair["sb3"].sps, 3)
    return {"env_id": env_id, "budget_steps": budget, "libraries": libraries,
            "sps_ratio_ppolab_to_sb3": ratios, "median_sps_ratio_ppolab_to_sb3": median(list(ratios.values())),
            "reference_10M": reference_for(env_id), "rollout_bytes": rollout_bytes()}


def format_summary(summary: dict[str, Any]) -> str:
    libraries = summary["libraries"]
    header = (f"{'library':<7} {'runs':>5} {'steps/s':>8} {'per update':>11} {'seconds':>8} {'score':>7} "
              f"{'games':>6} {'peak RSS MiB':>13}")
    lines = [f"{summary['env_id']}, {summary['budget_steps']:,} steps; medians over seeds:", header, "-" * len(header)]
    for library, e in libraries.items():
        lines.append(f"{library:<7} {e['finished']:>2}/{e['seeds']:<2} {shown(e['median_sps'], '{:,.1f}', 'n/a'):>8} "
                     f"{shown(e['median_update_sps'], '{:,.1f}', 'n/a'):>11} "
                     f"{shown(e['median_wall_seconds'], '{:,.0f}', 'n/a'):>8} "
                     f"{shown(e['median_score'], '{:.1f}', 'n/a'):>7} "
                     f"{shown(e['median_episodes'], '{:,.0f}', 'n/a'):>6} "
                     f"{shown(e['median_peak_rss_mib'], '{:,.0f}', 'n/a'):>13}")
    ratios = summary["sps_ratio_ppolab_to_sb3"]
    per_seed = ", ".join(f"seed {seed}: {ratio:.2f}" for seed, ratio in ratios.items()) or "n/a"
    lines += ["", f"steps/s ppolab / SB3 (process start to end of training): {per_seed}; median "
              + shown(summary["median_sps_ratio_ppolab_to_sb3"], "{:.2f}", "n/a")]
    for library, e in libraries.items():
        scores = ", ".join(f"seed {seed}: {shown(score, '{:.1f}', 'n/a')}" for seed, score in e["scores"].items())
        lines.append(f"score at {summary['budget_steps']:,} steps, {library}: {scores or 'n/a'}")
    lines.append(f"reference at 10M steps: {summary['reference_10M']}")
    b = summary["rollout_bytes"]
    lines.append(f"rollout storage of a {b['observation']} observation: ppolab {b['ppolab_bytes_per_transition']:,.0f} "
                 f"bytes per transition ({b['ppolab_dtype']}; {b['ppolab_rollout_mib']} MiB per {b['rollout']} "
                 f"rollout) vs float32 {b['float32_bytes_per_transition']:,.0f} ({b['float32_rollout_mib']} MiB)"
                 + (f"; SB3's RolloutBuffer: {b['sb3_bytes_per_transition']:,.0f} ({b['sb3_dtype']})"
                    if "sb3_bytes_per_transition" in b else ""))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--env", default=DEFAULT_ENV, metavar="ENV",
                        help=f"an ALE id (default: {DEFAULT_ENV}); both libraries use its Atari settings")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                        help=f"training steps, rounded up to whole rollouts of {ROLLOUT} (default: {DEFAULT_STEPS:,})")
    add_run_arguments(parser, default_seeds=2)
    args = parse_run_arguments(parser, argv)
    if not args.env.startswith("ALE/"):
        parser.error("--env must be an ALE/ id, e.g. ALE/Breakout-v5 or ALE/Pong-v5")
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for module, extra in (("stable_baselines3", "bench"), ("ale_py", "atari"), ("cv2", "atari")):
        if importlib.util.find_spec(module) is None:
            sys.exit(f"atari: {module} is not installed; pip install -e '.[atari,bench]'")
    ppolab_executable()
    from ppolab.config import preset

    config = preset(args.env)
    assert config.n_envs * config.n_steps == ROLLOUT, "ppolab's Atari preset no longer has 1024-step rollouts"
    budget = rounded_budget(args.steps)
    machine = machine_info(PACKAGES)
    settings = {"env": args.env, "steps": args.steps, "budget_steps": budget, "seeds": list(range(args.seeds)),
                "libraries": list(LIBRARIES), "timeout": args.timeout,
                "sps": "total env steps / wall seconds from process start to the end of training",
                "peak_rss": "ru_maxrss of the run's process from os.wait4 (KiB, shown in MiB)"}
    results = Results(results_stem(args.out, "atari"), RunRow, machine, settings)
    print(format_machine(machine))
    print(f"{args.env}: {budget:,} steps ({budget // ROLLOUT} rollouts of {ROLLOUT}) per run")
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    runners = {"ppolab": run_ppolab, "sb3": run_sb3}
    with tempfile.TemporaryDirectory(prefix="atari-") as tmp:
        for seed in range(args.seeds):
            for library in LIBRARIES:
                row = runners[library](args.env, seed, budget, Path(tmp), args.timeout)
                results.add(row)
                print(describe(row), flush=True)
    summary = summarize(results.rows, args.env, budget)
    results.write_json(summary)
    print("\n" + format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
