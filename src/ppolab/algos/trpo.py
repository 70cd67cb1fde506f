"""TRPO (Schulman et al. 2015): one natural-gradient step per batch, inside a KL trust region.

    maximize_theta  L(theta) = E_t[ pi_theta(a_t|s_t) / pi_old(a_t|s_t) * A_hat_t ]  (+ c2 E[H])
    subject to      E_t[ KL(pi_old(.|s_t) || pi_theta(.|s_t)) ] <= delta  (``max_kl``)

g = grad L at theta_old; x ~= H^-1 g by ``cg_iters`` steps of conjugate gradient on exact
Hessian-vector products of the mean KL (damped by ``cg_damping``); the step sqrt(2 delta /
x^T H x) x reaches the trust-region boundary of the quadratic model; a backtracking line search
(factor ``backtrack_coef``, at most ``line_search_steps`` tries) accepts the first fraction
whose surrogate improves and whose measured KL is within delta, or keeps pi_old. Then V is fitted
separately (:mod:`ppolab.algos.critic`). The math is in :mod:`ppolab.trust_region`.
"""

from __future__ import annotations

import torch
from torch.nn.utils import parameters_to_vector

from ppolab import losses
from ppolab.algos.common import batch_advantages
from ppolab.algos.critic import CriticFit
from ppolab.config import TRPOConfig
from ppolab.distributions import Distribution
from ppolab.errors import TrainingDivergedError
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch
from ppolab.trust_region import (
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    set_parameters,
    step_to_trust_region_boundary,
)


class TRPOUpdate:
    """Owns the critic's optimizer; :meth:`update` makes one trust-region policy step."""

    STATS = ("policy_loss", "value_loss", "entropy", "kl", "line_search_steps", "step_fraction",
             "accepted", "expected_improvement", "actual_improvement", "grad_norm", "value_gradient_steps")

    def __init__(self, policy: ActorCritic, config: TRPOConfig) -> None:
        self.policy, self.config = policy, config
        self.actor_params = policy.actor_parameters()
        self.critic = CriticFit(policy, config, config.learning_rate)

    def state_dict(self) -> dict:
        return self.critic.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state)

    def _surrogate_and_kl(self, batch: AnyBatch, advantages: torch.Tensor,
                          old: Distribution) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L(theta) + c2 E[H], mean KL(pi_old || pi_theta), mean entropy) at the current theta."""
        policy = self.policy
        dist = batch.distribution(policy)
        log_prob, entropy = dist.log_prob(batch.actions), dist.entropy()
        surrogate = -losses.surrogate(log_prob, batch.log_probs, advantages)
        kl = old.kl(dist).mean()
        return surrogate + self.config.ent_coef * entropy.mean(), kl, entropy.mean()

    def update(self, batch: AnyBatch, lr: float, generator: torch.Generator) -> dict[str, float]:
        c, policy = self.config, self.policy
        advantages = batch_advantages(batch, c)
        old = batch.with_reference(policy).reference  # pi_old

        surrogate, kl, entropy = self._surrogate_and_kl(batch, advantages, old)
        g = flat_grad(surrogate, self.actor_params, retain_graph=True)
        if not torch.isfinite(g).all():
            raise TrainingDivergedError(f"non-finite policy gradient (surrogate={surrogate.item()})")
        hvp = fisher_vector_product(kl, self.actor_params, c.cg_damping)
        x = conjugate_gradient(hvp, g, iters=c.cg_iters)
        step = step_to_trust_region_boundary(x, hvp(x), c.max_kl)

        def evaluate(theta: torch.Tensor) -> tuple[float, float]:
            with torch.no_grad():
                set_parameters(self.actor_params, theta)
                new_surrogate, new_kl, _ = self._surrogate_and_kl(batch, advantages, old)
            return new_surrogate.item(), new_kl.item()

        search = backtracking_line_search(
            evaluate, parameters_to_vector(self.actor_params).detach(), step, float(g @ step), surrogate.item(), c.max_kl,
            c.backtrack_coef, c.line_search_steps,
        )
        value_loss, value_steps = self.critic.fit(batch, lr, generator)  # lr: the critic's, annealed
        return {
            "policy_loss": -surrogate.item(), "value_loss": value_loss, "entropy": entropy.item(),
            # what the applied step did: all zero when the line search kept pi_old
            "kl": search.kl if search.accepted else 0.0, "line_search_steps": float(search.steps),
            "step_fraction": search.step_fraction, "accepted": float(search.accepted),
            "expected_improvement": search.expected_improvement if search.accepted else 0.0,
            "actual_improvement": search.actual_improvement if search.accepted else 0.0,
            "grad_norm": torch.linalg.vector_norm(g).item(), "value_gradient_steps": float(value_steps),
        }
