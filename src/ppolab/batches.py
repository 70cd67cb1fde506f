"""What an update trains on: a rollout's valid transitions as a :class:`Batch` (feed-forward
policies, shuffled per transition) or as a :class:`SequenceBatch` (recurrent policies, shuffled
per sequence).

Both answer the algorithms the same way: ``units`` (what is shuffled), ``batch[order]`` and
``slice`` (minibatches), ``len`` (the transitions trained on), the per-transition fields
``actions, log_probs, values, advantages, returns`` (``[B]``, valid transitions only), and
:meth:`~Batch.forward` / :meth:`~Batch.distribution` / :meth:`~Batch.value`, the policy's
outputs for those same transitions. ``old`` holds pi_old (PPO-KL) and follows the minibatches.

A sequence batch cuts each env's ``[T]`` steps into chunks of ``sequence_length`` (the last one
padded), each of which starts from the recurrent state stored at its first step (truncated
backpropagation through time). The autoreset steps and the padding are run through the core,
which keeps the state flowing exactly as in the rollout, but are left out of every loss and
statistic by ``valid``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ppolab.distributions import Distribution
from ppolab.losses import MaskedMean
from ppolab.observations import Observation, tree_map
from ppolab.policies import ActorCritic
from ppolab.rollout import Rollout

_FIELDS = ("actions", "log_probs", "values", "advantages", "returns", "masks")


@dataclass
class Batch:
    """The valid transitions of a rollout, flattened to ``[B, ...]`` for minibatch updates."""

    observations: Observation
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor | None = None  # the valid actions, when the env masks them
    old: Distribution | None = None  # pi_old at these transitions (see with_reference)

    def __len__(self) -> int:
        return self.actions.shape[0]

    @property
    def units(self) -> int:
        """What minibatches are made of: transitions."""
        return len(self)

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor], rows: Any) -> Batch:
        return Batch(tree_map(fn, self.observations), *(_apply(fn, getattr(self, f)) for f in _FIELDS),
                     None if self.old is None else self.old.index(rows))

    def __getitem__(self, index: torch.Tensor) -> Batch:
        return self._map(lambda x: x[index], index)

    def slice(self, start: int, stop: int) -> Batch:
        """Rows ``start:stop`` as views (no copy)."""
        return self._map(lambda x: x[start:stop], slice(start, stop))

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device`` (itself when it is there already)."""
        if self.actions.device == torch.device(device):
            return self
        return replace(self._map(lambda x: x.to(device), slice(None)), old=None)

    @property
    def reference(self) -> Distribution | None:
        """pi_old at these transitions (after :meth:`with_reference`)."""
        return self.old

    def forward(self, policy: ActorCritic) -> tuple[Distribution, torch.Tensor]:
        """(pi(.|s_t), V(s_t)) for each transition."""
        return policy(self.observations, self.masks)

    def distribution(self, policy: ActorCritic) -> Distribution:
        return policy.distribution(self.observations, self.masks)

    def value(self, policy: ActorCritic) -> torch.Tensor:
        return policy.value(self.observations)

    def with_reference(self, policy: ActorCritic) -> Batch:
        """The batch with ``old`` = pi_old, the policy now, detached."""
        with torch.no_grad():
            return replace(self, old=self.distribution(policy).detach())


def _valid_steps(name: str) -> property:
    """A :class:`SequenceBatch` field ``[L, M, ...]`` at the valid steps only, ``[B, ...]``."""
    return property(lambda self: getattr(self.steps, name)[self.valid])


