"""A2C (Mnih et al. 2016, the synchronous variant): one gradient step per rollout on

    L(theta) = -E_t[ log pi_theta(a_t|s_t) * A_hat_t ] + c1 * 0.5 E[(V(s_t) - R_t)^2] - c2 E[H]

with short rollouts (``n_steps=5``) and lambda = 1 by default, so that A_hat_t is the n-step
return up to the rollout's end minus V(s_t); RMSprop (``optimizer=rmsprop``) or Adam.
"""

from __future__ import annotations

import torch

from ppolab import losses
from ppolab.algos.common import approx_kl_after_step, batch_advantages
from ppolab.config import A2CConfig
from ppolab.optim import Adam, RMSprop, gradient_step
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch


class A2CUpdate:
    """Owns the optimizer of the whole actor-critic."""

    STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm")

    def __init__(self, policy: ActorCritic, config: A2CConfig) -> None:
        self.policy, self.config = policy, config
        if config.optimizer == "rmsprop":
            self.optimizer = RMSprop(policy, lr=config.learning_rate, alpha=config.rmsprop_alpha,
                                     eps=config.optimizer_eps)
        else:
            self.optimizer = Adam(policy, lr=config.learning_rate, eps=config.optimizer_eps)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)

    def update(self, batch: AnyBatch, lr: float, generator: torch.Generator) -> dict[str, float]:
        c, policy, opt = self.config, self.policy, self.optimizer
        advantages = batch_advantages(batch, c)
        dist, values = batch.forward(policy)
        log_prob, entropy = dist.log_prob(batch.actions), dist.entropy()
        pg_loss = losses.policy_gradient_loss(log_prob, advantages)
        v_loss = losses.value_loss(values, batch.values, batch.returns, None)
        loss = pg_loss + c.vf_coef * v_loss - c.ent_coef * entropy.mean()
        opt.lr = lr
        norm = gradient_step(opt, loss, c.max_grad_norm, policy_loss=pg_loss, value_loss=v_loss)
        kl = approx_kl_after_step(policy, batch)
        return {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "entropy": entropy.mean().item(),
                "approx_kl": kl, "grad_norm": norm.item()}
