"""Policy distributions pi_theta(a|s): the math as pure functions of the network outputs, and
small objects over them that the algorithms use (:class:`Categorical` for Discrete actions,
:class:`MultiCategorical` for MultiDiscrete, :class:`DiagGaussian`, optionally tanh-squashed,
for Box), made by the actor's :class:`PolicyHead`.

Own classes instead of ``torch.distributions``: the same math without the argument validation
and object construction that cost more than the network itself at the batch sizes of
vector-observation tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ppolab.action_spaces import ActionSpec

# Where sampling noise comes from: one generator; a sequence of them, one per entry of the
# leading axis (a population's agents, see ppolab.population), each drawing exactly what that
# agent alone would draw; or None, torch's global generator.
Generators = torch.Generator | Sequence[torch.Generator] | None


def _noise(draw: Callable[..., torch.Tensor], like: torch.Tensor, generator: Generators) -> torch.Tensor:
    """``torch.rand`` or ``torch.randn`` noise shaped like ``like``, from ``generator`` (see
    :data:`Generators`)."""
    if generator is None:  # *_like: an exported graph has no fixed shape
        return torch.rand_like(like) if draw is torch.rand else torch.randn_like(like)
    if isinstance(generator, torch.Generator):
        return draw(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    return torch.stack([draw(like.shape[1:], generator=g, dtype=like.dtype, device=like.device) for g in generator])


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) for every action a: ``logits - logsumexp(logits)``, shape ``[..., A]``."""
    return torch.log_softmax(logits, dim=-1)


def log_prob(log_probs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a_t|s_t) of the taken actions (integers ``[...]``) from ``[..., A]`` log-probs."""
    return log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """H[pi(.|s)] = -sum_a pi(a|s) log pi(a|s), shape ``[...]``."""
    return -(log_probs.exp() * log_probs).sum(-1)


def sample(log_probs: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """One action per row, drawn from pi(.|s) with the Gumbel-max trick (exact, and seeded by
    ``generator``): argmax_a (log pi(a|s) + G_a) with G_a ~ Gumbel(0, 1)."""
    u = _noise(torch.rand, log_probs, generator)
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


def gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, generator: Generators = None) -> torch.Tensor:
    """a = mu + sigma * eps with eps ~ N(0, I)."""
    eps = _noise(torch.randn, mean, generator)
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


def multi_sample(log_probs: list[torch.Tensor], generator: Generators = None) -> torch.Tensor:
    """One action ``[..., K]``: each component sampled independently."""
    return torch.stack([sample(lp, generator) for lp in log_probs], dim=-1)


LOG_STD_BOUNDS = (-20.0, 20.0)  # as config.log_std_init's bounds


def bounded_log_std(log_std: torch.Tensor) -> torch.Tensor:
    """The learned log-std clamped to ``LOG_STD_BOUNDS``: sigma^2 = exp(2 log_std) stays a
    finite, non-zero float32 whatever an update did (a huge learning rate or entropy bonus can
    push the parameter to +-1000 in one update; the gradient is 0 beyond the bounds)."""
    return log_std.clamp(*LOG_STD_BOUNDS)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits with the invalid actions (``mask`` False) at the dtype's lowest value, so that
    softmax gives them probability exactly 0 (exp underflows), entropy and KL sum over the valid
    actions only (0 * finite = 0; -inf would give NaN), Gumbel-max never draws them, and their
    logits get no gradient."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


# --- distribution objects: pi_theta(.|s) for a batch of states ---------------------------------
#
# Each owns its parameters (logits; a Gaussian's mean and log-std) so that no caller passes
# them around by hand. ``log_prob`` and ``sample`` work on actions as the rollout stores them
# (see ppolab.action_spaces); ``detach`` freezes pi_old for TRPO's and PPO-KL's KL terms.


class Categorical:
    """pi(a|s) = softmax(logits)_a over ``[..., A]`` logits (Discrete actions); with an action
    ``mask`` (bool ``[..., A]``), over the valid actions only (:func:`masked_logits`)."""

    __slots__ = ("logits", "_log_probs")

    def __init__(self, logits: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self.logits = masked_logits(logits, mask)
        self._log_probs: torch.Tensor | None = None

    @property
    def log_probs(self) -> torch.Tensor:
        if self._log_probs is None:
            self._log_probs = log_softmax(self.logits)
        return self._log_probs

    def sample(self, generator: Generators = None) -> torch.Tensor:
        return sample(self.log_probs, generator)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return log_prob(self.log_probs, actions)

    def entropy(self) -> torch.Tensor:
        return entropy(self.log_probs)

    def kl(self, other: Categorical) -> torch.Tensor:
        """D_KL(self || other) per state."""
        return kl(self.log_probs, other.log_probs)

    def mode(self) -> torch.Tensor:
        return mode(self.logits)  # argmax of the logits = argmax of the log-probabilities

    def detach(self) -> Categorical:
        return Categorical(self.logits.detach())

    def index(self, rows: torch.Tensor | slice) -> Categorical:
        """The distributions of the states ``rows`` of a batch."""
        return Categorical(self.logits[rows])


class MultiCategorical:
    """Independent categoricals, one per MultiDiscrete component, over ``[..., sum(nvec)]``
    logits: log pi(a) = sum_k log pi_k(a_k); a ``mask`` ``[..., sum(nvec)]`` masks each
    component's actions."""

    __slots__ = ("logits", "nvec", "_parts")

    def __init__(self, logits: torch.Tensor, nvec: tuple[int, ...], mask: torch.Tensor | None = None) -> None:
        self.logits, self.nvec = masked_logits(logits, mask), nvec
        self._parts: list[torch.Tensor] | None = None

    @property
    def parts(self) -> list[torch.Tensor]:
        if self._parts is None:
            self._parts = multi_log_softmax(self.logits, self.nvec)
        return self._parts

    def sample(self, generator: Generators = None) -> torch.Tensor:
        return multi_sample(self.parts, generator)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return multi_log_prob(self.parts, actions)

    def entropy(self) -> torch.Tensor:
        return multi_entropy(self.parts)

    def kl(self, other: MultiCategorical) -> torch.Tensor:
        return sum(kl(p, q) for p, q in zip(self.parts, other.parts))

    def mode(self) -> torch.Tensor:
        return torch.stack([p.argmax(-1) for p in self.logits.split(list(self.nvec), -1)], -1)

    def detach(self) -> MultiCategorical:
        return MultiCategorical(self.logits.detach(), self.nvec)

    def index(self, rows: torch.Tensor | slice) -> MultiCategorical:
        return MultiCategorical(self.logits[rows], self.nvec)


