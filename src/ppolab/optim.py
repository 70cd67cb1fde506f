"""Adam and RMSprop over a list of parameters, and global gradient-norm clipping.

Why not ``torch.optim.Adam``: constructing any ``torch.optim`` optimizer imports
``torch._dynamo``, 1.4 s of start-up on these machines (measured), over a quarter of the
five-second CartPole target. The update is Adam exactly (Kingma & Ba 2015, Algorithm 1), with
``torch._foreach_*`` ops over the parameter list as ``torch.optim``'s foreach implementation
does; ``tests/test_optim.py`` checks it step for step against ``torch.optim.Adam`` (and RMSprop
against ``torch.optim.RMSprop``).

Device-safe: the optimizer holds the parameters themselves, never a copy of their storage, and
keeps its state on their device: moving the network (``.to(device)`` replaces ``p.data``) before
or after building the optimizer, or loading a state saved on another device, is fine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ppolab.errors import TrainingDivergedError


class _Optimizer:
    """The parameter list, the learning rate, the step count and per-parameter state buffers."""

    BUFFERS: tuple[str, ...] = ()

    def __init__(self, params: nn.Module | Iterable[nn.Parameter], lr: float) -> None:
        self.params = list(params.parameters() if isinstance(params, nn.Module) else params)
        self.lr = lr
        self.step_count = 0  # calls of step()
        # updates of each parameter: torch.optim's per-parameter step, which Adam's bias
        # correction needs when a parameter has no gradient at some steps (it is skipped then)
        self.steps = [0] * len(self.params)
        self.state: dict[str, list[torch.Tensor]] = {
            name: [torch.zeros_like(p) for p in self.params] for name in self.BUFFERS}

    def grads(self) -> list[torch.Tensor]:
        """The gradients of the parameters that have one."""
        return [p.grad for p in self.params if p.grad is not None]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _live(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]], list[int]]:
        """(params, grads, state buffers, update counts including this one) of the parameters
        with a gradient, the buffers moved to the parameters' device first if the network was
        moved."""
        if self.params and self.state and self.state[self.BUFFERS[0]][0].device != self.params[0].device:
            self.state = {k: [b.to(p.device) for b, p in zip(v, self.params)] for k, v in self.state.items()}
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i].data for i in live]
        grads = [self.params[i].grad for i in live]
        self.step_count += 1
        for i in live:
            self.steps[i] += 1
        steps = [self.steps[i] for i in live]
        return params, grads, [[self.state[k][i] for i in live] for k in self.BUFFERS], steps

    def state_dict(self) -> dict:
        return {**{k: [b.clone() for b in v] for k, v in self.state.items()},
                "step": self.step_count, "steps": list(self.steps), "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        for name in self.BUFFERS:
            saved = state[name]
            if isinstance(saved, torch.Tensor):  # model files before 0.2: one flat buffer
                saved = saved.split([p.numel() for p in self.params])
            if len(saved) != len(self.params):
                raise KeyError(f"optimizer state '{name}' has {len(saved)} tensors for {len(self.params)} parameters")
            for buffer, value in zip(self.state[name], saved):
                buffer.copy_(value.reshape(buffer.shape))
        self.step_count = int(state["step"])
        # states saved before per-parameter counts: every parameter was updated at every step
        steps = [int(n) for n in state.get("steps", [self.step_count] * len(self.params))]
        if len(steps) != len(self.params):
            raise KeyError(f"optimizer state 'steps' has {len(steps)} counts for {len(self.params)} parameters")
        self.steps = steps
        self.lr = float(state["lr"])


class Adam(_Optimizer):
    """Adam on parameters theta with gradients g:

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        theta <- theta - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

    with t the number of updates of that parameter (as torch.optim counts: a parameter without
    a gradient at a step is skipped, its moments and t unchanged).
    """

    BUFFERS = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: nn.Module | Iterable[nn.Parameter], lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5) -> None:
        super().__init__(params, lr)
        self.betas, self.eps = betas, eps

    @torch.no_grad()
    def step(self) -> None:
        params, grads, (m, v), steps = self._live()
        if not params:
            return
        b1, b2 = self.betas
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        denom = torch._foreach_sqrt(v)
        if all(t == steps[0] for t in steps):  # the usual case: one bias correction for all
            t = steps[0]
            torch._foreach_div_(denom, math.sqrt(1 - b2**t))
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, m, denom, value=-self.lr / (1 - b1**t))
        else:
            torch._foreach_div_(denom, [math.sqrt(1 - b2**t) for t in steps])
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, m, denom, [-self.lr / (1 - b1**t) for t in steps])


class RMSprop(_Optimizer):
    """RMSprop (Tieleman and Hinton 2012; A2C's optimizer), as torch.optim.RMSprop without
    momentum or centering:

        v <- alpha v + (1 - alpha) g^2;   theta <- theta - lr * g / (sqrt(v) + eps)
    """

    BUFFERS = ("square_avg",)

    def __init__(self, params: nn.Module | Iterable[nn.Parameter], lr: float, alpha: float = 0.99,
                 eps: float = 1e-5) -> None:
        super().__init__(params, lr)
        self.alpha, self.eps = alpha, eps

    @torch.no_grad()
    def step(self) -> None:
        params, grads, (v,), _ = self._live()
        if not params:
            return
        torch._foreach_mul_(v, self.alpha)
        torch._foreach_addcmul_(v, grads, grads, value=1 - self.alpha)
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, grads, denom, value=-self.lr)


def gradient_step(optimizer: _Optimizer, loss: torch.Tensor, max_grad_norm: float,
                  **parts: torch.Tensor) -> torch.Tensor:
    """Backpropagate ``loss``, clip the global gradient norm, and step; returns the norm before
    clipping. Raises :class:`TrainingDivergedError` *before* stepping when the loss or the norm
    is NaN or infinite, naming ``loss`` and the ``parts`` it was made of."""
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm_(optimizer.grads(), max_grad_norm)
    if not torch.isfinite(loss + norm):
        values = ", ".join(f"{name}={value.item()}" for name, value in {"loss": loss, **parts}.items())
        raise TrainingDivergedError(f"non-finite loss or gradient ({values}, grad_norm={norm.item()})")
    optimizer.step()
    return norm


@torch.no_grad()
def clip_grad_norm_(grads: list[torch.Tensor] | torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place so that their global norm ||g||_2 <= max_norm; returns the norm
    before clipping (the same rule as ``torch.nn.utils.clip_grad_norm_``)."""
    grads = [grads] if isinstance(grads, torch.Tensor) else grads
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm
