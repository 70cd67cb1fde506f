"""Out-of-the-box PPO on unseen continuous-control envs: ppolab's defaults vs SB3's defaults.

    python benchmarks/defaults.py [--envs ENV ...] [--steps N ...] [--seeds N] [--sb3-plain-env]
                                [--timeout S] [--out DIR]

An env without a tuned preset and with continuous (Box) actions gets ppolab's continuous-control
defaults (``ppolab.config.CONTINUOUS_DEFAULTS``: CleanRL's MuJoCo settings, with observation and
reward normalization). This script measures them against Stable-Baselines3's PPO with *its*
defaults, at equal steps, on envs neither library was tuned for here (none of ppolab's presets).

For each environment and seed, one fresh process at a time, ppolab then SB3 (interleaved seed by
seed, so that drifts of the machine hit both alike):
  * ppolab: ``ppolab train ENV --seed S --steps N --no-early-stop --quiet --no-tensorboard``,
    with no --set or --config, so the defaults apply; then ``ppolab eval RUN_DIR --episodes 10
    --deterministic --seed 10000`` (observation statistics frozen, as saved with the model).
  * SB3: ``PPO("MlpPolicy", ENV, seed=S, device="cpu")`` and nothing else, ``learn(N)``, run by
    this script itself in a child process (``defaults.py _sb3 ...``); then the same evaluation as
    ``sb3_run.py``'s: 10 deterministic episodes of ``gymnasium.make(ENV)`` on env seeds 10000..
    (SB3's defaults do not normalize observations, so there are no statistics to freeze).
    Given an env id, SB3 makes the env with ``render_mode="rgb_array"``. LunarLander then adds
    decorative particle bodies to its Box2D world whenever an engine fires: they leave the
    physics and the returns alone but make each step several times slower (SB3 took about 3x
    ppolab's time on LunarLanderContinuous-v3, 1.2x on InvertedDoublePendulum-v5).
    ``--sb3-plain-env`` gives SB3 ``gymnasium.make(ENV)`` instead, to time the libraries alone.

Both use one torch thread (ppolab's default; set in the SB3 child). Training seconds count from
process start (interpreter start-up and imports included) to the end of training, by ppolab's
clock on both sides. The steps actually trained are recorded: both round the budget up to whole
rollouts of 2048 steps.

Output: a line per run, the rows in a CSV and a JSON under --out, then a markdown table per
environment: median and per-seed evaluation returns, median training seconds, and the ratio of
SB3's median seconds to ppolab's.
"""

from __future__ import annotations

from ppolab.clock import since_process_start  # first, so the SB3 child's clock is set up early

import argparse
import functools
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (Results, add_run_arguments, benchmark_parser, format_machine, log_tail, machine_info,
                    parse_run_arguments, ppolab_executable, results_stem, run_process, shown)
from continuous import median

DEFAULT_BUDGETS = {"LunarLanderContinuous-v3": 300_000, "InvertedDoublePendulum-v5": 150_000}
LIBRARIES = ("ppolab", "sb3")
LABELS = {"ppolab": "ppolab (continuous defaults)", "sb3": "SB3 (its defaults)"}
PACKAGES = ("ppolab", "torch", "gymnasium", "mujoco", "box2d", "stable-baselines3", "numpy")
EVAL_EPISODES = 10
EVAL_SEED = 10_000
EVAL_LINE = re.compile(r"mean return (\S+) \+- (\S+) over (\d+) episodes")


@dataclass
class RunRow:
    """One training run and its evaluation."""

    env_id: str
    library: str
    seed: int
    status: str  # "ok", "timeout", or "error (...)"
    budget_steps: int
    total_steps: int | None  # steps actually trained
    wall_seconds: float | None  # process start to the end of training
    train_mean_return_100: float | None  # rolling return of the last 100 training episodes
    eval_mean_return: float | None
    eval_std_return: float | None
    settings: str  # the settings the run started from, in words
    load_before: float  # 1-minute load average just before the run


