"""Advantage estimation over time-major ``[T, N]`` rollouts.

Estimators (all return A_hat_t = (a return estimate for step t) - V(s_t), shape ``[T, N]``):

* :func:`gae` -- generalized advantage estimation, an exponentially (lambda-) weighted mix of
  every n-step estimate (the default);
* :func:`td0_advantages` -- the one-step TD error, GAE with lambda = 0;
* :func:`n_step_advantages` -- n rewards, then bootstrap with V (a truncated sum);
* :func:`monte_carlo_advantages` -- the discounted return to the episode end, GAE with
  lambda = 1;
* :func:`estimate_advantages` dispatches on a name from :data:`ESTIMATORS`.

Episode boundaries follow Gymnasium's two kinds of episode end:

* **terminated** (a terminal state, e.g. the pole fell): the future is worth nothing, so the TD
  target is ``r_t`` alone;
* **truncated** (a time limit): the episode was cut, not finished, so the TD target still
  bootstraps with ``V(s_{t+1})``, the value of the final observation.

Both stop every estimator: nothing after the episode end flows back into it. The rollout's
last step is cut the same way as a truncation and bootstraps with ``next_values[T - 1]`` =
V(s_T).
"""

from __future__ import annotations

import torch

ESTIMATORS = ("gae", "td0", "nstep", "mc")


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


def n_step_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    n: int,
) -> torch.Tensor:
    """n-step advantages, shape ``[T, N]`` (arguments as in :func:`gae`):

        A_hat_t = sum_{k=0}^{m-1} gamma^k r_{t+k}
                  + gamma^m * (1 - terminated_{t+m-1}) * next_values[t+m-1] - V(s_t)

    with m = min(n, T - t, steps up to and including the first episode end at or after t): the
    window stops at an episode end (a termination adds no bootstrap, a truncation bootstraps
    with V(final observation)) and at the rollout's last step (bootstraps with V(s_T)).

    It is GAE's sum of TD errors cut after n terms instead of weighted by lambda^k: n = 1 is
    :func:`td0_advantages` (GAE with lambda = 0), n >= T is :func:`monte_carlo_advantages`
    (GAE with lambda = 1). Larger n leans less on the (biased) critic but sums more random
    rewards: less bias, more variance.
    """
    if n < 1:
        raise ValueError(f"n-step advantages need n >= 1, got n={n}")
    T = rewards.shape[0]
    dtype = values.dtype
    # gamma * V(s_{t+1}) when step t is where a window stops (0 after a termination)
    bootstrap = gamma * (1.0 - terminated.to(dtype)) * next_values
    # a window that reaches step t stops there at an episode end or at the rollout's last step
    stops = episode_end.to(dtype=dtype, copy=True)
    if T:
        stops[-1] = 1.0
    returns = torch.zeros_like(values)
    alive = torch.ones_like(values)  # alive[t]: the window from t has not stopped before t + k
    # step k adds step t + k's terms to every window t that reaches it: row t of x[k:] is x[t + k]
    for k in range(min(n, T)):
        rows = T - k
        live = alive[:rows]
        stop = torch.ones_like(live) if k == n - 1 else stops[k:]
        returns[:rows] += gamma**k * live * (rewards[k:] + stop * bootstrap[k:])
        alive[:rows] = live * (1.0 - stop)
    return returns - values


def td0_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """One-step TD errors as advantages, shape ``[T, N]`` (arguments as in :func:`gae`):

        A_hat_t = delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)

    :func:`n_step_advantages` with n = 1, and GAE with lambda = 0. The lowest-variance
    estimate (one random reward) and the most biased one (everything else is the critic's guess).
    """
    return n_step_advantages(rewards, values, next_values, terminated, episode_end, gamma, 1)


def monte_carlo_advantages(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Monte-Carlo advantages, shape ``[T, N]`` (arguments as in :func:`gae`):

        A_hat_t = sum_{k=0}^{e-t} gamma^k r_{t+k}
                  + gamma^{e-t+1} * (1 - terminated_e) * next_values[e] - V(s_t)

    where e is the first episode end at or after t, or T - 1 when the episode outlives the
    rollout. The return is the true discounted return when the episode terminated inside the
    rollout; after a truncation, or at the rollout's end, a fixed-length rollout has no more
    rewards, so it bootstraps once with V(final observation) / V(s_T).

    :func:`n_step_advantages` with n >= T, and GAE with lambda = 1. Unbiased by the critic
    wherever the episode terminated in the rollout, but the highest variance: it sums every
    random reward to the episode end.
    """
    n = max(rewards.shape[0], 1)
    return n_step_advantages(rewards, values, next_values, terminated, episode_end, gamma, n)


def estimate_advantages(
    estimator: str,
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    n_step: int,
) -> torch.Tensor:
    """Advantages by the estimator named ``estimator`` (one of :data:`ESTIMATORS`):
    ``gae`` (uses ``gae_lambda``), ``td0``, ``nstep`` (uses ``n_step``) or ``mc``; the
    estimator that does not need ``gae_lambda`` / ``n_step`` ignores it."""
    args = (rewards, values, next_values, terminated, episode_end, gamma)
    if estimator == "gae":
        return gae(*args, gae_lambda)
    if estimator == "td0":
        return td0_advantages(*args)
    if estimator == "nstep":
        return n_step_advantages(*args, n_step)
    if estimator == "mc":
        return monte_carlo_advantages(*args)
    raise ValueError(
        f"unknown advantage estimator {estimator!r}: expected one of {' | '.join(ESTIMATORS)}"
    )


def value_targets(advantages: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The return estimates R_t = A_hat_t + V(s_t) that the critic regresses on (the
    lambda-returns for GAE)."""
    return advantages + values
