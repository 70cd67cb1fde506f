"""Which device the networks and the update run on (``config.device``).

``auto`` picks CUDA when it is available *and* the network has a CNN or a user's encoder, else
the CPU: for the small MLPs of vector observations, a GPU loses to the CPU, since every env step
waits on a forward pass of a few thousand multiply-adds whose kernel launches and host-device
copies cost more than the math. The envs and the rollout storage stay on the CPU either way.
"""

from __future__ import annotations

import os

import torch

from ppolab.errors import ConfigError


def resolve_device(name: str, heavy_encoder: bool) -> torch.device:
    """The ``torch.device`` for ``name`` (auto | cpu | cuda | cuda:N | mps), or a
    :class:`ConfigError` saying why it cannot be used here."""
    if name == "auto":
        return torch.device("cuda" if heavy_encoder and torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name}: CUDA is not available here (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda or 'no'}); use device=cpu or device=auto")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps: the Apple MPS backend is not available here; use device=cpu or auto")
    return torch.device(name)


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator on ``device`` (action sampling and minibatch shuffles run there)."""
    return torch.Generator(device=device).manual_seed(seed)


def restore_generator(gen: torch.Generator, state: torch.Tensor, seed: int) -> None:
    """Put back a saved generator state; a state saved on another kind of device does not fit,
    and the generator is seeded with ``seed`` instead (the run goes on, with other draws)."""
    try:
        gen.set_state(state)
    except (RuntimeError, TypeError, ValueError):
        gen.manual_seed(seed)
