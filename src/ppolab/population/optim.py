"""Adam for a population's stacked parameters ``[P, ...]``: each agent p with its own learning
rate, its own global gradient-norm clip, its own step count, and a mask of the agents that step.

Per agent it is :class:`ppolab.optim.Adam` exactly (Kingma & Ba 2015, Algorithm 1, eps 1e-5):

    g   <- g * min(1, c_p / (||g||_2 + 1e-6))            (the agent's own global norm)
    m   <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2;   t_p <- t_p + 1
    theta <- theta - lr_p * (m / (1 - b1^t_p)) / (sqrt(v / (1 - b2^t_p)) + eps)

An agent that is not ``active`` at a step (it stopped at its ``target_kl``, or its loss is not
finite) keeps its parameters, moments and step count: a masked step.
"""

from __future__ import annotations

import torch

from ppolab.optim import Adam


def _rows(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[P]`` values shaped to broadcast over ``[P, ...]`` tensors like ``like``, on its device."""
    return x.to(like.device).reshape(-1, *([1] * (like.dim() - 1)))


class StackedAdam:
    """The moments ``[P, ...]`` of each stacked parameter and the step counts ``[P]``; starts from
    each agent's own :class:`~ppolab.optim.Adam` (their parameters in the stacked order)."""

    def __init__(self, params: list[torch.Tensor], optimizers: list[Adam]) -> None:
        self.params = params
        first = optimizers[0]
        self.betas, self.eps = first.betas, first.eps
        self.exp_avg = [torch.stack([o.state["exp_avg"][i] for o in optimizers]) for i in range(len(params))]
        self.exp_avg_sq = [torch.stack([o.state["exp_avg_sq"][i] for o in optimizers]) for i in range(len(params))]
        self.steps = torch.tensor([o.step_count for o in optimizers], dtype=torch.float64)

    @torch.no_grad()
    def grad_norms(self) -> torch.Tensor:
        """Each agent's global gradient norm ``[P]`` (its parameters' gradients together)."""
        squares = [g.pow(2).flatten(1).sum(1) for g in (p.grad for p in self.params) if g is not None]
        return torch.stack(squares).sum(0).sqrt()

    @torch.no_grad()
    def clip(self, norms: torch.Tensor, max_norms: torch.Tensor) -> None:
        """Scale agent p's gradients so that their norm is at most ``max_norms[p]``."""
        scale = torch.clamp(max_norms / (norms + 1e-6), max=1.0)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(_rows(scale, p.grad))

    @torch.no_grad()
    def step(self, lrs: torch.Tensor, active: torch.Tensor) -> None:
        """One Adam step at learning rates ``lrs`` ``[P]`` for the ``active`` agents ``[P]``."""
        b1, b2 = self.betas
        self.steps += active.to("cpu", self.steps.dtype)
        t = self.steps.clamp(min=1.0)
        step_size = (lrs.to(torch.float64) / (1 - b1**t)).to(torch.float32)
        correction = torch.sqrt(1 - b2**t).to(torch.float32)
        everyone = bool(active.all())
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            g = p.grad
            if everyone:  # the usual case: in place, no masking
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = v.sqrt().div_(_rows(correction, p)).add_(self.eps)
                p.sub_(m.div(denom).mul_(_rows(step_size, p)))
                continue
            on = _rows(active, p)
            m.copy_(torch.where(on, m * b1 + g * (1 - b1), m))
            v.copy_(torch.where(on, v * b2 + g * g * (1 - b2), v))
            denom = v.sqrt() / _rows(correction, p) + self.eps
            p.copy_(torch.where(on, p - _rows(step_size, p) * m / denom, p))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def write_to(self, optimizers: list[Adam], lrs: list[float]) -> None:
        """Copy agent p's moments, step count and learning rate into ``optimizers[p]``."""
        for k, opt in enumerate(optimizers):
            for i in range(len(self.params)):
                opt.state["exp_avg"][i].copy_(self.exp_avg[i][k])
                opt.state["exp_avg_sq"][i].copy_(self.exp_avg_sq[i][k])
            opt.step_count = int(self.steps[k])
            opt.steps = [opt.step_count] * len(opt.params)
            opt.lr = lrs[k]
