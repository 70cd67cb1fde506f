"""Model files: tensors and plain values only, written atomically, read without unpickling code.

A model file is ``torch.save`` of a dict of tensors, numbers, strings, lists and dicts; it is
read with ``torch.load(weights_only=True)``, which refuses anything that would run code. Since
format version 2 it carries a SHA-256 of its contents: torch's zip reader does not check its
CRCs, so without it a file damaged on disk would load silently with wrong weights.

A checkpoint may also hold pickled envs, as uint8 tensors (see :mod:`ppolab.snapshots`): this
module reads them as bytes; only ``Agent.resume`` unpickles them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from ppolab.errors import ModelFileError
from ppolab.files import atomic_write

FORMAT = "ppolab-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: the same, without the checksum
def save(path: str | Path, payload: dict[str, Any]) -> Path:
    path = Path(path)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    data["sha256"] = checksum(data)
    atomic_write(path, lambda f: torch.save(data, f))
    return path


def load(path: str | Path) -> dict[str, Any]:
    """The payload of a model file; :class:`ModelFileError` for anything else (a run
    directory is resolved to its model file by :func:`ppolab.checkpoints.model_path`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no model file at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise  # the disk or the mount, not the file: do not treat it as a damaged file
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable ppolab model file (truncated, corrupted, or "
                             f"not a model): {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a ppolab model file")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(
            f"{path} has model format version {version}; this ppolab reads version "
            f"{FORMAT_VERSION} or older (upgrade ppolab to read newer files)"
        )
    if version >= 2:
        stored = data.pop("sha256", None)
        if stored != checksum(data):
            raise ModelFileError(f"{path} is corrupted: its contents do not match the checksum "
                                 "written with it")
    return data


def checksum(obj: Any) -> str:
    """SHA-256 over a canonical walk of nested dicts, lists, tensors and plain values."""
    h = hashlib.sha256()

    def walk(x: Any, top: bool = False) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(x, dict):
            h.update(b"{")
            for key in sorted(x, key=str):
                if not (top and key == "sha256"):
                    h.update(repr(key).encode())
                    walk(x[key])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for item in x:
                walk(item)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    walk(obj, top=True)
    return h.hexdigest()
