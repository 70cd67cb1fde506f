"""The PPO objective and its diagnostics as pure functions of tensors.

Notation follows the chapter: r_t(theta) = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t),
A_hat_t the advantage estimate, epsilon the clip range. Losses are to be *minimized*.

Every expectation E[.] is taken by ``mean``: ``torch.mean`` over a minibatch by default, or a
:class:`MaskedMean`, which gives one value per row of ``[P, L]`` inputs over the valid entries
only (a population's padded minibatches, :mod:`ppolab.population`). The coefficients (``clip_coef``)
may then be ``[P, 1]`` tensors, one per row.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Mean = Callable[[torch.Tensor], torch.Tensor]


class MaskedMean:
    """E[x] per row of ``[P, L]`` tensors over the entries where ``valid`` (``[P, L]`` bool) is
    True: sum(x * valid) / sum(valid), ``[P]``. Padding must hold finite values."""

    def __init__(self, valid: torch.Tensor) -> None:
        self.weights = valid.to(torch.float32)
        self.count = self.weights.sum(-1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weights).sum(-1) / self.count


def clipped_surrogate(
    log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor,
    clip_coef: float | torch.Tensor, mean: Mean = torch.mean,
) -> torch.Tensor:
    """-L^CLIP(theta) = -E[min(r_t A_hat_t, clip(r_t, 1 - eps, 1 + eps) A_hat_t)].

    Inside [1 - eps, 1 + eps] this is the plain importance-sampled surrogate -E[r_t A_hat_t].
    Outside it, on the side where moving further would help (r_t > 1 + eps with A_hat_t > 0,
    r_t < 1 - eps with A_hat_t < 0) the term is constant and its gradient is zero.
    """
    ratio = torch.exp(log_prob_new - log_prob_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef) * advantages
    return -mean(torch.minimum(unclipped, clipped))


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-E[log pi_theta(a_t|s_t) A_hat_t]: its gradient is the policy-gradient estimate
    -E[grad log pi_theta(a_t|s_t) A_hat_t] (REINFORCE with a baseline, A2C). Only the gradient
    means anything; the value is not an objective's."""
    return -(log_prob * advantages).mean()


def surrogate(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-L^CPI(theta) = -E[r_t A_hat_t]: the importance-sampled surrogate of conservative policy
    iteration, with no clipping (PPO's "no clipping or penalty" ablation; TRPO maximizes it under
    a KL constraint; at theta = theta_old its gradient is the policy gradient)."""
    return -(torch.exp(log_prob_new - log_prob_old) * advantages).mean()


def kl_penalized_surrogate(
    log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, advantages: torch.Tensor,
    kl: torch.Tensor, beta: float,
) -> torch.Tensor:
    """-L^KLPEN(theta) = -E[r_t A_hat_t - beta KL[pi_old(.|s_t), pi_theta(.|s_t)]] (PPO paper,
    section 4), with ``kl`` the exact per-state KL."""
    return surrogate(log_prob_new, log_prob_old, advantages) + beta * kl.mean()


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """The PPO paper's adaptive penalty: after an update with mean KL d, halve beta if
    d < d_targ / 1.5 (the policy barely moved), double it if d > 1.5 d_targ, else keep it."""
    if kl < kl_target / 1.5:
        return beta / 2.0
    if kl > kl_target * 1.5:
        return beta * 2.0
    return beta


def value_loss(
    values_new: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor,
    clip_coef: float | torch.Tensor | None, mean: Mean = torch.mean,
) -> torch.Tensor:
    """0.5 * E[(V(s_t) - R_t)^2], or with ``clip_coef`` the pessimistic clipped form of the PPO
    reference implementation: 0.5 * E[max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)]."""
    squared = (values_new - returns) ** 2
    if clip_coef is None:
        return 0.5 * mean(squared)
    clipped = values_old + torch.clamp(values_new - values_old, -clip_coef, clip_coef)
    return 0.5 * mean(torch.maximum(squared, (clipped - returns) ** 2))


def approx_kl(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor,
              mean: Mean = torch.mean) -> tuple[torch.Tensor, torch.Tensor]:
    """Two sample estimates of D_KL(pi_old || pi_new) from actions drawn by pi_old.

    Returns ``(k1, k3)`` with log r = log pi_new - log pi_old:
    k1 = E[-log r] (unbiased, high variance, can be negative);
    k3 = E[(r - 1) - log r] (unbiased and always >= 0; Schulman 2020, "Approximating KL").
    """
    log_ratio = log_prob_new - log_prob_old
    k1 = mean(-log_ratio)
    k3 = mean(torch.expm1(log_ratio) - log_ratio)
    return k1, k3


def clip_fraction(log_prob_new: torch.Tensor, log_prob_old: torch.Tensor, clip_coef: float | torch.Tensor,
                  mean: Mean = torch.mean) -> torch.Tensor:
    """Fraction of samples whose ratio r_t lies outside [1 - eps, 1 + eps]."""
    ratio = torch.exp(log_prob_new - log_prob_old)
    return mean(((ratio - 1.0).abs() > clip_coef).float())


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mean: Mean | None = None) -> torch.Tensor:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect critic, 0 no better than a
    constant, negative worse than one. NaN when the targets have no variance."""
    if mean is None:
        var_target = target.var(unbiased=False)
        return 1.0 - (target - predicted).var(unbiased=False) / var_target

    def variance(x: torch.Tensor) -> torch.Tensor:
        return mean((x - mean(x).unsqueeze(-1)) ** 2)

    return 1.0 - variance(target - predicted) / variance(target)
