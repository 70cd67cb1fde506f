"""Actor-critic networks: an observation encoder, an optional recurrent core, then a trunk
MLP, then the heads.

    observation --> encoder --> [core] --> actor trunk  --> policy head --> pi_theta(.|s)  (a distribution)
    (per space,                 (LSTM/GRU,\\-> critic trunk --> value head  --> V_phi(s)
     see encoders)               memory)    (MLP, hidden_sizes)

With ``recurrent=lstm|gru`` the actor and the critic have their own core by default
(``shared_recurrent``); the state of both is one packed ``[..., state_size]`` vector
(:mod:`ppolab.memory`), and :meth:`ActorCritic.step` / :meth:`ActorCritic.unroll` take it with
the flags of the steps that start an episode.

The encoder is chosen from the observation space (:mod:`ppolab.encoders`) and is shared by the
actor and the critic by default (``shared_encoder``, as in the PPO paper's Atari network); the
trunks are separate by default (``shared_trunk``, as in its MuJoCo networks). Initialization is
PPO's: orthogonal, gain sqrt(2) in hidden layers, 0.01 for the policy head (a near-uniform first
policy) and 1 for the value head (Engstrom et al. 2020; Huang et al. 2022, detail 2).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ppolab.action_spaces import ActionSpec
from ppolab.config import Config
from ppolab.distributions import Distribution, PolicyHead
from ppolab.encoders import ACTIVATIONS, OneHotEncoder, VectorEncoder, build_encoder, orthogonal_
from ppolab.memory import RecurrentCore, split_state
from ppolab.observations import Observation, ObservationSpec, tree_map



class _NumPyTanh(torch.autograd.Function):
    """tanh with NumPy's kernel forward, and tanh's backward, grad * (1 - y^2): written with torch
    ops on the saved output, so it is differentiable again (TRPO's Fisher-vector products
    differentiate through the network twice). Not ``aten.tanh_backward``: it is as slow here as
    torch's tanh (measured)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        y = torch.from_numpy(np.tanh(x.detach().numpy()))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def _traced() -> bool:
    """Whether an exporter is tracing the network (it needs torch's own ops)."""
    compiler = torch.compiler
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or compiler.is_compiling()
            or getattr(compiler, "is_exporting", lambda: False)())


