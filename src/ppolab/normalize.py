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
    def __init__(self, shape: tuple[int, ...], clip: float) -> None:
        self.stats, self.clip = RunningMeanStd(shape), clip

    def __call__(self, obs: np.ndarray, update: bool) -> np.ndarray:
        """Normalized ``[B, *shape]`` observations (float32); ``update`` adds them to the stats first."""
        if update:
            self.stats.update(obs)
        scaled = (obs - self.stats.mean) / np.sqrt(self.stats.var + EPS)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)


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