def sb3_child(argv: list[str]) -> int:
    """``defaults.py _sb3 ENV SEED STEPS OUTFILE [plain]``: SB3's PPO with its defaults, then the
    evaluation. Given an env id, SB3 makes the env with ``render_mode="rgb_array"`` (so that
    videos can be recorded); ``plain`` passes it ``gymnasium.make(ENV)`` instead, which SB3 then
    wraps as it would its own (Monitor, DummyVecEnv)."""
    import statistics

    import gymnasium as gym
    import stable_baselines3
    import torch
    from stable_baselines3 import PPO

    from sb3_run import evaluate

    env_id, seed, steps, outfile = argv[0], int(argv[1]), int(argv[2]), Path(argv[3])
    plain = argv[4:] == ["plain"]
    torch.set_num_threads(1)
    model = PPO("MlpPolicy", gym.make(env_id) if plain else env_id, seed=seed, device="cpu")
    model.learn(total_timesteps=steps)
    wall_seconds = since_process_start()
    returns = evaluate(model, None, env_id, EVAL_EPISODES, EVAL_SEED)
    episodes = [float(info["r"]) for info in model.ep_info_buffer]  # SB3's last 100 training episodes
    outfile.write_text(json.dumps({
        "env_id": env_id, "seed": seed, "total_steps": model.num_timesteps, "wall_seconds": round(wall_seconds, 3),
        "final_mean_return_100": statistics.fmean(episodes) if episodes else None,
        "eval_returns": returns, "eval_mean_return": statistics.fmean(returns),
        "eval_std_return": statistics.pstdev(returns), "n_envs": model.n_envs, "n_steps": model.n_steps,
        "plain_env": plain,
        "torch_threads": torch.get_num_threads(), "sb3_version": stable_baselines3.__version__,
    }, indent=2) + "\n")
    return 0


def failed(env_id: str, library: str, seed: int, budget: int, code: int | None, log: Path, settings: str,
           load_before: float, what: str = "") -> RunRow:
    if code is not None:
        print(f"  {library} {env_id} seed {seed} failed{what}; last lines of its output:\n    {log_tail(log)}",
              file=sys.stderr)
    status = "timeout" if code is None else f"error ({what.strip() or 'exit'} {code})"
    return RunRow(env_id, library, seed, status, budget, None, None, None, None, None, settings, load_before)


def run_ppolab(env_id: str, seed: int, budget: int, workdir: Path, timeout: float | None) -> RunRow:
    name = f"{env_id}-ppolab-s{seed}"
    run_dir, log = workdir / name, workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    code, _ = run_process([ppolab_executable(), "train", env_id, "--seed", str(seed), "--steps", str(budget),
                           "--no-early-stop", "--quiet", "--no-tensorboard", "--out", str(workdir),
                           "--name", name], log, timeout)
    settings = "ppolab defaults"
    if code != 0 or not (run_dir / "summary.json").exists():
        return failed(env_id, "ppolab", seed, budget, code, log, settings, load_before)
    config = (run_dir / "config.yaml").read_text()
    picked = {key: re.search(rf"^{key}: (.*)$", config, re.M)
              for key in ("n_envs", "n_steps", "normalize_observations")}
    settings = "ppolab defaults: " + ", ".join(f"{k}={m.group(1)}" for k, m in picked.items() if m)
    summary = json.loads((run_dir / "summary.json").read_text())
    eval_log = workdir / f"{name}-eval.log"
    code, _ = run_process([ppolab_executable(), "eval", str(run_dir), "--episodes", str(EVAL_EPISODES),
                           "--deterministic", "--seed", str(EVAL_SEED)], eval_log, timeout)
    found = EVAL_LINE.search(eval_log.read_text(errors="replace"))
    if code != 0 or found is None:
        return failed(env_id, "ppolab", seed, budget, code if code != 0 else 0, eval_log, settings, load_before,
                      " in ppolab eval")
    return RunRow(env_id, "ppolab", seed, "ok", budget, summary["total_steps"], summary["wall_seconds"],
                  summary["final_mean_return_100"], float(found.group(1)), float(found.group(2)), settings,
                  load_before)


