"""Live progress on the console: a rich progress bar on a terminal, plain periodic lines elsewhere
(CI logs, pipes), nothing with ``quiet``."""

from __future__ import annotations

import math
import sys
import time
from typing import Any


def _rich_bar(description: str, total: int, completed: int, middle: str, tail: str | None,
              **fields: Any) -> tuple[Any, Any]:
    """A started rich bar on stderr: description, bar, N/M, ``middle`` (a format of the task's
    ``fields``), elapsed time, then ``tail`` (a format), or rich's own ETA when ``tail`` is None."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    ending = [TextColumn("eta"), TimeRemainingColumn()] if tail is None else [TextColumn(tail)]
    bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(middle),
                       TimeElapsedColumn(), *ending, console=Console(stderr=True), refresh_per_second=4)
    task = bar.add_task(description, total=total, completed=completed, **fields)
    bar.start()
    return bar, task


class Progress:
    """``start(total)``, ``advance(step, rolling_return, sps)`` per update, ``stop()``."""

    def __init__(self, description: str, quiet: bool = False, interval: float = 2.0) -> None:
        self.description, self.quiet, self.interval = description, quiet, interval
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0
        self._total = 0

    def start(self, total_steps: int, done_steps: int = 0) -> None:
        self._total = total_steps
        if self.quiet:
            return
        if sys.stderr.isatty():
            self._bar, self._task = _rich_bar(
                self.description, total_steps, done_steps, "steps  {task.fields[sps]:>6} sps  return {task.fields[ret]}",
                None, sps="-", ret="-")

    def advance(self, step: int, rolling_return: float | None, sps: float | None) -> None:
        """Show ``step``; ``sps=None`` keeps the last speed (the final refresh)."""
        ret = "-" if rolling_return is None else f"{rolling_return:8.1f}"
        if self._bar is not None:
            fields = {"ret": ret} if sps is None else {"ret": ret, "sps": f"{sps:,.0f}"}
            self._bar.update(self._task, completed=min(step, self._total), **fields)
            return
        if sps is None:
            return
        if not self.quiet and time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            pct = 100.0 * step / max(self._total, 1)
            print(f"{self.description}: step {step:,}/{self._total:,} ({pct:4.1f}%)  {sps:,.0f} sps  "
                  f"rolling return {ret.strip()}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class TrialProgress:
    """A sweep's progress: trials done, running and failed, and an estimate of the time left
    (rounds of ``workers`` trials left x mean duration of the trials finished so far). A rich bar on a
    terminal; elsewhere one line per finished trial."""

    def __init__(self, description: str, quiet: bool = False) -> None:
        self.description, self.quiet = description, quiet
        self._bar: Any = None
        self._task: Any = None
        self._durations: list[float] = []
        self._total = self._workers = 0

    def start(self, total: int, done: int, workers: int) -> None:
        self._total, self._workers = total, workers
        if self.quiet:
            return
        if sys.stderr.isatty():
            self._bar, self._task = _rich_bar(
                self.description, total, done, "trials  running {task.fields[running]}  failed {task.fields[failed]}",
                "eta {task.fields[eta]}", running=0, failed=0, eta="-")
        else:
            print(f"{self.description}: {total} trials, {done} already done, {workers} at a time",
                  file=sys.stderr, flush=True)

    def eta(self, counts: dict[str, int]) -> str:
        if not self._durations:
            return "-"
        rounds = math.ceil((counts["pending"] + counts["running"]) / max(self._workers, 1))
        seconds = rounds * sum(self._durations) / len(self._durations)
        return time.strftime("%H:%M:%S", time.gmtime(seconds))

    def update(self, counts: dict[str, int], finished: str | None, entry: dict[str, Any]) -> None:
        """``counts`` per state after an event; ``finished`` names the trial that just ended."""
        if finished is not None and entry.get("seconds") is not None:
            self._durations.append(entry["seconds"])
        finished_count = counts["done"] + counts["failed"]
        if self._bar is not None:
            self._bar.update(self._task, completed=finished_count, running=counts["running"],
                             failed=counts["failed"], eta=self.eta(counts))
        elif not self.quiet and finished is not None:
            what = (f"score {entry['result']['score']:.1f}" if entry["state"] == "done"
                    else f"FAILED: {entry['error']}")
            print(f"[{finished_count}/{self._total}] {finished}: {what} ({entry['seconds']:.1f} s); "
                  f"running {counts['running']}, failed {counts['failed']}, eta {self.eta(counts)}",
                  file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
