"""Advantage estimation over time-major ``[T, N]`` rollouts.

Episode boundaries follow Gymnasium's two kinds of episode end:

* **terminated** (a terminal state, e.g. the pole fell): the future is worth nothing, so the TD
  target is ``r_t`` alone;
* **truncated** (a time limit): the episode was cut, not finished, so the TD target still
  bootstraps with ``V(s_{t+1})``, the value of the final observation.

Both stop the advantage recursion: nothing after the episode end flows back into it.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized advantage estimates A_hat_t (Schulman et al. 2016), shape ``[T, N]``.

        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_hat_t = delta_t + gamma * lambda * (1 - episode_end_t) * A_hat_{t+1}

    ``next_values[t]`` is V(s_{t+1}) for the observation that step t returned (the final
    observation when the episode ended there); ``episode_end = terminated | truncated``.
    lambda = 0 gives one-step TD advantages, lambda = 1 Monte-Carlo returns minus V(s_t).
    The value targets are ``A_hat_t + V(s_t)`` (:func:`value_targets`).
    """
    continues = 1.0 - terminated.to(values.dtype)
    deltas = rewards + gamma * continues * next_values - values
    carry = gamma * lam * (1.0 - episode_end.to(values.dtype))
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + carry[t] * running
        advantages[t] = running
    return advantages


def value_targets(advantages: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The lambda-returns R_t = A_hat_t + V(s_t) that the critic regresses on."""
    return advantages + values
