"""Evaluation episodes for every member of a population at once: :func:`ppolab.evaluation.evaluate`
with one batched forward pass per step for all members' episodes.

Member p plays ``episodes`` episodes on fresh envs seeded ``seed``, ``seed + 1``, ... (the same
episodes :func:`~ppolab.evaluation.evaluate` plays one after another, here side by side), with
its own frozen observation statistics. Deterministic actions equal ``evaluate``'s to float
rounding; sampled ones come from torch's global generator, as ``predict``'s do.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ppolab import masks
from ppolab.envs import make_single_env
from ppolab.evaluation import EvalResult
from ppolab.population.network import StackedPolicy


@torch.no_grad()
def evaluate_members(agents: list[Any], episodes: int = 10, seed: int = 1_000_000,
                     deterministic: bool = False) -> list[EvalResult]:
    """Each agent's :class:`~ppolab.evaluation.EvalResult` over ``episodes`` episodes (agents
    that can share a population, see :func:`ppolab.population.why_not`)."""
    first = agents[0]
    spec, action, source = first.env_info.observation, first.env_info.action, first.env_info.action_mask
    network = StackedPolicy([agent.policy for agent in agents])
    device = first.device
    P, E = len(agents), episodes
    envs = [[make_single_env(agent.env_id) for _ in range(E)] for agent in agents]
    try:
        started = [[env.reset(seed=seed + e) for e, env in enumerate(row)] for row in envs]
        obs = [[o for o, _ in row] for row in started]
        infos = [[info for _, info in row] for row in started]
        totals, lengths = np.zeros((P, E)), np.zeros((P, E), dtype=np.int64)
        done = np.zeros((P, E), dtype=bool)
        while not done.all():
            rows = []
            for p, agent in enumerate(agents):
                stored = spec.storage(np.stack(obs[p]))
                if agent.obs_normalizer is not None:
                    stored = agent.obs_normalizer(stored, update=False)
                rows.append(torch.as_tensor(stored))
            mask = None
            if source is not None:  # as the policy was trained: masked (finished episodes: any mask)
                mask = torch.from_numpy(np.stack([np.stack([
                    np.ones(masks.mask_size(action), dtype=bool) if done[p, e] else masks.read_single(
                        source, envs[p][e], infos[p][e], action, f"in evaluation episode {e}, step {lengths[p, e]}")
                    for e in range(E)]) for p in range(P)])).to(device)
            dist = network.distribution(torch.stack(rows).to(device), mask)
            chosen = (dist.mode() if deterministic else dist.sample()).cpu().numpy()
            for p in range(P):
                to_env = action.to_env(chosen[p])
                for e in np.flatnonzero(~done[p]):
                    obs[p][e], reward, terminated, truncated, infos[p][e] = envs[p][e].step(to_env[e])
                    totals[p, e] += float(reward)
                    lengths[p, e] += 1
                    done[p, e] = terminated or truncated
    finally:
        for row in envs:
            for env in row:
                env.close()
    return [EvalResult([float(r) for r in totals[p]], [int(n) for n in lengths[p]]) for p in range(P)]
