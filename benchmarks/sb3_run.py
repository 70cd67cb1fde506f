"""One Stable-Baselines3 PPO run for the benchmarks.

    python benchmarks/sb3_run.py ENV_ID SEED OUTFILE                  # for time_to_solve.py
    python benchmarks/sb3_run.py ENV_ID SEED OUTFILE --fixed-budget [--eval-episodes N --eval-seed S]
                                                                      # for continuous.py

Default mode: trains SB3's PPO with the RL Zoo's tuned hyperparameters for ENV_ID and stops as
soon as the mean return of the last 100 finished episodes reaches the environment's reward
threshold, the same rule ``ppolab train`` uses.

``--fixed-budget``: trains SB3's PPO with *ppolab's preset* for ENV_ID translated to SB3's
arguments (``from_ppolab_preset``), for the preset's full budget, then evaluates the
deterministic policy for N episodes on env seeds S, S+1, ... with the observation statistics
frozen, as ``continuous.py`` does for ppolab.

Writes OUTFILE, a JSON object with the keys of ppolab's summary.json (plus a few SB3 details).
Times are seconds since this process started, measured by ppolab's own clock, so interpreter
start-up and imports count on both sides.

Torch's thread count is left at its default, as a user running SB3 would have it; it is
recorded as ``torch_threads``.
"""

from __future__ import annotations

from ppolab.clock import since_process_start  # first, so the clock is set up before anything else

import argparse
import json
import math
import statistics
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
from stable_baselines3.common.vec_env import VecNormalize

from ppolab.config import PRESETS, preset

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


def from_ppolab_preset(env_id: str) -> dict[str, Any]:
    """ppolab's preset for ``env_id`` as SB3 arguments. SB3's default MlpPolicy already matches
    ppolab's network for these presets: separate 64-64 tanh actor and critic, orthogonal
    initialization, state-independent log-std starting at 0."""
    c = preset(env_id)
    assert c.hidden_sizes == (64, 64) and c.activation == "tanh" and not c.shared_trunk
    assert c.log_std_init == 0.0 and not c.squash_actions and c.target_kl is None
    return dict(
        n_envs=c.n_envs, n_timesteps=c.total_steps,
        normalize=dict(norm_obs=c.normalize_observations, norm_reward=c.normalize_rewards,
                       clip_obs=c.observation_clip, clip_reward=c.reward_clip, gamma=c.gamma),
        ppo=dict(n_steps=c.n_steps, batch_size=c.minibatch_size, n_epochs=c.n_epochs,
                 learning_rate=linear(c.learning_rate) if c.anneal_lr else c.learning_rate,
                 gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_coef,
                 clip_range_vf=c.clip_coef if c.clip_value_loss else None,
                 normalize_advantage=c.normalize_advantages, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
                 max_grad_norm=c.max_grad_norm),
    )


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


def evaluate(model: PPO, env: VecNormalize | None, env_id: str, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` deterministic episodes on env seeds ``seed``, ``seed + 1``, ...;
    observations normalized with the frozen training statistics of ``env``, if any."""
    eval_env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = eval_env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            if env is not None:
                obs = env.normalize_obs(obs)
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = eval_env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    eval_env.close()
    return returns


def run_summary(env_id: str, algo: str, seed: int, model: Any, stopper: StopWhenSolved, wall_seconds: float,
                threshold: float | None) -> dict[str, Any]:
    """The keys of ppolab's summary.json that an SB3 run can fill."""
    return {
        "env_id": env_id,
        "algo": algo,
        "seed": seed,
        "total_steps": model.num_timesteps,
        "updates": stopper.rollouts,
        "episodes": stopper.episodes,
        "wall_seconds": round(wall_seconds, 3),
        "reward_threshold": threshold,
        "solved": stopper.solved_at_step is not None,
        "solved_at_step": stopper.solved_at_step,
        "solved_at_seconds": None if stopper.solved_at_seconds is None else round(stopper.solved_at_seconds, 3),
        "final_mean_return_100": stopper.rolling_mean(),
        "torch_threads": torch.get_num_threads(),
    }


def train(env_id: str, seed: int, fixed_budget: bool, eval_episodes: int, eval_seed: int,
          steps: int | None = None) -> dict[str, Any]:
    """Train until solved or the budget is spent (or the whole budget with ``fixed_budget``);
    return the summary."""
    settings = from_ppolab_preset(env_id) if fixed_budget else ZOO[env_id]
    if fixed_budget and steps is not None:
        settings["n_timesteps"] = steps
    threshold = gym.spec(env_id).reward_threshold
    if threshold is None and not fixed_budget:
        raise SystemExit(f"sb3_run.py: {env_id} has no reward threshold")
    env = make_vec_env(env_id, n_envs=settings["n_envs"], seed=seed)  # DummyVecEnv + Monitor, as the zoo
    normalizer = None
    if settings.get("normalize"):
        env = normalizer = VecNormalize(env, **settings["normalize"])
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **settings["ppo"])
    stopper = StopWhenSolved(math.inf if fixed_budget else threshold)
    model.learn(total_timesteps=settings["n_timesteps"], callback=stopper)
    wall_seconds = since_process_start()
    if normalizer is not None:
        normalizer.training = False
    returns = evaluate(model, normalizer, env_id, eval_episodes, eval_seed) if eval_episodes else []
    env.close()
    return {
        **run_summary(env_id, "sb3-ppo", seed, model, stopper, wall_seconds, threshold),
        "budget_steps": settings["n_timesteps"],
        "n_envs": settings["n_envs"],
        "settings": "ppolab preset" if fixed_budget else "rl-zoo",
        "eval_returns": returns,
        "eval_mean_return": statistics.fmean(returns) if returns else None,
        "eval_std_return": statistics.pstdev(returns) if returns else None,
        "sb3_version": stable_baselines3.__version__,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", choices=sorted(set(ZOO) | set(PRESETS["ppo"])), metavar="ENV_ID")
    parser.add_argument("seed", type=int)
    parser.add_argument("outfile", type=Path)
    parser.add_argument("--fixed-budget", action="store_true",
                        help="ppolab's preset settings and its whole budget instead of the zoo's until solved")
    parser.add_argument("--steps", type=int, help="--fixed-budget: train this many steps instead of the preset's")
    parser.add_argument("--eval-episodes", type=int, default=0, help="deterministic evaluation episodes after training")
    parser.add_argument("--eval-seed", type=int, default=10_000, help="env seed of the first evaluation episode")
    args = parser.parse_args(argv)
    if not args.fixed_budget and args.env_id not in ZOO:
        parser.error(f"no RL Zoo settings here for {args.env_id}; use --fixed-budget")
    summary = train(args.env_id, args.seed, args.fixed_budget, args.eval_episodes, args.eval_seed, args.steps)
    args.outfile.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
