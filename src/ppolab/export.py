"""A trained policy as one self-contained file, observation in and action out, that needs neither
ppolab nor Gymnasium: ONNX (run it with onnxruntime, from Python or any other language) or
TorchScript (run it with torch alone).

    ppolab export RUN_DIR --format onnx --out policy.onnx [--sample]

The file holds the whole path of :meth:`ppolab.agent.Agent.predict`:

    observation, as the env gives it (one input per leaf: images uint8, Discrete int64,
    vectors float32)
      -> vector leaves normalized with the run's frozen statistics and clipped (in float64,
         as predict does)
      -> the policy: encoder (images scaled to [0, 1] inside it), recurrent core, trunk, head
      -> the most likely action, or a sample of pi(.|s) (``--sample``)
      -> the action as the env takes it (a Discrete space's start added; Box actions clipped to
         the bounds, or tanh-squashed to them)

Inputs, each with a leading batch dimension of any size B: the observation (``obs``, or one per
Dict/Tuple key, named by it), then ``action_mask`` (bool ``[B, A]``) if the policy was trained
with masks, then ``state`` (float32 ``[B, S]``) for a recurrent policy: zeros at an episode's
first step, then the ``next_state`` output of the previous step. Outputs: ``action``, and
``next_state`` for a recurrent policy. :func:`signature` describes them for a given model.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ppolab.encoders import zeros
from ppolab.errors import ConfigError
from ppolab.masks import mask_size
from ppolab.normalize import EPS

FORMATS = ("onnx", "torchscript")


@dataclass(frozen=True)
class Port:
    """One input or output of an exported policy."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]  # "B" for the batch dimension

    def describe(self) -> str:
        return f"{self.name}: {self.dtype} [{', '.join(map(str, self.shape))}]"


class DeployedPolicy(nn.Module):
    """The exported computation (see the module docstring), for ``agent`` (on the CPU)."""

    def __init__(self, agent: Any, deterministic: bool = True) -> None:
        super().__init__()
        self.policy = copy.deepcopy(agent.policy).requires_grad_(False)  # the agent may train on
        self.spec, self.action = agent.env_info.observation, agent.env_info.action
        self.deterministic = deterministic
        self.keys = [leaf.key for leaf in self.spec.leaves]
        self.masked = agent.uses_action_masks
        self.recurrent = self.policy.recurrent
        normalizer = agent.obs_normalizer
        self.normalized: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        if normalizer is not None:
            for key, stats in normalizer.by_key.items():
                mean = torch.as_tensor(stats.mean, dtype=torch.float64)
                std = torch.sqrt(torch.as_tensor(stats.var, dtype=torch.float64) + EPS)
                self.normalized[key] = (mean, std, float(normalizer.clip))
        a = self.action
        if a.kind == "box":
            self.register_buffer("low", torch.tensor(a.low, dtype=torch.float32), persistent=False)
            self.register_buffer("high", torch.tensor(a.high, dtype=torch.float32), persistent=False)
        else:
            self.register_buffer("start", torch.tensor(a.start, dtype=torch.long), persistent=False)

    def _observation(self, leaves: tuple[torch.Tensor, ...]) -> Any:
        normalized = []
        for key, x in zip(self.keys, leaves):
            if key in self.normalized:
                mean, std, clip = self.normalized[key]
                x = ((x.double() - mean) / std).clamp(-clip, clip).float()
            normalized.append(x)
        return normalized[0] if not self.spec.structured else dict(zip(self.keys, normalized))

    def _to_env(self, action: torch.Tensor) -> torch.Tensor:
        a = self.action
        if a.kind != "box":
            return action + (self.start[0] if a.kind == "discrete" else self.start)
        if a.squash:
            return self.low + (torch.tanh(action) + 1.0) * 0.5 * (self.high - self.low)
        return torch.maximum(torch.minimum(action, self.high), self.low)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        leaves, rest = inputs[:len(self.keys)], list(inputs[len(self.keys):])
        obs = self._observation(leaves)
        mask = rest.pop(0) if self.masked else None
        if self.recurrent:
            state = rest.pop(0)
            starts = torch.zeros(state.shape[0], dtype=torch.bool)
            dist, _, state = self.policy.step(obs, state, starts, mask)
        else:
            dist = self.policy.distribution(obs, mask)
        action = self._to_env(dist.mode() if self.deterministic else dist.sample())
        return (action, state) if self.recurrent else action

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        obs = zeros(self.spec, batch)
        leaves = [obs] if not self.spec.structured else [obs[k] for k in self.keys]
        if self.masked:
            leaves.append(torch.ones(batch, mask_size(self.action), dtype=torch.bool))
        if self.recurrent:
            leaves.append(self.policy.initial_state(batch))
        return tuple(leaves)


def signature(agent: Any) -> tuple[list[Port], list[Port]]:
    """The inputs and outputs of ``agent``'s exported policy."""
    spec, action = agent.env_info.observation, agent.env_info.action
    inputs = [Port(leaf.key or "obs", leaf.dtype, ("B", *leaf.shape)) for leaf in spec.leaves]
    if agent.uses_action_masks:
        inputs.append(Port("action_mask", "bool", ("B", mask_size(action))))
    outputs = [Port("action", "float32" if action.kind == "box" else "int64", ("B", *action.shape))]
    if agent.policy.recurrent:
        inputs.append(Port("state", "float32", ("B", agent.policy.state_size)))
        outputs.append(Port("next_state", "float32", ("B", agent.policy.state_size)))
    return inputs, outputs


def export(agent: Any, path: str | Path, format: str = "onnx", deterministic: bool = True) -> Path:
    """Write ``agent``'s policy to ``path`` as ``format`` (onnx or torchscript); see the module
    docstring for what it computes."""
    if format not in FORMATS:
        raise ConfigError(f"invalid format={format!r}: must be one of {', '.join(FORMATS)}")
    path = Path(path)
    if agent.device.type != "cpu":
        raise ConfigError("export a model loaded on the CPU: ppolab.load(path, device='cpu')")
    module = DeployedPolicy(agent, deterministic).eval()
    example = module.example_inputs()
    inputs, outputs = signature(agent)
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.jit's deprecation and the ONNX exporter's notes on its own internals are not the user's
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if format == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            torch.jit.save(traced, str(path))
            return path
        try:
            import onnxscript  # noqa: F401 - torch's ONNX exporter needs it
        except ImportError:
            raise ConfigError("ONNX export needs onnx and onnxscript: pip install 'ppolab[export]'") from None
        batch = torch.export.Dim("batch")
        program = torch.onnx.export(
            module, example, input_names=[p.name for p in inputs], output_names=[p.name for p in outputs],
            dynamic_shapes=(tuple({0: batch} for _ in example),), dynamo=True, verbose=False)  # forward(*inputs)
        program.save(str(path))
    return path
