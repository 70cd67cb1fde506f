"""Collecting time-major ``[T, N]`` rollouts from a next-step-autoreset vector env.

Gymnasium 1.x vector envs reset a finished sub-env on the *next* call to ``step``: the step
that returned ``terminated | truncated`` also returned the episode's final observation, and the
following step ignores its action and returns the reset observation with reward 0. So:

* that following step is not a transition of any episode: ``valid`` marks it False and it is
  never trained on;
* the final observation is the observation the policy is evaluated on at that step, so
  ``values[t]`` there is V(final observation), exactly what a truncated episode bootstraps with;
* the env is never reset between rollouts: an episode that crosses a rollout boundary is
  continued, and the boundary is bootstrapped with ``last_values`` = V(s_T).

Observations are stored as the env gives them, per leaf (:mod:`ppolab.observations`): images
stay uint8, Dict observations are ``{key: tensor}``. Storage lives on the CPU; the policy acts on
``policy.device`` (one small copy per step), and the update gets the batch moved there once.

The collector also refuses a misbehaving env (:class:`~ppolab.errors.EnvironmentFaultError`):
an exception in ``step``/``reset``, a NaN/inf observation or reward, or observations of the
wrong shape. A fault leaves the learning state (normalizer statistics, the sampling generator)
as it was at the start of the rollout, so a model saved after it is the last good one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ppolab import atari, masks, snapshots
from ppolab.envs import EnvInfo
from ppolab.errors import EnvironmentFaultError, PPOLabError
from ppolab.normalize import ObservationNormalizer, RewardScaler
from ppolab.observations import Observation, ObservationSpec, tree_map
from ppolab.policies import ActorCritic


@dataclass
class Rollout:
    """T steps of N envs. Every tensor is ``[T, N, ...]`` except ``last_values`` (``[N]``)."""

    observations: Observation  # s_t: a tensor, or {key: tensor} (Dict/Tuple spaces)
    actions: torch.Tensor  # a_t as stored (see ppolab.action_spaces): [T, N, *action_shape]
    log_probs: torch.Tensor  # log pi_old(a_t|s_t)
    values: torch.Tensor  # V(s_t)
    rewards: torch.Tensor  # r_t (scaled when normalize_rewards is on)
    terminated: torch.Tensor  # s_{t+1} is terminal
    truncated: torch.Tensor  # the episode was cut after this step (time limit)
    valid: torch.Tensor  # False on autoreset steps (not transitions)
    last_values: torch.Tensor  # V(s_T), to bootstrap the last step
    masks: torch.Tensor | None = None  # [T, N, A] bool: the valid actions at s_t (see ppolab.masks)
    # Recurrent policies: the state entering step t (before the zeroing at an episode's first
    # step), [T, N, S], and which steps are the first of an episode, [T, N].
    states: torch.Tensor | None = None
    starts: torch.Tensor | None = None

    @property
    def episode_end(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def next_values(self) -> torch.Tensor:
        """V(s_{t+1}) for every t: the next row of ``values``, then ``last_values``."""
        return torch.cat([self.values[1:], self.last_values.unsqueeze(0)])


@dataclass
class Episode:
    """A finished episode: undiscounted return, length, and the global step it ended at."""

    ret: float
    length: int
    end_step: int


def _passes_through(exc: Exception) -> bool:
    """ppolab's own errors out of an env keep their type, except faults (see :func:`_fault`)."""
    return isinstance(exc, PPOLabError) and not isinstance(exc, EnvironmentFaultError)


def _fault(exc: Exception, method: str, when: str) -> EnvironmentFaultError:
    """The error for an exception out of the vector env's ``method``: a sub-env's fault from
    :class:`~ppolab.envs.FaultGuard` (which names the env) gets ``when`` appended; any other
    exception is the vector env's as a whole."""
    if isinstance(exc, EnvironmentFaultError):
        return EnvironmentFaultError(f"{exc} {when}")
    return EnvironmentFaultError(f"the vector env raised {type(exc).__name__}: {exc} in {method} {when}")


