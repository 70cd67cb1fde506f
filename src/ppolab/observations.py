"""One description of an observation space, which everything else reads: the encoders choose a
network per leaf from it, the rollout allocates storage per leaf from it, the collector, the
env guard and ``check-env`` check observations against it, and model files save it.

A space is a tree: ``Dict`` and ``Tuple`` nest, everything else is a leaf. Each leaf gets a kind:

============  ==================================================  ======================  ===========
kind          which spaces                                         stored as               encoded by
============  ==================================================  ======================  ===========
vector        ``Box`` that is not an image (any shape, flattened)  float32                 the MLP
image         ``Box`` of uint8 or bool, 2-D (H, W) or 3-D          its own dtype (uint8,   the CNN
              (C, H, W) or (H, W, C)                               bool): never float32
discrete      ``Discrete(n)``                                      int64                   one-hot
multidiscrete ``MultiDiscrete(nvec)``                              int64 per component     one-hot each
binary        ``MultiBinary``                                      int8                    0/1 floats
============  ==================================================  ======================  ===========

A 3-D image is channel-first when its first dimension is smaller than its last ((4, 84, 84): a
frame stack), else channel-last ((84, 84, 3), (10, 10, 4), (7, 7, 3): the NumPy and Gymnasium
convention, which also wins a tie). Leaves no encoder handles (``Text``, ``Graph``, ``Sequence``,
MiniGrid's ``MissionSpace``) inside a Dict or Tuple are dropped with a notice or refused
(``unsupported_observations``); at the top level they are refused.

Observations are kept as the env's structure flattened to one level: a single leaf is an array,
a Dict/Tuple is ``{key: array}`` with keys such as ``"image"``, ``"0"`` or ``"goal/position"``
(the path through the nesting). This module needs NumPy only (``check-env`` runs without torch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from ppolab.errors import EnvironmentSpecError

KINDS = ("vector", "image", "discrete", "multidiscrete", "binary")
UNSUPPORTED_CHOICES = ("drop", "refuse")

Observation = Any  # an array, or {key: array}: see the module docstring


@dataclass(frozen=True)
class Leaf:
    """One encodable part of an observation (JSON-able, saved in model files)."""

    key: str  # path through Dict/Tuple nesting joined with "/", "" for a single-leaf space
    kind: str
    shape: tuple[int, ...]  # of one observation, as the env returns it
    dtype: str  # as stored in the rollout
    nvec: tuple[int, ...] = ()  # discrete: (n,); multidiscrete: the flattened nvec
    start: tuple[int, ...] = ()  # discrete/multidiscrete: the first value of each component
    channels_last: bool = False  # image (3-D): (H, W, C) rather than (C, H, W)

    def __post_init__(self) -> None:
        for name in ("shape", "nvec", "start"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def name(self) -> str:
        return self.key or "observation"

    @property
    def image_chw(self) -> tuple[int, int, int]:
        """(channels, height, width) of an image leaf."""
        if len(self.shape) == 2:
            return (1, *self.shape)
        c_first = self.shape
        return (c_first[2], c_first[0], c_first[1]) if self.channels_last else c_first

    @property
    def flat_size(self) -> int:
        """Width of the encoded vector for the leaves that are not images."""
        if self.kind in ("discrete", "multidiscrete"):
            return int(sum(self.nvec))
        return math.prod(self.shape)

    def describe(self) -> str:
        """e.g. ``image 4x84x84 uint8 (channel-first)``, ``discrete 16 (one-hot)``."""
        dims = "x".join(map(str, self.shape)) or "scalar"
        if self.kind == "image":
            layout = "grayscale" if len(self.shape) == 2 else (
                "channel-last" if self.channels_last else "channel-first")
            return f"image {dims} {self.dtype} ({layout})"
        if self.kind == "discrete":
            return f"discrete {self.nvec[0]} (one-hot)"
        if self.kind == "multidiscrete":
            return f"multidiscrete {','.join(map(str, self.nvec))} (one-hot each, {self.flat_size} values)"
        if self.kind == "binary":
            return f"binary {dims} ({self.flat_size} values)"
        return f"vector {dims} ({self.flat_size} values)"


@dataclass(frozen=True)
class ObservationSpec:
    """The leaves of an observation space, in a fixed order, and what was dropped."""

    leaves: tuple[Leaf, ...]
    structured: bool  # Dict/Tuple: observations are {key: array}; else one array
    dropped: tuple[str, ...] = ()  # "key: Space" of each dropped leaf

    @property
    def single(self) -> Leaf:
        return self.leaves[0]

    @property
    def has_image(self) -> bool:
        return any(leaf.kind == "image" for leaf in self.leaves)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of a single-leaf observation (the old ``obs_shape``)."""
        return self.single.shape

    def describe(self) -> str:
        if not self.structured:
            return self.single.describe()
        return "{" + ", ".join(f"{leaf.key}: {leaf.describe()}" for leaf in self.leaves) + "}"

    def to_dict(self) -> dict:
        return {"leaves": [dataclasses.asdict(leaf) for leaf in self.leaves],
                "structured": self.structured, "dropped": list(self.dropped)}

    @classmethod
    def from_dict(cls, data: dict) -> ObservationSpec:
        leaves = tuple(Leaf(**{**leaf, "shape": tuple(leaf["shape"])}) for leaf in data["leaves"])
        return cls(leaves, bool(data["structured"]), tuple(data.get("dropped", ())))

    @classmethod
    def vector(cls, shape: tuple[int, ...]) -> ObservationSpec:
        """A single float vector leaf (model files written before observation specs)."""
        return cls((Leaf("", "vector", tuple(shape), "float32"),), False)

    @classmethod
    def from_space(cls, space: gym.Space, where: str = "env", unsupported: str = "drop",
                   notify: Callable[[str], None] | None = None) -> ObservationSpec:
        """The spec of ``space``, or :class:`EnvironmentSpecError` naming what is unsupported and
        how to fix it. ``unsupported="drop"`` drops leaves no encoder handles (``notify`` gets a
        one-line notice), ``"refuse"`` raises."""
        leaves: list[Leaf] = []
        dropped: list[str] = []
        structured = isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple))
        for path, sub in _walk(space, ()):
            key = "/".join(map(str, path))
            leaf = _leaf(key, sub)
            if leaf is not None:
                leaves.append(leaf)
                continue
            if not structured:
                raise EnvironmentSpecError(
                    f"{where}: unsupported observation space {sub}; {_SUPPORTED} (wrap the env to "
                    "turn it into one of these, e.g. with a gymnasium.ObservationWrapper)")
            if unsupported == "refuse":
                raise EnvironmentSpecError(
                    f"{where}: observation '{key}' is {sub}, which ppolab cannot encode; {_SUPPORTED}. "
                    "Set unsupported_observations=drop to train without it, or wrap the env")
            dropped.append(f"{key}: {type(sub).__name__}")
        if not leaves:
            raise EnvironmentSpecError(f"{where}: no observation ppolab can encode in {space}; {_SUPPORTED}")
        spec = cls(tuple(leaves), structured, tuple(dropped))
        if dropped and notify is not None:
            notify(f"note: {where}: dropping observation {', '.join(dropped)} (no encoder for it; "
                   "set unsupported_observations=refuse to make this an error)")
        return spec

    # --- observations ---------------------------------------------------------------------

    def storage(self, observation: Any) -> Observation:
        """An env's (or vector env's) observation as stored: one array, or ``{key: array}``
        with dropped leaves left out. Arrays keep their dtype, except vector leaves (float32)."""
        if not self.structured:
            return _as_stored(self.single, observation)
        return {leaf.key: _as_stored(leaf, _at(observation, leaf.key)) for leaf in self.leaves}

    def problem(self, observation: Any, batch: int | None = None, finite: bool = True) -> Problem | None:
        """What is wrong with an env's observation (a vector env's, ``[batch, ...]``, when
        ``batch`` is given), or None: a part missing, not numbers, of the wrong shape, or (if
        ``finite``) NaN/inf. The one check of observations: the collector, the env guard and
        ``check-env`` word it their way."""
        lead = () if batch is None else (batch,)
        if not self.structured:
            return _leaf_problem(self.single, observation, lead, finite)
        for leaf in self.leaves:
            try:
                part = _at(observation, leaf.key)
            except (KeyError, IndexError, TypeError, ValueError):
                return Problem("type", f"of type {type(observation).__name__} without its part '{leaf.key}'")
            found = _leaf_problem(leaf, part, lead, finite)
            if found is not None:
                return found
        return None

    def to_space(self) -> gym.Space:
        """A Gymnasium space with these leaves (for a model loaded without its env; the bounds
        of Box spaces are not kept, dropped parts are left out)."""
        def leaf_space(leaf: Leaf) -> gym.Space:
            if leaf.kind == "image":
                return gym.spaces.Box(0, 1 if leaf.dtype == "bool" else 255, leaf.shape, np.dtype(leaf.dtype))
            if leaf.kind == "discrete":
                return gym.spaces.Discrete(leaf.nvec[0], start=leaf.start[0])
            if leaf.kind == "multidiscrete":
                return gym.spaces.MultiDiscrete(np.reshape(leaf.nvec, leaf.shape),
                                                start=np.reshape(leaf.start, leaf.shape))
            if leaf.kind == "binary":
                return gym.spaces.MultiBinary(leaf.shape)
            return gym.spaces.Box(-np.inf, np.inf, leaf.shape, np.float32)

        if not self.structured:
            return leaf_space(self.single)
        tree: dict = {}
        for leaf in self.leaves:
            *parents, last = leaf.key.split("/")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = leaf_space(leaf)
        return _as_space(tree)

    def batch_size(self, observation: Observation) -> int | None:
        """``B`` of a stored batch ``[B, ...]``, or None for a single observation."""
        leaf = self.single
        array = observation[leaf.key] if self.structured else observation
        extra = np.ndim(array) - len(leaf.shape)
        return int(np.shape(array)[0]) if extra == 1 else None


