"""Where per-update diagnostics and finished episodes go: CSV files and TensorBoard.

``metrics.csv`` has one row per update with the columns of :func:`metric_columns`: the loop's
own (step, time, speed, learning rate, explained variance, episodes, rolling return) around the
algorithm's statistics (its update class's ``STATS``);
``episodes.csv`` one row per finished episode. TensorBoard scalars are tagged
``train/<column>`` and ``episode/return``; the x axis is the environment step.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

from ppolab.errors import RunDirectoryError
from ppolab.files import atomic_write
from ppolab.rollout import Episode

_HEAD = ("update", "global_step", "wall_seconds", "sps", "learning_rate")
_TAIL = ("explained_variance", "episodes", "rolling_return", "rolling_length")


def metric_columns(stats: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics.csv columns for an algorithm whose update reports ``stats``."""
    return _HEAD + stats + _TAIL

EPISODE_COLUMNS = ("episode", "global_step", "wall_seconds", "return", "length")
FLUSH_SECONDS = 5.0  # how stale the files on disk may be while training runs


class MetricsWriter:
    """Appends rows to ``metrics.csv`` / ``episodes.csv`` and scalars to TensorBoard, flushing
    them at the first update and then at most every :data:`FLUSH_SECONDS`, so that the files
    can be followed while a long run trains (an update can take minutes)."""

    def __init__(self, run_dir: Path, columns: tuple[str, ...], episodes_before: int = 0,
                 tensorboard: bool = True) -> None:
        self._metrics_file = open(run_dir / "metrics.csv", "a", newline="")
        self._episodes_file = open(run_dir / "episodes.csv", "a", newline="")
        self.columns = columns
        self._metrics = csv.DictWriter(self._metrics_file, columns)
        self._episodes = csv.writer(self._episodes_file)
        if self._metrics_file.tell() == 0:
            self._metrics.writeheader()
        if self._episodes_file.tell() == 0:
            self._episodes.writerow(EPISODE_COLUMNS)
        self._tb = TensorBoardScalars(run_dir / "tensorboard") if tensorboard else None
        self.episode_count = episodes_before  # numbering continues across learn() calls
        self._flushed_at = -float("inf")

    def episodes(self, episodes: list[Episode], wall_seconds: float) -> None:
        for ep in episodes:
            self.episode_count += 1
            self._episodes.writerow((self.episode_count, ep.end_step, f"{wall_seconds:.3f}", ep.ret, ep.length))
            if self._tb is not None:
                self._tb.write(ep.end_step, {"episode/return": ep.ret, "episode/length": ep.length})

    def update(self, row: dict[str, Any]) -> None:
        self._metrics.writerow(row)
        if self._tb is not None:
            self._tb.write(row["global_step"], {
                f"train/{key}": row[key] for key in self.columns[2:]
                if row.get(key) is not None and row[key] == row[key]
            })
        if time.monotonic() - self._flushed_at >= FLUSH_SECONDS:
            self.flush()

    def flush(self, sync: bool = False) -> None:
        """Hand buffered rows to the OS; with ``sync``, also to the disk (before a checkpoint,
        so that the files on disk always hold every row the checkpoint counts)."""
        self._flushed_at = time.monotonic()
        for f in (self._metrics_file, self._episodes_file):
            f.flush()
            if sync:
                os.fsync(f.fileno())
        if self._tb is not None:
            self._tb.flush()

    def purge_tensorboard_from(self, step: int) -> None:
        """Hide earlier TensorBoard points at ``step`` or later (those of a run killed after its
        last checkpoint, which the resumed run writes again)."""
        if self._tb is not None:
            self._tb.purge_from(step)

    def close(self) -> None:
        self.flush()
        self._metrics_file.close()
        self._episodes_file.close()
        if self._tb is not None:
            self._tb.close()


class TensorBoardScalars:
    """Scalars to a TensorBoard event file, all of one step in one event.

    ``SummaryWriter.add_scalar`` builds one event per scalar; at 20 scalars per update that
    cost half a second of a five-second CartPole run. Same file format, same tags.
    """

    def __init__(self, log_dir: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(str(log_dir), flush_secs=10)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        values = [self._summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()]
        self._writer.add_event(self._event(summary=self._summary(value=values), step=step, wall_time=time.time()))

    @staticmethod
    def drop_after(log_dir: Path, step: int) -> None:
        """Rewrite the event files in ``log_dir`` without the events past ``step`` (TensorBoard's
        fast Rust reader ignores the purge event below, so the files themselves must not hold
        the points a resumed run writes again)."""
        from tensorboard.backend.event_processing.event_file_loader import (
            RawEventFileLoader,
        )
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.summary.writer.record_writer import RecordWriter

        for path in sorted(log_dir.glob("events.out.tfevents.*")):
            records = list(RawEventFileLoader(str(path)).Load())
            kept = [r for r in records if Event.FromString(r).step <= step]
            if len(kept) == len(records):
                continue

            def write(f, kept=kept):  # type: ignore[no-untyped-def]
                writer = RecordWriter(f)
                for record in kept:
                    writer.write(record)

            atomic_write(path, write)

    def purge_from(self, step: int) -> None:
        # TensorBoard's reader drops every earlier event with a step >= a SessionLog.START's step.
        from tensorboard.compat.proto.event_pb2 import SessionLog

        start = SessionLog(status=SessionLog.START)
        self._writer.add_event(self._event(step=step, wall_time=time.time(), session_log=start))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def truncate_run_files(run_dir: Path, updates: int, episodes: int) -> float:
    """Cut ``metrics.csv`` back to updates ``1..updates`` and ``episodes.csv`` to episodes
    ``1..episodes``: the rows a checkpoint counts. Rows written after it (and a last row cut in
    half by a kill) go; the resumed run writes them again. Returns the last kept
    ``wall_seconds`` (0 if none), from which the resumed run's clock continues."""
    last_seconds = 0.0
    for name, limit in (("metrics.csv", updates), ("episodes.csv", episodes)):
        path = run_dir / name
        if not path.is_file():
            if limit:
                raise RunDirectoryError(f"{path} is missing but the checkpoint counts {limit} rows of it")
            continue
        lines = path.read_text().splitlines(keepends=True)
        if not lines:
            continue
        header, kept = lines[0], [lines[0]]
        width = len(next(csv.reader([header])))
        for line in lines[1:]:
            row = next(csv.reader([line]), [])
            if not line.endswith("\n") or len(row) != width or not row[0].isdigit() or int(row[0]) > limit:
                break
            kept.append(line)
            if name == "metrics.csv":
                last_seconds = float(row[2])
        found = len(kept) - 1
        if found != limit:
            raise RunDirectoryError(f"{path} has {found} complete rows but the checkpoint counts {limit}; "
                                    "the run directory was changed by hand or its disk lost data")
        if len(kept) != len(lines):
            text = "".join(kept)
            atomic_write(path, lambda f, text=text: f.write(text.encode()))
    return last_seconds