def allocate(spec: ObservationSpec, *lead: int) -> Observation:
    """Zeroed storage ``[*lead, *leaf shape]`` per leaf, each in the leaf's stored dtype."""
    def leaf_storage(leaf: Any) -> torch.Tensor:
        return torch.zeros(*lead, *leaf.shape, dtype=getattr(torch, leaf.dtype))

    if not spec.structured:
        return leaf_storage(spec.single)
    return {leaf.key: leaf_storage(leaf) for leaf in spec.leaves}


def _non_finite(values: np.ndarray, what: str, when: str) -> EnvironmentFaultError:
    """The error naming the first env (row of ``values``) with a NaN/inf entry, and its value."""
    rows = values.reshape(values.shape[0], -1)
    bad_envs = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    env = int(bad_envs[0])
    column = int(np.flatnonzero(~np.isfinite(rows[env]))[0])
    if values.ndim == 1:
        entry = what
    else:
        position = np.unravel_index(column, values.shape[1:])
        entry = f"{what}[{', '.join(str(int(k)) for k in position)}]"
    several = f" ({len(bad_envs)} of {len(rows)} envs did)" if len(bad_envs) > 1 else ""
    return EnvironmentFaultError(
        f"env {env} returned a non-finite {what} {when}: {entry} = {float(rows[env, column])}{several}"
    )


