"""Typed, validated hyperparameters, per-environment presets, and ``--set``/file overrides.

Every field's ``help`` metadata is the one-line documentation that ``ppolab train --help``
and docs/reference/hyperparameters.md show. A config that exists is valid: ``__post_init__``
checks every field and raises :class:`~ppolab.errors.ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ppolab.errors import ConfigError, did_you_mean

ACTIVATIONS = ("tanh", "relu")
VECTORIZATION_MODES = ("auto", "sync", "async", "vector_entry_point")
ADVANTAGE_ESTIMATORS = ("gae", "td0", "nstep", "mc")
POLICY_OBJECTIVES = ("clip", "kl_penalty", "none")
OPTIMIZERS = ("rmsprop", "adam")
UNSUPPORTED_OBSERVATIONS = ("drop", "refuse")
MASK_SETTINGS = ("auto", "info", "method", "off")  # where action masks come from, see ppolab.masks
RECURRENT_CORES = ("none", "lstm", "gru")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


FLOAT32_MAX = 3.4028234663852886e38  # the networks and losses compute in float32
FLOAT32_TINY = 1.1754943508222875e-38  # smallest normal float32: anything nearer 0 flushes to 0
MAX_BATCH = 2**24  # transitions per rollout: the rollout's tensors are allocated up front


@dataclass(frozen=True)
class Bounds:
    """The values a numeric field may take: ``low`` to ``high``, each end included unless
    ``*_open``. Floats must also be finite and representable in float32 (0, or a magnitude in
    [FLOAT32_TINY, FLOAT32_MAX]), since the math runs in float32."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self, integer: bool) -> str:
        def shown(x: float) -> str:
            if integer:
                return f"{int(x):,}".replace(",", "_") if abs(x) >= 10_000 else str(int(x))
            return f"{'-' if x < 0 else ''}3.4e38" if abs(x) == FLOAT32_MAX else f"{x:g}"

        interval = (f"{'(' if self.low_open else '['}{shown(self.low)}, "
                    f"{shown(self.high)}{')' if self.high_open else ']'}")
        return f"{'an integer' if integer else 'a number'} in {interval}"


def _f(default: Any, help: str, bounds: Bounds | tuple[str, ...] | None = None) -> Any:
    """A field with its one-line ``help`` and the values it may take: :class:`Bounds` for
    numbers (and for each width of ``hidden_sizes``), a tuple of choices for strings. A subclass
    that redeclares a field (to change its default) may leave ``bounds`` out to keep its base's."""
    if isinstance(default, (list, dict)):
        raise TypeError("use an immutable default")
    return field(default=default, metadata={"help": help, "bounds": bounds})


def _positive(high: float = FLOAT32_MAX) -> Bounds:
    return Bounds(0.0, high, low_open=True)


UNIT = Bounds(0.0, 1.0)
OPEN_UNIT = Bounds(0.0, 1.0, low_open=True, high_open=True)
# Adam and RMSprop move each weight by about the learning rate per step (RMSprop's first steps
# by lr / sqrt(1 - alpha)): beyond 0.1, one update throws the networks out of float32's range.
LEARNING_RATE = Bounds(0.0, 0.1, low_open=True)
COEFFICIENT = Bounds(0.0, 100.0)  # loss weights: beyond this one term drowns every other
FLOAT32 = Bounds(-FLOAT32_MAX, FLOAT32_MAX)
MAX_HIDDEN_LAYERS = 8


