"""Aggregate training throughput of a population against its size, beside the simulator's own.

    python benchmarks/population_throughput.py [--envs ENV ...] [--sizes 1 2 4 ...] [--out DIR]

For each env (default CartPole-v1 and LunarLander-v3, their PPO presets) and population size P
(default 1, 2, 4, ..., 64), in this process, torch at one thread:

  * training: ``Population`` of P agents (seeds 0..P-1) trains ``--updates`` rollouts after one
    rollout of warm-up; throughput = P x env steps / seconds;
  * simulator: the same P x N envs (P plain Gymnasium vector envs of N: the env's own vector
    implementation where it has one, as ppolab uses, else a sync vector env) stepped with
    random actions for as many steps; throughput the same way. That is the most a CPU could give.

Output: a table, a JSON under --out, and the figure docs/figures/population_throughput.png
(the README shows it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def training_throughput(env: str, size: int, updates: int) -> float:
    from ppolab import PPO
    from ppolab.population import Population

    population = Population([PPO(env, seed=s, stop_when_solved=False) for s in range(size)])
    batch = population.agents[0].config.batch_size
    population.learn(batch)  # warm-up: allocations, first calls
    start = time.perf_counter()
    population.learn(updates * batch)
    seconds = time.perf_counter() - start
    population.close()
    return size * updates * batch / seconds


def simulator_throughput(env: str, size: int, steps_per_env: int) -> float:
    import gymnasium as gym

    from ppolab.agent import default_config

    n_envs = default_config(env, "ppo")[0].n_envs
    mode = "vector_entry_point" if gym.spec(env).vector_entry_point else "sync"
    made = [gym.make_vec(env, num_envs=n_envs, vectorization_mode=mode) for _ in range(size)]
    for k, vec in enumerate(made):
        vec.reset(seed=k)
        vec.action_space.seed(k)
    start = time.perf_counter()
    for _ in range(steps_per_env):
        for vec in made:
            vec.step(vec.action_space.sample())
    seconds = time.perf_counter() - start
    for vec in made:
        vec.close()
    return size * made[0].num_envs * steps_per_env / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "LunarLander-v3"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--updates", type=int, default=2, help="timed rollouts and updates per size")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "population_throughput.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from ppolab.agent import default_config

    rows = []
    for env in args.envs:
        n_steps = default_config(env, "ppo")[0].n_steps
        for size in args.sizes:
            train = training_throughput(env, size, args.updates)
            simulator = simulator_throughput(env, size, args.updates * n_steps)
            rows.append({"env": env, "P": size, "training_steps_per_second": train,
                         "simulator_steps_per_second": simulator, "fraction": train / simulator})
            print(f"{env:<16} P={size:<3} training {train:10,.0f} steps/s   simulator {simulator:10,.0f} steps/s   "
                  f"{train / simulator:6.1%}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"population_throughput-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(rows, indent=2))
    plot(rows, Path(args.figure))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), dpi=110, squeeze=False)
    for ax, env in zip(axes[0], envs):
        mine = [r for r in rows if r["env"] == env]
        sizes = np.array([r["P"] for r in mine])
        ax.plot(sizes, [r["simulator_steps_per_second"] for r in mine], "o--", color="tab:gray",
                label="simulator alone (random actions)")
        ax.plot(sizes, [r["training_steps_per_second"] for r in mine], "o-", color="tab:blue",
                label="population training")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_title(f"{env}: PPO preset, 1 CPU core")
        ax.set_xlabel("agents in the population (P)")
        ax.set_ylabel("environment steps per second, all agents")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.14, top=0.9, wspace=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