class Collector:
    """Steps a vector env with the current policy and fills preallocated rollout tensors."""

    def __init__(
        self, env: gym.vector.VectorEnv, info: EnvInfo, policy: ActorCritic, n_steps: int,
        seed: int, generator: torch.Generator,
        obs_normalizer: ObservationNormalizer | None = None, reward_scaler: RewardScaler | None = None,
        action_masks: str = "off",
    ) -> None:
        self.env, self.info, self.policy, self.generator = env, info, policy, generator
        self.mask_setting, self.mask_size = action_masks, masks.mask_size(info.action)
        self.mask_source: str | None = None  # "info" or "method" once reset() has looked
        self.env_problem: str | None = None  # why the envs cannot be saved, once known
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.n_envs, self.n_steps = env.num_envs, n_steps
        T, N = n_steps, self.n_envs
        self.spec = info.observation
        self.device = policy.device
        self.rollout = Rollout(
            observations=allocate(self.spec, T, N),
            actions=torch.zeros(T, N, *info.action.shape, dtype=info.action.dtype),
            log_probs=torch.zeros(T, N),
            values=torch.zeros(T, N),
            rewards=torch.zeros(T, N),
            terminated=torch.zeros(T, N, dtype=torch.bool),
            truncated=torch.zeros(T, N, dtype=torch.bool),
            valid=torch.zeros(T, N, dtype=torch.bool),
            last_values=torch.zeros(N),
        )
        if policy.recurrent:
            self.rollout.states = torch.zeros(T, N, policy.state_size)
            self.rollout.starts = torch.zeros(T, N, dtype=torch.bool)
        self.reset(seed)

    def reset(self, seed: int | None) -> None:
        """Start fresh episodes in every env (only at construction and on resume). A fault is
        reported like in :meth:`collect`, "at the start of training" in place of the step."""
        when = "at the start of training"
        try:
            obs, infos = self.env.reset(seed=seed)
        except Exception as exc:
            if _passes_through(exc):
                raise
            raise _fault(exc, "reset()", when) from exc
        self.obs = self._observe(self._checked(obs, when))
        self.mask_source = masks.choose_source(
            self.mask_setting, masks.INFO_KEY in infos, self.info.has_mask_method, self.info.action,
            self.info.env_id)
        self.mask = self._masks(infos, np.ones(self.n_envs, dtype=bool), when)
        if self.mask is not None and self.rollout.masks is None:
            self.rollout.masks = torch.ones(self.n_steps, self.n_envs, self.mask_size, dtype=torch.bool)
        self.autoreset_next = np.zeros(self.n_envs, dtype=bool)  # last step ended an episode
        # Recurrent policies: each env's state, and whether its next step starts an episode.
        self.state = self.policy.initial_state(self.n_envs) if self.policy.recurrent else None
        self.episode_start = np.ones(self.n_envs, dtype=bool)
        self.episode_return = np.zeros(self.n_envs)
        self.episode_length = np.zeros(self.n_envs, dtype=np.int64)
        self.between_rollouts = True  # False during a rollout, and after one that failed

    def in_flight(self) -> dict[str, Any] | None:
        """The episodes in progress, as plain tensors for a checkpoint: the envs (see
        :mod:`ppolab.snapshots`) and what this collector holds of the same episodes; or only
        why the envs cannot be saved. None in the middle of a rollout (after a fault, the envs
        are not where the learning state was put back to)."""
        if not self.between_rollouts:
            return None
        envs = {"problem": self.env_problem} if self.env_problem else snapshots.capture(self.env)
        if "problem" in envs:
            self.env_problem = envs["problem"]  # it will not go away: stop asking
            return {"envs": envs}
        return {
            "envs": envs,
            "observations": tree_map(_to_tensor, self.obs),
            "masks": None if self.mask is None else _to_tensor(self.mask),
            "autoreset_next": _to_tensor(self.autoreset_next),
            "episode_start": _to_tensor(self.episode_start),
            "state": None if self.state is None else self.state.cpu().clone(),
            "episode_return": _to_tensor(self.episode_return),
            "episode_length": _to_tensor(self.episode_length),
            # the statistics as these episodes left them (loading a checkpoint adds new episodes' first
            # observations to them, which continued episodes never saw)
            **self._statistics(),
        }

    def continue_in_flight(self, saved: dict[str, Any], seed: int | None) -> str | None:
        """Go on with the episodes :meth:`in_flight` saved, in place of the new ones: None, or
        why that cannot be done (then every env starts a new episode, from ``reset(seed)``).
        ``self.env`` may become a new vector env object."""
        problem = saved["envs"].get("problem")
        if problem is None:
            self.env, problem = snapshots.restore(self.env, saved["envs"], saved["autoreset_next"].numpy())
        if problem is not None:
            self.reset(seed)  # some sub-envs may have been replaced before one failed
            return problem
        self.obs = tree_map(_to_array, saved["observations"])
        self.mask = None if saved["masks"] is None else _to_array(saved["masks"])
        self.autoreset_next = _to_array(saved["autoreset_next"])
        self.episode_start = _to_array(saved["episode_start"])
        if saved["state"] is not None:
            self.state = saved["state"].to(self.device)
        self.episode_return = _to_array(saved["episode_return"])
        self.episode_length = _to_array(saved["episode_length"])
        self._load_statistics(saved)
        return None

    def collect(self, global_step: int) -> tuple[Rollout, list[Episode]]:
        """Run T steps in each of the N envs. ``global_step`` is the step count before the
        rollout; returns the rollout and the episodes that ended during it, in order.

        Raises :class:`~ppolab.errors.EnvironmentFaultError` when the env raises or returns a
        NaN/inf observation or reward or observations of the wrong shape. The message names the
        env index (the first one, and how many did), the step and the value; the step of vector
        step t is ``global_step + t * N``, the env steps taken before it. On any exception the
        normalizer statistics and the generator are put back as they were before the rollout.
        """
        saved = self.begin()
        try:
            collected = self._collect(global_step)
        except BaseException:
            self.abort(saved)
            raise
        self.between_rollouts = True
        return collected

    @torch.no_grad()
    def _collect(self, global_step: int) -> tuple[Rollout, list[Episode]]:
        policy, device = self.policy, self.device
        episodes: list[Episode] = []
        for t in range(self.n_steps):
            obs, mask = self.observe(t)
            if self.state is None:
                dist, value = policy(obs, mask)
            else:
                self.rollout.states[t] = self.state
                self.rollout.starts[t] = starts = torch.from_numpy(self.episode_start)
                dist, value, self.state = policy.step(obs, self.state, starts.to(device), mask)
            episodes += self.act(t, dist, value, global_step)
        last = self.last_observation()
        if self.state is None:
            self.rollout.last_values.copy_(policy.value(last))
        else:  # V(s_T) with the state its episode has (zero if s_T starts one)
            starts = torch.from_numpy(self.episode_start).to(device)
            self.rollout.last_values.copy_(policy.step(last, self.state, starts)[1])
        return self.rollout, episodes

    # --- one rollout in steps, for whoever evaluates the policy (collect(), or a population's
    # batched network, see ppolab.population): begin, then observe and act T times, then
    # last_observation for V(s_T); abort(begin's value) puts the learning state back on failure.

    def begin(self) -> tuple:
        """Start a rollout; returns what :meth:`abort` needs."""
        self.between_rollouts = False
        return self._learning_state()

    def abort(self, saved: tuple) -> None:
        """After a failed rollout: the generator and statistics as they were at :meth:`begin`."""
        self._restore(saved)

    def observe(self, t: int) -> tuple[Observation, torch.Tensor | None]:
        """Store the current observations (and masks) as step ``t``'s and return them on the
        policy's device."""
        r, device, on_cpu = self.rollout, self.device, self.device.type == "cpu"
        if self.spec.structured:
            obs = {k: torch.from_numpy(v) for k, v in self.obs.items()}
            for k, v in obs.items():
                r.observations[k][t] = v
        else:
            obs = torch.from_numpy(self.obs)
            r.observations[t] = obs
        if not on_cpu:
            obs = tree_map(lambda x: x.to(device, non_blocking=True), obs)
        mask = None
        if self.mask is not None:
            mask = torch.from_numpy(self.mask)
            r.masks[t] = mask
            mask = mask if on_cpu else mask.to(device, non_blocking=True)
        return obs, mask

    def act(self, t: int, dist: Any, value: torch.Tensor, global_step: int) -> list[Episode]:
        """Sample step ``t``'s actions from ``dist`` (pi at :meth:`observe`'s observations) with
        this collector's generator, store them with ``value``, and :meth:`step`."""
        r = self.rollout
        action = dist.sample(self.generator)
        r.actions[t] = action
        r.log_probs[t] = dist.log_prob(action)
        r.values[t] = value
        return self.step(t, global_step)

    def step(self, t: int, global_step: int) -> list[Episode]:
        """Step the envs with the actions stored as step ``t``'s; returns the episodes that
        ended. (A population stores every agent's actions at once, then steps each collector.)"""
        r, action_spec, scores_from_info = self.rollout, self.info.action, self.info.scores_from_info
        episodes: list[Episode] = []
        valid = ~self.autoreset_next
        r.valid[t] = torch.from_numpy(valid)

        try:
            next_obs, reward, terminated, truncated, infos = self.env.step(action_spec.to_env(r.actions[t].numpy()))
        except Exception as exc:
            if _passes_through(exc):
                raise
            raise _fault(exc, "step()", f"at step {global_step + t * self.n_envs:,}") from exc
        next_obs = self._checked(next_obs, global_step + t * self.n_envs)
        reward = np.asarray(reward, dtype=np.float64)
        if not np.isfinite(reward).all():
            raise _non_finite(reward, "reward", f"at step {global_step + t * self.n_envs:,}")
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        scaled = reward if self.reward_scaler is None else self.reward_scaler(
            reward, valid, terminated | truncated)
        r.rewards[t] = torch.from_numpy(scaled)
        r.terminated[t] = torch.from_numpy(terminated)
        r.truncated[t] = torch.from_numpy(truncated)

        step = global_step + (t + 1) * self.n_envs
        if scores_from_info:
            episodes += _scored_episodes(infos, step)
        else:
            self.episode_return += reward * valid
            self.episode_length += valid
            ended = (terminated | truncated) & valid
            if ended.any():
                for i in np.flatnonzero(ended):
                    episodes.append(Episode(float(self.episode_return[i]), int(self.episode_length[i]), step))
                self.episode_return[ended] = 0.0
                self.episode_length[ended] = 0
        self.episode_start = ~valid  # an autoreset step: the next observation starts an episode
        self.autoreset_next = terminated | truncated
        self.obs = self._observe(next_obs)
        if self.mask is not None:
            self.mask = self._masks(infos, ~self.autoreset_next, f"at step {global_step + t * self.n_envs:,}")
        return episodes

    def last_observation(self) -> Observation:
        """s_T, after the last step, on the policy's device (for V(s_T))."""
        return tree_map(lambda x: torch.from_numpy(x).to(self.device), self.obs)

    def _masks(self, infos: dict, needed: np.ndarray, when: str) -> np.ndarray | None:
        """The action masks ``[N, A]`` of the current states (None without masking); ``needed``
        says which envs act next (the others are at an autoreset step)."""
        if self.mask_source is None:
            return None
        return masks.read_vector(self.mask_source, self.env, infos, self.info.action, needed, when)

    def _checked(self, obs: Any, when: int | str) -> Any:
        """``obs``, or an :class:`EnvironmentFaultError` for a wrong structure, shape or dtype,
        or NaN/inf; ``when`` is the global step or a phrase."""
        problem = self.spec.problem(obs, batch=self.n_envs)
        if problem is None:
            return obs
        when = when if isinstance(when, str) else f"at step {when:,}"
        if problem.kind == "non-finite":
            several = f" ({problem.bad_rows} of {self.n_envs} envs did)" if problem.bad_rows > 1 else ""
            raise EnvironmentFaultError(f"env {problem.env} returned a non-finite observation {when}: "
                                        f"{problem.entry}{several}")
        hint = " ([n_envs, *observation shape])" if problem.kind == "shape" else ""
        raise EnvironmentFaultError(f"the vector env returned observations {problem.detail}{hint} {when}")

    def _statistics(self) -> dict[str, Any]:
        """The normalizers' running statistics and the reward scaler's running returns (a copy)."""
        scaler = self.reward_scaler
        return {
            "observation_statistics": None if self.obs_normalizer is None else self.obs_normalizer.state_dict(),
            "reward_statistics": None if scaler is None else scaler.stats.state_dict(),
            "reward_returns": None if scaler is None else _to_tensor(scaler.returns),
        }

    def _load_statistics(self, saved: dict[str, Any]) -> None:
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(saved["observation_statistics"])
        if self.reward_scaler is not None:
            self.reward_scaler.stats.load_state_dict(saved["reward_statistics"])
            self.reward_scaler.returns = _to_array(saved["reward_returns"])

    def _learning_state(self) -> tuple:
        """What a rollout changes besides the env: the generator and the statistics."""
        return self.generator.get_state(), self._statistics()

    def _restore(self, saved: tuple) -> None:
        generator_state, statistics = saved
        self.generator.set_state(generator_state)
        self._load_statistics(statistics)

    def _observe(self, obs: Any) -> Observation:
        """Raw env observations as stored and seen by the policy (vector leaves normalized,
        statistics updated, if on)."""
        stored = self.spec.storage(obs)
        if self.obs_normalizer is None:
            return stored
        return self.obs_normalizer(stored, update=True)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array))  # a copy: the collector goes on changing its arrays


def _to_array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy().copy()


def _scored_episodes(infos: dict, step: int) -> list[Episode]:
    """The episodes an env reported through ``info`` (see :mod:`ppolab.atari`): whole games,
    their unclipped scores and lengths, in env order."""
    ended = infos.get("_" + atari.SCORE_KEY)
    if ended is None or not ended.any():
        return []
    scores, lengths = infos[atari.SCORE_KEY], infos[atari.LENGTH_KEY]
    return [Episode(float(scores[i]), int(lengths[i]), step) for i in np.flatnonzero(ended)]