@dataclass(frozen=True)
class Config:
    """What every algorithm shares: data collection, returns and advantages, normalization,
    networks and run control. Each algorithm's config adds its own fields (PPOConfig, ...)."""

    # --- data collection
    n_envs: int = _f(8, "N: parallel environments in the vector env", Bounds(1, 65_536))
    n_steps: int = _f(128, "T: steps per environment per rollout (batch = T * N)", Bounds(1, 2**20))
    total_steps: int = _f(
        500_000, "environment steps to train for (summed over envs), rounded up to whole rollouts "
        "of n_envs * n_steps", Bounds(1, 10**12))
    vectorization: str = _f(
        "auto",
        "auto | sync | async | vector_entry_point (auto: the env's own vectorized "
        "implementation when it has one, else sync)",
        VECTORIZATION_MODES,
    )
    # --- returns and advantages
    gamma: float = _f(0.99, "discount factor gamma in [0, 1]", UNIT)
    advantage_estimator: str = _f(
        "gae", "gae | td0 | nstep | mc: GAE(lambda), one-step TD, n-step, or Monte-Carlo return minus V",
        ADVANTAGE_ESTIMATORS,
    )
    gae_lambda: float = _f(0.95, "GAE lambda in [0, 1] (0: TD(0) advantages, 1: Monte-Carlo)", UNIT)
    n_step: int = _f(5, "n of the n-step estimator (advantage_estimator=nstep), >= 1", Bounds(1, 2**31 - 1))
    normalize_advantages: bool = _f(
        True, "normalize advantages to mean 0, std 1 (per minibatch in PPO, per batch otherwise)"
    )
    normalize_observations: bool = _f(False, "running mean/std observation normalization (saved with the model)")
    observation_clip: float = _f(10.0, "clip normalized observations to +-this, > 0", _positive())
    normalize_rewards: bool = _f(False, "scale rewards by the running std of the discounted return")
    reward_clip: float = _f(10.0, "clip scaled rewards to +-this, > 0", _positive())
    # --- optimization
    learning_rate: float = _f(2.5e-4, "step size of the optimizer (Adam, eps=1e-5), in (0, 0.1]", LEARNING_RATE)
    anneal_lr: bool = _f(True, "anneal the learning rate linearly to 0 over total_steps")
    ent_coef: float = _f(0.0, "entropy bonus coefficient c2, in [0, 100]", COEFFICIENT)
    max_grad_norm: float = _f(0.5, "global gradient-norm clip, > 0", _positive())
    # --- networks
    hidden_sizes: tuple[int, ...] = _f(
        (64, 64), f"trunk MLP layer widths after the encoder, e.g. 64,64 (0 to {MAX_HIDDEN_LAYERS} layers "
        "of 1 to 4096; empty: the heads read the encoder's features)",
        Bounds(1, 4096))
    activation: str = _f("tanh", "trunk MLP activation: tanh | relu", ACTIVATIONS)
    shared_trunk: bool = _f(False, "one trunk MLP for actor and critic instead of two")
    shared_encoder: bool = _f(
        True, "actor and critic read one observation encoder (it matters for encoders with weights: "
        "the CNN and your own)")
    cnn_channels: tuple[int, ...] = _f(
        (32, 64, 64), "image observations: output channels of each convolution (default: the Nature CNN)",
        Bounds(1, 4096))
    cnn_kernels: tuple[int, ...] = _f((8, 4, 3), "image observations: kernel size of each convolution",
                                      Bounds(1, 256))
    cnn_strides: tuple[int, ...] = _f((4, 2, 1), "image observations: stride of each convolution",
                                      Bounds(1, 256))
    cnn_features: int = _f(512, "image observations: width of the linear layer after the convolutions",
                           Bounds(1, 65_536))
    cnn_activation: str = _f("relu", "image observations: activation after each CNN layer: relu | tanh",
                             ACTIVATIONS)
    recurrent: str = _f(
        "none", "none | lstm | gru: a recurrent core between the encoder and the trunk (memory for partially "
        "observed tasks)", RECURRENT_CORES)
    recurrent_hidden_size: int = _f(128, "recurrent core: units of the LSTM/GRU", Bounds(1, 8192))
    shared_recurrent: bool = _f(
        False, "recurrent core: one memory for actor and critic instead of two (needs shared_encoder)")
    sequence_length: int | None = _f(
        None, "recurrent core: train on chunks of this many steps, each from its stored state (truncated "
        "backpropagation through time; none: each env's whole rollout, n_steps)", Bounds(1, 2**20))
    encoder: str | None = _f(
        None, "your observation encoder, 'module:Attr' naming a factory observation_space -> torch.nn.Module "
        "that returns [batch, features] (none: chosen from the observation space)")
    unsupported_observations: str = _f(
        "drop", "drop | refuse: what to do with a Dict/Tuple part no encoder handles (e.g. text)",
        UNSUPPORTED_OBSERVATIONS)
    device: str = _f(
        "auto", "auto | cpu | cuda | cuda:N | mps (auto: CUDA when available and the network has a CNN, "
        "else the CPU)")
    action_masks: str = _f(
        "auto", "auto | info | method | off: where the valid actions of each state come from: "
        "info['action_mask'] (Gymnasium), the env's action_masks() method (sb3-contrib), or not at all "
        "(auto: whichever the env provides; Discrete and MultiDiscrete actions)",
        MASK_SETTINGS)
    log_std_init: float = _f(
        0.0, "Box actions: initial log standard deviation of the Gaussian policy, in [-20, 20] (the "
        "learned one is kept there too)",
        Bounds(-20.0, 20.0))
    squash_actions: bool = _f(
        False, "Box actions: tanh-squash samples into the bounds instead of clipping them"
    )
    # --- run control
    seed: int = _f(0, "seed for torch, numpy, action sampling and the environments", Bounds(0, 2**32 - 1))
    reward_threshold: float | None = _f(
        None, "solved when the rolling mean return reaches this (none: the env's own threshold)", FLOAT32
    )
    stop_when_solved: bool = _f(True, "stop training once solved")
    rolling_window: int = _f(100, "episodes in the rolling mean return", Bounds(1, 1_000_000))
    torch_threads: int | None = _f(
        None, "torch CPU threads (none: 1 for MLPs, where one is fastest; one per available core with a "
        "CNN or your encoder)", Bounds(1, 1024))
    checkpoint_every: int = _f(
        20, "run directories: write a checkpoint every K updates (0: only at the start and the end)",
        Bounds(0, 10**9),
    )
    keep_checkpoints: int = _f(3, "run directories: how many of the newest checkpoints to keep, >= 1",
                               Bounds(1, 1_000_000))
    checkpoint_episodes: bool = _f(
        True, "checkpoints also save the episodes in flight (the envs, pickled), so that resume continues "
        "them; off for envs too large to pickle at every checkpoint (resume then starts new episodes)")

    def __post_init__(self) -> None:
        _coerce_fields(self)
        _check_bounds(self)
        self._validate()

    def _validate(self) -> None:
        """Checks across fields (each field's own bounds are checked before, from its declaration)."""
        c = self
        _check(c.batch_size <= MAX_BATCH, "n_envs * n_steps", c.batch_size,
               f"at most {MAX_BATCH:,} transitions per rollout; lower n_envs or n_steps")
        _check(
            c.batch_size <= c.total_steps, "total_steps", c.total_steps,
            f"at least one rollout, n_envs * n_steps = {c.n_envs} * {c.n_steps} = {c.batch_size:,} steps; "
            "raise the budget (--steps) or lower n_envs or n_steps",
        )
        _check(len(c.hidden_sizes) <= MAX_HIDDEN_LAYERS, "hidden_sizes", c.hidden_sizes,
               f"0 to {MAX_HIDDEN_LAYERS} layer widths, e.g. 64,64")
        _check(1 <= len(c.cnn_channels) <= MAX_HIDDEN_LAYERS, "cnn_channels", c.cnn_channels,
               f"1 to {MAX_HIDDEN_LAYERS} convolutions, e.g. 32,64,64")
        for name in ("cnn_kernels", "cnn_strides"):
            _check(len(getattr(c, name)) == len(c.cnn_channels), name, getattr(c, name),
                   f"one value per convolution of cnn_channels ({len(c.cnn_channels)})")
        _check(c.shared_encoder or not c.shared_trunk, "shared_trunk", c.shared_trunk,
               "false when shared_encoder is false (a shared trunk reads one encoder)")
        _check(c.shared_encoder or not c.shared_recurrent, "shared_recurrent", c.shared_recurrent,
               "false when shared_encoder is false (a shared core reads one encoder)")
        _check(c.recurrent == "none" or c.shared_recurrent or not c.shared_trunk, "shared_trunk", c.shared_trunk,
               "false with a recurrent core unless shared_recurrent is true (a shared trunk reads one core)")
        _check(DEVICE_PATTERN.fullmatch(c.device) is not None, "device", c.device, "auto | cpu | cuda | cuda:N | mps")
        _check(c.encoder is None or ":" in c.encoder, "encoder", c.encoder,
               "'module:Attr' naming a factory observation_space -> torch.nn.Module")

    def _check_minibatch(self, name: str) -> None:
        size = getattr(self, name)
        _check(
            size <= self.batch_size, name, size,
            f"at most the batch size n_envs * n_steps = {self.n_envs} * {self.n_steps} = "
            f"{self.batch_size}; lower {name} or raise n_envs or n_steps",
        )

    @property
    def batch_size(self) -> int:
        """Transitions per rollout, T * N (a few of them are autoreset steps, not trained on)."""
        return self.n_envs * self.n_steps

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (unknown keys are an error), validated again."""
        _reject_unknown(changes, type(self))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Self:
        _reject_unknown(values, cls)
        return cls(**values)


@dataclass(frozen=True)
class JointLossConfig(Config):
    """For algorithms that train actor and critic on one loss L^POL + c1 L^VF - c2 H (PPO, A2C)."""

    vf_coef: float = _f(0.5, "value loss coefficient c1, in [0, 100]", COEFFICIENT)


@dataclass(frozen=True)
class PPOConfig(JointLossConfig):
    """PPO (Schulman et al. 2017), with the names CleanRL and SB3 users know."""

    n_epochs: int = _f(4, "K: passes over each batch, in [1, 1000]", Bounds(1, 1000))
    minibatch_size: int = _f(256, "samples per gradient step (<= n_envs * n_steps)", Bounds(1, MAX_BATCH))
    policy_objective: str = _f(
        "clip", "clip | kl_penalty | none: clipped surrogate, adaptive KL penalty, or the plain "
        "importance-sampled surrogate (an ablation)", POLICY_OBJECTIVES,
    )
    clip_coef: float = _f(0.2, "epsilon of the clipped surrogate objective, in (0, 1] (0.1-0.3 is usual)",
                          _positive(1.0))
    kl_target: float = _f(0.01, "policy_objective=kl_penalty: d_targ, the KL the penalty steers towards, "
                          "in (0, 10]", _positive(10.0))
    kl_beta_init: float = _f(1.0, "policy_objective=kl_penalty: initial penalty coefficient beta, in (0, 1e6]",
                             _positive(1e6))
    clip_value_loss: bool = _f(
        False,
        "clip the value update to +-clip_coef around the old estimate (off by default: with "
        "unnormalized returns in the hundreds it stops the critic from learning)",
    )
    target_kl: float | None = _f(None, "stop the epoch loop when approx KL exceeds this (none: off)", _positive())

    def _validate(self) -> None:
        super()._validate()
        self._check_minibatch("minibatch_size")


@dataclass(frozen=True)
class CriticFitConfig(Config):
    """For algorithms that fit V with its own optimizer after the policy step (TRPO, VPG):
    ``vf_epochs`` passes of Adam over the batch in minibatches of ``vf_minibatch_size``."""

    vf_epochs: int = _f(5, "passes over each batch when fitting the value function, in [1, 1000]",
                        Bounds(1, 1000))
    vf_minibatch_size: int = _f(64, "samples per value-function gradient step (<= n_envs * n_steps)",
                                Bounds(1, MAX_BATCH))
    shared_encoder: bool = _f(
        False, "actor and critic read one observation encoder (for encoders with weights; the value "
        "fit then trains only the critic's trunk and head, the policy step trains the encoder)")

    def _validate(self) -> None:
        super()._validate()
        self._check_minibatch("vf_minibatch_size")
        _check(not self.shared_trunk, "shared_trunk", self.shared_trunk,
               "false: this algorithm steps the policy and fits the value function separately")


@dataclass(frozen=True)
class TRPOConfig(CriticFitConfig):
    """TRPO (Schulman et al. 2015). The policy's step is set by ``max_kl``; ``learning_rate``
    is the value function's."""

    n_steps: int = _f(512, "T: steps per environment per rollout (batch = T * N)")
    learning_rate: float = _f(1e-3, "Adam step size of the value function (the policy's step is set by max_kl)")
    max_kl: float = _f(0.01, "delta: the trust region, a bound on the mean KL(pi_old || pi_new), in (0, 10]",
                       _positive(10.0))
    cg_iters: int = _f(10, "conjugate-gradient iterations for x ~= H^-1 g, in [1, 1000]", Bounds(1, 1000))
    cg_damping: float = _f(0.1, "damping added to the Fisher-vector products (H + damping I), in [0, 1e6]",
                           Bounds(0.0, 1e6))
    line_search_steps: int = _f(10, "backtracking steps before the update is rejected, in [1, 1000]",
                                Bounds(1, 1000))
    backtrack_coef: float = _f(0.8, "step shrink factor per backtracking step, in (0, 1)", OPEN_UNIT)


