"""One Stable-Baselines3 PPO run on an Atari game with the RL Zoo's Atari settings, for atari.py.

    python benchmarks/sb3_atari_run.py ENV_ID SEED STEPS OUTFILE

Trains SB3's PPO (``CnnPolicy``) for STEPS environment steps, no early stop (SB3 collects whole
rollouts of 8 x 128 = 1024 steps, so it trains STEPS rounded up to a multiple of 1024, as ppolab
does; atari.py passes such a multiple), with the hyperparameters of the RL Zoo's ``atari`` entry
(rl-zoo3 2.9.2, rl_zoo3/hyperparams/ppo.yml):

    env_wrapper AtariWrapper, frame_stack 4, policy CnnPolicy, n_envs 8, n_steps 128,
    n_epochs 4, batch_size 256, learning_rate lin_2.5e-4, clip_range lin_0.1, vf_coef 0.5,
    ent_coef 0.01 (n_timesteps 1e7: replaced by STEPS)

and SB3's defaults for the rest (gamma 0.99, gae_lambda 0.95, max_grad_norm 0.5, advantage
normalization, no value-loss clipping, Adam eps 1e-5; the Nature CNN with the policy and value
heads directly on its 512 features). ``lin_X`` decays linearly from X to 0 over the STEPS.

The env is ``make_atari_env(ENV_ID, n_envs=8, seed=SEED, env_kwargs={"frameskip": 1})`` (a
DummyVecEnv, the zoo's default) + ``VecFrameStack(n_stack=4)``. ``frameskip=1`` because
AtariWrapper skips 4 frames itself (ALE v5 ids skip 4 in the emulator by default); v5's sticky
actions (repeat_action_probability 0.25) stay on, as in ppolab's Atari env. AtariWrapper: up to
30 no-ops on reset, 4-frame skip with a max over the last two frames, a lost life ends the
episode, FIRE on reset, 84x84 grayscale, rewards clipped to their sign.

Recorded: the wall-clock seconds from this process's start to the end of training (ppolab's
clock, ``ppolab.clock.since_process_start``, so interpreter start-up and imports count as they
do for ``ppolab train``), the steps per second over the whole run (steps / those seconds), the
steps per second of each rollout + update (for the median), and the mean of the last 100
whole-game, unclipped scores reported by SB3's Monitor. Torch's thread count and the device are
left at their defaults (torch's own thread count; SB3's ``device="auto"``) and recorded.

Writes OUTFILE, a JSON object with the keys of ppolab's summary.json (plus a few SB3 details).
"""

from __future__ import annotations

from ppolab.clock import since_process_start  # first, so the clock is set up before anything else

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from ppolab.atari import register
from sb3_run import StopWhenSolved, linear

# The RL Zoo's `atari` entry (rl-zoo3 2.9.2, hyperparams/ppo.yml), as PPO() arguments.
N_ENVS, FRAME_STACK = 8, 4
ZOO_ATARI: dict[str, Any] = dict(n_steps=128, n_epochs=4, batch_size=256, learning_rate=linear(2.5e-4),
                                 clip_range=linear(0.1), vf_coef=0.5, ent_coef=0.01)
ZOO_ATARI_TEXT = ("CnnPolicy, AtariWrapper, frame_stack 4, n_envs 8, n_steps 128, n_epochs 4, batch_size 256, "
                  "learning_rate lin_2.5e-4, clip_range lin_0.1, vf_coef 0.5, ent_coef 0.01")


class GameScores(StopWhenSolved):
    """Never stops (threshold infinity); collects the last 100 Monitor episodes and, from the
    times at which each rollout starts and training ends, the seconds of each rollout + update.

    The Monitor episodes are whole games with unclipped scores. Read from SB3 2.9.2's source:
    ``make_atari_env`` calls ``make_vec_env(..., wrapper_class=AtariWrapper)``, whose env
    factory does ``env = gym.make(env_id, **env_kwargs)``, then ``env = Monitor(env, ...)``, and
    only then ``env = wrapper_class(env)``. So Monitor sits directly on the raw ALE env, below
    every AtariWrapper piece: it sums the raw rewards (the clipping is above it) and ends an
    episode only when ALE's game ends (terminated or truncated), not at a lost life (the
    EpisodicLifeEnv above it only *reports* a terminal and, on its reset, steps a NOOP instead
    of resetting the game). Its ``info["episode"]`` rides up through the wrappers on the step
    that ends the game. (A game that ends during a reset wrapper's no-op or FIRE steps loses
    its info there; rare, and the game is then not counted.) Checked with random actions on
    ALE/Breakout-v5: every Monitor episode spans five life-loss terminals and ends at 0 lives."""

    def __init__(self) -> None:
        super().__init__(threshold=float("inf"))
        self.marks: list[float] = []

    def _on_rollout_start(self) -> None:
        self.marks.append(time.perf_counter())

    def _on_training_end(self) -> None:
        self.marks.append(time.perf_counter())

    def update_seconds(self) -> list[float]:
        """Seconds from each rollout's start to the next one's (or to the end): one rollout and
        the update that follows it, as each row of ppolab's metrics.csv."""
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def train(env_id: str, seed: int, steps: int) -> dict[str, Any]:
    register()  # the ALE/ ids (ale_py); SB3 imports ale_py too, this makes it explicit
    # make_vec_env adds render_mode="rgb_array"; ale_py only renders when render() is called.
    env = VecFrameStack(make_atari_env(env_id, n_envs=N_ENVS, seed=seed, env_kwargs={"frameskip": 1}),
                        n_stack=FRAME_STACK)
    model = PPO("CnnPolicy", env, seed=seed, verbose=0, **ZOO_ATARI)
    scores = GameScores()
    model.learn(total_timesteps=steps, callback=scores)
    wall_seconds = since_process_start()
    env.close()
    per_update = [model.n_steps * N_ENVS / s for s in scores.update_seconds() if s > 0]
    return {
        "env_id": env_id,
        "algo": "sb3-ppo",
        "seed": seed,
        "total_steps": model.num_timesteps,
        "updates": scores.rollouts,
        "episodes": scores.episodes,
        "wall_seconds": round(wall_seconds, 3),
        "final_mean_return_100": scores.rolling_mean(),
        "sps": round(model.num_timesteps / wall_seconds, 2),
        "median_update_sps": round(statistics.median(per_update), 2) if per_update else None,
        "budget_steps": steps,
        "n_envs": N_ENVS,
        "settings": "rl-zoo3 2.9.2 atari: " + ZOO_ATARI_TEXT,
        "torch_threads": torch.get_num_threads(),
        "device": str(model.device),
        "sb3_version": stable_baselines3.__version__,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_id", metavar="ENV_ID", help="an ALE id, e.g. ALE/Breakout-v5")
    parser.add_argument("seed", type=int)
    parser.add_argument("steps", type=int, help="environment steps to train for (summed over the 8 envs)")
    parser.add_argument("outfile", type=Path)
    args = parser.parse_args(argv)
    if not args.env_id.startswith("ALE/") or args.steps < 1:
        parser.error("ENV_ID must be an ALE/ id and STEPS >= 1")
    summary = train(args.env_id, args.seed, args.steps)
    args.outfile.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
