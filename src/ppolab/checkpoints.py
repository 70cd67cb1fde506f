"""A run directory's ``checkpoints/`` folder: numbered, atomic, pruned.

    checkpoints/ckpt-000000040.pt   the agent after update 40 (a model file, see ppolab.modelfile)

Each file is written to a temporary name, fsynced and renamed (``files.atomic_write``), so a
process killed at any moment leaves only complete checkpoints plus, at worst, a stray temporary
file that :meth:`CheckpointDir.newest` ignores and :meth:`CheckpointDir.clean` removes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from ppolab.errors import ModelFileError, RunDirectoryError

Loaded = TypeVar("Loaded")

_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")


def model_path(path: str | Path) -> Path:
    """The file to load for ``path``: itself if a file; for a run directory its final
    ``model.pt``, or, for a run that never finished, its newest checkpoint."""
    path = Path(path)
    if not path.is_dir():
        return path
    if not (path / "model.pt").exists() and (found := CheckpointDir(path).all()):
        return found[-1]
    return path / "model.pt"


class CheckpointDir:
    """The checkpoints of one run, newest last."""

    def __init__(self, run_dir: Path, keep: int = 3) -> None:
        self.path = Path(run_dir) / "checkpoints"
        self.keep = keep

    def all(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary files are not checkpoints)."""
        if not self.path.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.path.iterdir() if (m := _NAME.match(p.name))]
        return [p for _, p in sorted(found)]

    def write(self, agent: Any) -> Path:
        """Save ``agent`` as the checkpoint of its current update and drop all but the newest
        ``keep`` checkpoints."""
        path = agent.save(self.path / f"ckpt-{agent.updates:09d}.pt")
        for old in self.all()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def clean(self) -> None:
        """Remove temporary files left by a process killed while writing."""
        if self.path.is_dir():
            for p in self.path.glob(".ckpt-*.tmp"):
                p.unlink(missing_ok=True)

    def load_newest(self, load: Callable[[Path], Loaded]) -> Loaded:
        """``load(path)`` of the newest checkpoint that loads (e.g. an agent with its env
        attached: ``lambda p: Agent.load(p, env=...)``; this module knows files, not agents).

        A checkpoint that is damaged (it fails its checksum or does not parse) is reported on
        stderr, renamed to ``*.bad`` so that it never counts again, and the next older one is
        tried. An OS error (a failing disk, a lost mount) stops instead: going back to an older
        checkpoint because of a passing read error would throw away a good one.
        """
        candidates = self.all()
        if not candidates:
            raise RunDirectoryError(f"{self.path.parent} has no checkpoint to resume from "
                                    f"(no {self.path.name}/ckpt-*.pt)")
        problems = []
        for path in reversed(candidates):
            try:
                return load(path)
            except ModelFileError as exc:
                problems.append(str(exc))
                path.rename(path.with_name(path.name + ".bad"))
                print(f"ppolab: warning: skipping checkpoint {path.name} (renamed to {path.name}.bad): "
                      f"{exc}", file=sys.stderr)
        raise RunDirectoryError(f"no checkpoint in {self.path} loads: " + "; ".join(problems))
