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

import torch

from ppolab import losses
from ppolab.config import PPOConfig
from ppolab.optim import Adam, gradient_step
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch, minibatch_bounds, normalized

# Order of the per-minibatch statistics accumulated in one tensor (one .tolist() per update).
_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl_logr", "approx_kl", "clip_fraction", "grad_norm")


def _policy_loss(c: PPOConfig, new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                 kl: torch.Tensor | None, beta: float) -> torch.Tensor:
    if c.policy_objective == "clip":
        return losses.clipped_surrogate(new_logp, old_logp, advantages, c.clip_coef)
    if c.policy_objective == "kl_penalty":
        return losses.kl_penalized_surrogate(new_logp, old_logp, advantages, kl, beta)
    return losses.surrogate(new_logp, old_logp, advantages)


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
        vclip = c.clip_coef if c.clip_value_loss else None
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
                new_logp, entropy = dist.log_prob(mb.actions), dist.entropy()
                advantages = mb.advantages
                if c.normalize_advantages:
                    advantages = normalized(advantages)
                with torch.no_grad():
                    kl_logr, kl = losses.approx_kl(new_logp, mb.log_probs)
                if c.target_kl is not None and kl.item() > c.target_kl:
                    stopped_early = True
                    break
                exact_kl = mb.reference.kl(dist) if penalized else None
                pg_loss = _policy_loss(c, new_logp, mb.log_probs, advantages, exact_kl, beta)
                v_loss = losses.value_loss(values, mb.values, mb.returns, vclip)
                ent = entropy.mean()
                loss = pg_loss + c.vf_coef * v_loss - c.ent_coef * ent

                grad_norm = gradient_step(opt, loss, c.max_grad_norm, policy_loss=pg_loss, value_loss=v_loss)
                clipfrac = losses.clip_fraction(new_logp.detach(), mb.log_probs, c.clip_coef)
                history.append(torch.stack([pg_loss.detach(), v_loss.detach(), ent.detach(), kl_logr, kl,
                                            clipfrac, grad_norm]))
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
