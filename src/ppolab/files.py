"""Files written so that a crash leaves the old version or the new one, never half of one, and
JSON files read with errors that say which file and why. No heavy imports: the lab's driver and
its reports use these without torch."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ppolab.errors import RunDirectoryError

UMASK = os.umask(0)  # read once: os.umask can only be read by setting it
os.umask(UMASK)


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``: a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp's 0600 would hide run files from the group
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(path: Path) -> None:
    """Make a rename in ``path`` durable (the new name is directory data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def read_json(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` (``what`` it is, for the message); :class:`RunDirectoryError`
    when it is missing, unreadable, damaged or not an object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirectoryError(f"{path.parent} has no {path.name} ({what})") from None
    except (OSError, ValueError) as exc:
        raise RunDirectoryError(f"cannot read {path} ({what}): {exc}; the file is damaged") from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} ({what}) holds a {type(data).__name__}, not a JSON object")
    return data
