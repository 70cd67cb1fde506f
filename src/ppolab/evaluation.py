"""Evaluation episodes with a trained agent, optionally recorded to a video file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ppolab import masks
from ppolab.envs import make_single_env
from ppolab.errors import ConfigError, VideoError

if TYPE_CHECKING:
    from ppolab.agent import Agent


@dataclass
class EvalResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate(
    agent: Agent, episodes: int = 10, deterministic: bool = False, seed: int = 1_000_000,
    video: str | Path | None = None, env_id: str | None = None,
) -> EvalResult:
    """Run ``episodes`` full episodes of ``agent`` on a fresh env (seeded ``seed``, ``seed + 1``,
    ...) and return their returns and lengths. ``video`` records them all to a .gif or .mp4 file."""
    if episodes < 1:
        raise ConfigError(f"invalid episodes={episodes}: must be an integer >= 1")
    if not 0 <= seed < 2**32 - episodes:
        raise ConfigError(f"invalid seed={seed}: must be an integer in [0, 2**32 - episodes)")
    if video:
        check_video_target(Path(video))
    env = make_single_env(env_id or agent.env_id, render_mode="rgb_array" if video else None)
    source, action = agent.env_info.action_mask, agent.env_info.action

    def mask(info: dict, where: str) -> np.ndarray | None:  # as the policy was trained: masked or not
        return None if source is None else masks.read_single(source, env, info, action, where)

    memory = agent.new_memory() if agent.policy.recurrent else None
    frames: list[np.ndarray] = []
    returns, lengths = [], []
    try:
        for i in range(episodes):
            obs, info = env.reset(seed=seed + i)
            if memory is not None:
                memory.reset()
            total, length, done = 0.0, 0, False
            while not done:
                if video:
                    frames.append(env.render())
                action_mask = mask(info, f"in evaluation episode {i}, step {length}")
                obs, reward, terminated, truncated, info = env.step(
                    agent.predict(obs, deterministic, action_mask=action_mask, memory=memory))
                total += float(reward)
                length += 1
                done = terminated or truncated
            returns.append(total)
            lengths.append(length)
        if video:
            frames.append(env.render())
            fps = env.metadata.get("render_fps", 30)
            write_video(Path(video), frames, fps)
    finally:
        env.close()
    return EvalResult(returns, lengths)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write RGB frames to ``path``: GIF through Pillow (always available with matplotlib),
    MP4 and other formats through imageio's ffmpeg plugin (``pip install ppolab[video]``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames[::2]]  # half the frames keeps GIFs small
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(2000 / fps), loop=0)
        return
    import imageio.v2 as imageio

    imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)


def check_video_target(path: Path) -> None:
    """Fail before any episode runs when ``path`` cannot be written or its format needs a
    package that is not installed."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise VideoError(f"cannot write video {path}: {parent} is not a writable directory")
    if path.suffix.lower() == ".gif":
        return
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise VideoError(f"writing {path.suffix or 'extension-less'} video needs imageio and "
                         "imageio-ffmpeg (pip install 'ppolab[video]'); or record a .gif") from None
