"""PPO's update for P agents at once: the epochs of :class:`ppolab.algos.ppo.PPOUpdate`, with
every minibatch holding one minibatch per agent.

Agent p's batch has n_p valid transitions (its autoreset steps are dropped, so n_p differs from
agent to agent). Each epoch draws agent p's permutation of its n_p transitions from its own
generator, and splits it at :func:`~ppolab.batches.minibatch_bounds` (n_p, ...), exactly as a
lone run does. Minibatch k stacks the agents' k-th slices into ``[P, L]``, padded to the longest
one; the losses are per-agent means over the valid entries (:class:`~ppolab.losses.MaskedMean`),
summed over agents for one backward pass (the agents share no parameter, so each gets exactly
its own gradient). The objective is :func:`ppolab.algos.ppo.minibatch_losses`, the lone one,
with per-agent coefficients. An agent whose approximate KL passes its ``target_kl`` stops for
the rest of the update, as a lone run does, while the others go on (a masked optimizer step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ppolab.algos.ppo import _STATS, Coefficients, PPOUpdate, minibatch_losses
from ppolab.batches import Batch, minibatch_bounds
from ppolab.config import PPOConfig
from ppolab.losses import MaskedMean
from ppolab.population.network import StackedPolicy
from ppolab.population.optim import StackedAdam

_PADDED = ("actions", "log_probs", "values", "advantages", "returns", "masks")


@dataclass
class Padded:
    """The agents' batches as ``[P, max n_p, ...]`` tensors (zero padding after row n_p)."""

    observations: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    masks: torch.Tensor | None

    @classmethod
    def of(cls, batches: list[Batch]) -> Padded:
        longest = max(len(b) for b in batches)

        def pad(parts: list[torch.Tensor], fill: int = 0) -> torch.Tensor:
            out = parts[0].new_full((len(parts), longest, *parts[0].shape[1:]), fill)
            for p, part in enumerate(parts):
                out[p, :len(part)] = part
            return out

        masks = None if batches[0].masks is None else pad([b.masks for b in batches], 1)
        return cls(pad([b.observations for b in batches]),
                   *(pad([getattr(b, f) for b in batches]) for f in _PADDED[:-1]), masks)

    def gather(self, index: torch.Tensor) -> Padded:
        """Rows ``index[p]`` of agent p, ``[P, L]``."""
        rows = torch.arange(index.shape[0], device=index.device).unsqueeze(1)
        return Padded(self.observations[rows, index],
                      *(None if getattr(self, f) is None else getattr(self, f)[rows, index] for f in _PADDED))


class StackedPPOUpdate:
    """:class:`~ppolab.algos.ppo.PPOUpdate` for the agents of ``network``, each with its own
    ``configs[p]`` (the structural fields equal, see :func:`ppolab.population.why_not`)."""

    STATS = PPOUpdate.STATS

    def __init__(self, network: StackedPolicy, optimizer: StackedAdam, configs: list[PPOConfig]) -> None:
        self.network, self.optimizer, self.configs = network, optimizer, configs
        self.config = configs[0]  # the structural fields
        device = network.parameters()[0].device

        def column(values: list[float | None], fill: float = float("inf")) -> torch.Tensor:
            return torch.tensor([fill if v is None else v for v in values], device=device)

        self.coefficients = Coefficients(column([c.clip_coef for c in configs]).unsqueeze(1),
                                         column([c.vf_coef for c in configs]), column([c.ent_coef for c in configs]))
        self.max_grad_norms = column([c.max_grad_norm for c in configs])
        self.target_kls = column([c.target_kl for c in configs])

    def update(self, batches: list[Batch], lrs: list[float], generators: list[torch.Generator]
               ) -> tuple[list[dict[str, float]], list[str | None]]:
        """Run the epochs over agent p's ``batches[p]`` at learning rate ``lrs[p]``, its
        permutations drawn from ``generators[p]``. Returns each agent's mean diagnostics (as
        ``PPOUpdate.update``) and, per agent, None or why its update stopped on a non-finite
        loss or gradient (its parameters stay those before that step)."""
        c, net, opt = self.config, self.network, self.optimizer
        P = len(batches)
        device = net.parameters()[0].device
        data = Padded.of(batches)
        sizes = [len(b) for b in batches]
        bounds = [minibatch_bounds(n, c.batch_size, c.minibatch_size) for n in sizes]
        n_minibatches = max(len(b) - 1 for b in bounds)
        lr = torch.tensor(lrs, device=device)
        active = torch.ones(P, dtype=torch.bool, device=device)
        stopped = torch.zeros(P, dtype=torch.bool, device=device)
        epochs = torch.zeros(P, device=device)
        totals = torch.zeros(P, len(_STATS), device=device)
        steps = torch.zeros(P, device=device)
        failures: list[str | None] = [None] * P
        for _ in range(c.n_epochs):
            # only agents still training draw (a lone run's generator sees no draw after its stop)
            orders = [torch.randperm(n, generator=g, device=g.device) if on else None
                      for n, g, on in zip(sizes, generators, active.tolist())]
            for k in range(n_minibatches):
                spans = [(b[k], b[k + 1]) if k + 1 < len(b) else (0, 0) for b in bounds]
                width = max(hi - lo for lo, hi in spans)
                index = torch.zeros(P, width, dtype=torch.long)
                valid = torch.zeros(P, width, dtype=torch.bool)
                for p, ((lo, hi), order) in enumerate(zip(spans, orders)):
                    if order is None:
                        continue
                    index[p, :hi - lo] = order[lo:hi]
                    valid[p, :hi - lo] = True
                index, valid = index.to(device), valid.to(device)
                stepping = active & valid.any(1)
                mb = data.gather(index)
                dist, values = net.forward(mb.observations, mb.masks)
                out = minibatch_losses(c, self.coefficients, dist, values, mb,
                                       masked=MaskedMean(valid | ~valid.any(1, keepdim=True)))
                over = stepping & (out.kl > self.target_kls)
                stopped |= over
                active &= ~over
                stepping &= ~over
                if not stepping.any():
                    continue
                opt.zero_grad()
                torch.where(stepping, out.total, torch.zeros_like(out.total)).sum().backward()
                norms = opt.grad_norms()
                finite = torch.isfinite(out.total.detach() + norms)
                for p in torch.nonzero(stepping & ~finite).flatten().tolist():
                    failures[p] = (f"non-finite loss or gradient (loss={out.total[p].item()}, policy_loss="
                                   f"{out.policy[p].item()}, value_loss={out.value[p].item()}, "
                                   f"grad_norm={norms[p].item()})")
                active &= finite
                stepping &= finite
                opt.clip(norms, self.max_grad_norms)
                opt.step(lr, stepping)
                row = torch.stack([out.policy.detach(), out.value.detach(), out.entropy, out.kl_logr, out.kl,
                                   out.clip_fraction, norms], dim=1)
                totals += torch.where(stepping.unsqueeze(1), row, torch.zeros_like(row))
                steps += stepping.to(steps.dtype)
            epochs += active.to(epochs.dtype)
            if not active.any():
                break
        means = (totals / steps.clamp(min=1).unsqueeze(1)).tolist()
        stats = []
        for p in range(P):
            s = dict(zip(_STATS, means[p]))
            s.update(kl_beta=0.0, epochs=float(epochs[p]), gradient_steps=float(steps[p]),
                     stopped_early=float(stopped[p]))
            stats.append(s)
        return stats, failures
