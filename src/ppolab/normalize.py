"""Running normalization of observations and rewards (Huang et al. 2022, continuous-control
details 4-7), kept with the model so that evaluation sees what training saw.

* Observations: o' = clip((o - mu) / sqrt(sigma^2 + eps), -c, c), with mu and sigma^2 the running
  mean and variance of every observation seen in training (frozen at evaluation).
* Rewards: r' = clip(r / sqrt(Var[G] + eps), -c, c), where G_t = gamma * G_{t-1} + r_t is the
  running discounted return, reset at episode ends (the PPO reference implementation's scaling:
  rewards are divided by a standard deviation, never shifted, so their sign is kept).
"""

from __future__ import annotations

import numpy as np

from ppolab.observations import Observation, ObservationSpec

EPS = 1e-8


class RunningMeanStd:
    """Mean and variance of a stream of arrays of shape ``[B, *shape]``, merged batch by batch
    with the parallel algorithm of Chan et al. (1979): exact, whatever the batch sizes."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0.0

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = batch.mean(axis=0), batch.var(axis=0)
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, float(n)
            return
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.var, self.count = m2 / total, total

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.var = np.asarray(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class ObservationNormalizer:
    """Normalizes the vector leaves of observations (see :mod:`ppolab.observations`), each with
    its own running statistics; images, one-hot and binary leaves pass through unchanged."""

    def __init__(self, spec: ObservationSpec | tuple[int, ...], clip: float) -> None:
        if isinstance(spec, tuple):
            spec = ObservationSpec.vector(spec)
        self.structured, self.clip = spec.structured, clip
        self.by_key = {leaf.key: RunningMeanStd(leaf.shape) for leaf in spec.leaves if leaf.kind == "vector"}

    @staticmethod
    def applies(spec: ObservationSpec) -> bool:
        """Whether ``spec`` has anything to normalize."""
        return any(leaf.kind == "vector" for leaf in spec.leaves)

    @property
    def stats(self) -> RunningMeanStd:
        """The statistics of a single-leaf observation."""
        return self.by_key[""]

    def __call__(self, obs: Observation, update: bool) -> Observation:
        """Normalized ``[B, ...]`` observations (vector leaves float32); ``update`` adds them to
        the statistics first."""
        if not self.structured:
            return self._normalize(self.stats, obs, update)
        return {k: self._normalize(self.by_key[k], v, update) if k in self.by_key else v for k, v in obs.items()}

    def _normalize(self, stats: RunningMeanStd, obs: np.ndarray, update: bool) -> np.ndarray:
        if update:
            stats.update(obs)
        scaled = (obs - stats.mean) / np.sqrt(stats.var + EPS)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        if not self.structured:
            return self.stats.state_dict()
        return {k: s.state_dict() for k, s in self.by_key.items()}

    def load_state_dict(self, state: dict) -> None:
        if not self.structured:
            self.stats.load_state_dict(state)
            return
        for k, s in self.by_key.items():
            s.load_state_dict(state[k])


class RewardScaler:
    def __init__(self, n_envs: int, gamma: float, clip: float) -> None:
        self.stats, self.gamma, self.clip = RunningMeanStd(), gamma, clip
        self.returns = np.zeros(n_envs)

    def __call__(self, reward: np.ndarray, valid: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
        """Scaled rewards for one vector step. Autoreset steps (``valid`` False) neither update
        the running return nor the statistics; an episode end resets that env's return."""
        self.returns = np.where(valid, self.returns * self.gamma + reward, self.returns)
        self.stats.update(self.returns[valid])
        self.returns[episode_end] = 0.0
        return np.clip(reward / np.sqrt(self.stats.var + EPS), -self.clip, self.clip)