@dataclass
class SequenceBatch:
    """M sequences of L steps: ``steps`` holds every field ``[L, M, ...]`` (invalid steps
    included), ``starts`` the first steps of episodes (the state is zeroed there), ``states``
    the state ``[M, S]`` each sequence starts from, ``valid`` the steps trained on."""

    steps: Batch
    starts: torch.Tensor
    states: torch.Tensor
    valid: torch.Tensor
    old: Distribution | None = None  # pi_old over [L, M]

    def __len__(self) -> int:
        return int(self.valid.sum())

    @property
    def units(self) -> int:
        """What minibatches are made of: sequences."""
        return self.valid.shape[1]

    def _columns(self, index: Any) -> SequenceBatch:
        def cols(x: torch.Tensor) -> torch.Tensor:
            return x[:, index]

        steps = Batch(tree_map(cols, self.steps.observations), *(_apply(cols, getattr(self.steps, f)) for f in _FIELDS))
        return SequenceBatch(steps, cols(self.starts), self.states[index], cols(self.valid),
                             None if self.old is None else self.old.index((slice(None), index)))

    def __getitem__(self, index: torch.Tensor) -> SequenceBatch:
        return self._columns(index)

    def slice(self, start: int, stop: int) -> SequenceBatch:
        return self._columns(slice(start, stop))

    def to(self, device: torch.device) -> SequenceBatch:
        if self.valid.device == torch.device(device):
            return self
        return SequenceBatch(self.steps.to(device), self.starts.to(device), self.states.to(device),
                             self.valid.to(device))

    # the valid transitions, [B], as a flat Batch has them
    actions = _valid_steps("actions")
    log_probs = _valid_steps("log_probs")
    values = _valid_steps("values")
    advantages = _valid_steps("advantages")
    returns = _valid_steps("returns")

    @property
    def reference(self) -> Distribution | None:
        return None if self.old is None else self.old.index(self.valid)

    def _unroll(self, policy: ActorCritic, actor: bool, critic: bool) -> tuple[Distribution | None, torch.Tensor | None]:
        return policy.unroll(self.steps.observations, self.states, self.starts, self.steps.masks, actor, critic)

    def forward(self, policy: ActorCritic) -> tuple[Distribution, torch.Tensor]:
        dist, value = self._unroll(policy, True, True)
        return dist.index(self.valid), value[self.valid]

    def distribution(self, policy: ActorCritic) -> Distribution:
        return self._unroll(policy, True, False)[0].index(self.valid)

    def value(self, policy: ActorCritic) -> torch.Tensor:
        return self._unroll(policy, False, True)[1][self.valid]

    def with_reference(self, policy: ActorCritic) -> SequenceBatch:
        with torch.no_grad():
            return replace(self, old=self._unroll(policy, True, False)[0].detach())


AnyBatch = Batch | SequenceBatch


def _apply(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else fn(x)


def minibatch_bounds(n: int, batch_size: int, minibatch_size: int) -> list[int]:
    """Slice boundaries splitting ``n`` units (valid transitions, or sequences) into as many
    near-equal minibatches as a full batch of ``batch_size`` transitions would give at
    ``minibatch_size`` (autoreset steps make n a little smaller than T * N; the minibatch count
    stays the configured one)."""
    count = max(1, min(n, round(batch_size / minibatch_size)))
    return [n * i // count for i in range(count + 1)]


def normalized(advantages: torch.Tensor, mean: MaskedMean | None = None) -> torch.Tensor:
    """(A - mean) / (std + 1e-8), or A unchanged for a single sample; the std is the unbiased
    one, as ``torch.std``. With a :class:`~ppolab.losses.MaskedMean`, per row of ``[P, L]`` over
    its valid entries."""
    if mean is None:
        if advantages.numel() < 2:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    centered = advantages - mean(advantages).unsqueeze(-1)
    n = mean.count
    std = (mean(centered**2) * n / (n - 1)).sqrt().unsqueeze(-1)
    return torch.where((n >= 2).unsqueeze(-1), centered / (std + 1e-8), advantages)


def to_batch(rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> Batch:
    """Flatten ``[T, N]`` to ``[T * N]`` and drop the autoreset steps."""
    keep = rollout.valid.reshape(-1).nonzero().squeeze(-1)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *x.shape[2:])[keep]

    return Batch(
        tree_map(flat, rollout.observations), flat(rollout.actions), flat(rollout.log_probs),
        flat(rollout.values), flat(advantages), flat(returns),
        None if rollout.masks is None else flat(rollout.masks),
    )


def to_sequences(rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor, length: int) -> SequenceBatch:
    """Each env's ``[T]`` steps cut into ``ceil(T / length)`` chunks of ``length`` (the last one
    padded with invalid steps): ``[length, N * chunks]``, chunk-major (sequence ``c * N + i`` is
    env i's chunk c)."""
    T, N = rollout.valid.shape
    length = min(length, T)
    chunks = math.ceil(T / length)
    pad = chunks * length - T

    def cut(x: torch.Tensor) -> torch.Tensor:
        if pad:  # invalid steps; all actions valid in the masks' padding
            filler = x.new_ones if x is rollout.masks else x.new_zeros
            x = torch.cat([x, filler(pad, *x.shape[1:])])
        x = x.reshape(chunks, length, N, *x.shape[2:]).transpose(0, 1)
        return x.reshape(length, chunks * N, *x.shape[3:])

    steps = Batch(tree_map(cut, rollout.observations), cut(rollout.actions), cut(rollout.log_probs),
                  cut(rollout.values), cut(advantages), cut(returns),
                  None if rollout.masks is None else cut(rollout.masks))
    states = rollout.states[::length].reshape(chunks * N, -1)  # the state entering each chunk
    return SequenceBatch(steps, cut(rollout.starts), states, cut(rollout.valid))


def training_batch(rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor,
                   sequence_length: int | None) -> AnyBatch:
    """A :class:`SequenceBatch` for a rollout of a recurrent policy (it stores states), else a
    :class:`Batch`."""
    if rollout.states is None:
        return to_batch(rollout, advantages, returns)
    return to_sequences(rollout, advantages, returns, sequence_length or rollout.valid.shape[0])