@dataclass(frozen=True)
class VPGConfig(CriticFitConfig):
    """Vanilla policy gradient: REINFORCE with a learned baseline (Williams 1992; Sutton et al.
    2000). One Adam step on the policy per rollout at ``learning_rate``, then the value fit."""

    advantage_estimator: str = _f(
        "mc", "gae | td0 | nstep | mc: GAE(lambda), one-step TD, n-step, or Monte-Carlo return minus V"
    )
    n_steps: int = _f(512, "T: steps per environment per rollout (batch = T * N)")
    learning_rate: float = _f(3e-3, "Adam step size of the policy, in (0, 0.1]")
    vf_learning_rate: float = _f(1e-3, "Adam step size of the value function (annealed with learning_rate), "
                                 "in (0, 0.1]", LEARNING_RATE)


@dataclass(frozen=True)
class A2CConfig(JointLossConfig):
    """A2C (Mnih et al. 2016, synchronous): one gradient step per rollout on the joint
    actor-critic loss."""

    n_steps: int = _f(5, "T: steps per environment per rollout (batch = T * N)")
    gae_lambda: float = _f(1.0, "GAE lambda in [0, 1] (1 with short rollouts: A2C's n-step returns)")
    normalize_advantages: bool = _f(False, "normalize advantages per minibatch")
    learning_rate: float = _f(7e-4, "step size of the optimizer (RMSprop or Adam), in (0, 0.1]")
    anneal_lr: bool = _f(False, "anneal the learning rate linearly to 0 over total_steps")
    optimizer: str = _f("rmsprop", "rmsprop | adam", OPTIMIZERS)
    rmsprop_alpha: float = _f(
        0.99, "RMSprop's smoothing constant alpha in (0, 0.9999] (its first step is about "
        "learning_rate / sqrt(1 - alpha) per weight: RMSprop has no bias correction)", Bounds(0.0, 0.9999, low_open=True))
    optimizer_eps: float = _f(1e-5, "epsilon of the optimizer's denominator, in [1e-12, 1]", Bounds(1e-12, 1.0))


