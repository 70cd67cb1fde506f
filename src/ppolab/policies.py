"""Actor-critic networks: pi_theta(a|s) (logits) and V_phi(s), with PPO's orthogonal init."""

from __future__ import annotations

import math

import torch
from torch import nn

from ppolab.config import PPOConfig

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    """A linear layer with orthogonal weights scaled by ``gain`` and zero bias (Engstrom et al.
    2020; Huang et al. 2022, detail 2)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(n_in: int, hidden: tuple[int, ...], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [_layer(n_in, width, math.sqrt(2)), _ACTIVATIONS[activation]()]
        n_in = width
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Maps observations ``[..., *obs_shape]`` to action logits ``[..., A]`` and values ``[...]``.

    Hidden layers get gain sqrt(2), the policy head 0.01 (so the initial policy is near uniform)
    and the value head 1.0. With ``shared_trunk`` both heads read one trunk; otherwise the actor
    and the critic are separate networks (the default, as in the PPO paper's MuJoCo setup).
    """

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, config: PPOConfig) -> None:
        super().__init__()
        n_in = math.prod(obs_shape)
        self.obs_ndim = len(obs_shape)
        hidden, act = config.hidden_sizes, config.activation
        self.actor_trunk = _mlp(n_in, hidden, act)
        self.critic_trunk = None if config.shared_trunk else _mlp(n_in, hidden, act)
        self.policy_head = _layer(hidden[-1], n_actions, 0.01)
        self.value_head = _layer(hidden[-1], 1, 1.0)

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.flatten(-self.obs_ndim) if self.obs_ndim != 1 else obs

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) for a batch of observations."""
        x = self._flat(obs)
        features = self.actor_trunk(x)
        critic_features = features if self.critic_trunk is None else self.critic_trunk(x)
        return self.policy_head(features), self.value_head(critic_features).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) only."""
        x = self._flat(obs)
        trunk = self.actor_trunk if self.critic_trunk is None else self.critic_trunk
        return self.value_head(trunk(x)).squeeze(-1)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Policy logits only (acting at evaluation time)."""
        return self.policy_head(self.actor_trunk(self._flat(obs)))
