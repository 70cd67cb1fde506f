"""Policy distributions pi_theta(a|s) as pure functions of the network outputs: categorical
(Discrete), diagonal Gaussian and tanh-squashed Gaussian (Box), independent categoricals
(MultiDiscrete).

Plain functions instead of ``torch.distributions.Categorical``: the same math without the
argument validation and object construction that cost more than the network itself at the
batch sizes of vector-observation tasks.
"""

from __future__ import annotations

import math

import torch


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) for every action a: ``logits - logsumexp(logits)``, shape ``[..., A]``."""
    return torch.log_softmax(logits, dim=-1)


def log_prob(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a_t|s_t) of the taken actions (integers ``[...]``) from ``[..., A]`` log-probs."""
    return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H[pi(.|s)] = -sum_a pi(a|s) log pi(a|s), shape ``[...]``."""
    return -(log_probs.exp() * log_probs).sum(-1)


def sample(log_probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One action per row, drawn from pi(.|s) with the Gumbel-max trick (exact, and seeded by
    ``generator``): argmax_a (log pi(a|s) + G_a) with G_a ~ Gumbel(0, 1)."""
    u = torch.rand(log_probs.shape, generator=generator, dtype=log_probs.dtype)
    gumbel = -torch.log(-torch.log(u.clamp_(min=torch.finfo(u.dtype).tiny)))
    return (log_probs + gumbel).argmax(-1)


def mode(log_probs: torch.Tensor) -> torch.Tensor:
    """The most likely action (deterministic evaluation)."""
    return log_probs.argmax(-1)


def kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Exact D_KL(p || q) = sum_a p(a) (log p(a) - log q(a)) between two categoricals."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


# --- diagonal Gaussian pi(a|s) = N(mu(s), diag(sigma^2)), for Box action spaces -----------------

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log N(a; mu, sigma^2) summed over action dimensions:
    sum_i [ -(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log sqrt(2 pi) ], shape ``[...]``."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H = sum_i [ log sigma_i + 0.5 log(2 pi e) ] (independent of the mean)."""
    return (log_std + _LOG_SQRT_2PI + 0.5).sum(-1)


def gaussian_kl(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor,
                log_std_q: torch.Tensor) -> torch.Tensor:
    """Exact D_KL(p || q) = sum_i [ log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2 ]."""
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mean_term = ((mean_p - mean_q) * torch.exp(-log_std_q)) ** 2
    return (log_std_q - log_std_p + 0.5 * (var_ratio + mean_term) - 0.5).sum(-1)


def gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """a = mu + sigma * eps with eps ~ N(0, I)."""
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + torch.exp(log_std) * eps


def tanh_log_det_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2) summed over dimensions, in the numerically
    stable form 2 (log 2 - u - softplus(-2u))."""
    return (2.0 * (math.log(2.0) - pre_tanh - torch.nn.functional.softplus(-2.0 * pre_tanh))).sum(-1)


def squashed_gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
    """log pi(a) of a = tanh(u), u ~ N(mu, sigma^2), by change of variables:
    log pi(a) = log N(u; mu, sigma^2) - log |d tanh(u)/du|. Takes the pre-squash sample u, which
    is what a rollout stores (inverting tanh near +-1 loses precision)."""
    return gaussian_log_prob(mean, log_std, pre_tanh) - tanh_log_det_jacobian(pre_tanh)


# --- MultiDiscrete: independent categoricals, one per component -------------------------------


def multi_log_softmax(logits: torch.Tensor, nvec: tuple[int, ...]) -> list[torch.Tensor]:
    """Split ``[..., sum(nvec)]`` logits into one log-softmax per component."""
    return [log_softmax(part) for part in logits.split(list(nvec), dim=-1)]


def multi_log_prob(log_probs: list[torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
    """log pi(a) = sum_k log pi_k(a_k) for integer actions ``[..., K]``."""
    return sum(log_prob(lp, actions[..., k]) for k, lp in enumerate(log_probs))


def multi_entropy(log_probs: list[torch.Tensor]) -> torch.Tensor:
    """H = sum_k H_k (the components are independent)."""
    return sum(entropy(lp) for lp in log_probs)


def multi_sample(log_probs: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """One action ``[..., K]``: each component sampled independently."""
    return torch.stack([sample(lp, generator) for lp in log_probs], dim=-1)