CONFIG_CLASSES: dict[str, type[Config]] = {"ppo": PPOConfig, "trpo": TRPOConfig, "a2c": A2CConfig, "vpg": VPGConfig}


def config_class(algo: str) -> type[Config]:
    """The config class of ``algo`` ('ppo', ...), or a ConfigError listing the algorithms."""
    if algo not in CONFIG_CLASSES:
        raise ConfigError(f"unknown algorithm '{algo}'{did_you_mean(algo, list(CONFIG_CLASSES))} "
                          f"(one of: {', '.join(CONFIG_CLASSES)})")
    return CONFIG_CLASSES[algo]


def field_help(algo: str = "ppo") -> dict[str, tuple[str, Any]]:
    """``name -> (help, default)`` for every hyperparameter of ``algo``, in declaration order."""
    return {f.name: (f.metadata["help"], f.default) for f in dataclasses.fields(config_class(algo))}


# Hyperparameters tuned on these machines for wall-clock time to solve with every seed solving
# (see benchmarks/time_to_solve.py and docs/reference/presets.md).
# Budgets are whole rollouts (rollouts * n_envs * n_steps): the steps each setting was measured
# with. A budget is rounded up to whole rollouts, and a learning-rate schedule a few steps longer
# changes every update after the first, so a nominal 1.2M would train a different run.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {"ppo": {
    "CartPole-v1": dict(
        n_envs=16, n_steps=32, total_steps=390 * 512, learning_rate=7e-3, n_epochs=8,
        minibatch_size=512, gamma=0.99, gae_lambda=0.9, ent_coef=0.0,
    ),
    "LunarLander-v3": dict(
        n_envs=16, n_steps=256, total_steps=292 * 4096, learning_rate=1e-3, n_epochs=8,
        minibatch_size=256, gamma=0.999, gae_lambda=0.98, ent_coef=0.01,
    ),
    # Tuned here (3 seeds reach about -180 by 100k steps; the best policies score about -150).
    "Pendulum-v1": dict(
        n_envs=8, n_steps=256, total_steps=97 * 2048, learning_rate=1e-3, n_epochs=10,
        minibatch_size=256, gamma=0.95, gae_lambda=0.95, normalize_rewards=True,
    ),
    # CleanRL's ppo_continuous_action.py, the settings behind its published MuJoCo results.
    **dict.fromkeys(("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"), dict(
        n_envs=1, n_steps=2048, total_steps=488 * 2048, learning_rate=3e-4, n_epochs=10,
        minibatch_size=64, gamma=0.99, gae_lambda=0.95, clip_value_loss=True,
        normalize_observations=True, normalize_rewards=True,
    )),
    # The RL Zoo's PPO settings for BipedalWalker-v3.
    "BipedalWalker-v3": dict(
        n_envs=32, n_steps=2048, total_steps=76 * 65_536, learning_rate=2.5e-4, n_epochs=10,
        minibatch_size=64, gamma=0.999, gae_lambda=0.95, clip_coef=0.18,
        normalize_observations=True, normalize_rewards=True,
    ),
    # MinAtar (Young & Tian 2019): 10x10xC bool images; the MinAtar paper's network, one 3x3
    # convolution of 16 channels and 128 hidden units, with the Atari PPO settings below.
    **dict.fromkeys(("MinAtar/Breakout-v1", "MinAtar/SpaceInvaders-v1"), dict(
        n_envs=16, n_steps=128, total_steps=3_000_000 // 2048 * 2048, learning_rate=5e-4, n_epochs=4,
        minibatch_size=512, gamma=0.99, gae_lambda=0.95, clip_coef=0.2, ent_coef=0.01,
        cnn_channels=(16,), cnn_kernels=(3,), cnn_strides=(1,), cnn_features=128, hidden_sizes=(),
    )),
    # Memory (ppolab/tasks.py). CartPole without its velocities: the RL Zoo's RecurrentPPO network
    # and discounting for CartPoleNoVel-v1 (an LSTM of 64 units, then one ReLU layer of 64;
    # gamma 0.98, lambda 0.8; normalized observations and rewards), tuned here for time: 16
    # envs and 10 epochs of one minibatch at lr 3e-3 (the zoo: 8 envs, 20 epochs, lr 1e-3)
    # solved seeds 0-2 at 89k-143k steps, 19-40 s each; the zoo's settings, at 121k-127k, 82 s.
    "ppolab/CartPoleNoVelocity-v1": dict(
        recurrent="lstm", recurrent_hidden_size=64, hidden_sizes=(64,), activation="relu",
        n_envs=16, n_steps=32, total_steps=390 * 512, learning_rate=3e-3, n_epochs=10, minibatch_size=512,
        gamma=0.98, gae_lambda=0.8, normalize_observations=True, normalize_rewards=True,
    ),
    # Pendulum's settings (gamma 0.95, reward scaling) with an LSTM of 64, 16 envs x 128 steps and
    # lr 2e-3: seeds 0-2 reached -250 at 135k, 148k and 238k steps, 42-66 s each (benchmarks/contrib.py);
    # without memory the same settings stay near -1140 (random play). The zoo's ppo_lstm settings
    # use gSDE, which ppolab lacks.
    "ppolab/PendulumNoVelocity-v1": dict(
        recurrent="lstm", recurrent_hidden_size=64, hidden_sizes=(64,), activation="relu",
        n_envs=16, n_steps=128, total_steps=123 * 2048, learning_rate=2e-3, n_epochs=10, minibatch_size=512,
        gamma=0.95, gae_lambda=0.95, normalize_rewards=True,
    ),
    # A cue seen once, named at the sixth step: a small GRU learns it within about 5k steps.
    "ppolab/CueMemory-v0": dict(
        recurrent="gru", recurrent_hidden_size=32, hidden_sizes=(32,), n_envs=8, n_steps=32,
        total_steps=200 * 256, learning_rate=3e-3, minibatch_size=128,
    ),
    # Taxi, with the action masks it gives in info (used by default). The threshold of 8 is at
    # the best any policy can do (value iteration: the optimal policy averages 7.93 from the start
    # states), so a run solves on a good window of 100 episodes. Tuned here for time to solve
    # (about 45 settings): 64 envs x 32 steps, lr 2e-3, gamma 0.95, an entropy bonus of 0.01;
    # seeds 0-9 solved at 50k-84k steps (median 62k), 6-8 s. The previous preset (16 x 256,
    # lr 1e-3, gamma 0.99) took 135k-157k steps; the defaults 268k-285k.
    "Taxi-v4": dict(n_envs=64, n_steps=32, minibatch_size=512, learning_rate=2e-3, gamma=0.95, ent_coef=0.01,
                    total_steps=160 * 2048),
    # MiniGrid: a 7x7x3 grid of object/colour/state indices (an image to the encoder), the agent's
    # direction one-hot, the mission text dropped. Small 2x2 convolutions as in the MiniGrid
    # authors' rl-starter-files; solved when the mean return reaches 0.9.
    "MiniGrid-DoorKey-5x5-v0": dict(
        n_envs=16, n_steps=128, total_steps=250 * 2048, learning_rate=2e-3, n_epochs=4,
        minibatch_size=512, gamma=0.99, gae_lambda=0.95, ent_coef=0.01, reward_threshold=0.9,
        cnn_channels=(16, 32, 64), cnn_kernels=(2, 2, 2), cnn_strides=(1, 1, 1), cnn_features=64,
        hidden_sizes=(64,),
    ),
}, "trpo": {
    # Tuned here: seeds 0-3 solved at 62k-67k steps.
    "CartPole-v1": dict(n_envs=8, n_steps=256, total_steps=97 * 2048, max_kl=0.02),
    # Tuned here (the PPO preset's discounting): seed 0 solved at 640k steps.
    "LunarLander-v3": dict(n_envs=16, n_steps=256, total_steps=292 * 4096, max_kl=0.02, gamma=0.999,
                           gae_lambda=0.98),
}, "a2c": {
    # The defaults (8 envs x 5 steps, RMSprop 7e-4) with the RL Zoo's 500k budget: seeds 0-3
    # solved at 122k-156k steps.
    "CartPole-v1": dict(n_envs=8, n_steps=5, total_steps=500_000),
    # The RL Zoo's A2C settings and budget. A2C does not solve LunarLander-v3 at them (nor does
    # SB3's A2C, measured alongside); longer runs and five other settings were worse (see
    # docs/reference/presets.md).
    "LunarLander-v3": dict(n_envs=8, n_steps=5, total_steps=200_000, gamma=0.995,
                           learning_rate=8.3e-4, anneal_lr=True, ent_coef=1e-5),
}, "vpg": {
    # Tuned here: seeds 0-3 solved at 94k-102k steps.
    "CartPole-v1": dict(n_envs=8, n_steps=512, total_steps=73 * 4096, learning_rate=1e-2),
    # Tuned here: seeds 0-4 solved at 826k-1,335k steps (median 883k).
    "LunarLander-v3": dict(n_envs=16, n_steps=512, total_steps=244 * 8192, learning_rate=3e-3),
}}


# Every ALE id (the Atari preprocessing of ppolab.atari applies to them): the standard PPO
# Atari setting (Schulman et al. 2017, table 5; CleanRL's ppo_atari.py): 8 envs x 128 steps,
# 4 epochs of 4 minibatches, lr 2.5e-4 annealed, clip 0.1, entropy 0.01, clipped value loss,
# the Nature CNN with the heads on its 512 features, 10M steps.
ATARI_PPO = dict(
    n_envs=8, n_steps=128, total_steps=10_000_000 // 1024 * 1024, learning_rate=2.5e-4, anneal_lr=True,
    n_epochs=4, minibatch_size=256, gamma=0.99, gae_lambda=0.95, clip_coef=0.1, ent_coef=0.01,
    vf_coef=0.5, clip_value_loss=True, max_grad_norm=0.5, hidden_sizes=(), shared_encoder=True,
)
PRESET_FAMILIES: dict[str, dict[str, dict[str, Any]]] = {"ppo": {"ALE/": ATARI_PPO}}


def _tuned(env_id: str | None, algo: str) -> tuple[str, dict[str, Any]] | None:
    """(what the preset is for, its values): the env's own preset, else its family's (by id prefix)."""
    if env_id in PRESETS.get(algo, {}):
        return env_id, PRESETS[algo][env_id]
    for prefix, values in PRESET_FAMILIES.get(algo, {}).items():
        if env_id and env_id.startswith(prefix):
            return f"{prefix}* ids", values
    return None


def has_preset(env_id: str | None, algo: str) -> bool:
    return _tuned(env_id, algo) is not None


# What an environment without a preset gets when its actions are continuous (Box): the
# discrete-control defaults above (8 envs x 128 steps, 4 epochs, no normalization) are the
# Atari/classic-control settings and fail there. These are published continuous-control
# settings, with observation and reward normalization, which every one of them uses.
CONTINUOUS_DEFAULTS: dict[str, dict[str, Any]] = {
    # CleanRL's ppo_continuous_action.py (the MuJoCo presets above).
    "ppo": PRESETS["ppo"]["Hopper-v5"],
    # The RL Zoo's TRPO settings for MuJoCo (sb3-contrib's n_critic_updates=20 is vf_epochs).
    "trpo": dict(n_envs=2, n_steps=1024, total_steps=1_000_000, learning_rate=1e-3, vf_minibatch_size=128,
                 vf_epochs=20, gamma=0.99, gae_lambda=0.95, cg_iters=25, cg_damping=0.1,
                 normalize_observations=True, normalize_rewards=True),
    # The RL Zoo's A2C settings for MuJoCo: SB3's A2C defaults on one env, normalized.
    "a2c": dict(n_envs=1, total_steps=1_000_000, normalize_observations=True, normalize_rewards=True),
    # No published setting: the defaults, normalized.
    "vpg": dict(total_steps=1_000_000, normalize_observations=True, normalize_rewards=True),
}


