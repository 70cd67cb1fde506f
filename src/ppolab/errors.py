"""Every exception ppolab raises on purpose.

A message says what was wrong, what is allowed, and how to fix it. The CLI prints these
without a traceback and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PPOLabError(Exception):
    """Base class: an error the user can fix from its message alone."""


class ConfigError(PPOLabError, ValueError):
    """An invalid hyperparameter, an unknown key, or a malformed config file."""


class EnvironmentSpecError(PPOLabError, ValueError):
    """An unknown environment id, or an environment whose spaces ppolab cannot train on."""


class ModelFileError(PPOLabError):
    """A model file that is missing, unreadable, or does not fit the environment."""


class RunDirectoryError(PPOLabError):
    """A run directory that cannot be created, or is not a run directory."""


class EnvironmentFaultError(PPOLabError, RuntimeError):
    """An environment misbehaved while training: it raised in ``step``/``reset``, or returned a
    NaN/inf observation or reward, or an observation of the wrong shape. The message names the
    env index (when known), the global step and the offending value."""


class VideoError(PPOLabError):
    """A video that cannot be written (format without its optional dependency)."""


class TrainingDivergedError(PPOLabError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the last good model was kept."""


def closest(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates that look most like ``word`` (case-insensitive), best first."""
    candidates = list(candidates)
    by_lower = {c.lower(): c for c in candidates}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[m] for m in matches]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) when something is close, else ``""``."""
    matches = closest(word, candidates)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"
