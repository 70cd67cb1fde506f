"""Fixtures for the CLI / API / bad-input tests: a subprocess runner for the ``ppolab`` command,
and one torch thread for in-process training (restored afterwards)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

# A small, fast CartPole configuration: 4 envs x 128 steps = 512 steps per update.
TINY = ["--set", "n_envs=4", "--set", "n_steps=128", "--set", "minibatch_size=256"]


def ppolab_command() -> list[str]:
    """The installed ``ppolab`` console script next to this interpreter, else ``python -m ppolab.cli``."""
    script = Path(sys.executable).with_name("ppolab")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "ppolab.cli"]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``ppolab`` subprocess: tests/ importable (envs_for_tests), headless
    rendering and plotting, one thread per library."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("SDL_VIDEODRIVER", "dummy")
    env.setdefault("SDL_AUDIODRIVER", "dummy")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.pop("COLUMNS", None)
    if extra:
        env.update(extra)
    return env


def _run_cli(args: Sequence[object], cwd: str | Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``ppolab ARGS`` and return the completed process (text stdout/stderr, never raises on a
    non-zero exit)."""
    return subprocess.run(
        [*ppolab_command(), *map(str, args)], cwd=cwd, env=cli_env(env), capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_cli(args, cwd=None, env=None, timeout=120)``: run the ``ppolab`` command."""
    return _run_cli


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """In-process training with one torch thread (ppolab's PPO also sets it from the config);
    put back whatever the process had before."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
