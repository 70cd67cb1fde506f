"""The training loop shared by every algorithm: collect, estimate advantages, update, report.

    for each update k = 0 .. K-1:
        rollout  <- T steps in N envs with pi_theta_old           (ppolab.rollout)
        A_hat, R <- advantage estimator over the rollout           (ppolab.advantages)
        theta    <- algorithm.update(valid transitions, lr_k)      (ppolab.algos.*)
        report diagnostics; stop early once solved
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ppolab import advantages as adv_lib
from ppolab import losses
from ppolab.clock import since_process_start
from ppolab.config import Config
from ppolab.errors import EnvironmentFaultError, TrainingDivergedError
from ppolab.batches import AnyBatch, training_batch
from ppolab.policies import ActorCritic
from ppolab.rollout import Collector, Episode, Rollout


class Agent(Protocol):
    """What the loop reads and advances (:class:`ppolab.agent.Agent` is one; this module does
    not import it, so that the agent may import the loop)."""

    config: Config
    policy: ActorCritic
    collector: Collector
    algorithm: Any  # an update of ppolab.algos: update(batch, lr, generator) -> stats
    generator: torch.Generator
    global_step: int
    updates: int
    episode_count: int
    recent_returns: deque[float]
    recent_lengths: deque[int]
    schedule: tuple[int, int] | None

    @property
    def reward_threshold(self) -> float | None: ...


class Reporter(Protocol):
    """What the loop tells the outside world (run directory, progress bar); all optional."""

    def on_start(self, agent: Agent, total_steps: int) -> None: ...
    def on_episodes(self, episodes: list[Episode]) -> None: ...
    def on_update(self, row: dict[str, Any]) -> None: ...
    def on_diverged(self, agent: Agent) -> str: ...
    def on_fault(self, agent: Agent) -> str: ...
    def on_end(self, agent: Agent, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """Where the agent stands after a call to ``learn``.

    Counters (``total_steps``, ``updates``, ``episodes``) are the agent's, cumulative over
    calls; ``wall_seconds`` and ``solved_at_seconds`` count from the start of the process;
    ``solved`` means the rolling mean reached the threshold *during this call*.
    ``final_mean_return_100`` and ``episode_returns`` cover the last ``rolling_window``
    (default 100) episodes.
    """

    total_steps: int
    updates: int
    episodes: int
    wall_seconds: float
    solved: bool
    solved_at_step: int | None
    solved_at_seconds: float | None
    final_mean_return_100: float | None
    reward_threshold: float | None
    episode_returns: list[float] = field(default_factory=list, repr=False)


def rolling_mean(values: deque[float]) -> float | None:
    return sum(values) / len(values) if values else None


def planned_steps(total_steps: int, batch_size: int) -> int:
    """``total_steps`` rounded up to whole rollouts of ``batch_size``: asked for N steps, a run
    trains at least N (as Stable-Baselines3 does), never a partial rollout."""
    return -(-total_steps // batch_size) * batch_size


def plan(agent: Agent, total_steps: int) -> None:
    """Set ``agent.schedule`` to ``total_steps`` more steps, rounded up to whole rollouts."""
    agent.schedule = (agent.global_step, planned_steps(total_steps, agent.config.batch_size))


def updates_left(agent: Agent) -> int:
    """The updates left in the agent's schedule (see :func:`plan`)."""
    if agent.schedule is None:
        raise ValueError("train() needs agent.schedule; call plan() first")
    start, planned = agent.schedule
    return max(0, (start + planned - agent.global_step) // agent.config.batch_size)


def learning_rate(agent: Agent) -> float:
    """The learning rate of the agent's next update: annealed linearly to 0 over its schedule,
    if ``anneal_lr``."""
    cfg = agent.config
    start, planned = agent.schedule
    progress = (agent.global_step - start) / planned
    return cfg.learning_rate * (1.0 - progress) if cfg.anneal_lr else cfg.learning_rate


def record_episodes(agent: Agent, episodes: list[Episode], check_solved: bool) -> int | None:
    """Count the finished ``episodes`` into the agent's counters and rolling windows; with
    ``check_solved``, returns the end step of the first of them after which the rolling mean
    return reached the reward threshold (the window full), else None."""
    threshold, window = agent.reward_threshold, agent.recent_returns
    solved_at = None
    for ep in episodes:
        window.append(ep.ret)
        agent.recent_lengths.append(ep.length)
        agent.episode_count += 1
        if (check_solved and solved_at is None and threshold is not None and len(window) == window.maxlen
                and sum(window) / len(window) >= threshold):
            solved_at = ep.end_step
    return solved_at


def training_data(agent: Agent, rollout: Rollout) -> AnyBatch:
    """The update's batch: the rollout's valid transitions with their advantage estimates and
    value targets (the config's estimator, gamma and lambda)."""
    cfg = agent.config
    advantages = adv_lib.estimate_advantages(
        cfg.advantage_estimator, rollout.rewards, rollout.values, rollout.next_values,
        rollout.terminated, rollout.episode_end, cfg.gamma, cfg.gae_lambda, cfg.n_step,
    )
    returns = adv_lib.value_targets(advantages, rollout.values)
    return training_batch(rollout, advantages, returns, cfg.sequence_length)


def update_row(agent: Agent, lr: float, stats: dict[str, float], explained_variance: float,
               steps_per_second: float) -> dict[str, Any]:
    """One row of ``metrics.csv``: the update's diagnostics and where the agent stands."""
    return {
        "update": agent.updates,
        "global_step": agent.global_step,
        "wall_seconds": round(since_process_start(), 4),
        "sps": steps_per_second,
        "learning_rate": lr,
        **stats,
        "explained_variance": explained_variance,
        "episodes": agent.episode_count,
        "rolling_return": rolling_mean(agent.recent_returns),
        "rolling_length": rolling_mean(agent.recent_lengths),
    }


def train_result(agent: Agent, solved_at_step: int | None, solved_at_seconds: float | None) -> TrainResult:
    """Where the agent stands at the end of a ``learn`` call (see :class:`TrainResult`)."""
    return TrainResult(
        total_steps=agent.global_step,
        updates=agent.updates,
        episodes=agent.episode_count,
        wall_seconds=since_process_start(),
        solved=solved_at_step is not None,
        solved_at_step=solved_at_step,
        solved_at_seconds=solved_at_seconds,
        final_mean_return_100=rolling_mean(agent.recent_returns),
        reward_threshold=agent.reward_threshold,
        episode_returns=list(agent.recent_returns),
    )


def train(
    agent: Agent,
    reporter: Reporter | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
) -> TrainResult:
    """Train ``agent`` through the rest of its schedule (see :func:`plan`).

    The learning rate anneals linearly over the whole schedule (as in SB3, each ``learn`` call is
    one schedule; a resumed run continues it). ``callback(row)`` is called after every update
    with the diagnostics; returning ``False`` stops training and keeps the schedule resumable.
    Counters (steps, updates, episodes) and the rolling window of episode returns continue
    across calls.
    """
    cfg = agent.config
    batch_size = cfg.batch_size
    n_updates = updates_left(agent)
    solved_at_step = solved_at_seconds = None
    stopped_by_callback = False
    if reporter:
        reporter.on_start(agent, n_updates * batch_size)
    last_time, last_step = time.perf_counter(), agent.global_step

    for _ in range(n_updates):
        lr = learning_rate(agent)
        try:
            rollout, episodes = agent.collector.collect(agent.global_step)
        except EnvironmentFaultError as exc:
            saved = reporter.on_fault(agent) if reporter else ""
            raise EnvironmentFaultError(f"{exc}{saved}") from exc
        agent.global_step += batch_size
        solved = record_episodes(agent, episodes, solved_at_step is None)
        if solved is not None:
            solved_at_step, solved_at_seconds = solved, since_process_start()
        if reporter and episodes:
            reporter.on_episodes(episodes)
        if solved_at_step is not None and cfg.stop_when_solved:
            break

        batch = training_data(agent, rollout)
        if len(batch) == 0:  # every step was an autoreset step (possible with n_steps=1)
            continue
        try:
            stats = agent.algorithm.update(batch.to(agent.policy.device), lr, agent.generator)
        except TrainingDivergedError as exc:
            where = f"update {agent.updates + 1} (step {agent.global_step:,})"
            saved = reporter.on_diverged(agent) if reporter else ""
            raise TrainingDivergedError(f"training diverged at {where}: {exc}{saved}") from None
        agent.updates += 1

        now = time.perf_counter()
        row = update_row(agent, lr, stats, losses.explained_variance(batch.values, batch.returns).item(),
                         (agent.global_step - last_step) / max(now - last_time, 1e-9))
        last_time, last_step = now, agent.global_step
        if reporter:
            reporter.on_update(row)
        if callback is not None and callback(row) is False:
            stopped_by_callback = True
            break


    result = train_result(agent, solved_at_step, solved_at_seconds)
    if reporter:
        reporter.on_end(agent, result)  # its final checkpoint keeps the schedule (see resume)
    if not stopped_by_callback:
        agent.schedule = None  # this learn() call is over: nothing left to resume in memory
    return result


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (network init uses torch's)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
