"""Vanilla policy gradient: REINFORCE with a learned baseline (Williams 1992; Sutton et al. 2000).

One gradient step per batch on

    L(theta) = -E_t[ log pi_theta(a_t|s_t) * A_hat_t ] - c2 E[H[pi_theta(.|s_t)]]

whose gradient is the policy-gradient theorem's estimate, with A_hat_t = G_t - V(s_t) by default
(``advantage_estimator=mc``; V only reduces the variance). V is then fitted separately
(:mod:`ppolab.algos.critic`).
"""

from __future__ import annotations

import torch

from ppolab import losses
from ppolab.algos.common import approx_kl_after_step, batch_advantages
from ppolab.algos.critic import CriticFit
from ppolab.config import VPGConfig
from ppolab.optim import Adam, gradient_step
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch


class VPGUpdate:
    """Owns the policy's and the critic's optimizers."""

    STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm", "value_gradient_steps")

    def __init__(self, policy: ActorCritic, config: VPGConfig) -> None:
        self.policy, self.config = policy, config
        self.optimizer = Adam(policy.actor_parameters(), lr=config.learning_rate, eps=1e-5)
        self.critic = CriticFit(policy, config, config.vf_learning_rate)

    def state_dict(self) -> dict:
        return {"policy": self.optimizer.state_dict(), "critic": self.critic.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])

    def update(self, batch: AnyBatch, lr: float, generator: torch.Generator) -> dict[str, float]:
        c, policy, opt = self.config, self.policy, self.optimizer
        advantages = batch_advantages(batch, c)
        dist = batch.distribution(policy)
        log_prob, entropy = dist.log_prob(batch.actions), dist.entropy()
        pg_loss = losses.policy_gradient_loss(log_prob, advantages)
        loss = pg_loss - c.ent_coef * entropy.mean()
        opt.lr = lr
        norm = gradient_step(opt, loss, c.max_grad_norm)
        kl = approx_kl_after_step(policy, batch)
        # the critic's step size follows the policy's schedule
        value_loss, value_steps = self.critic.fit(batch, c.vf_learning_rate * lr / c.learning_rate, generator)
        return {"policy_loss": pg_loss.item(), "value_loss": value_loss, "entropy": entropy.mean().item(),
                "approx_kl": kl, "grad_norm": norm.item(), "value_gradient_steps": float(value_steps)}