def tanh(x: torch.Tensor) -> torch.Tensor:
    """torch.tanh, computed by NumPy for CPU float tensors: torch 2.13's CPU kernel takes 2.3 ms
    for 655k float32 values on these machines where NumPy's takes 0.27 ms (measured), which made
    tanh a fifth of an update of CartPole's 64-unit MLPs. Same values to float rounding (both are
    accurate to about an ulp); torch's op on other devices and while an exporter traces."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or _traced():
        return torch.tanh(x)
    if x.requires_grad and torch.is_grad_enabled():
        return _NumPyTanh.apply(x)
    return torch.from_numpy(np.tanh(x.numpy()))


_ACTIVATION_FNS = {"tanh": tanh, "relu": torch.relu}


def _mlp(n_in: int, hidden: tuple[int, ...], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [orthogonal_(nn.Linear(n_in, width), math.sqrt(2)), ACTIVATIONS[activation]()]
        n_in = width
    return nn.Sequential(*layers)


def _linear_refs(trunk: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.weight, m.bias) for m in trunk if isinstance(m, nn.Linear)]


class ActorCritic(nn.Module):
    """pi_theta(.|s) and V_phi(s) for observations ``[..., *obs]`` (any leading dimensions,
    e.g. ``[T, N]``): :meth:`forward` gives both, :meth:`distribution` and :meth:`value` one.

    ``observation`` describes the observations (:class:`~ppolab.observations.ObservationSpec`),
    ``action`` the actions; ``space`` is the env's observation space, which a user's encoder
    factory (``config.encoder``) is called with.
    """

    def __init__(self, observation: ObservationSpec | tuple[int, ...], action: ActionSpec | int,
                 config: Config, space: gym.Space | None = None, where: str = "env") -> None:
        super().__init__()
        if isinstance(observation, tuple):  # a flat vector of this shape
            observation = ObservationSpec.vector(observation)
        if isinstance(action, int):  # n logits for Discrete(n)
            action = ActionSpec("discrete", nvec=(action,), start=(0,))
        self.observation, self.action = observation, action
        self.encoder = build_encoder(observation, config, space, where)
        self.critic_encoder = None if config.shared_encoder else build_encoder(observation, config, space, where)
        n_in, hidden, act = self.encoder.features, config.hidden_sizes, config.activation
        self.recurrent = config.recurrent != "none"
        self.actor_core = self.critic_core = None
        if self.recurrent:
            self.actor_core = RecurrentCore(config.recurrent, n_in, config.recurrent_hidden_size)
            if not config.shared_recurrent:
                self.critic_core = RecurrentCore(config.recurrent, n_in, config.recurrent_hidden_size)
            n_in = config.recurrent_hidden_size
        self.state_sizes = tuple(c.state_size for c in (self.actor_core, self.critic_core) if c is not None)
        self.actor_trunk = _mlp(n_in, hidden, act)
        self.critic_trunk = None if config.shared_trunk else _mlp(n_in, hidden, act)
        n_features = hidden[-1] if hidden else n_in
        self.policy_head = PolicyHead(n_features, action, config.log_std_init)
        self.value_head = orthogonal_(nn.Linear(n_features, 1), 1.0)

        self._act = _ACTIVATION_FNS[act]
        # Plain references to the parameters (the same Parameter objects after .to(device)):
        # calling the functions directly skips the per-module call and attribute-lookup overhead,
        # a large share of the cost for small MLPs.
        self._actor_layers = _linear_refs(self.actor_trunk)
        self._critic_layers = self._actor_layers if self.critic_trunk is None else _linear_refs(self.critic_trunk)
        self._value_head = (self.value_head.weight, self.value_head.bias)
        # A float vector needs no encoding beyond a reshape: skip the module call then.
        plain = isinstance(self.encoder, VectorEncoder)
        self._obs_ndim = len(observation.single.shape) if plain else None
        # A Discrete(n) observation into a trunk layer: W onehot(s) + b is column s of W plus b,
        # so the layer looks that column up (_trunk) instead of multiplying n - 1 zeros, which
        # made the first layer most of the update's cost on Taxi (500 states).
        self._lookup = (isinstance(self.encoder, OneHotEncoder) and self.encoder.ndim == 0 and bool(hidden)
                        and not self.recurrent)

    def actor_parameters(self) -> list[nn.Parameter]:
        """theta of pi_theta: the (shared) encoder, the actor trunk and the policy head (with the
        log-std of a Gaussian)."""
        own = [m for m in (self.encoder, self.actor_core, self.actor_trunk, self.policy_head) if m is not None]
        return [p for m in own for p in m.parameters()]

    def critic_parameters(self) -> list[nn.Parameter]:
        """The parameters of V alone: its own encoder, core and trunk, if not shared, and the
        value head."""
        own = [m for m in (self.critic_encoder, self.critic_core, self.critic_trunk) if m is not None]
        return [p for m in own for p in m.parameters()] + list(self.value_head.parameters())

    @property
    def device(self) -> torch.device:
        return self.value_head.weight.device

    def _encode(self, encoder: nn.Module, obs: Observation) -> torch.Tensor:
        """Features for the trunk, or, for a Discrete observation, indices (see ``_lookup``)."""
        if self._lookup:
            return encoder.indices(obs)
        ndim = self._obs_ndim
        if ndim is None:
            return encoder(obs)
        if ndim == 1:
            return obs if obs.dtype == torch.float32 else obs.float()
        obs = obs.float()
        return obs.unsqueeze(-1) if ndim == 0 else obs.flatten(-ndim)

    def _trunk(self, layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():  # the indices of one-hot observations
            (weight, bias), layers = layers[0], layers[1:]
            x = self._act(F.embedding(x, weight.t()) + bias)
        for weight, bias in layers:
            x = self._act(F.linear(x, weight, bias))
        return x

    def forward(self, obs: Observation, mask: torch.Tensor | None = None) -> tuple[Distribution, torch.Tensor]:
        """(pi(.|s), V(s)) for a batch of observations; ``mask`` (bool, one flag per action)
        leaves the invalid actions out of pi."""
        self._feed_forward()
        x = self._encode(self.encoder, obs)
        features = self._trunk(self._actor_layers, x)
        if self.critic_encoder is not None:
            x = self._encode(self.critic_encoder, obs)
        critic = features if self.critic_trunk is None else self._trunk(self._critic_layers, x)
        return self.policy_head(features, mask), F.linear(critic, *self._value_head).squeeze(-1)

    def distribution(self, obs: Observation, mask: torch.Tensor | None = None) -> Distribution:
        """pi(.|s) only (acting, and the policy-only updates)."""
        self._feed_forward()
        return self.policy_head(self._trunk(self._actor_layers, self._encode(self.encoder, obs)), mask)

    def value(self, obs: Observation) -> torch.Tensor:
        """V(s) only."""
        self._feed_forward()
        encoder = self.encoder if self.critic_encoder is None else self.critic_encoder
        x = self._encode(encoder, obs)
        return F.linear(self._trunk(self._critic_layers, x), *self._value_head).squeeze(-1)

    def _feed_forward(self) -> None:
        if self.recurrent:
            raise RuntimeError("a recurrent policy needs its state: act with step(), train with unroll()")

    # --- recurrent policies: a state per env, zeroed at the steps that start an episode ------

    @property
    def state_size(self) -> int:
        """Floats of recurrent state per env (0 for a feed-forward policy)."""
        return sum(self.state_sizes)

    def initial_state(self, n: int) -> torch.Tensor:
        """The state of ``n`` envs before their first step: zeros ``[n, state_size]``."""
        return torch.zeros(n, self.state_size, device=self.device)

    def step(self, obs: Observation, state: torch.Tensor, starts: torch.Tensor,
             mask: torch.Tensor | None = None) -> tuple[Distribution, torch.Tensor, torch.Tensor]:
        """One step of N envs (acting): (pi(.|s_t, h), V(s_t, h), the next state ``[N, S]``)
        for observations ``[N, ...]``, the state ``[N, S]`` and ``starts`` ``[N]`` (True: the
        first step of an episode, which sees a zero state)."""
        dist, value, parts = self._unroll(tree_map(lambda x: x.unsqueeze(0), obs), state, starts.unsqueeze(0),
                                          None if mask is None else mask.unsqueeze(0), True, True)
        return dist.index(0), value[0], torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def unroll(self, obs: Observation, state: torch.Tensor, starts: torch.Tensor, mask: torch.Tensor | None = None,
               actor: bool = True, critic: bool = True) -> tuple[Distribution | None, torch.Tensor | None]:
        """(pi, V) over ``[L, B]`` sequences (training) from each one's first state ``[B, S]``;
        ``actor``/``critic`` False leaves that part out (None)."""
        dist, value, _ = self._unroll(obs, state, starts, mask, actor, critic)
        return dist, value

    def _unroll(self, obs: Observation, state: torch.Tensor, starts: torch.Tensor, mask: torch.Tensor | None,
                actor: bool, critic: bool) -> tuple[Distribution | None, torch.Tensor | None, list]:
        """(pi or None, V or None, each core's state after the last step: complete only when
        both parts ran and no episode started inside the sequences, as when acting)."""
        parts: list = split_state(state, self.state_sizes)
        shared_core = self.critic_core is None
        dist = value = features = core_out = x = None
        if actor or shared_core or self.critic_encoder is None:
            x = self._encode(self.encoder, obs)
        if actor or shared_core:
            core_out, parts[0] = self.actor_core(x, parts[0], starts)
        if actor or (critic and self.critic_trunk is None):
            features = self._trunk(self._actor_layers, core_out)
        if actor:
            dist = self.policy_head(features, mask)
        if critic:
            if not shared_core:
                cx = x if self.critic_encoder is None else self._encode(self.critic_encoder, obs)
                core_out, parts[1] = self.critic_core(cx, parts[1], starts)
            critic_features = features if self.critic_trunk is None else self._trunk(self._critic_layers, core_out)
            value = F.linear(critic_features, *self._value_head).squeeze(-1)
        return dist, value, parts
