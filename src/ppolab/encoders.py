"""Observation encoders: from stored observations (see :mod:`ppolab.observations`) to one float
feature vector ``[..., F]`` per observation, which the trunk MLP and the heads read.

    vector leaf         flattened, as float32 (the trunk MLP does the rest)
    image leaf          the CNN: uint8 / 255 (bool as 0/1) inside the network, channel-last
                        images permuted to (C, H, W), conv + ReLU layers, then a linear layer
                        to ``cnn_features`` + ReLU (Mnih et al. 2015's "Nature CNN" by default:
                        32 8x8/4, 64 4x4/2, 64 3x3/1, 512)
    discrete leaf       one-hot of ``n``; multidiscrete: one one-hot per component
    binary leaf         its bits as 0/1 floats
    Dict / Tuple        one encoder per leaf, outputs concatenated in the spec's leaf order

A user's encoder replaces all of this: ``factory(observation_space) -> nn.Module`` whose
forward takes the stored observation (a tensor, or ``{key: tensor}`` for Dict/Tuple spaces) with
a leading batch dimension and returns ``[batch, features]``; :func:`build_encoder` checks that
shape once, at construction, with a batch of zeros.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from ppolab.config import Config
from ppolab.errors import ConfigError
from ppolab.observations import Leaf, Observation, ObservationSpec, check_image_size, conv_output_size

EncoderFactory = Callable[[gym.Space], nn.Module]
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}  # config.ACTIVATIONS, as modules


def orthogonal_(layer: nn.Linear | nn.Conv2d, gain: float) -> nn.Module:
    """Orthogonal weights scaled by ``gain`` and zero bias (Engstrom et al. 2020; Huang et al.
    2022, detail 2), for linear and convolutional layers alike."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class VectorEncoder(nn.Module):
    """A vector leaf, flattened to ``[..., prod(shape)]``."""

    def __init__(self, leaf: Leaf) -> None:
        super().__init__()
        self.ndim, self.features = len(leaf.shape), leaf.flat_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.ndim == 1:
            return x
        return x.unsqueeze(-1) if self.ndim == 0 else x.flatten(-self.ndim)


class OneHotEncoder(nn.Module):
    """Discrete(n) as a one-hot vector of n; MultiDiscrete as one one-hot per component."""

    def __init__(self, leaf: Leaf) -> None:
        super().__init__()
        self.ndim, self.nvec, self.features = len(leaf.shape), leaf.nvec, leaf.flat_size
        self.register_buffer("start", torch.tensor(leaf.start, dtype=torch.long), persistent=False)

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        """Discrete(n): the index of each one-hot's 1 (see ``ActorCritic._trunk``)."""
        return x.long() - self.start[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ndim == 0:
            return F.one_hot(self.indices(x), self.nvec[0]).float()
        x = x.long().flatten(-self.ndim) - self.start
        return torch.cat([F.one_hot(x[..., k], n) for k, n in enumerate(self.nvec)], -1).float()


class BinaryEncoder(nn.Module):
    """MultiBinary bits as 0/1 floats, flattened."""

    def __init__(self, leaf: Leaf) -> None:
        super().__init__()
        self.ndim, self.features = len(leaf.shape), leaf.flat_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().flatten(-self.ndim)


class CNNEncoder(nn.Module):
    """An image leaf through convolutions and one linear layer, an activation (ReLU by default)
    after each; input scaled to
    [0, 1] inside the network (uint8 / 255), so the rollout stores the env's bytes."""

    def __init__(self, leaf: Leaf, channels: tuple[int, ...], kernels: tuple[int, ...],
                 strides: tuple[int, ...], features: int, where: str = "env", activation: str = "relu") -> None:
        super().__init__()
        check_image_size(leaf, kernels, strides, where)
        c, h, w = leaf.image_chw
        out_h, out_w = conv_output_size(h, kernels, strides), conv_output_size(w, kernels, strides)
        layers: list[nn.Module] = []
        for out, k, s in zip(channels, kernels, strides):
            layers += [orthogonal_(nn.Conv2d(c, out, k, s), math.sqrt(2)), ACTIVATIONS[activation]()]
            c = out
        # channels-last (NHWC) memory: PyTorch's CPU convolutions run about 1.5x faster on it
        # forward and backward (measured here on the Nature CNN, batch 256)
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)
        self.linear = orthogonal_(nn.Linear(c * out_h * out_w, features), math.sqrt(2))
        self.permute = leaf.channels_last
        self.grayscale = len(leaf.shape) == 2
        self.scale = 1.0 / 255.0 if leaf.dtype == "uint8" else 1.0
        self.image_ndim = len(leaf.shape)
        self.features = features
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[: x.dim() - self.image_ndim]
        x = x.reshape(-1, *x.shape[x.dim() - self.image_ndim:])
        if self.grayscale:
            x = x.unsqueeze(1)
        elif self.permute:
            x = x.permute(0, 3, 1, 2)
        x = (x.float() * self.scale).contiguous(memory_format=torch.channels_last)
        x = self.activation(self.linear(self.convs(x).flatten(1)))
        return x.reshape(*lead, self.features)


