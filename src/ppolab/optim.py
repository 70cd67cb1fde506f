"""Adam and RMSprop over one flat parameter vector, and global gradient-norm clipping.

Why not ``torch.optim.Adam``: constructing any ``torch.optim`` optimizer imports
``torch._dynamo``, about one second of start-up on these machines, a fifth of the five-second
CartPole target. Keeping every parameter and gradient as a view into one flat buffer also makes
the update and the global norm a handful of tensor ops instead of a loop over layers. The update
is Adam exactly (Kingma & Ba 2015, Algorithm 1); ``tests/test_optim.py`` checks it step for step
against ``torch.optim.Adam`` (and RMSprop against ``torch.optim.RMSprop``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from ppolab.errors import TrainingDivergedError


def flatten_parameters(parameters: nn.Module | Iterable[nn.Parameter]) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-home the parameters (of a module, or a list of them) and their gradients as views
    into two flat buffers.

    Returns ``(params, grads)``; ``loss.backward()`` accumulates into ``grads`` in place, and
    writing into ``params`` in place (``params.copy_(theta)``) sets every parameter at once.
    """
    parameters = list(parameters.parameters() if isinstance(parameters, nn.Module) else parameters)
    total = sum(p.numel() for p in parameters)
    flat = torch.empty(total, dtype=parameters[0].dtype)
    flat_grad = torch.zeros(total, dtype=parameters[0].dtype)
    offset = 0
    for p in parameters:
        n = p.numel()
        flat[offset : offset + n].copy_(p.data.view(-1))
        p.data = flat[offset : offset + n].view_as(p)
        p.grad = flat_grad[offset : offset + n].view_as(p)
        offset += n
    return flat, flat_grad


class FlatAdam:
    """Adam on a flat parameter vector ``theta`` with gradient ``g``:

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        theta <- theta - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(
        self, params: torch.Tensor, grads: torch.Tensor, lr: float,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-5,
    ) -> None:
        self.params, self.grads = params, grads
        self.lr, self.betas, self.eps = lr, betas, eps
        self.exp_avg = torch.zeros_like(params)
        self.exp_avg_sq = torch.zeros_like(params)
        self.step_count = 0

    def zero_grad(self) -> None:
        self.grads.zero_()

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.step_count += 1
        self.exp_avg.mul_(b1).add_(self.grads, alpha=1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(self.grads, self.grads, value=1 - b2)
        bias1 = 1 - b1**self.step_count
        bias2_sqrt = math.sqrt(1 - b2**self.step_count)
        denom = (self.exp_avg_sq.sqrt() / bias2_sqrt).add_(self.eps)
        self.params.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)

    def state_dict(self) -> dict[str, torch.Tensor | float | int]:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(),
                "step": self.step_count, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])


class FlatRMSprop:
    """RMSprop (Tieleman and Hinton 2012; A2C's optimizer) on a flat vector, as torch.optim.RMSprop
    without momentum or centering:

        v <- alpha v + (1 - alpha) g^2;   theta <- theta - lr * g / (sqrt(v) + eps)
    """

    def __init__(self, params: torch.Tensor, grads: torch.Tensor, lr: float, alpha: float = 0.99,
                 eps: float = 1e-5) -> None:
        self.params, self.grads = params, grads
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.square_avg = torch.zeros_like(params)
        self.step_count = 0

    def zero_grad(self) -> None:
        self.grads.zero_()

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        self.square_avg.mul_(self.alpha).addcmul_(self.grads, self.grads, value=1 - self.alpha)
        self.params.addcdiv_(self.grads, self.square_avg.sqrt().add_(self.eps), value=-self.lr)

    def state_dict(self) -> dict[str, torch.Tensor | float | int]:
        return {"square_avg": self.square_avg.clone(), "step": self.step_count, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.square_avg.copy_(state["square_avg"])
        self.step_count = int(state["step"])
        self.lr = float(state["lr"])


def gradient_step(optimizer: FlatAdam | FlatRMSprop, loss: torch.Tensor, max_grad_norm: float,
                  **parts: torch.Tensor) -> torch.Tensor:
    """Backpropagate ``loss``, clip the global gradient norm, and step; returns the norm before
    clipping. Raises :class:`TrainingDivergedError` *before* stepping when the loss or the norm
    is NaN or infinite, naming ``loss`` and the ``parts`` it was made of."""
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm_(optimizer.grads, max_grad_norm)
    if not torch.isfinite(loss + norm):
        values = ", ".join(f"{name}={value.item()}" for name, value in {"loss": loss, **parts}.items())
        raise TrainingDivergedError(f"non-finite loss or gradient ({values}, grad_norm={norm.item()})")
    optimizer.step()
    return norm


@torch.no_grad()
def clip_grad_norm_(grads: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale ``grads`` in place so that ||g||_2 <= max_norm; returns the norm before clipping
    (the same rule as ``torch.nn.utils.clip_grad_norm_``)."""
    norm = torch.linalg.vector_norm(grads)
    grads.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm
