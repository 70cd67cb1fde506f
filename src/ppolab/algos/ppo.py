"""PPO (Schulman et al. 2017): K epochs of minibatch Adam on a surrogate objective.

Per minibatch it minimizes

    L(theta) = -L^POL(theta) + c1 * L^VF(theta) - c2 * E[H[pi_theta(.|s_t)]]

where L^POL is chosen by ``policy_objective``:

    clip        L^CLIP   = E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)]        (PPO-Clip)
    kl_penalty  L^KLPEN  = E[r_t A_t - beta KL[pi_old(.|s_t), pi_theta(.|s_t)]]     (PPO-KL)
    none        L^CPI    = E[r_t A_t]                          (the paper's no-clipping ablation)

For PPO-KL, beta adapts after every update towards ``kl_target`` (``losses.adapt_kl_beta``).
With per-minibatch advantage normalization, the optionally clipped value loss, and a global
gradient-norm clip. With ``target_kl`` set, the epoch loop stops at the first minibatch whose
approximate KL to pi_old exceeds it (before that minibatch's step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from ppolab import losses
from ppolab.config import PPOConfig
from ppolab.distributions import Distribution
from ppolab.losses import MaskedMean
from ppolab.optim import Adam, gradient_step
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch, minibatch_bounds, normalized

# Order of the per-minibatch statistics accumulated in one tensor (one .tolist() per update).
_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl_logr", "approx_kl", "clip_fraction", "grad_norm")


@dataclass(frozen=True)
class Coefficients:
    """The coefficients of one minibatch's objective: floats for one agent, or for a population
    (:mod:`ppolab.population`) ``[P, 1]`` tensors (``clip``, applied per sample) and ``[P]``
    tensors (``vf``, ``ent``, applied per agent), one entry per agent."""

    clip: float | torch.Tensor  # epsilon
    vf: float | torch.Tensor  # c1
    ent: float | torch.Tensor  # c2

    @classmethod
    def of(cls, config: PPOConfig) -> Coefficients:
        return cls(config.clip_coef, config.vf_coef, config.ent_coef)


class Losses(NamedTuple):
    """One minibatch's objective and its diagnostics (scalars, or ``[P]`` for a population)."""

    total: torch.Tensor  # L(theta), to minimize
    policy: torch.Tensor  # -L^POL
    value: torch.Tensor  # L^VF
    entropy: torch.Tensor  # E[H], detached
    kl_logr: torch.Tensor  # the k1 estimate of KL(pi_old || pi_theta), no gradient
    kl: torch.Tensor  # the k3 estimate
    clip_fraction: torch.Tensor


def minibatch_losses(c: PPOConfig, coef: Coefficients, dist: Distribution, values: torch.Tensor, mb: Any,
                     masked: MaskedMean | None = None, reference: Distribution | None = None,
                     beta: float = 0.0) -> Losses:
    """L(theta) for one minibatch ``mb`` (its ``actions, log_probs, values, returns,
    advantages``) given pi_theta and V_theta there; with ``masked``, per agent over ``[P, L]``
    padded minibatches. ``reference`` is pi_old for PPO-KL, with penalty coefficient ``beta``."""
    mean = torch.mean if masked is None else masked
    new_logp = dist.log_prob(mb.actions)
    advantages = normalized(mb.advantages, masked) if c.normalize_advantages else mb.advantages
    with torch.no_grad():
        kl_logr, kl = losses.approx_kl(new_logp, mb.log_probs, mean)
        clipfrac = losses.clip_fraction(new_logp, mb.log_probs, coef.clip, mean)
    if c.policy_objective == "clip":
        pg_loss = losses.clipped_surrogate(new_logp, mb.log_probs, advantages, coef.clip, mean)
    elif c.policy_objective == "kl_penalty":
        pg_loss = losses.kl_penalized_surrogate(new_logp, mb.log_probs, advantages, reference.kl(dist), beta)
    else:
        pg_loss = losses.surrogate(new_logp, mb.log_probs, advantages)
    v_loss = losses.value_loss(values, mb.values, mb.returns, coef.clip if c.clip_value_loss else None, mean)
    ent = mean(dist.entropy())
    total = pg_loss + coef.vf * v_loss - coef.ent * ent
    return Losses(total, pg_loss, v_loss, ent.detach(), kl_logr, kl, clipfrac)


class PPOUpdate:
    """Owns the optimizer state; :meth:`update` turns one batch into one policy improvement."""

    STATS = _STATS + ("kl_beta", "epochs", "gradient_steps", "stopped_early")

    def __init__(self, policy: ActorCritic, config: PPOConfig) -> None:
        self.policy, self.config = policy, config
        self.optimizer = Adam(policy, lr=config.learning_rate, eps=1e-5)
        self.kl_beta = config.kl_beta_init  # used by policy_objective=kl_penalty only

    def state_dict(self) -> dict:
        return {**self.optimizer.state_dict(), "kl_beta": self.kl_beta}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.kl_beta = float(state.pop("kl_beta", self.config.kl_beta_init))
        self.optimizer.load_state_dict(state)

    def _mean_kl(self, batch: AnyBatch) -> float:
        with torch.no_grad():  # the actor only: V is not needed here
            return batch.reference.kl(batch.distribution(self.policy)).mean().item()

    def update(self, batch: AnyBatch, lr: float, generator: torch.Generator) -> dict[str, float]:
        """Run the epochs over ``batch`` at learning rate ``lr``; returns the mean diagnostics.

        Raises :class:`TrainingDivergedError` (before any bad step is applied) when a loss or
        the gradient norm is NaN or infinite.
        """
        c, policy, opt = self.config, self.policy, self.optimizer
        opt.lr = lr
        n = batch.units  # transitions, or sequences for a recurrent policy
        bounds = minibatch_bounds(n, c.batch_size, c.minibatch_size)
        coef = Coefficients.of(c)
        penalized = c.policy_objective == "kl_penalty"
        if penalized:
            batch = batch.with_reference(policy)  # pi_old, carried into every minibatch
        beta = self.kl_beta if penalized else 0.0
        history: list[torch.Tensor] = []
        epochs_done = 0
        stopped_early = False
        for _ in range(c.n_epochs):
            order = torch.randperm(n, generator=generator, device=generator.device)
            shuffled = batch[order]  # minibatches are slices
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                mb = shuffled.slice(lo, hi)
                dist, values = mb.forward(policy)
                out = minibatch_losses(c, coef, dist, values, mb, reference=mb.reference, beta=beta)
                if c.target_kl is not None and out.kl.item() > c.target_kl:
                    stopped_early = True
                    break
                grad_norm = gradient_step(opt, out.total, c.max_grad_norm, policy_loss=out.policy,
                                          value_loss=out.value)
                history.append(torch.stack([out.policy.detach(), out.value.detach(), out.entropy, out.kl_logr,
                                            out.kl, out.clip_fraction, grad_norm]))
            if stopped_early:
                break
            epochs_done += 1
        steps = len(history)
        totals = torch.stack(history).mean(0) if history else torch.zeros(len(_STATS))
        stats = dict(zip(_STATS, totals.tolist()))
        stats["kl_beta"] = beta  # the coefficient this update used
        if penalized:
            self.kl_beta = losses.adapt_kl_beta(beta, self._mean_kl(batch), c.kl_target)
        stats["epochs"] = float(epochs_done)
        stats["gradient_steps"] = float(steps)
        stats["stopped_early"] = float(stopped_early)
        return stats