def run_sb3(env_id: str, seed: int, budget: int, workdir: Path, timeout: float | None,
            plain_env: bool = False) -> RunRow:
    name = f"{env_id}-sb3-s{seed}"
    summary, log = workdir / f"{name}.json", workdir / f"{name}.log"
    load_before = os.getloadavg()[0]
    code, _ = run_process([sys.executable, str(Path(__file__).resolve()), "_sb3", env_id, str(seed), str(budget),
                           str(summary), *(["plain"] if plain_env else [])], log, timeout)
    settings = "SB3 defaults"
    if code != 0 or not summary.exists():
        return failed(env_id, "sb3", seed, budget, code, log, settings, load_before)
    data = json.loads(summary.read_text())
    settings = (f"SB3 {data['sb3_version']} defaults: n_envs={data['n_envs']}, n_steps={data['n_steps']}"
                + (", env made by gymnasium.make(ENV)" if plain_env else ", env made by SB3 from the id"))
    return RunRow(env_id, "sb3", seed, "ok", budget, data["total_steps"], data["wall_seconds"],
                  data["final_mean_return_100"], round(data["eval_mean_return"], 2),
                  round(data["eval_std_return"], 2), settings, load_before)


def describe(row: RunRow) -> str:
    if row.status != "ok":
        return f"{row.env_id:<26} seed {row.seed}  {row.library:<6}  FAILED ({row.status})"
    train = shown(row.train_mean_return_100, "{:.1f}", "n/a")
    return (f"{row.env_id:<26} seed {row.seed}  {row.library:<6}  eval {row.eval_mean_return:8.1f} "
            f"+- {row.eval_std_return:6.1f}; training rolling return {train}; {row.total_steps:,} steps in "
            f"{row.wall_seconds:.0f} s; load before {row.load_before:.2f}")


def summarize(rows: list[RunRow]) -> list[dict[str, Any]]:
    """Per environment: each library's medians and per-seed returns, and the time ratio."""
    table = []
    for env_id in dict.fromkeys(row.env_id for row in rows):
        entry: dict[str, Any] = {"env_id": env_id}
        for library in LIBRARIES:
            runs = [row for row in rows if row.env_id == env_id and row.library == library]
            ok = [row for row in runs if row.status == "ok"]
            entry["budget_steps"] = runs[0].budget_steps if runs else entry.get("budget_steps")
            entry[library] = {
                "seeds": len(runs), "finished": len(ok),
                "median_eval_return": median([row.eval_mean_return for row in ok]),
                "eval_returns": {row.seed: row.eval_mean_return for row in ok},
                "median_train_return_100": median([row.train_mean_return_100 for row in ok]),
                "median_wall_seconds": median([row.wall_seconds for row in ok]),
                "steps_trained": sorted({row.total_steps for row in ok}),
                "settings": ok[0].settings if ok else None,
            }
        seconds = [entry[library]["median_wall_seconds"] for library in LIBRARIES]
        entry["seconds_ratio_sb3_to_ppolab"] = round(seconds[1] / seconds[0], 2) if None not in seconds else None
        table.append(entry)
    return table


