"""One sb3-contrib run for contrib.py: RecurrentPPO on a memory task, MaskablePPO on a masked one.

    python benchmarks/contrib_run.py {recurrent,maskable} ENV_ID SEED OUTFILE [--steps N]

Trains ``RecurrentPPO("MlpLstmPolicy")`` or ``MaskablePPO("MlpPolicy")`` with *ppolab's PPO
preset* for ENV_ID (``ppolab.config.preset``, read now, not copied) translated to sb3-contrib's
arguments (``ppo_arguments``, ``policy_arguments``), and stops as soon as the mean return of the
last 100 finished episodes reaches the threshold (the preset's reward_threshold, else the env
spec's), the rule ``ppolab train`` uses; else it trains the preset's total_steps (or N), rounded
up to whole rollouts as ppolab rounds them.

  * recurrent: sb3-contrib has LSTMs only; a preset with ``recurrent="gru"`` is trained with an
    LSTM of the same width (``recurrent_hidden_size``), all else equal.
  * maskable: every env is wrapped in ``ActionMasker`` with the mask Gymnasium's Taxi puts in
    ``info["action_mask"]``: ``env.unwrapped.action_mask(env.unwrapped.s)``, as bools.

Envs: ``make_vec_env`` (DummyVecEnv, each env in a Monitor), then ``VecNormalize`` when the
preset normalizes observations or rewards. ``device="cpu"``; torch's thread count is left at its
default, as a user running sb3-contrib would have it, and recorded as ``torch_threads``.

Writes OUTFILE, a JSON object with the keys of ppolab's summary.json (plus a few sb3-contrib
details). Times are seconds since this process started, by ppolab's own clock, so interpreter
start-up and imports count as they do for ``ppolab train``.
"""

from __future__ import annotations

from ppolab.clock import since_process_start  # first, so the clock is set up before anything else

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import sb3_contrib
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from ppolab.config import PPOConfig, preset
from ppolab.tasks import register
from sb3_run import StopWhenSolved, linear, run_summary

ALGORITHMS = {"recurrent": (RecurrentPPO, "MlpLstmPolicy"), "maskable": (MaskablePPO, "MlpPolicy")}
ACTIVATION_FNS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def untranslatable(c: PPOConfig) -> list[str]:
    """The preset's settings that sb3-contrib has no argument for, where they differ from what
    sb3-contrib does (GAE, the clipped objective, separate actor and critic MLPs, whole-rollout
    sequences, its own flatten encoder): the run refuses them rather than train something else."""
    matches = {"advantage_estimator": c.advantage_estimator == "gae", "policy_objective": c.policy_objective == "clip",
               "shared_trunk": not c.shared_trunk, "sequence_length": c.sequence_length is None,
               "encoder": c.encoder is None}
    return [f"{name}={getattr(c, name)}" for name, same in matches.items() if not same]


def ppo_arguments(c: PPOConfig) -> dict[str, Any]:
    """The preset's PPO settings as keyword arguments of RecurrentPPO and MaskablePPO."""
    return dict(n_steps=c.n_steps, batch_size=c.minibatch_size, n_epochs=c.n_epochs,
                learning_rate=linear(c.learning_rate) if c.anneal_lr else c.learning_rate,
                gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_coef,
                clip_range_vf=c.clip_coef if c.clip_value_loss else None,
                normalize_advantage=c.normalize_advantages, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
                max_grad_norm=c.max_grad_norm, target_kl=c.target_kl)


def policy_arguments(c: PPOConfig, recurrent: bool) -> dict[str, Any]:
    """The preset's network as ``policy_kwargs``: the same MLP widths and activation for actor and
    critic (separate, orthogonally initialized), and for ``recurrent`` one LSTM layer of
    ``recurrent_hidden_size`` units before them, one per network unless ``shared_recurrent``."""
    kwargs: dict[str, Any] = dict(net_arch=dict(pi=list(c.hidden_sizes), vf=list(c.hidden_sizes)),
                                  activation_fn=ACTIVATION_FNS[c.activation], ortho_init=True)
    if recurrent:
        kwargs.update(lstm_hidden_size=c.recurrent_hidden_size, n_lstm_layers=1,
                      shared_lstm=c.shared_recurrent, enable_critic_lstm=not c.shared_recurrent)
    return kwargs


def current_mask(env: gym.Env) -> np.ndarray:
    """The valid actions now, as Taxi reports them in ``info["action_mask"]``."""
    taxi = env.unwrapped
    return taxi.action_mask(taxi.s).astype(bool)


def make_env(algo: str, env_id: str, c: PPOConfig, seed: int) -> VecEnv:
    """``n_envs`` Monitor-wrapped copies (in ActionMasker for ``maskable``), normalized as the preset says."""
    masker = dict(wrapper_class=ActionMasker, wrapper_kwargs=dict(action_mask_fn=current_mask))
    env = make_vec_env(env_id, n_envs=c.n_envs, seed=seed, **(masker if algo == "maskable" else {}))
    if c.normalize_observations or c.normalize_rewards:
        env = VecNormalize(env, norm_obs=c.normalize_observations, norm_reward=c.normalize_rewards,
                           clip_obs=c.observation_clip, clip_reward=c.reward_clip, gamma=c.gamma)
    return env


def train(algo: str, env_id: str, seed: int, steps: int | None) -> dict[str, Any]:
    """Train until solved or the budget is spent; return the summary."""
    register()
    c = preset(env_id)
    if refused := untranslatable(c):
        raise SystemExit(f"contrib_run.py: sb3-contrib has no equivalent of {', '.join(refused)}")
    budget = math.ceil((steps or c.total_steps) / c.batch_size) * c.batch_size  # whole rollouts, as ppolab
    threshold = c.reward_threshold if c.reward_threshold is not None else gym.spec(env_id).reward_threshold
    env = make_env(algo, env_id, c, seed)
    algorithm, policy = ALGORITHMS[algo]
    model = algorithm(policy, env, seed=seed, device="cpu", verbose=0,
                      policy_kwargs=policy_arguments(c, algo == "recurrent"), **ppo_arguments(c))
    stopper = StopWhenSolved(math.inf if threshold is None else threshold, c.rolling_window)
    model.learn(total_timesteps=budget, callback=stopper)
    wall_seconds = since_process_start()
    env.close()
    return {
        **run_summary(env_id, f"sb3-contrib-{algo}-ppo", seed, model, stopper, wall_seconds, threshold),
        "device": "cpu",
        "budget_steps": budget,
        "recurrent": "lstm" if algo == "recurrent" else "none",
        "ppolab_preset_recurrent": c.recurrent,
        "sb3_contrib_version": sb3_contrib.__version__,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("algo", choices=ALGORITHMS)
    parser.add_argument("env_id")
    parser.add_argument("seed", type=int)
    parser.add_argument("outfile", type=Path)
    parser.add_argument("--steps", type=int, help="train this many steps instead of the preset's total_steps")
    args = parser.parse_args(argv)
    summary = train(args.algo, args.env_id, args.seed, args.steps)
    args.outfile.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
