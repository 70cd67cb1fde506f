"""The training loop of a population: :func:`ppolab.train.train` for P agents at once.

Each agent is an ordinary :class:`~ppolab.agent.PPO` with its own envs, collector, normalizers,
generator, counters and reporter (its run directory). Per step, the loop asks every agent's
collector for its observations, evaluates the stacked network once for all of them, and gives
each collector its slice of the result to sample its actions (from its own generator) and step
its envs. Per rollout, each agent's batch is built by the lone code
(:func:`ppolab.train.training_data`), and one :class:`StackedPPOUpdate` trains all agents.
After every update the stacked weights and optimizer moments are copied back into each agent,
so that its reporter checkpoints and saves it exactly as a lone run's.

An agent leaves the population when its schedule ends, when it is solved (with
``stop_when_solved``), when its env faults or when its update diverges; the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ppolab import losses
from ppolab.clock import since_process_start
from ppolab.errors import EnvironmentFaultError, TrainingDivergedError
from ppolab.population.network import StackedPolicy
from ppolab.population.optim import StackedAdam
from ppolab.population.update import StackedPPOUpdate
from ppolab.rollout import Episode
from ppolab.train import (
    Reporter,
    TrainResult,
    learning_rate,
    record_episodes,
    train_result,
    training_data,
    update_row,
    updates_left,
)


@dataclass
class Outcome:
    """How one agent's training ended: its result, or the error that stopped it (the same
    error a lone run would have raised, with what its reporter saved)."""

    result: TrainResult | None
    error: Exception | None = None


@dataclass
class _Member:
    agent: Any  # a PPO agent
    reporter: Reporter | None
    updates_left: int
    solved_at: tuple[int, float] | None = None
    episodes: list[Episode] | None = None
    saved: tuple | None = None  # the collector's state at the start of the rollout


# The rollout fields the population writes for all agents at once, at every step.
_SHARED = ("observations", "actions", "log_probs", "values", "masks")


class _Stack:
    """The stacked network, optimizer and update of the agents still training, and their
    rollouts' per-step fields stacked ``[P, T, N, ...]`` (each agent's rollout holds views of
    its slice, so that the lone code reads them as its own)."""

    def __init__(self, members: list[_Member]) -> None:
        agents = [m.agent for m in members]
        self.network = StackedPolicy([a.policy for a in agents])
        self.optimizer = StackedAdam(self.network.parameters(), [a.algorithm.optimizer for a in agents])
        self.update = StackedPPOUpdate(self.network, self.optimizer, [a.config for a in agents])
        self.collectors = [a.collector for a in agents]
        self.generators = [a.generator for a in agents]
        self.storage: dict[str, torch.Tensor | None] = {}
        for name in _SHARED:
            parts = [getattr(c.rollout, name) for c in self.collectors]
            stacked = None if parts[0] is None else torch.stack(parts)
            self.storage[name] = stacked
            if stacked is not None:
                for c, view in zip(self.collectors, stacked):
                    setattr(c.rollout, name, view)

    def write_to(self, members: list[_Member], lrs: list[float]) -> None:
        self.network.write_to([m.agent.policy for m in members])
        self.optimizer.write_to([m.agent.algorithm.optimizer for m in members], lrs)


def train_population(agents: list[Any], reporters: list[Reporter | None]) -> list[Outcome]:
    """Train ``agents`` (planned, see :func:`ppolab.train.plan`; compatible, see
    :func:`ppolab.population.why_not`) through the rest of their schedules, side by side.
    Returns each agent's :class:`Outcome`; one agent's failure does not stop the others."""
    members = [_Member(a, r, updates_left(a)) for a, r in zip(agents, reporters)]
    outcomes: list[Outcome | None] = [None] * len(agents)
    for m in members:
        if m.reporter:
            m.reporter.on_start(m.agent, m.updates_left * m.agent.config.batch_size)
    live = list(range(len(members)))
    stack: _Stack | None = None
    last_time = time.perf_counter()
    last_steps = [m.agent.global_step for m in members]

    def finish(i: int, error: Exception | None = None) -> None:
        m = members[i]
        if error is None:
            solved_step, solved_seconds = m.solved_at or (None, None)
            result = train_result(m.agent, solved_step, solved_seconds)
            if m.reporter:
                m.reporter.on_end(m.agent, result)
            m.agent.schedule = None
            outcomes[i] = Outcome(result)
        else:
            outcomes[i] = Outcome(None, error)

    while True:
        done = [i for i in live if members[i].updates_left == 0]
        for i in done:
            finish(i)
        if done or stack is None:
            live = [i for i in live if i not in done]
            if not live:
                break
            stack = _Stack([members[i] for i in live])
        current = [members[i] for i in live]
        lrs = [learning_rate(m.agent) for m in current]
        faults = _collect(stack, current)

        leaving: dict[int, Exception | None] = {}
        for k, (i, m) in enumerate(zip(live, current)):
            if k in faults:
                exc = faults[k]
                saved = m.reporter.on_fault(m.agent) if m.reporter else ""
                leaving[i] = EnvironmentFaultError(f"{exc}{saved}")
                continue
            agent = m.agent
            agent.global_step += agent.config.batch_size
            m.updates_left -= 1
            solved = record_episodes(agent, m.episodes, m.solved_at is None)
            if solved is not None:
                m.solved_at = (solved, since_process_start())
            if m.reporter and m.episodes:
                m.reporter.on_episodes(m.episodes)
            if m.solved_at is not None and agent.config.stop_when_solved:
                leaving[i] = None
        training = [k for k, i in enumerate(live) if i not in leaving]
        if training:
            batches = [training_data(current[k].agent, current[k].agent.collector.rollout) for k in training]
            if len(training) < len(live):
                stack = _Stack([current[k] for k in training])
            stats, failures = stack.update.update(
                batches, [lrs[k] for k in training], [current[k].agent.generator for k in training])
            stack.write_to([current[k] for k in training], [lrs[k] for k in training])
            now = time.perf_counter()
            for j, k in enumerate(training):
                i, m = live[k], current[k]
                agent = m.agent
                if failures[j] is not None:
                    where = f"update {agent.updates + 1} (step {agent.global_step:,})"
                    saved = m.reporter.on_diverged(agent) if m.reporter else ""
                    leaving[i] = TrainingDivergedError(f"training diverged at {where}: {failures[j]}{saved}")
                    continue
                agent.updates += 1
                batch = batches[j]
                row = update_row(agent, lrs[k], stats[j],
                                 losses.explained_variance(batch.values, batch.returns).item(),
                                 (agent.global_step - last_steps[i]) / max(now - last_time, 1e-9))
                last_steps[i] = agent.global_step
                if m.reporter:
                    m.reporter.on_update(row)
            last_time = now
        for i, error in leaving.items():
            if error is None:
                finish(i)
            else:
                finish(i, error)
        if leaving:
            live = [i for i in live if i not in leaving]
            if not live:
                break
            stack = _Stack([members[i] for i in live])
    return [o if o is not None else Outcome(None, RuntimeError("not trained")) for o in outcomes]


@torch.no_grad()
def _collect(stack: _Stack, members: list[_Member]) -> dict[int, EnvironmentFaultError]:
    """One rollout of every member's collector: per step, the stacked network acts for all of
    them, each member's actions are sampled from its own generator (as its lone collector would
    draw them) and stored for all at once, then each collector steps its envs. Returns the
    members whose env faulted (their learning state put back, as a lone rollout does)."""
    faults: dict[int, EnvironmentFaultError] = {}
    collectors, storage = stack.collectors, stack.storage
    for m, c in zip(members, collectors):
        m.saved, m.episodes = c.begin(), []
    steps = [m.agent.global_step for m in members]
    device = stack.network.parameters()[0].device
    for t in range(collectors[0].n_steps):
        obs = torch.from_numpy(np.stack([c.obs for c in collectors]))
        storage["observations"][:, t] = obs
        mask = None
        if storage["masks"] is not None:
            mask = torch.from_numpy(np.stack([c.mask for c in collectors]))
            storage["masks"][:, t] = mask
            mask = mask.to(device)
        dist, values = stack.network.forward(obs.to(device), mask)
        actions = dist.sample(stack.generators)
        storage["actions"][:, t] = actions
        storage["log_probs"][:, t] = dist.log_prob(actions)
        storage["values"][:, t] = values
        for k, (m, c) in enumerate(zip(members, collectors)):
            if k in faults:
                continue
            try:
                m.episodes += c.step(t, steps[k])
            except EnvironmentFaultError as exc:
                faults[k] = exc
    last = stack.network.value(torch.stack([c.last_observation() for c in collectors]))
    for k, c in enumerate(collectors):
        if k in faults:
            c.abort(members[k].saved)  # after the rollout: its generator was drawn from to the end
        else:
            c.rollout.last_values.copy_(last[k])
            c.between_rollouts = True
    return faults
