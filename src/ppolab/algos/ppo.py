"""PPO-Clip (Schulman et al. 2017): K epochs of minibatch Adam on the clipped surrogate.

Per minibatch it minimizes

    L(theta) = -L^CLIP(theta) + c1 * L^VF(theta) - c2 * E[H[pi_theta(.|s_t)]]

with per-minibatch advantage normalization, the optionally clipped value loss, and a global
gradient-norm clip. With ``target_kl`` set, the epoch loop stops at the first minibatch whose
approximate KL to pi_old exceeds it (before that minibatch's step).
"""

from __future__ import annotations

import torch

from ppolab import losses
from ppolab.config import PPOConfig
from ppolab.errors import TrainingDivergedError
from ppolab.optim import FlatAdam, clip_grad_norm_, flatten_parameters
from ppolab.policies import ActorCritic
from ppolab.rollout import Batch

# Order of the per-minibatch statistics accumulated in one tensor (one .tolist() per update).
_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl_logr", "approx_kl", "clip_fraction", "grad_norm")


class PPOUpdate:
    """Owns the optimizer state; :meth:`update` turns one batch into one policy improvement."""

    STATS = _STATS + ("epochs", "gradient_steps", "stopped_early")

    def __init__(self, policy: ActorCritic, config: PPOConfig) -> None:
        self.policy, self.config = policy, config
        self.params, self.grads = flatten_parameters(policy)
        self.optimizer = FlatAdam(self.params, self.grads, lr=config.learning_rate, eps=1e-5)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def update(self, batch: Batch, lr: float, generator: torch.Generator) -> dict[str, float]:
        """Run the epochs over ``batch`` at learning rate ``lr``; returns the mean diagnostics.

        Raises :class:`TrainingDivergedError` (before any bad step is applied) when a loss or
        the gradient norm is NaN or infinite.
        """
        c, policy, opt = self.config, self.policy, self.optimizer
        opt.lr = lr
        n = len(batch)
        n_minibatches = max(1, min(n, round(c.batch_size / c.minibatch_size)))
        bounds = [n * i // n_minibatches for i in range(n_minibatches + 1)]
        vclip = c.clip_coef if c.clip_value_loss else None
        history: list[torch.Tensor] = []
        epochs_done = 0
        stopped_early = False
        for _ in range(c.n_epochs):
            shuffled = batch[torch.randperm(n, generator=generator)]  # minibatches are slices
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                mb = shuffled.slice(lo, hi)
                head, values = policy(mb.observations)
                new_logp, entropy = policy.distribution.log_prob_entropy(head, policy.log_std, mb.actions)
                advantages = mb.advantages
                if c.normalize_advantages and hi - lo > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                with torch.no_grad():
                    kl_logr, kl = losses.approx_kl(new_logp, mb.log_probs)
                if c.target_kl is not None and kl.item() > c.target_kl:
                    stopped_early = True
                    break
                pg_loss = losses.clipped_surrogate(new_logp, mb.log_probs, advantages, c.clip_coef)
                v_loss = losses.value_loss(values, mb.values, mb.returns, vclip)
                ent = entropy.mean()
                loss = pg_loss + c.vf_coef * v_loss - c.ent_coef * ent

                opt.zero_grad()
                loss.backward()
                grad_norm = clip_grad_norm_(self.grads, c.max_grad_norm)
                if not torch.isfinite(loss + grad_norm):
                    raise TrainingDivergedError(
                        f"non-finite loss or gradient (loss={loss.item()}, policy_loss="
                        f"{pg_loss.item()}, value_loss={v_loss.item()}, grad_norm={grad_norm.item()})"
                    )
                opt.step()
                clipfrac = losses.clip_fraction(new_logp.detach(), mb.log_probs, c.clip_coef)
                history.append(torch.stack([pg_loss.detach(), v_loss.detach(), ent.detach(), kl_logr, kl,
                                            clipfrac, grad_norm]))
            if stopped_early:
                break
            epochs_done += 1
        steps = len(history)
        totals = torch.stack(history).mean(0) if history else torch.zeros(len(_STATS))
        stats = dict(zip(_STATS, totals.tolist()))
        stats["epochs"] = float(epochs_done)
        stats["gradient_steps"] = float(steps)
        stats["stopped_early"] = float(stopped_early)
        return stats
