"""What the policy outputs for each kind of action space, and how its samples reach the env
(:class:`ActionSpec` describes the space without torch and turns stored actions into env actions;
the distributions of :mod:`ppolab.distributions` sample and score them).

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

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from ppolab.errors import EnvironmentSpecError

if TYPE_CHECKING:
    import torch

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
        import torch  # here, so that describing spaces (check-env) does not import torch

        return torch.float32 if self.kind == "box" else torch.long

    def describe(self) -> str:
        """e.g. ``discrete 2``, ``multidiscrete 3,4``, ``box 6 (tanh-squashed)``."""
        if self.kind == "discrete":
            return f"discrete {self.nvec[0]}" + (f" from {self.start[0]}" if self.start[0] else "")
        if self.kind == "multidiscrete":
            return "multidiscrete " + ",".join(map(str, self.nvec))
        return f"box {len(self.low)}" + (" (tanh-squashed)" if self.squash else "")

    @functools.cached_property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        if self.kind != "box":
            return (np.asarray(self.start, dtype=np.int64),)
        return np.asarray(self.low, dtype=np.float32), np.asarray(self.high, dtype=np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Stored actions ``[..., *shape]`` as the env expects them (offsets, clipping or squashing)."""
        if self.kind != "box":
            return actions + self._arrays[0] if any(self.start) else actions
        low, high = self._arrays
        if self.squash:
            return low + (np.tanh(actions) + 1.0) * 0.5 * (high - low)
        return np.clip(actions, low, high)

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