class MultiEncoder(nn.Module):
    """Dict/Tuple observations: one encoder per leaf, outputs concatenated in leaf order."""

    def __init__(self, encoders: dict[str, nn.Module]) -> None:
        super().__init__()
        self.keys = list(encoders)
        # ModuleDict keys may not contain "." or "/": index them by position
        self.parts = nn.ModuleList(encoders.values())
        self.features = sum(e.features for e in encoders.values())

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([enc(x[key]) for key, enc in zip(self.keys, self.parts)], -1)


def leaf_encoder(leaf: Leaf, config: Config, where: str = "env") -> nn.Module:
    if leaf.kind == "image":
        return CNNEncoder(leaf, config.cnn_channels, config.cnn_kernels, config.cnn_strides,
                          config.cnn_features, where, config.cnn_activation)
    if leaf.kind in ("discrete", "multidiscrete"):
        return OneHotEncoder(leaf)
    if leaf.kind == "binary":
        return BinaryEncoder(leaf)
    return VectorEncoder(leaf)


def build_encoder(spec: ObservationSpec, config: Config, space: gym.Space | None = None,
                  where: str = "env") -> nn.Module:
    """The encoder for ``spec``: the user's (``config.encoder``) or the built-in one. Every
    encoder has an int ``features``, the width of its output."""
    if config.encoder:
        return user_encoder(config.encoder, spec, space)
    if not spec.structured:
        return leaf_encoder(spec.single, config, where)
    return MultiEncoder({leaf.key: leaf_encoder(leaf, config, where) for leaf in spec.leaves})


def load_factory(path: str) -> EncoderFactory:
    """The factory named by ``"module:Attr"``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"invalid encoder={path!r}: must be 'module:Attr' naming a factory "
                          "observation_space -> torch.nn.Module")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ConfigError(f"encoder={path!r}: cannot import module '{module_name}' "
                          f"({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"encoder={path!r}: module '{module_name}' has no callable named '{attr}'")
    return factory


def factory_path(factory: EncoderFactory) -> str:
    """``"module:qualname"`` of a factory defined at a module's top level (so that a saved model
    can build it again), else a :class:`ConfigError` saying so."""
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or not name or "<" in name or module == "__main__":
        raise ConfigError(
            f"encoder {factory!r}: pass a factory defined at the top level of an importable module "
            "(not a lambda, a nested function or one in __main__), or its 'module:Attr' path, so that "
            "a saved model can build the same network again")
    return f"{module}:{name}"


def user_encoder(path: str, spec: ObservationSpec, space: gym.Space | None) -> nn.Module:
    """The user's encoder, checked on a zero batch of 2: it must return ``[2, features]``."""
    factory = load_factory(path)
    try:
        module = factory(space)
    except Exception as exc:
        raise ConfigError(f"encoder={path!r} raised {type(exc).__name__}: {exc} when called with the "
                          f"observation space {space}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"encoder={path!r} returned a {type(module).__name__}, not a torch.nn.Module")
    probe = zeros(spec, 2)
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as exc:
        raise ConfigError(f"encoder={path!r} failed on a batch of 2 observations shaped "
                          f"{_shapes(probe)} ({type(exc).__name__}: {exc})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 1:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"encoder={path!r} must return [batch, features]: for a batch of 2 "
                          f"observations {_shapes(probe)} it returned {got}, expected (2, F) with F >= 1")
    module.features = int(out.shape[1])
    return module


def zeros(spec: ObservationSpec, batch: int) -> Observation:
    """A batch of ``batch`` all-zero stored observations (the start values of discrete leaves)."""
    def leaf_zeros(leaf: Leaf) -> torch.Tensor:
        dtype = getattr(torch, leaf.dtype)
        t = torch.zeros(batch, *leaf.shape, dtype=dtype)
        if leaf.start and any(leaf.start):
            t += torch.tensor(leaf.start, dtype=dtype).reshape(leaf.shape or ())
        return t

    if not spec.structured:
        return leaf_zeros(spec.single)
    return {leaf.key: leaf_zeros(leaf) for leaf in spec.leaves}


def _shapes(obs: Observation) -> str:
    if isinstance(obs, dict):
        return "{" + ", ".join(f"{k}: {tuple(v.shape)}" for k, v in obs.items()) + "}"
    return str(tuple(obs.shape))
