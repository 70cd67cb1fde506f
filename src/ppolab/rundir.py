"""A run directory: what ``ppolab train`` leaves behind, written as training goes.

    config.yaml          resolved hyperparameters, env id, algo (re-usable with --config)
    metrics.csv          one row of diagnostics per update
    episodes.csv         one row per finished episode
    tensorboard/         TensorBoard event files
    model.pt             the final model (or the last good one after a divergence)
    learning_curve.png   episode returns, rolling mean, solved threshold
    summary.json         the outcome (see RunReporter.on_end)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ppolab.errors import RunDirectoryError
from ppolab.metrics import MetricsWriter, metric_columns
from ppolab.modelfile import atomic_write
from ppolab.progress import Progress

if TYPE_CHECKING:
    from ppolab.agent import Agent
    from ppolab.rollout import Episode
    from ppolab.train import TrainResult


def check_can_create(run_dir: Path) -> None:
    """Refuse, before anything is written, a run directory that exists or cannot be created."""
    if run_dir.exists():
        raise RunDirectoryError(f"run directory {run_dir} already exists; choose another --name or --out")
    parent = run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"cannot create {run_dir}: {parent} is not a writable directory")


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


class RunReporter:
    """Implements :class:`ppolab.train.Reporter` for one run directory plus the console."""

    def __init__(self, run_dir: Path, progress: Progress, tensorboard: bool = True) -> None:
        self.run_dir, self.progress, self.tensorboard = run_dir, progress, tensorboard
        self.writer: MetricsWriter | None = None

    def create(self, agent: Agent) -> None:
        check_can_create(self.run_dir)
        self.run_dir.mkdir(parents=True)
        config = {"algo": agent.algo, "env_id": agent.env_id, **agent.config.to_dict()}
        atomic_write(self.run_dir / "config.yaml", lambda f: f.write(yaml.safe_dump(config, sort_keys=False).encode()))

    def on_start(self, agent: Agent, total_steps: int) -> None:
        columns = metric_columns(agent.algorithm.STATS)
        self.writer = MetricsWriter(self.run_dir, columns, agent.episode_count, tensorboard=self.tensorboard)
        self.progress.start(agent.global_step + total_steps, agent.global_step)

    def on_episodes(self, episodes: list[Episode]) -> None:
        from ppolab.clock import since_process_start

        assert self.writer is not None
        self.writer.episodes(episodes, since_process_start())

    def on_update(self, row: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.update(row)
        self.progress.advance(row["global_step"], row["rolling_return"], row["sps"])

    def on_diverged(self, agent: Agent) -> str:
        path = agent.save(self.run_dir / "model.pt")
        self.close()
        return f"; the last good model is saved at {path}"

    def on_end(self, agent: Agent, result: TrainResult) -> None:
        from ppolab.plots import learning_curve

        self.progress.advance(result.total_steps, result.final_mean_return_100, None)
        self.progress.stop()
        agent.save(self.run_dir / "model.pt")
        if self.writer is not None:
            self.writer.close()
        summary = {
            "env_id": agent.env_id,
            "algo": agent.algo,
            "seed": agent.config.seed,
            "total_steps": result.total_steps,
            "updates": result.updates,
            "episodes": result.episodes,
            "wall_seconds": round(result.wall_seconds, 3),
            "reward_threshold": result.reward_threshold,
            "solved": result.solved,
            "solved_at_step": result.solved_at_step,
            "solved_at_seconds": None if result.solved_at_seconds is None else round(result.solved_at_seconds, 3),
            "final_mean_return_100": result.final_mean_return_100,
        }
        write_json(self.run_dir / "summary.json", summary)
        title = f"{agent.algo.upper()} on {agent.env_id} (seed {agent.config.seed})"
        learning_curve(self.run_dir / "episodes.csv", self.run_dir / "learning_curve.png", title,
                       result.reward_threshold, result.solved_at_step, agent.config.rolling_window)

    def close(self) -> None:
        self.progress.stop()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
