"""Model files: tensors and plain values only, written atomically, read without unpickling code.

A model file is ``torch.save`` of a dict of tensors, numbers, strings, lists and dicts; it is
read with ``torch.load(weights_only=True)``, which refuses anything that would run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ppolab.errors import ModelFileError

FORMAT = "ppolab-model"
FORMAT_VERSION = 1


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over
    ``path``: a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, f))
    return path


def load(path: str | Path) -> dict[str, Any]:
    """The payload of a model file; :class:`ModelFileError` for anything else."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable ppolab model file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a ppolab model file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {data.get('format_version')}; this ppolab reads "
            f"version {FORMAT_VERSION} (upgrade ppolab to read newer files)"
        )
    return data
