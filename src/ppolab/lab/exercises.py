"""The PPO chapter's exercises as ready-made sweeps (``ppolab exercise NAME``).

Each is a grid, an algorithm and a default budget; what it concludes is computed from the results
by :mod:`ppolab.lab.conclusions`, so the same exercise on another environment says what the data
there say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ppolab.lab.plan import SweepPlan

DEFAULT_ENV = "CartPole-v1"
NO_VELOCITY = "ppolab/CartPoleNoVelocity-v1"


@dataclass(frozen=True)
class Exercise:
    name: str
    question: str
    grid: dict[str, list[str]]
    algo: str = "ppo"
    seeds: int = 10
    steps: dict[str, int] = field(default_factory=dict)  # a budget per env; elsewhere the preset's
    names: dict[str, str] = field(default_factory=dict)  # what a configuration is called in the text
    env: str = DEFAULT_ENV  # the environment it runs on unless told otherwise

    def plan(self, env_id: str | None = None, seeds: int | None = None, steps: int | None = None,
             score_kind: str = "eval", score_episodes: int = 10) -> SweepPlan:
        env_id = env_id or self.env
        return SweepPlan(env_id=env_id, algo=self.algo, grid=self.grid, seeds=list(range(seeds or self.seeds)),
                         steps=steps if steps is not None else self.steps.get(env_id),
                         score_kind=score_kind, score_episodes=score_episodes, exercise=self.name)


EXERCISES: dict[str, Exercise] = {ex.name: ex for ex in (
    Exercise("clip", "Which clip range epsilon works best: 0.05, 0.1, 0.2 or 0.3?",
             {"clip_coef": ["0.05", "0.1", "0.2", "0.3"]}, steps={DEFAULT_ENV: 25_000}),
    Exercise("epochs", "What do 1, 5, 10 or 20 epochs over each batch do?",
             {"n_epochs": ["1", "5", "10", "20"]}, steps={DEFAULT_ENV: 25_000}),
    Exercise("gae", "How does GAE's lambda compare with one-step TD (lambda = 0) and Monte-Carlo (lambda = 1)?",
             {"gae_lambda": ["0", "0.5", "0.9", "0.95", "1"]}, steps={DEFAULT_ENV: 25_000},
             names={"gae_lambda=0": "gae_lambda=0 (one-step TD)", "gae_lambda=1": "gae_lambda=1 (Monte-Carlo)"}),
    Exercise("algos", "How does PPO compare with A2C and TRPO, per step and per second?",
             {"algo": ["ppo", "a2c", "trpo"]}, steps={DEFAULT_ENV: 100_000}),
    Exercise("kl", "How does the KL between old and new policy relate to the clip fraction, and what "
             "happens when the KL grows (here: with the learning rate)?",
             {"learning_rate": ["0.001", "0.007", "0.03", "0.1"]}, steps={DEFAULT_ENV: 25_000}),
    Exercise("memory", "Does memory help when the observation hides what the policy needs (here: CartPole "
             "without its velocities)?", {"recurrent": ["none", "lstm"]}, seeds=5,
             steps={NO_VELOCITY: 150_000}, env=NO_VELOCITY,
             names={"recurrent=none": "no memory (feed-forward)", "recurrent=lstm": "an LSTM memory"}),
)}
