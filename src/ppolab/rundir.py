"""A run directory: what ``ppolab train`` leaves behind, written as training goes.

    config.yaml          resolved hyperparameters, env id, algo (re-usable with --config)
    metrics.csv          one row of diagnostics per update
    episodes.csv         one row per finished episode
    tensorboard/         TensorBoard event files
    model.pt             the final model (or the last good one after a divergence)
    checkpoints/         ckpt-<update>.pt, the newest few (see ppolab.checkpoints), for resume
    learning_curve.png   episode returns, rolling mean, solved threshold
    summary.json         the outcome (see RunReporter.on_end)
    .lock                held by the process training in it (see ppolab.runlock)
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ppolab.checkpoints import CheckpointDir
from ppolab.errors import RunDirectoryError
from ppolab.files import UMASK, atomic_write, fsync_directory, write_json
from ppolab.metrics import (
    MetricsWriter,
    TensorBoardScalars,
    metric_columns,
    truncate_run_files,
)
from ppolab.progress import Progress
from ppolab.runlock import RunLock, check_not_in_use, is_run_dir, remove_leftovers

if TYPE_CHECKING:
    from ppolab.agent import Agent
    from ppolab.rollout import Episode
    from ppolab.train import TrainResult


def check_can_create(run_dir: Path, overwrite: bool = False) -> None:
    """Refuse, before anything is written, a run directory that exists (unless ``overwrite``
    and it is a ppolab run directory that no process is training in) or cannot be created."""
    if run_dir.exists():
        if not overwrite:
            raise RunDirectoryError(
                f"run directory {run_dir} already exists; choose another --name or --out, pass "
                f"--overwrite to replace it, or continue it with: ppolab resume {run_dir}")
        if not is_run_dir(run_dir):
            raise RunDirectoryError(f"--overwrite refused: {run_dir} is not a ppolab run directory "
                                    "(no config.yaml); remove it yourself if you mean it")
        check_not_in_use(run_dir)
    parent = run_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"cannot create {run_dir}: {parent} is not a writable directory")


class RunReporter:
    """Implements :class:`ppolab.train.Reporter` for one run directory plus the console, and
    writes its checkpoints: at the start, every ``checkpoint_every`` updates, at the end, and
    after a divergence or an environment fault (the last good state).

    It holds the run directory's lock (:class:`ppolab.runlock.RunLock`) from :meth:`create`,
    :meth:`reopen` or :meth:`on_start` (or the one it is given) until :meth:`close`, which
    :meth:`on_end` calls last; another process that tries to train there is refused."""

    def __init__(self, run_dir: Path, progress: Progress, tensorboard: bool = True,
                 lock: RunLock | None = None) -> None:
        self.run_dir, self.progress, self.tensorboard = run_dir, progress, tensorboard
        self.lock = lock
        self.writer: MetricsWriter | None = None
        self.agent: Agent | None = None
        self.checkpoints: CheckpointDir | None = None
        self.interrupted_by: str | None = None  # set by the CLI when a signal stops the run
        self.time_offset = 0.0  # wall_seconds already spent before a resume
        self.resumed_at: int | None = None  # the checkpoint's global step, when resuming

    def create(self, agent: Agent, overwrite: bool = False) -> None:
        """Make the run directory with its config and a first checkpoint, all at once: it is
        built under a temporary name and renamed, so whenever it exists it can be resumed. It is
        locked under that name already. With ``overwrite`` the old directory's lock is taken
        first (refused while another process trains there), and what killed processes left
        beside it is removed."""
        check_can_create(self.run_dir, overwrite)
        old_lock = None
        try:
            self.run_dir.parent.mkdir(parents=True, exist_ok=True)
            if overwrite and self.run_dir.exists():
                old_lock = RunLock.acquire(self.run_dir)
            if overwrite:
                remove_leftovers(self.run_dir, inside=False)  # its own go with it
            staging = Path(tempfile.mkdtemp(prefix=f".{self.run_dir.name}.", suffix=".tmp", dir=self.run_dir.parent))
        except OSError as exc:
            if old_lock is not None:
                old_lock.release()
            raise RunDirectoryError(f"cannot create {self.run_dir}: {exc}") from None
        except BaseException:
            if old_lock is not None:
                old_lock.release()
            raise
        replaced = lock = None
        try:
            lock = RunLock.try_acquire(staging)
            if lock is None:  # another process took it for a leftover in the moment before
                raise RunDirectoryError(f"cannot create {self.run_dir}: another ppolab process removed its "
                                        "temporary folder; try again")
            lock.write_holder()
            staging.chmod(0o777 & ~UMASK)
            config = {"algo": agent.algo, "env_id": agent.env_id, **agent.config.to_dict()}
            atomic_write(staging / "config.yaml", lambda f: f.write(yaml.safe_dump(config, sort_keys=False).encode()))
            if self.tensorboard:
                (staging / "tensorboard").mkdir()
            CheckpointDir(staging).write(agent)
            if overwrite and self.run_dir.exists():  # set aside, so a kill never leaves half of it
                replaced = self.run_dir.with_name(f".{self.run_dir.name}.replaced-{os.getpid()}")
                os.rename(self.run_dir, replaced)
            try:
                os.rename(staging, self.run_dir)  # fails if another process made it meanwhile
            except OSError as exc:
                if replaced is not None and not os.path.lexists(self.run_dir):
                    os.rename(replaced, self.run_dir)  # put the old one back
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise RunDirectoryError(f"run directory {self.run_dir} was created by someone else "
                                            "while this run started; choose another --name") from None
                raise
            lock.folder, self.lock = self.run_dir, lock  # the lock moved in with the folder
            fsync_directory(self.run_dir.parent)
            if replaced is not None:
                shutil.rmtree(replaced, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if lock is not None and self.lock is None:
                lock.release()
            raise RunDirectoryError(f"cannot create {self.run_dir}: {exc}") from None
        except BaseException:
            if self.lock is None:
                shutil.rmtree(staging, ignore_errors=True)
                if lock is not None:
                    lock.release()
            raise
        finally:
            if old_lock is not None:
                old_lock.release()

    def reopen(self, agent: Agent) -> None:
        """Continue this run directory with ``agent``, loaded from its newest checkpoint: rows
        written after that checkpoint are dropped (the resumed run writes them again), the
        clock continues, and TensorBoard hides its points past the checkpoint. Takes the run's
        lock (and removes what killed processes left) unless it was given one."""
        if self.lock is None:
            self.lock = RunLock.acquire(self.run_dir)
            remove_leftovers(self.run_dir)
        self.time_offset = truncate_run_files(self.run_dir, agent.updates, agent.episode_count)
        (self.run_dir / "summary.json").unlink(missing_ok=True)
        self.tensorboard = (self.run_dir / "tensorboard").is_dir()
        if self.tensorboard:
            TensorBoardScalars.drop_after(self.run_dir / "tensorboard", agent.global_step)
        self.resumed_at = agent.global_step

    def on_start(self, agent: Agent, total_steps: int) -> None:
        if (self.lock is None or not self.lock.held) and self.run_dir.is_dir():
            self.lock = RunLock.acquire(self.run_dir)  # a reporter used again, or without create()
        self.agent = agent
        self.checkpoints = CheckpointDir(self.run_dir, agent.config.keep_checkpoints)
        self.checkpoints.clean()
        columns = metric_columns(agent.algorithm.STATS)
        self.writer = MetricsWriter(self.run_dir, columns, agent.episode_count, tensorboard=self.tensorboard)
        if self.resumed_at is not None:
            self.writer.purge_tensorboard_from(self.resumed_at + 1)
        self.progress.start(agent.global_step + total_steps, agent.global_step)

    def checkpoint(self) -> Path:
        """Write the rows so far to disk, then a checkpoint that counts exactly those rows."""
        assert self.agent is not None and self.checkpoints is not None
        if self.writer is not None:
            self.writer.flush(sync=True)
        return self.checkpoints.write(self.agent)

    def on_episodes(self, episodes: list[Episode]) -> None:
        from ppolab.clock import since_process_start

        assert self.writer is not None
        self.writer.episodes(episodes, self.time_offset + since_process_start())

    def on_update(self, row: dict[str, Any]) -> None:
        assert self.writer is not None and self.agent is not None
        row["wall_seconds"] = round(self.time_offset + row["wall_seconds"], 4)
        self.writer.update(row)
        every = self.agent.config.checkpoint_every
        if every and row["update"] % every == 0:
            self.checkpoint()
        self.progress.advance(row["global_step"], row["rolling_return"], row["sps"])

    def on_diverged(self, agent: Agent) -> str:
        """After a non-finite loss: the weights are finite but may hold part of the failed
        update, so the newest checkpoint stays the one to resume from; model.pt gets them."""
        assert self.checkpoints is not None
        path = agent.save(self.run_dir / "model.pt")
        self.close()
        newest = self.checkpoints.all()[-1].name
        return (f"; the model is saved at {path}, and ppolab resume {self.run_dir} continues from "
                f"checkpoint {newest}")

    def on_fault(self, agent: Agent) -> str:
        """After an environment fault: the agent is as it was after its last update (the
        collector rolled the rollout back), a checkpoint of the last good state."""
        checkpoint = self.checkpoint()
        path = agent.save(self.run_dir / "model.pt")
        self.close()
        return (f"; the last good model is saved at {path} and as checkpoint {checkpoint.name} "
                f"(ppolab resume {self.run_dir} continues from it)")

    def on_end(self, agent: Agent, result: TrainResult) -> None:
        """Checkpoint first (a second Ctrl-C must not cost the run's progress), then the final
        model and learning curve, and ``summary.json`` last: it marks the run as finished."""
        self.progress.advance(result.total_steps, result.final_mean_return_100, None)
        self.progress.stop()
        self.checkpoint()
        self._close_files()
        try:
            self._write_end(agent, result)
        finally:
            self.close()  # the lock last: summary.json is written under it

    def _write_end(self, agent: Agent, result: TrainResult) -> None:
        import torch

        from ppolab.plots import learning_curve

        agent.save(self.run_dir / "model.pt")
        title = f"{agent.algo.upper()} on {agent.env_id} (seed {agent.config.seed})"
        learning_curve(self.run_dir / "episodes.csv", self.run_dir / "learning_curve.png", title,
                       result.reward_threshold, result.solved_at_step, agent.config.rolling_window)
        summary = {
            "env_id": agent.env_id,
            "algo": agent.algo,
            "seed": agent.config.seed,
            "total_steps": result.total_steps,
            "updates": result.updates,
            "episodes": result.episodes,
            "wall_seconds": round(self.time_offset + result.wall_seconds, 3),
            "reward_threshold": result.reward_threshold,
            "solved": result.solved,
            "solved_at_step": result.solved_at_step,
            "solved_at_seconds": (None if result.solved_at_seconds is None
                                  else round(self.time_offset + result.solved_at_seconds, 3)),
            "final_mean_return_100": result.final_mean_return_100,
            "interrupted_by": self.interrupted_by,
            "device": str(agent.device),
            "torch_threads": torch.get_num_threads(),
        }
        write_json(self.run_dir / "summary.json", summary)

    def _close_files(self) -> None:
        self.progress.stop()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> None:
        """Close the files and release the run directory's lock (harmless when done already)."""
        try:
            self._close_files()
        finally:
            if self.lock is not None:
                self.lock.release()