def preset(env_id: str | None, algo: str = "ppo", action_kind: str | None = None) -> Config:
    """``algo``'s tuned config for ``env_id`` if there is one; else, for continuous (``"box"``)
    actions, :data:`CONTINUOUS_DEFAULTS`; else the defaults. See :func:`defaults_origin`."""
    return config_class(algo)(**_preset_values(env_id, algo, action_kind))


def defaults_origin(env_id: str | None, algo: str = "ppo", action_kind: str | None = None) -> str:
    """Which settings :func:`preset` starts from, and why, in words (for the CLI and check-env)."""
    tuned = _tuned(env_id, algo)
    if tuned is not None:
        return f"the tuned {algo} preset for {tuned[0]}"
    if action_kind == "box":
        return (f"the {algo} continuous-control defaults (continuous actions and no preset: "
                f"{describe_changes(CONTINUOUS_DEFAULTS[algo])})")
    why = "no preset for this env" + ("; discrete actions" if action_kind else "")
    return f"the {algo} defaults ({why})"


def _preset_values(env_id: str | None, algo: str, action_kind: str | None) -> dict[str, Any]:
    config_class(algo)  # an unknown algorithm: the error lists the known ones
    tuned = _tuned(env_id, algo)
    if tuned is not None:
        return tuned[1]
    return CONTINUOUS_DEFAULTS[algo] if action_kind == "box" else {}


