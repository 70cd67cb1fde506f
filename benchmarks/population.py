"""Population training against the same agents trained one after another, in one process.

    python benchmarks/population.py [--env ENV] [--members P] [--steps S] [--repeats R]

What is measured: the seconds to train P PPO agents on ENV (default CartPole-v1, its preset)
for S steps each (default 25,000, the chapter exercises' budget), the agents being those of
``ppolab exercise clip``: seeds 0, 1, ... with clip_coef cycling through 0.05, 0.1, 0.2, 0.3.

  * population: ``ppolab.population.Population(agents).learn(S)``;
  * lone: ``agent.learn(S)`` for each agent in turn.

Both in this process, torch at one thread, no run directories (so neither side pays process
start-up, TensorBoard, plots or evaluation: this isolates the training loop). The two sides
alternate R times (default 3) and the table gives each side's median, per agent, and the ratio.
Final scores (mean return of the last 100 training episodes) are printed for both sides: a
member is the same algorithm as a lone run, so they agree up to seed noise.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

CLIPS = (0.05, 0.1, 0.2, 0.3)


def agents(env: str, members: int) -> list:
    from ppolab import PPO

    return [PPO(env, seed=k, clip_coef=CLIPS[k % len(CLIPS)], stop_when_solved=False) for k in range(members)]


def run_population(env: str, members: int, steps: int) -> tuple[float, list[float]]:
    from ppolab.population import Population

    population = Population(agents(env, members))
    start = time.perf_counter()
    outcomes = population.learn(steps)
    seconds = time.perf_counter() - start
    population.close()
    return seconds, [o.result.final_mean_return_100 for o in outcomes]


def run_lone(env: str, members: int, steps: int) -> tuple[float, list[float]]:
    seconds, scores = 0.0, []
    for agent in agents(env, members):
        start = time.perf_counter()
        scores.append(agent.learn(steps).final_mean_return_100)
        seconds += time.perf_counter() - start
        agent.close()
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--steps", type=int, default=25_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"population": [], "lone": []}
    for repeat in range(args.repeats):
        for side, run in (("population", run_population), ("lone", run_lone)):
            seconds, scores = run(args.env, args.members, args.steps)
            times[side].append(seconds)
            print(f"repeat {repeat + 1} {side:<10} {seconds:7.2f} s  median final score "
                  f"{statistics.median(scores):.1f}", flush=True)
    print(f"\n{args.members} agents x {args.steps:,} steps on {args.env}")
    print("| side | median s | per agent s |")
    print("| --- | --- | --- |")
    for side, values in times.items():
        median = statistics.median(values)
        print(f"| {side} | {median:.2f} | {median / args.members:.3f} |")
    ratio = statistics.median(times["lone"]) / statistics.median(times["population"])
    print(f"\nlone / population: {ratio:.2f}x")


if __name__ == "__main__":
    main()
