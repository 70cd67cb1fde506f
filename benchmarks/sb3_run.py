"""One Stable-Baselines3 PPO run for benchmarks/time_to_solve.py.

    python benchmarks/sb3_run.py ENV_ID SEED OUTFILE

Trains SB3's PPO with the RL Zoo's tuned hyperparameters for ENV_ID and stops as soon as the
mean return of the last 100 finished episodes reaches the environment's reward threshold, the
same rule ``ppolab train`` uses. Writes OUTFILE, a JSON object with the keys of ppolab's
summary.json (plus a few SB3 details). Times are seconds since this process started, measured
by ppolab's own clock, so interpreter start-up and imports count on both sides.

Torch's thread count is left at its default, as a user running SB3 would have it; it is
recorded as ``torch_threads``.
"""

from __future__ import annotations

from ppolab.clock import since_process_start  # first, so the clock is set up before anything else

import json
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

ROLLING_WINDOW = 100


def linear(start: float) -> Callable[[float], float]:
    """The zoo's ``lin_<start>``: decays linearly from ``start`` to 0 over training."""
    return lambda progress_remaining: progress_remaining * start


# From rl-zoo3 2.9.2, rl_zoo3/hyperparams/ppo.yml (entries CartPole-v1 and LunarLander-v3);
# policy is 'MlpPolicy' for both. n_envs and n_timesteps are the zoo's too, kept apart from
# the keyword arguments of PPO().
ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": dict(
        n_envs=8, n_timesteps=100_000,
        ppo=dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                 ent_coef=0.0, learning_rate=linear(0.001), clip_range=linear(0.2)),
    ),
    "LunarLander-v3": dict(
        n_envs=16, n_timesteps=1_000_000,
        ppo=dict(n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
                 ent_coef=0.01),
    ),
}


class StopWhenSolved(BaseCallback):
    """Tracks finished episodes (Monitor's ``info["episode"]``) and stops training once the
    mean return of the last ``window`` episodes is at least ``threshold``."""

    def __init__(self, threshold: float, window: int = ROLLING_WINDOW) -> None:
        super().__init__()
        self.threshold = threshold
        self.returns: deque[float] = deque(maxlen=window)
        self.episodes = 0
        self.rollouts = 0
        self.solved_at_step: int | None = None
        self.solved_at_seconds: float | None = None

    def rolling_mean(self) -> float | None:
        return sum(self.returns) / len(self.returns) if self.returns else None

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" not in info:
                continue
            self.returns.append(float(info["episode"]["r"]))
            self.episodes += 1
            full = len(self.returns) == self.returns.maxlen
            if self.solved_at_step is None and full and sum(self.returns) / len(self.returns) >= self.threshold:
                self.solved_at_step, self.solved_at_seconds = self.num_timesteps, since_process_start()
        return self.solved_at_step is None

    def _on_rollout_end(self) -> None:
        self.rollouts += 1  # each complete rollout is followed by one policy update


def train(env_id: str, seed: int) -> dict[str, Any]:
    """Train until solved or the zoo's budget is spent; return the summary."""
    zoo = ZOO[env_id]
    threshold = gym.spec(env_id).reward_threshold
    if threshold is None:
        raise SystemExit(f"sb3_run.py: {env_id} has no reward threshold")
    env = make_vec_env(env_id, n_envs=zoo["n_envs"], seed=seed)  # DummyVecEnv + Monitor, as the zoo
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **zoo["ppo"])
    stopper = StopWhenSolved(threshold)
    model.learn(total_timesteps=zoo["n_timesteps"], callback=stopper)
    env.close()
    mean = stopper.rolling_mean()
    return {
        "env_id": env_id,
        "algo": "sb3-ppo",
        "seed": seed,
        "total_steps": model.num_timesteps,
        "updates": stopper.rollouts,
        "episodes": stopper.episodes,
        "wall_seconds": round(since_process_start(), 3),
        "reward_threshold": threshold,
        "solved": stopper.solved_at_step is not None,
        "solved_at_step": stopper.solved_at_step,
        "solved_at_seconds": None if stopper.solved_at_seconds is None else round(stopper.solved_at_seconds, 3),
        "final_mean_return_100": mean,
        "budget_steps": zoo["n_timesteps"],
        "n_envs": zoo["n_envs"],
        "torch_threads": torch.get_num_threads(),
        "sb3_version": stable_baselines3.__version__,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ZOO:
        print(f"usage: sb3_run.py ENV_ID SEED OUTFILE  (ENV_ID one of: {', '.join(ZOO)})", file=sys.stderr)
        return 2
    env_id, seed, out = argv[0], int(argv[1]), Path(argv[2])
    summary = train(env_id, seed)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
