"""The categorical policy distribution pi_theta(a|s) as pure functions of logits.

Plain functions instead of ``torch.distributions.Categorical``: the same math without the
argument validation and object construction that cost more than the network itself at the
batch sizes of vector-observation tasks.
"""

from __future__ import annotations

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
