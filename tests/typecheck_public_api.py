"""What a user writes against ppolab's public API, checked by mypy in tests/test_packaging.py
against the installed wheel (which ships py.typed). Not run: only type-checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import ppolab
from ppolab import PPO, TRPO, Agent, PPOConfig, evaluate, load
from ppolab.evaluation import EvalResult
from ppolab.export import export
from ppolab.memory import Memory
from ppolab.train import TrainResult


def train_and_use(observation: np.ndarray) -> float:
    config: PPOConfig = PPOConfig(n_envs=2, n_steps=64, minibatch_size=64)
    agent: PPO = PPO("CartPole-v1", config=config, seed=0, learning_rate=1e-3)
    result: TrainResult = agent.learn(1_000)
    steps: int = result.total_steps
    solved: bool = result.solved
    action: np.ndarray = agent.predict(observation, deterministic=True)
    path: Path = agent.save("cartpole.pt")
    loaded: Agent = load(str(path))
    scores: EvalResult = evaluate(loaded, episodes=3)
    export(loaded, "policy.onnx", "onnx")
    memory: Memory = TRPO("ppolab/CueMemory-v0", recurrent="gru").new_memory(4)
    memory.reset()
    version: str = ppolab.__version__
    return scores.mean + steps + float(solved) + float(action.sum()) + len(version)
