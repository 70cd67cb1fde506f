"""The public agent API: ``PPO(env).learn(steps)``, ``predict``, ``save``, ``load``.

Every algorithm is an :class:`Agent` subclass that names its config class and its update
(``ppolab.algos.*``); the environment handling, collector, networks, normalizers, training loop,
checkpointing and evaluation are shared.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import deque
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ppolab import devices, masks, modelfile, rng
from ppolab.algos.a2c import A2CUpdate
from ppolab.algos.ppo import PPOUpdate
from ppolab.algos.trpo import TRPOUpdate
from ppolab.algos.vpg import VPGUpdate
from ppolab.checkpoints import model_path
from ppolab.config import (
    A2CConfig,
    Config,
    PPOConfig,
    TRPOConfig,
    VPGConfig,
    defaults_origin,
    has_preset,
    preset,
)
from ppolab.encoders import factory_path
from ppolab.envs import EnvInfo, EnvSource, action_kind, make_vec_env, resolve_env_id
from ppolab.errors import ConfigError, EnvironmentFaultError, EnvironmentSpecError, ModelFileError, PPOLabError
from ppolab.memory import Memory
from ppolab.normalize import ObservationNormalizer, RewardScaler
from ppolab.observations import tree_map
from ppolab.policies import ActorCritic
from ppolab.rollout import Collector
from ppolab.train import Reporter, TrainResult, plan, seed_everything, train


def default_config(env: EnvSource, algo: str) -> tuple[Config, EnvSource, str]:
    """The config ``algo`` starts from on ``env`` before any override: the tuned preset for a
    registered id that has one, else the defaults for its kind of actions (continuous-control
    settings for Box actions, see ``ppolab.config.CONTINUOUS_DEFAULTS``); the source to make
    the envs from (see :func:`ppolab.envs.action_kind`); and which settings these are, in words
    (:func:`ppolab.config.defaults_origin`)."""
    env_id = env if isinstance(env, str) else None
    kind = None
    if not has_preset(env_id, algo):  # only then do the actions decide: make one env to look
        kind, env = action_kind(env)
    return preset(env_id, algo, kind), env, defaults_origin(env_id, algo, kind)


class Agent:
    """An on-policy agent on a Gymnasium environment; use a subclass (:class:`PPO`, ...).

    ``env`` is a registered id (the algorithm's tuned preset for it applies, see
    ``ppolab.config.PRESETS``), ``"module:Attr"``, an env instance, a zero-argument env factory,
    or a vector env. Hyperparameters come from ``config`` (default: the preset, or without one
    the defaults for the env's kind of actions, see :func:`default_config`) with
    ``**hyperparameters`` overriding single fields, e.g. ``PPO("CartPole-v1", seed=1,
    learning_rate=1e-3)``. ``encoder`` may be a factory ``observation_space -> nn.Module``
    defined at a module's top level, as well as its ``"module:Attr"`` path (see
    :mod:`ppolab.encoders`); ``device`` is auto, cpu, cuda, cuda:N or mps.
    """

    algo: ClassVar[str]
    config_class: ClassVar[type[Config]]
    update_class: ClassVar[type]  # (policy, config) -> an object with update(), STATS, state_dict()
    registry: ClassVar[dict[str, type[Agent]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "algo" in cls.__dict__:  # a user's subclass of PPO does not replace PPO
            Agent.registry[cls.algo] = cls

    def __init__(self, env: EnvSource, config: Config | None = None, **hyperparameters: Any) -> None:
        if isinstance(env, str) and ":" not in env:
            env = resolve_env_id(env)
        if config is not None and not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                              f"got a {type(config).__name__}")
        if callable(hyperparameters.get("encoder")):
            hyperparameters["encoder"] = factory_path(hyperparameters["encoder"])
        if config is None:
            config, env, _ = default_config(env, self.algo)
        self.config = config.replace(**hyperparameters) if hyperparameters else config
        vec_env, info = make_vec_env(env, self.config.n_envs, self.config.vectorization,
                                     self.config.squash_actions, self.config.unsupported_observations)
        if vec_env.num_envs != self.config.n_envs:  # a ready vector env decides N
            try:
                self.config = self.config.replace(n_envs=vec_env.num_envs)
            except PPOLabError:
                vec_env.close()
                raise
        try:
            self._setup(info)
            self._attach_env(vec_env)
        except PPOLabError:
            vec_env.close()
            raise

    def _setup(self, info: EnvInfo) -> None:
        cfg = self.config
        heavy = info.observation.has_image or bool(cfg.encoder)
        torch.set_num_threads(cfg.torch_threads or (devices.available_cores() if heavy else 1))
        self.device = devices.resolve_device(cfg.device, heavy)
        seed_everything(cfg.seed)
        self.env_info = info
        self.policy = ActorCritic(info.observation, info.action, cfg, info.observation_space,
                                  info.env_id).to(self.device)
        self.algorithm = self.update_class(self.policy, cfg)
        self.generator = devices.generator(self.device, cfg.seed)
        self.global_step = 0
        self.updates = 0
        self.episode_count = 0
        self.recent_returns: deque[float] = deque(maxlen=cfg.rolling_window)
        self.recent_lengths: deque[int] = deque(maxlen=cfg.rolling_window)
        # (first step, planned steps) of the learn() call in progress or interrupted; see resume()
        self.schedule: tuple[int, int] | None = None
        self._saved_rng: dict[str, Any] | None = None
        self._in_flight: dict[str, Any] | None = None  # a loaded checkpoint's episodes, for resume()
        self.obs_normalizer = (ObservationNormalizer(info.observation, cfg.observation_clip)
                               if cfg.normalize_observations and ObservationNormalizer.applies(info.observation)
                               else None)
        self.reward_scaler = (RewardScaler(cfg.n_envs, cfg.gamma, cfg.reward_clip)
                              if cfg.normalize_rewards else None)
        self.vec_env = None
        self.collector: Collector | None = None

    def _attach_env(self, vec_env: Any) -> None:
        self.vec_env = vec_env
        self.collector = Collector(vec_env, self.env_info, self.policy, self.config.n_steps,
                                   self._reset_seed, self.generator, self.obs_normalizer, self.reward_scaler,
                                   self.config.action_masks)
        self.env_info = dataclasses.replace(self.env_info, action_mask=self.collector.mask_source)

    @property
    def _reset_seed(self) -> int:
        """The seed of new episodes: a loaded agent's are not a replay of the first ones."""
        return (self.config.seed + self.global_step) % 2**32

    @property
    def env_id(self) -> str:
        return self.env_info.env_id

    @property
    def reward_threshold(self) -> float | None:
        if self.config.reward_threshold is not None:
            return self.config.reward_threshold
        return self.env_info.reward_threshold

    def learn(self, total_steps: int | None = None, *, callback: Any = None,
              reporter: Reporter | None = None) -> TrainResult:
        """Train for ``total_steps`` more environment steps (default: ``config.total_steps``),
        rounded up to whole rollouts of ``n_envs * n_steps``.

        Stops early once the rolling mean return reaches the reward threshold, unless
        ``config.stop_when_solved`` is False. Returns a :class:`~ppolab.train.TrainResult`.
        """
        if self.collector is None:
            raise ModelFileError("this agent was loaded without an environment; use "
                                 f"{type(self).__name__}.load(path, env=...) to continue training")
        self.plan(total_steps)
        self._saved_rng = self._in_flight = None  # a new schedule: the generators and envs go on as they are
        return train(self, reporter, callback)

    def plan(self, total_steps: int | None = None) -> None:
        """Set up a ``learn(total_steps)`` call without running it; :meth:`resume` runs it.
        (``ppolab train`` does this so that its first checkpoint can already be resumed.)"""
        steps = self.config.total_steps if total_steps is None else int(total_steps)
        batch = self.config.batch_size
        if steps < batch:
            raise ConfigError(
                f"invalid total_steps={steps}: must be at least one rollout, n_envs * n_steps = "
                f"{self.config.n_envs} * {self.config.n_steps} = {batch:,} steps")
        plan(self, steps)

    def resume(self, *, callback: Any = None, reporter: Reporter | None = None,
               new_episodes: bool = False) -> TrainResult:
        """Finish the ``learn()`` call this agent was checkpointed in the middle of: same
        learning-rate schedule, counters, optimizer, normalizers and random generators, and the
        same episodes, continued where the checkpoint left them (envs, observations, recurrent
        states), so that the run goes on as if it had never stopped. Used by ``ppolab resume``.

        The envs come back by unpickling them from the checkpoint (see :mod:`ppolab.snapshots`):
        resume only checkpoints you trust, or pass ``new_episodes=True`` to start new episodes
        instead. Envs that could not be saved start new episodes too, with a note on stderr.
        """
        self.prepare_resume(new_episodes)
        return train(self, reporter, callback)

    def prepare_resume(self, new_episodes: bool = False) -> None:
        """Everything :meth:`resume` does before training (a population resumes its agents
        with it, see :mod:`ppolab.population`)."""
        if self.collector is None:
            raise ModelFileError("this agent was loaded without an environment; use "
                                 f"{type(self).__name__}.load(path, env=...) to resume training")
        if self.schedule is None:
            raise ConfigError("nothing to resume: this model was saved after its training finished; "
                              "call learn(steps) to train further")
        if self._saved_rng is not None:
            rng.restore(self._saved_rng)
            devices.restore_generator(self.generator, self._saved_rng["generator"], self._reset_seed)
            self._saved_rng = None
        if self._in_flight is not None and not new_episodes:
            problem = self.collector.continue_in_flight(self._in_flight, self._reset_seed)
            self.vec_env = self.collector.env
            if problem is not None:
                print(f"note: the episodes in flight at the checkpoint cannot be continued ({problem}); "
                      "the resumed run starts new ones", file=sys.stderr)
        self._in_flight = None

    @property
    def uses_action_masks(self) -> bool:
        """Whether the policy was trained with action masks (then :meth:`predict` needs them)."""
        return self.env_info.action_mask is not None

    def new_memory(self, n: int = 1) -> Memory:
        """The memory of a recurrent policy for ``n`` envs, empty (see :meth:`predict`)."""
        if n < 1:
            raise ConfigError(f"invalid n={n}: a memory is for at least one env")
        return Memory(self.policy.initial_state(n))

    @torch.no_grad()
    def predict(self, observation: Any, deterministic: bool = True, action_mask: Any = None,
                memory: Memory | None = None) -> np.ndarray:
        """The action(s) for one observation, as the env returns it, or a batch of them (each
        array, or each part of a Dict/Tuple observation, with a leading batch dimension).

        ``action_mask``: the valid actions, one flag per action (``[A]``, or ``[B, A]`` for a
        batch), as the env gives them in ``info["action_mask"]`` or ``env.action_masks()``.
        A model trained with masks needs one: it would otherwise pick actions it never learned
        to avoid.

        ``memory``: a recurrent policy (``recurrent=lstm|gru``) needs one, from
        :meth:`new_memory` (``new_memory(B)`` for a batch of B); ``predict`` updates it in place.
        Call ``memory.reset()`` when a new episode starts. A feed-forward policy ignores it.
        """
        spec = self.env_info.observation
        batch = spec.batch_size(observation)
        problem = spec.problem(observation, batch=batch, finite=False)
        if problem is not None:
            raise EnvironmentSpecError(f"predict() got an observation {problem.detail}; the model's "
                                       f"observations are {spec.describe()}, one or a batch of them")
        stored = spec.storage(observation)
        if batch is None:
            stored = tree_map(lambda x: x[None], stored)
        if self.obs_normalizer is not None:  # frozen statistics: evaluation does not change them
            stored = self.obs_normalizer(stored, update=False)
        obs = tree_map(lambda x: torch.as_tensor(x).to(self.device), stored)
        mask = self._predict_mask(action_mask, batch)
        if self.policy.recurrent:
            self._check_memory(memory, batch)
            dist, _, memory.state = self.policy.step(obs, memory.state, memory.starts, mask)
            memory.starts[:] = False
        else:
            dist = self.policy.distribution(obs, mask)
        action = dist.mode() if deterministic else dist.sample()  # not the training generator
        action = self.env_info.action.to_env(action.cpu().numpy())
        return action[0] if batch is None else action

    def _check_memory(self, memory: Memory | None, batch: int | None) -> None:
        if memory is None:
            raise ConfigError(
                f"this policy is recurrent ({self.config.recurrent}): keep its memory across calls with "
                "memory = agent.new_memory(), pass predict(obs, memory=memory), and call memory.reset() "
                "when a new episode starts")
        if memory.n != (batch or 1):
            raise ConfigError(f"a memory for {memory.n} envs given with {'a batch of ' + str(batch) if batch else 'one'} "
                              f"observation{'s' if batch else ''}; make it with agent.new_memory({batch or 1})")
        if memory.state.shape[1] != self.policy.state_size:
            raise ConfigError(f"this memory holds {memory.state.shape[1]} floats per env, this policy's state "
                              f"{self.policy.state_size}; make it with this agent's new_memory()")

    def _predict_mask(self, action_mask: Any, batch: int | None) -> torch.Tensor | None:
        if action_mask is None:
            if self.uses_action_masks:
                raise ConfigError(
                    f"this model was trained with action masks ({masks.SOURCE_NAMES[self.env_info.action_mask]}); "
                    "pass predict(obs, action_mask=...), one flag per action")
            return None
        if masks.mask_size(self.env_info.action) is None:
            raise ConfigError(f"action_mask applies to Discrete and MultiDiscrete actions, not "
                              f"{self.env_info.action.describe()}")
        rows = np.asarray(action_mask)
        rows = rows[None] if batch is None and rows.ndim == 1 else rows
        needed = np.ones(batch or 1, dtype=bool)
        try:
            checked = masks.checked(rows, self.env_info.action, needed, "given to predict()")
        except EnvironmentFaultError as exc:
            raise ConfigError(str(exc)) from None
        return torch.from_numpy(checked).to(self.device)

    def save(self, path: str | Path) -> Path:
        """Write the model (weights, optimizer, counters, config) to ``path`` atomically."""
        return modelfile.save(path, {
            "algo": self.algo,
            "config": self.config.to_dict(),
            "env": self.env_info.to_dict(),
            "policy": self.policy.state_dict(),
            "optimizer": self.algorithm.state_dict(),
            "counters": {"global_step": self.global_step, "updates": self.updates,
                         "episodes": self.episode_count},
            "schedule": None if self.schedule is None else dict(zip(("start_step", "steps"), self.schedule)),
            "rng": {**rng.capture(), "generator": self.generator.get_state()},
            "device": str(self.device),
            "recent_episodes": {"returns": list(self.recent_returns), "lengths": list(self.recent_lengths)},
            # the episodes a resume continues (see ppolab.snapshots); none once training is over
            "in_flight": (self.collector.in_flight() if self.schedule is not None and self.collector is not None
                          and self.config.checkpoint_episodes else None),
            "normalizers": {
                "observations": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
                "rewards": None if self.reward_scaler is None else self.reward_scaler.stats.state_dict(),
            },
        })

    @classmethod
    def load(cls, path: str | Path, env: EnvSource | None = None, device: str | None = None) -> Agent:
        """An agent from a model file or a run directory (its ``model.pt``, or its newest
        checkpoint if the run never finished). ``Agent.load``
        (and ``ppolab.load``) returns whichever algorithm the file holds; ``PPO.load`` insists
        on a PPO model.

        Without ``env`` the agent can ``predict``; with one it can also ``learn`` further.
        Files load on any device: ``device`` (auto, cpu, cuda, cuda:N, mps) overrides the one
        the model was trained with, and a device this machine lacks falls back to ``auto``.
        """
        path = model_path(path)
        data = modelfile.load(path)
        algo = data.get("algo")
        if cls is Agent:
            if algo not in Agent.registry:
                raise ModelFileError(f"{path} holds a '{algo}' model; this ppolab knows "
                                     f"{', '.join(Agent.registry)}")
            cls = Agent.registry[algo]
        elif algo != cls.algo:
            raise ModelFileError(f"{path} holds a '{algo}' model, not '{cls.algo}'")
        try:
            config = cls.config_class.from_dict(data["config"])
            info = EnvInfo.from_dict(data["env"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: malformed model file ({exc})") from None
        if device is not None:
            config = config.replace(device=device)
        else:
            try:
                devices.resolve_device(config.device, False)
            except ConfigError as exc:
                print(f"note: {exc}; loading {path.name} with device=auto", file=sys.stderr)
                config = config.replace(device="auto")
        agent = cls.__new__(cls)
        agent.config = config
        agent._setup(info)
        try:
            agent.policy.load_state_dict(_current_keys(data["policy"]))
            agent.algorithm.load_state_dict(data["optimizer"])
        except (KeyError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: weights do not fit the network ({exc})") from None
        counters = data.get("counters", {})
        agent.global_step = int(counters.get("global_step", 0))
        agent.updates = int(counters.get("updates", 0))
        agent.episode_count = int(counters.get("episodes", 0))
        schedule = data.get("schedule")
        try:
            agent.schedule = None if schedule is None else (int(schedule["start_step"]), int(schedule["steps"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: malformed training schedule ({exc})") from None
        agent._saved_rng = data.get("rng")
        agent._in_flight = data.get("in_flight")
        normalizers = data.get("normalizers", {})
        try:
            if agent.obs_normalizer is not None:
                agent.obs_normalizer.load_state_dict(normalizers["observations"])
            if agent.reward_scaler is not None:
                agent.reward_scaler.stats.load_state_dict(normalizers["rewards"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: normalizer statistics missing or malformed ({exc})") from None
        recent = data.get("recent_episodes", {})
        agent.recent_returns.extend(float(x) for x in recent.get("returns", []))
        agent.recent_lengths.extend(int(x) for x in recent.get("lengths", []))
        if env is not None:
            vec_env, new_info = make_vec_env(env, config.n_envs, config.vectorization,
                                             config.squash_actions, config.unsupported_observations)
            old = (config.n_envs, info.observation, info.action)
            new = (vec_env.num_envs, new_info.observation, new_info.action)
            if old != new:
                vec_env.close()
                raise ModelFileError(
                    f"{path} was trained with {old[0]} envs, observations {old[1].describe()} and actions "
                    f"{old[2].describe()}; this env has {new[0]} envs, observations {new[1].describe()} and "
                    f"actions {new[2].describe()}"
                )
            agent.env_info = new_info
            agent.generator.manual_seed(agent._reset_seed)
            try:
                agent._attach_env(vec_env)
            except PPOLabError:
                vec_env.close()
                raise
            if info.action_mask is not None and agent.env_info.action_mask is None:
                agent.close()
                raise ModelFileError(f"{path} was trained with action masks from "
                                     f"{masks.SOURCE_NAMES[info.action_mask]}; this env provides none")
        return agent

    def close(self) -> None:
        if self.vec_env is not None:
            self.vec_env.close()


def _current_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A policy's weights with the names of model files before 0.2 updated (the Gaussian's
    log-std moved into the policy head)."""
    if "log_std" in state:
        state = {("policy_head.log_std" if k == "log_std" else k): v for k, v in state.items()}
    return state


class PPO(Agent):
    """PPO (Schulman et al. 2017): clipped surrogate by default, or the adaptive KL penalty
    (``policy_objective``); see :mod:`ppolab.algos.ppo`."""

    algo = "ppo"
    config_class = PPOConfig
    update_class = PPOUpdate


class TRPO(Agent):
    """TRPO (Schulman et al. 2015): natural-gradient steps inside a KL trust region; see
    :mod:`ppolab.algos.trpo`."""

    algo = "trpo"
    config_class = TRPOConfig
    update_class = TRPOUpdate


class A2C(Agent):
    """A2C (Mnih et al. 2016, synchronous): one actor-critic gradient step per short rollout;
    see :mod:`ppolab.algos.a2c`."""

    algo = "a2c"
    config_class = A2CConfig
    update_class = A2CUpdate


class VPG(Agent):
    """Vanilla policy gradient (REINFORCE with a learned baseline); see :mod:`ppolab.algos.vpg`."""

    algo = "vpg"
    config_class = VPGConfig
    update_class = VPGUpdate
