"""Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal asks the loop to stop after the update in progress, so that the checkpoint
written on the way out is a consistent state; a second one stops at once (the newest periodic
checkpoint is then the one to resume from).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Any


class GracefulStop:
    """A context manager that turns SIGINT/SIGTERM into a request: ``requested`` names the
    first signal received (``"SIGINT"``), or is None; ``exit_code`` is 128 + its number."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    UPDATE = "stopping after the current update and saving a checkpoint (send it again to stop at once)"

    def __init__(self, doing: str = UPDATE) -> None:
        self.doing = doing  # what the first signal does, for the message
        self.requested: str | None = None
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested, self.signum = signal.Signals(signum).name, signum
        # os.write, not print: the signal may arrive in the middle of a print to stderr
        message = f"\n{self.requested}: {self.doing}\n"
        with contextlib.suppress(OSError):
            os.write(2, message.encode())