def conv_output_size(size: int, kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """Spatial size after valid (unpadded) convolutions: s <- (s - k) // stride + 1 per layer."""
    for k, s in zip(kernels, strides):
        size = (size - k) // s + 1
    return size


def cnn_min_size(kernels: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """The smallest height/width the convolutions leave at least one position of."""
    size = 1
    for k, s in zip(reversed(kernels), reversed(strides)):
        size = (size - 1) * s + k
    return size


def check_image_size(leaf: Leaf, kernels: tuple[int, ...], strides: tuple[int, ...], where: str = "env") -> None:
    """:class:`EnvironmentSpecError` when the convolutions leave nothing of the image ``leaf``,
    saying the smallest size they take and what to set instead."""
    _, h, w = leaf.image_chw
    if conv_output_size(h, kernels, strides) >= 1 and conv_output_size(w, kernels, strides) >= 1:
        return
    need = cnn_min_size(kernels, strides)
    csv = ",".join
    raise EnvironmentSpecError(
        f"{where}: image observation {leaf.name!r} of {h}x{w} pixels is too small for the CNN "
        f"(kernels {csv(map(str, kernels))}, strides {csv(map(str, strides))} need at least {need}x{need}); "
        "set smaller ones, e.g. --set cnn_channels=16 --set cnn_kernels=3 --set cnn_strides=1, or "
        "pass the image as float32 to use the MLP")


def tree_map(fn: Callable[[Any], Any], observation: Observation) -> Observation:
    """``fn`` applied to each leaf array (or tensor) of a stored observation."""
    if isinstance(observation, dict):
        return {key: fn(value) for key, value in observation.items()}
    return fn(observation)


_SUPPORTED = ("ppolab encodes Box (vectors, and uint8/bool images), Discrete, MultiDiscrete and "
              "MultiBinary observations, and Dict/Tuple of them")


def _walk(space: gym.Space, path: tuple) -> list[tuple[tuple, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return [item for key, sub in space.spaces.items() for item in _walk(sub, (*path, key))]
    if isinstance(space, gym.spaces.Tuple):
        return [item for i, sub in enumerate(space.spaces) for item in _walk(sub, (*path, i))]
    return [(path, space)]


def is_image(space: gym.spaces.Box) -> bool:
    """uint8 or bool, and 2-D or 3-D."""
    return space.dtype in (np.uint8, np.bool_) and len(space.shape) in (2, 3)


def _leaf(key: str, space: gym.Space) -> Leaf | None:
    if isinstance(space, gym.spaces.Box):
        if is_image(space):
            shape = space.shape
            channels_last = len(shape) == 3 and not shape[0] < shape[-1]
            return Leaf(key, "image", shape, np.dtype(space.dtype).name, channels_last=channels_last)
        return Leaf(key, "vector", space.shape, "float32")
    if isinstance(space, gym.spaces.Discrete):
        return Leaf(key, "discrete", (), "int64", nvec=(int(space.n),), start=(int(space.start),))
    if isinstance(space, gym.spaces.MultiDiscrete):
        return Leaf(key, "multidiscrete", space.shape, "int64", nvec=space.nvec.reshape(-1),
                    start=space.start.reshape(-1))
    if isinstance(space, gym.spaces.MultiBinary):
        return Leaf(key, "binary", space.shape, "int8")
    return None


def _at(observation: Any, key: str) -> Any:
    if isinstance(observation, dict) and key in observation:  # already stored (flat keys)
        return observation[key]
    for part in key.split("/"):
        observation = observation[int(part)] if isinstance(observation, tuple) else observation[part]
    return observation


def _as_stored(leaf: Leaf, value: Any) -> np.ndarray:
    if leaf.kind == "vector":
        return np.asarray(value, dtype=np.float32)
    array = np.asarray(value)
    return array if array.dtype.name == leaf.dtype else array.astype(leaf.dtype)


@dataclass(frozen=True)
class Problem:
    """A bad observation: ``kind`` is type, dtype, shape or non-finite; ``detail`` completes
    "an observation ..." (e.g. "of shape (3,) instead of (4,)"); for non-finite values, ``entry``
    is the first one (``observation[1] = nan``), ``env`` its row and ``bad_rows`` how many rows
    have one (batches only)."""

    kind: str
    detail: str
    entry: str = ""
    env: int | None = None
    bad_rows: int = 0


def _as_space(tree: dict) -> gym.Space:
    """Nested dicts of spaces as Dict spaces, or Tuple spaces where the keys are 0, 1, ..."""
    parts = {k: _as_space(v) if isinstance(v, dict) else v for k, v in tree.items()}
    if list(parts) == [str(i) for i in range(len(parts))]:
        return gym.spaces.Tuple(tuple(parts.values()))
    return gym.spaces.Dict(parts)


def _leaf_problem(leaf: Leaf, value: Any, lead: tuple[int, ...], finite: bool = True) -> Problem | None:
    array = np.asarray(value)
    part = f"part '{leaf.key}' " if leaf.key else ""
    expected = (*lead, *leaf.shape)
    if array.dtype.kind not in "fiub":
        return Problem("dtype", f"{part}of dtype {array.dtype} (not numbers)")
    if array.shape != expected:
        return Problem("shape", f"{part}of shape {array.shape} instead of {expected}")
    if not finite or array.dtype.kind != "f" or np.isfinite(array).all():
        return None
    rows = array.reshape(lead[0] if lead else 1, -1)
    bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
    env = int(bad[0])
    column = int(np.flatnonzero(~np.isfinite(rows[env]))[0])
    index = np.unravel_index(column, leaf.shape) if leaf.shape else ()
    entry = (leaf.key or "observation") + (f"[{', '.join(str(int(k)) for k in index)}]" if index else "")
    return Problem("non-finite", f"{part}with a non-finite value", f"{entry} = {float(rows[env, column])}",
                   env if lead else None, len(bad))
