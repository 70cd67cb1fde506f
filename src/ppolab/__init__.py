"""ppolab: PPO and trust-region methods you can read, trust, and race.

    from ppolab import PPO
    agent = PPO("CartPole-v1", seed=0)
    result = agent.learn(100_000)
    agent.save("cartpole.pt")
    PPO.load("cartpole.pt").predict(obs)

The names below are imported on first use, so that ``import ppolab.cli`` (and ``ppolab
--help``) does not pay for importing torch and gymnasium.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ppolab.agent import A2C, PPO, TRPO, VPG, Agent
    from ppolab.config import PPOConfig
    from ppolab.evaluation import evaluate

__all__ = ["A2C", "Agent", "PPO", "PPOConfig", "TRPO", "VPG", "evaluate", "load"]
__version__ = "0.1.0"

_LAZY = {"Agent": "ppolab.agent", "PPO": "ppolab.agent", "TRPO": "ppolab.agent", "A2C": "ppolab.agent",
         "VPG": "ppolab.agent", "PPOConfig": "ppolab.config", "evaluate": "ppolab.evaluation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ppolab' has no attribute {name!r}")


def load(path: str) -> Agent:
    """Load a saved agent of any algorithm (model file or run directory) for prediction."""
    from ppolab.agent import Agent

    return Agent.load(path)
