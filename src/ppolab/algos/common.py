"""Small pieces more than one update uses."""

from __future__ import annotations

import torch

from ppolab import losses
from ppolab.config import Config
from ppolab.policies import ActorCritic
from ppolab.batches import AnyBatch, normalized


def batch_advantages(batch: AnyBatch, config: Config) -> torch.Tensor:
    """A_hat for a whole-batch update: normalized over the batch if the config says so."""
    return normalized(batch.advantages) if config.normalize_advantages else batch.advantages


@torch.no_grad()
def approx_kl_after_step(policy: ActorCritic, batch: AnyBatch) -> float:
    """How far a single-step update moved the policy: the k3 estimate of KL(pi_old || pi_new)
    from the batch's actions and their old log-probabilities."""
    log_prob = batch.distribution(policy).log_prob(batch.actions)
    return losses.approx_kl(log_prob, batch.log_probs)[1].item()