def describe_changes(values: dict[str, Any]) -> str:
    """``k=v, ...`` of a preset's values."""
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _field_bounds(cls: type[Config], name: str) -> Bounds | tuple[str, ...] | None:
    """The bounds declared for ``name`` by ``cls`` or, if it redeclares the field without
    them, by the nearest base class that declares them."""
    for klass in cls.__mro__:
        declared = {f.name: f for f in dataclasses.fields(klass)} if dataclasses.is_dataclass(klass) else {}
        if name in declared and declared[name].metadata.get("bounds") is not None:
            return declared[name].metadata["bounds"]
    return None


def _check_bounds(config: Config) -> None:
    """Each field against its declared bounds (after :func:`_coerce_fields`)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        bounds = _field_bounds(type(config), f.name)
        value = getattr(config, f.name)
        if bounds is None or value is None:
            continue
        if isinstance(bounds, tuple):
            _check(value in bounds, f.name, value, " | ".join(bounds))
            continue
        integer = int in (hints[f.name], *typing.get_args(hints[f.name]))
        for item in value if isinstance(value, tuple) else (value,):
            ok = bounds.contains(item) and (integer or _float32(item))
            what = bounds.describe(integer) + ("" if integer else " (representable in float32)")
            if isinstance(value, tuple):
                what = f"layer widths each {what}"
            _check(ok, f.name, value, what)


def _float32(value: float) -> bool:
    """Finite, and 0 or of a magnitude float32 holds without overflow or flushing to 0."""
    return value == 0 or FLOAT32_TINY <= abs(value) <= FLOAT32_MAX


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {name}={value!r}: must be {allowed}")


def _reject_unknown(values: dict[str, Any], cls: type[Config]) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    algo = next((name for name, c in CONFIG_CLASSES.items() if c is cls), None)
    for key in values:
        if key not in known:
            owners = [name for name, c in CONFIG_CLASSES.items()
                      if c is not cls and key in {f.name for f in dataclasses.fields(c)}]
            if owners:
                raise ConfigError(f"hyperparameter '{key}' is not used by {algo}; it belongs to "
                                  f"{' and '.join(owners)} (choose the algorithm with --algo)")
            raise ConfigError(f"unknown hyperparameter '{key}'{did_you_mean(key, known)} "
                              f"(run 'ppolab train --help' for the list)")


def _coerce_fields(config: Config) -> None:
    """Turn strings and lists (from --set, YAML or JSON) into each field's declared type."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        coerced = parse_value(f.name, value, hints[f.name])
        if coerced is not value:
            object.__setattr__(config, f.name, coerced)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def parse_value(name: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to ``annotation`` (int, float, bool, str, tuple[int, ...], X | None)."""
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(name, value, inner)
    origin = typing.get_origin(annotation)
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    try:
        if origin is tuple:
            items = value.strip("[]() ").split(",") if isinstance(value, str) else value
            if isinstance(items, (int, float)):
                items = [items]
            return tuple(parse_value(name, v, args[0]) for v in items if str(v).strip() != "")
        if annotation is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if annotation is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            number = value
            if isinstance(value, str):
                text = value.strip().replace("_", "")
                try:
                    return int(text)  # exact, however large
                except ValueError:
                    number = float(text)  # "1e5"
            if not float(number).is_integer():
                raise ValueError
            return int(number)
        if annotation is float:
            if isinstance(value, bool):
                raise ValueError
            return value if isinstance(value, float) else float(str(value).replace("_", ""))
        if annotation is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (ValueError, TypeError, AttributeError):
        pass
    what = kind.get(annotation, "a list of integers like 64,64" if origin is tuple else str(annotation))
    raise ConfigError(f"invalid {name}={value!r}: must be {what}")


def parse_assignments(assignments: list[str], cls: type[Config] = PPOConfig) -> dict[str, str]:
    """``["lr=1e-3", ...]`` from ``--set`` into a dict; keys are checked, values parsed later."""
    values: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r} (e.g. --set learning_rate=1e-3)")
        values[key] = value.strip()
    _reject_unknown(values, cls)
    return values


def load_config_file(path: str | Path, cls: type[Config] = PPOConfig) -> dict[str, Any]:
    """Hyperparameters from a YAML (.yaml/.yml) or JSON file holding one mapping (a run's
    config.yaml works: its ``algo`` and ``env_id`` entries are not hyperparameters)."""
    data = read_config_file(path)
    data.pop("algo", None)
    data.pop("env_id", None)
    _reject_unknown(data, cls)
    return data


def config_file_algo(path: str | Path) -> str | None:
    """The ``algo`` a config file names (a run's config.yaml does), if any."""
    algo = read_config_file(path).get("algo")
    return None if algo is None else str(algo)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML or JSON file, unchecked."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError: both say where
        where = " ".join(str(exc).split())  # YAML's message spans lines with a caret drawing
        raise ConfigError(f"cannot parse config file {path}: {where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of hyperparameters, got {type(data).__name__}")
    return data
