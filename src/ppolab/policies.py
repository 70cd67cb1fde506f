"""Actor-critic networks: pi_theta(a|s) (logits) and V_phi(s), with PPO's orthogonal init."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ppolab.action_spaces import ActionSpec
from ppolab.config import Config
from ppolab.distributions import PolicyDistribution

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_ACTIVATION_FNS = {"tanh": torch.tanh, "relu": torch.relu}


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
    """Maps observations ``[..., *obs_shape]`` to the policy head ``[..., H]`` (logits, or
    Gaussian means for Box actions, see :mod:`ppolab.action_spaces`) and values ``[...]``.

    Hidden layers get gain sqrt(2), the policy head 0.01 (so the initial policy is near uniform)
    and the value head 1.0. With ``shared_trunk`` both heads read one trunk; otherwise the actor
    and the critic are separate networks (the default, as in the PPO paper's MuJoCo setup).
    """

    def __init__(self, obs_shape: tuple[int, ...], action: ActionSpec | int, config: Config) -> None:
        super().__init__()
        if isinstance(action, int):  # n logits for Discrete(n)
            action = ActionSpec("discrete", nvec=(action,), start=(0,))
        self.action = action
        self.distribution = PolicyDistribution(action)  # how head outputs become actions
        n_actions = action.head_dim
        n_in = math.prod(obs_shape)
        self.obs_ndim = len(obs_shape)
        hidden, act = config.hidden_sizes, config.activation
        self.actor_trunk = _mlp(n_in, hidden, act)
        self.critic_trunk = None if config.shared_trunk else _mlp(n_in, hidden, act)
        self.policy_head = _layer(hidden[-1], n_actions, 0.01)
        self.value_head = _layer(hidden[-1], 1, 1.0)
        # Box actions: a state-independent log standard deviation, learned (PPO paper, sec. 6.1)
        self.log_std = (nn.Parameter(torch.full((n_actions,), float(config.log_std_init)))
                        if action.kind == "box" else None)

        self._act = _ACTIVATION_FNS[act]
        # Plain references to the parameters: calling the functions directly skips the
        # per-module call and attribute-lookup overhead, a large share of the cost at this size.
        self._actor_layers = [(m.weight, m.bias) for m in self.actor_trunk if isinstance(m, nn.Linear)]
        self._critic_layers = (self._actor_layers if self.critic_trunk is None else
                               [(m.weight, m.bias) for m in self.critic_trunk if isinstance(m, nn.Linear)])
        self._policy_head = (self.policy_head.weight, self.policy_head.bias)
        self._value_head = (self.value_head.weight, self.value_head.bias)

    def actor_parameters(self) -> list[nn.Parameter]:
        """theta of pi_theta: the actor trunk, the policy head and the log-std (if any)."""
        params = [*self.actor_trunk.parameters(), *self.policy_head.parameters()]
        return params + ([self.log_std] if self.log_std is not None else [])

    def critic_parameters(self) -> list[nn.Parameter]:
        """The parameters of V alone (the value head only, with a shared trunk)."""
        trunk = [] if self.critic_trunk is None else list(self.critic_trunk.parameters())
        return trunk + list(self.value_head.parameters())

    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        if self.obs_ndim == 1:
            return obs
        return obs.unsqueeze(-1) if self.obs_ndim == 0 else obs.flatten(-self.obs_ndim)

    def _trunk(self, layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        for weight, bias in layers:
            x = self._act(F.linear(x, weight, bias))
        return x

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) for a batch of observations."""
        x = self._flat(obs)
        features = self._trunk(self._actor_layers, x)
        critic = features if self.critic_trunk is None else self._trunk(self._critic_layers, x)
        return F.linear(features, *self._policy_head), F.linear(critic, *self._value_head).squeeze(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) only."""
        return F.linear(self._trunk(self._critic_layers, self._flat(obs)), *self._value_head).squeeze(-1)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """Policy logits only (acting at evaluation time)."""
        return F.linear(self._trunk(self._actor_layers, self._flat(obs)), *self._policy_head)