def format_tables(table: list[dict[str, Any]]) -> str:
    """A markdown table per environment."""
    def returns(e: dict[str, Any]) -> str:
        return ", ".join(f"{value:.1f}" for value in e["eval_returns"].values()) or "n/a"

    def steps(e: dict[str, Any]) -> str:
        return ", ".join(f"{value:,}" for value in e["steps_trained"]) or "n/a"

    rows = (("runs finished", lambda e: f"{e['finished']}/{e['seeds']}"),
            ("median eval return", lambda e: shown(e["median_eval_return"], "{:.1f}", "n/a")),
            ("eval return per seed", returns),
            ("median training rolling return", lambda e: shown(e["median_train_return_100"], "{:.1f}", "n/a")),
            ("median training seconds", lambda e: shown(e["median_wall_seconds"], "{:.0f}", "n/a")),
            ("steps trained", steps))
    blocks = []
    for entry in table:
        lines = [f"**{entry['env_id']}**, {entry['budget_steps']:,} steps", "",
                 "| | " + " | ".join(LABELS[library] for library in LIBRARIES) + " |",
                 "|---|" + "---:|" * len(LIBRARIES)]
        lines += [f"| {label} | " + " | ".join(cell(entry[library]) for library in LIBRARIES) + " |"
                  for label, cell in rows]
        lines += ["", "seconds ratio SB3 / ppolab: " + shown(entry["seconds_ratio_sb3_to_ppolab"], "{:.2f}", "n/a")]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_BUDGETS), metavar="ENV",
                        help=f"environments without a ppolab preset (default: {' '.join(DEFAULT_BUDGETS)})")
    parser.add_argument("--steps", nargs="+", type=int, metavar="N",
                        help="training steps: one number for all envs, or one per env in --envs order "
                             "(default: " + ", ".join(f"{n:,} on {e}" for e, n in DEFAULT_BUDGETS.items()) + ")")
    parser.add_argument("--sb3-plain-env", action="store_true",
                        help="give SB3 gymnasium.make(ENV) instead of the id, from which SB3 makes the env "
                             "with render_mode='rgb_array': on LunarLanderContinuous-v3 that adds decorative "
                             "particles that slow its physics several-fold (returns are unaffected)")
    add_run_arguments(parser, default_seeds=2)
    args = parse_run_arguments(parser, argv)
    if args.steps is None:
        missing = [env for env in args.envs if env not in DEFAULT_BUDGETS]
        if missing:
            parser.error(f"no default budget for {' '.join(missing)}; give --steps")
        args.steps = [DEFAULT_BUDGETS[env] for env in args.envs]
    elif len(args.steps) == 1:
        args.steps = args.steps * len(args.envs)
    if len(args.steps) != len(args.envs) or min(args.steps) < 1:
        parser.error("--steps takes one number >= 1, or one per env")
    from ppolab.config import PRESETS

    tuned = [env for env in args.envs if env in PRESETS["ppo"]]
    if tuned:
        parser.error(f"{' '.join(tuned)} has a tuned ppolab preset; this benchmark measures the defaults")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sb3"]:
        return sb3_child(argv[1:])
    args = parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("stable_baselines3") is None:
        sys.exit("defaults: stable-baselines3 is not installed; pip install -e '.[bench]'")
    ppolab_executable()
    machine = machine_info(PACKAGES)
    settings = {"envs": dict(zip(args.envs, args.steps)), "seeds": list(range(args.seeds)),
                "eval_episodes": EVAL_EPISODES, "eval_seed": EVAL_SEED, "deterministic_eval": True,
                "torch_threads": 1, "timeout": args.timeout, "sb3_plain_env": args.sb3_plain_env}
    results = Results(results_stem(args.out, "defaults"), RunRow, machine, settings)
    print(format_machine(machine))
    print(f"results: {results.csv_path} and {results.json_path.name}\n", flush=True)
    runners = {"ppolab": run_ppolab, "sb3": functools.partial(run_sb3, plain_env=args.sb3_plain_env)}
    with tempfile.TemporaryDirectory(prefix="defaults-") as tmp:
        for env_id, budget in zip(args.envs, args.steps):
            for seed in range(args.seeds):
                for library in LIBRARIES:
                    row = runners[library](env_id, seed, budget, Path(tmp), args.timeout)
                    results.add(row)
                    print(describe(row), flush=True)
    table = summarize(results.rows)
    results.write_json(table)
    print("\n" + format_tables(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
