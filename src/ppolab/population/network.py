"""P actor-critics of one architecture as one network: each parameter stacked along a leading
population axis ``[P, ...]``, and one batched forward pass for all of them.

A trunk layer of agent p is h_p = act(x_p W_p^T + b_p); over the population this is one
``torch.baddbmm`` of ``[P, B, in]`` inputs with ``[P, in, out]`` weights. Batched matmuls rather
than ``torch.func.functional_call`` + ``vmap``: the lone network calls its layers through cached
parameter references (``ActorCritic._actor_layers``), which ``functional_call`` cannot swap, and
batched matmuls need no second code path through torch.func. Gradients of a sum of per-agent
losses are then each agent's own gradients, in the same stacked layout.

Supported (see :func:`ppolab.population.why_not`): feed-forward policies on flat vector
observations (the MLP encoder), with Discrete, MultiDiscrete or Box actions.
"""

from __future__ import annotations

import torch

from ppolab.distributions import Categorical, DiagGaussian, Distribution, MultiCategorical
from ppolab.policies import ActorCritic

Layers = list[tuple[torch.Tensor, torch.Tensor]]


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x_p W_p^T + b_p for every agent p: ``[P, B, in]`` to ``[P, B, out]``."""
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class StackedPolicy:
    """The parameters of ``policies`` (one :class:`ActorCritic` per agent, of one architecture)
    stacked into leaf tensors ``[P, ...]`` that require gradients: :meth:`forward` and
    :meth:`value` take observations ``[P, B, *obs]``; :meth:`write_to` copies agent p's slice
    back into its own network (for saving)."""

    def __init__(self, policies: list[ActorCritic]) -> None:
        first = policies[0]
        self.names = [name for name, _ in first.named_parameters()]
        self.params = {name: torch.stack([dict(p.named_parameters())[name].detach() for p in policies])
                       .requires_grad_() for name in self.names}
        name_of = {id(param): name for name, param in first.named_parameters()}

        def stacked(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> Layers:
            return [(self.params[name_of[id(w)]], self.params[name_of[id(b)]]) for w, b in layers]

        self.actor_layers = stacked(first._actor_layers)
        self.critic_layers = stacked(first._critic_layers)
        self.value_head = stacked([first._value_head])[0]
        self.policy_head = (self.params["policy_head.weight"], self.params["policy_head.bias"])
        self.log_std = self.params.get("policy_head.log_std")
        self.action = first.action
        self.activation = first._act
        self.obs_ndim = first._obs_ndim

    @property
    def size(self) -> int:
        return self.policy_head[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, in the order of ``ActorCritic.parameters()``."""
        return [self.params[name] for name in self.names]

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs if obs.dtype == torch.float32 else obs.float()
        ndim = self.obs_ndim
        return x.unsqueeze(-1) if ndim == 0 else x.flatten(-ndim) if ndim > 1 else x

    def _trunk(self, layers: Layers, x: torch.Tensor) -> torch.Tensor:
        for weight, bias in layers:
            x = self.activation(_linear(x, weight, bias))
        return x

    def _distribution(self, features: torch.Tensor, mask: torch.Tensor | None) -> Distribution:
        out = _linear(features, *self.policy_head)
        kind = self.action.kind
        if kind == "discrete":
            return Categorical(out, mask)
        if kind == "multidiscrete":
            return MultiCategorical(out, self.action.nvec, mask)
        return DiagGaussian(out, self.log_std.unsqueeze(1), self.action.squash)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[Distribution, torch.Tensor]:
        """(pi_p(.|s), V_p(s)) for observations ``[P, B, *obs]``: a distribution over ``[P, B]``
        and values ``[P, B]``."""
        x = self._features(obs)
        features = self._trunk(self.actor_layers, x)
        critic = features if self.critic_layers is self.actor_layers else self._trunk(self.critic_layers, x)
        return self._distribution(features, mask), _linear(critic, *self.value_head).squeeze(-1)

    def distribution(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> Distribution:
        """pi_p(.|s) only, for observations ``[P, B, *obs]``."""
        return self._distribution(self._trunk(self.actor_layers, self._features(obs)), mask)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V_p(s) for observations ``[P, B, *obs]``."""
        return _linear(self._trunk(self.critic_layers, self._features(obs)), *self.value_head).squeeze(-1)

    @torch.no_grad()
    def write_to(self, policies: list[ActorCritic]) -> None:
        """Copy agent p's parameters into ``policies[p]``."""
        for p, policy in enumerate(policies):
            for name, param in policy.named_parameters():
                param.copy_(self.params[name][p])
