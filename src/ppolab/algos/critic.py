"""Fitting V_phi on its own, for the algorithms that step the policy separately (TRPO, VPG).

After the policy update, phi is regressed on the batch's return targets R_t:

    phi <- argmin_phi  0.5 * E[(V_phi(s_t) - R_t)^2]

by ``vf_epochs`` passes of Adam over shuffled minibatches, with the global gradient-norm clip.
"""

from __future__ import annotations

import torch

from ppolab import losses
from ppolab.config import CriticFitConfig
from ppolab.optim import Adam, gradient_step
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch, minibatch_bounds


class CriticFit:
    """Owns the value function's optimizer; :meth:`fit` runs the regression on one batch."""

    def __init__(self, policy: ActorCritic, config: CriticFitConfig, lr: float) -> None:
        self.policy, self.config = policy, config
        self.optimizer = Adam(policy.critic_parameters(), lr=lr, eps=1e-5)

    def fit(self, batch: AnyBatch, lr: float, generator: torch.Generator) -> tuple[float, int]:
        """(mean value loss, gradient steps) of ``vf_epochs`` passes at step size ``lr``."""
        c, opt = self.config, self.optimizer
        opt.lr = lr
        n = batch.units
        bounds = minibatch_bounds(n, c.batch_size, c.vf_minibatch_size)
        history = []
        for _ in range(c.vf_epochs):
            shuffled = batch[torch.randperm(n, generator=generator, device=generator.device)]
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                mb = shuffled.slice(lo, hi)
                loss = losses.value_loss(mb.value(self.policy), mb.values, mb.returns, None)
                gradient_step(opt, loss, c.max_grad_norm)
                history.append(loss.detach())
        return torch.stack(history).mean().item(), len(history)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