class DiagGaussian:
    """N(mean, diag(exp(log_std)^2)) over Box actions; with ``squash`` the action sent to the env
    is tanh of the sample and the log-probability includes the tanh log-det-Jacobian (the stored
    action is always the pre-squash sample u). The log-std is clamped to ``LOG_STD_BOUNDS``."""

    __slots__ = ("mean", "log_std", "squash")

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, squash: bool = False) -> None:
        self.mean = mean
        self.log_std = bounded_log_std(log_std).expand_as(mean)
        self.squash = squash

    def sample(self, generator: Generators = None) -> torch.Tensor:
        return gaussian_sample(self.mean, self.log_std, generator)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        if self.squash:
            return squashed_gaussian_log_prob(self.mean, self.log_std, actions)
        return gaussian_log_prob(self.mean, self.log_std, actions)

    def entropy(self) -> torch.Tensor:
        """Of the Gaussian (before any squash: the squashed entropy has no closed form)."""
        return gaussian_entropy(self.log_std)

    def kl(self, other: DiagGaussian) -> torch.Tensor:
        """Of the Gaussians; with tanh-squashing too, since a bijection applied to both
        distributions leaves the KL unchanged."""
        return gaussian_kl(self.mean, self.log_std, other.mean, other.log_std)

    def mode(self) -> torch.Tensor:
        return self.mean

    def detach(self) -> DiagGaussian:
        return DiagGaussian(self.mean.detach(), self.log_std.detach(), self.squash)

    def index(self, rows: torch.Tensor | slice) -> DiagGaussian:
        return DiagGaussian(self.mean[rows], self.log_std[rows], self.squash)


Distribution = Categorical | MultiCategorical | DiagGaussian


def _linear_parameters(module: torch.nn.Module, n_in: int, n_out: int, gain: float) -> None:
    layer = torch.nn.Linear(n_in, n_out)  # made and re-initialized as every other layer, so a
    torch.nn.init.orthogonal_(layer.weight, gain)  # seed draws the same networks as before
    torch.nn.init.zeros_(layer.bias)
    module.weight, module.bias = layer.weight, layer.bias


class PolicyHead(torch.nn.Module):
    """The last layer of the actor: features ``[..., F]`` to the distribution over actions for
    one :class:`ActionSpec`. Its linear layer starts orthogonal with gain 0.01, so that the first
    policy is near uniform (or near zero-mean); a Box head also owns the learned,
    state-independent log-std (PPO paper, sec. 6.1)."""

    def __init__(self, n_features: int, spec: ActionSpec, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.spec, self.kind = spec, spec.kind
        _linear_parameters(self, n_features, spec.head_dim, 0.01)
        if spec.kind == "box":
            self.log_std = torch.nn.Parameter(torch.full((spec.head_dim,), float(log_std_init)))

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> Distribution:
        """pi(.|s); ``mask`` (bool ``[..., head_dim]``, discrete actions only) leaves out the
        invalid actions."""
        out = torch.nn.functional.linear(features, self.weight, self.bias)
        if self.kind == "discrete":
            return Categorical(out, mask)
        if self.kind == "multidiscrete":
            return MultiCategorical(out, self.spec.nvec, mask)
        return DiagGaussian(out, self.log_std, self.spec.squash)
