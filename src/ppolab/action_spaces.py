"""What the policy outputs for each kind of action space, and how its samples reach the env.

=============  ================================  ===========================  ==================
space          policy head outputs               stored action (rollout)      sent to the env
=============  ================================  ===========================  ==================
Discrete(n)    n logits                          index in 0..n-1 (long)       index + start
MultiDiscrete  sum(nvec) logits, one softmax     K indices (long)             indices + start
               per component
Box(D)         D means; a learnable,             the Gaussian sample u        clip(u, low, high)
               state-independent log-std
Box, squashed  same                              the pre-squash sample u      low + (tanh(u) + 1)
                                                                              (high - low) / 2
=============  ================================  ===========================  ==================

For Box actions the log-probability is always that of the stored (unclipped) sample, so the
ratio pi_new / pi_old is exact; clipping happens only on the way to the env. The squashed
variant's log-probability includes the tanh log-det-Jacobian (the affine rescale to the bounds
adds a constant that cancels in every ratio). Its entropy bonus uses the entropy of the
Gaussian before squashing, which has a closed form; the squashed entropy has none.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from ppolab import distributions as D
from ppolab.errors import EnvironmentSpecError

KINDS = ("discrete", "multidiscrete", "box")


@dataclass(frozen=True)
class ActionSpec:
    """A JSON-able description of an action space (saved in model files)."""

    kind: str
    nvec: tuple[int, ...] = ()  # discrete: (n,); multidiscrete: the components' sizes
    start: tuple[int, ...] = ()  # discrete / multidiscrete: the first action of each component
    low: tuple[float, ...] = ()  # box bounds
    high: tuple[float, ...] = ()
    squash: bool = False  # box: tanh-squash to the bounds instead of clipping

    def __post_init__(self) -> None:
        for name in ("nvec", "start", "low", "high"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def head_dim(self) -> int:
        """Number of network outputs: logits, or Gaussian means."""
        return len(self.low) if self.kind == "box" else int(sum(self.nvec))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one env's stored action."""
        if self.kind == "discrete":
            return ()
        return (len(self.low),) if self.kind == "box" else (len(self.nvec),)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.kind == "box" else torch.long

    @classmethod
    def from_space(cls, space: gym.Space, squash: bool = False, where: str = "env") -> ActionSpec:
        if isinstance(space, gym.spaces.Discrete):
            return cls("discrete", nvec=(int(space.n),), start=(int(space.start),))
        if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1:
            return cls("multidiscrete", nvec=tuple(int(n) for n in space.nvec),
                       start=tuple(int(s) for s in space.start))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            low, high = space.low.astype(float), space.high.astype(float)
            if squash and not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise EnvironmentSpecError(
                    f"{where}: squash_actions needs finite action bounds, got {space}; "
                    "set squash_actions=false to clip instead"
                )
            return cls("box", low=tuple(low.tolist()), high=tuple(high.tolist()), squash=squash)
        raise EnvironmentSpecError(
            f"{where}: unsupported action space {space}; ppolab supports Discrete, "
            "MultiDiscrete (one-dimensional nvec) and Box (one-dimensional) actions"
        )


class PolicyDistribution:
    """Sampling, log-probabilities and entropies for one :class:`ActionSpec`, from the policy
    head's output (and, for Box actions, the log-std parameter)."""

    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec
        self.kind = spec.kind
        if spec.kind == "box":
            self._low = np.asarray(spec.low, dtype=np.float32)
            self._high = np.asarray(spec.high, dtype=np.float32)
        else:
            self._start = np.asarray(spec.start, dtype=np.int64)
            self._offset = bool(self._start.any())

    def sample(self, head: torch.Tensor, log_std: torch.Tensor | None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, log pi(action)) for each row of ``head``."""
        if self.kind == "discrete":
            log_probs = D.log_softmax(head)
            action = D.sample(log_probs, generator)
            return action, D.log_prob(log_probs, action)
        if self.kind == "multidiscrete":
            parts = D.multi_log_softmax(head, self.spec.nvec)
            action = D.multi_sample(parts, generator)
            return action, D.multi_log_prob(parts, action)
        log_std = log_std.expand_as(head)
        action = D.gaussian_sample(head, log_std, generator)
        return action, self._box_log_prob(head, log_std, action)

    def log_prob_entropy(self, head: torch.Tensor, log_std: torch.Tensor | None,
                         actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(a|s), H[pi(.|s)]) of stored ``actions`` under the current network."""
        if self.kind == "discrete":
            log_probs = D.log_softmax(head)
            return D.log_prob(log_probs, actions), D.entropy(log_probs)
        if self.kind == "multidiscrete":
            parts = D.multi_log_softmax(head, self.spec.nvec)
            return D.multi_log_prob(parts, actions), D.multi_entropy(parts)
        log_std = log_std.expand_as(head)
        return self._box_log_prob(head, log_std, actions), D.gaussian_entropy(log_std)

    def kl(self, old_head: torch.Tensor, old_log_std: torch.Tensor | None, head: torch.Tensor,
           log_std: torch.Tensor | None) -> torch.Tensor:
        """Exact per-state D_KL(pi_old(.|s) || pi(.|s)) (TRPO's constraint, PPO-KL's penalty).
        For tanh-squashed actions it is the KL of the Gaussians before the squash: a bijection
        applied to both distributions leaves the KL unchanged."""
        if self.kind == "discrete":
            return D.kl(D.log_softmax(old_head), D.log_softmax(head))
        if self.kind == "multidiscrete":
            nvec = self.spec.nvec
            pairs = zip(D.multi_log_softmax(old_head, nvec), D.multi_log_softmax(head, nvec))
            return sum(D.kl(old, new) for old, new in pairs)
        return D.gaussian_kl(old_head, old_log_std.expand_as(old_head), head, log_std.expand_as(head))

    def mode(self, head: torch.Tensor) -> torch.Tensor:
        """The most likely action (deterministic evaluation): argmax, or the Gaussian mean."""
        if self.kind == "discrete":
            return D.mode(head)  # argmax of the logits = argmax of the log-probabilities
        if self.kind == "multidiscrete":
            return torch.stack([p.argmax(-1) for p in head.split(list(self.spec.nvec), -1)], -1)
        return head

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """Stored actions as the env expects them (offsets, clipping or squashing)."""
        array = actions.numpy()
        if self.kind != "box":
            return array + self._start if self._offset else array
        if self.spec.squash:
            return self._low + (np.tanh(array) + 1.0) * 0.5 * (self._high - self._low)
        return np.clip(array, self._low, self._high)

    def _box_log_prob(self, mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.spec.squash:
            return D.squashed_gaussian_log_prob(mean, log_std, actions)
        return D.gaussian_log_prob(mean, log_std, actions)
