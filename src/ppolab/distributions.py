"""Policy distributions pi_theta(a|s) as pure functions of the network outputs: categorical
(Discrete), diagonal Gaussian and tanh-squashed Gaussian (Box), independent categoricals
(MultiDiscrete).

Plain functions instead of ``torch.distributions.Categorical``: the same math without the
argument validation and object construction that cost more than the network itself at the
batch sizes of vector-observation tasks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ppolab.action_spaces import ActionSpec


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


LOG_STD_BOUNDS = (-20.0, 20.0)  # as config.log_std_init's bounds


def bounded_log_std(log_std: torch.Tensor) -> torch.Tensor:
    """The learned log-std clamped to ``LOG_STD_BOUNDS``: sigma^2 = exp(2 log_std) stays a
    finite, non-zero float32 whatever an update did (a huge learning rate or entropy bonus can
    push the parameter to +-1000 in one update; the gradient is 0 beyond the bounds)."""
    return log_std.clamp(*LOG_STD_BOUNDS)


class PolicyDistribution:
    """Sampling, log-probabilities and entropies for one :class:`ActionSpec`, from the policy
    head's output (and, for Box actions, the log-std parameter)."""

    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec
        self.kind = spec.kind
        if spec.kind == "box":
            self._low = np.asarray(spec.low, dtype=np.float32)
            self._high = np.asarray(spec.high, dtype=np.float32)
        else:
            self._start = np.asarray(spec.start, dtype=np.int64)
            self._offset = bool(self._start.any())

    def sample(self, head: torch.Tensor, log_std: torch.Tensor | None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log pi(action)) for each row of ``head``."""
        if self.kind == "discrete":
            log_probs = log_softmax(head)
            action = sample(log_probs, generator)
            return action, log_prob(log_probs, action)
        if self.kind == "multidiscrete":
            parts = multi_log_softmax(head, self.spec.nvec)
            action = multi_sample(parts, generator)
            return action, multi_log_prob(parts, action)
        log_std = bounded_log_std(log_std).expand_as(head)
        action = gaussian_sample(head, log_std, generator)
        return action, self._box_log_prob(head, log_std, action)

    def log_prob_entropy(self, head: torch.Tensor, log_std: torch.Tensor | None,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(a|s), H[pi(.|s)]) of stored ``actions`` under the current network."""
        if self.kind == "discrete":
            log_probs = log_softmax(head)
            return log_prob(log_probs, actions), entropy(log_probs)
        if self.kind == "multidiscrete":
            parts = multi_log_softmax(head, self.spec.nvec)
            return multi_log_prob(parts, actions), multi_entropy(parts)
        log_std = bounded_log_std(log_std).expand_as(head)
        return self._box_log_prob(head, log_std, actions), gaussian_entropy(log_std)

    def kl(self, old_head: torch.Tensor, old_log_std: torch.Tensor | None, head: torch.Tensor,
           log_std: torch.Tensor | None) -> torch.Tensor:
        """Exact per-state D_KL(pi_old(.|s) || pi(.|s)) (TRPO's constraint, PPO-KL's penalty).
        For tanh-squashed actions it is the KL of the Gaussians before the squash: a bijection
        applied to both distributions leaves the KL unchanged."""
        if self.kind == "discrete":
            return kl(log_softmax(old_head), log_softmax(head))
        if self.kind == "multidiscrete":
            nvec = self.spec.nvec
            pairs = zip(multi_log_softmax(old_head, nvec), multi_log_softmax(head, nvec))
            return sum(kl(old, new) for old, new in pairs)
        return gaussian_kl(old_head, bounded_log_std(old_log_std).expand_as(old_head), head,
                           bounded_log_std(log_std).expand_as(head))

    def mode(self, head: torch.Tensor) -> torch.Tensor:
        """The most likely action (deterministic evaluation): argmax, or the Gaussian mean."""
        if self.kind == "discrete":
            return mode(head)  # argmax of the logits = argmax of the log-probabilities
        if self.kind == "multidiscrete":
            return torch.stack([p.argmax(-1) for p in head.split(list(self.spec.nvec), -1)], -1)
        return head

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """Stored actions as the env expects them (offsets, clipping or squashing)."""
        array = actions.numpy()
        if self.kind != "box":
            return array + self._start if self._offset else array
        if self.spec.squash:
            return self._low + (np.tanh(array) + 1.0) * 0.5 * (self._high - self._low)
        return np.clip(array, self._low, self._high)

    def _box_log_prob(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.spec.squash:
            return squashed_gaussian_log_prob(mean, log_std, actions)
        return gaussian_log_prob(mean, log_std, actions)
