"""ppolab: PPO and trust-region methods you can read, trust, and race.

    from ppolab import PPO
    agent = PPO("CartPole-v1", seed=0)
    result = agent.learn(100_000)
    agent.save("cartpole.pt")
    PPO.load("cartpole.pt").predict(obs)
"""

from ppolab.agent import PPO
from ppolab.config import PPOConfig
from ppolab.evaluate import evaluate

__all__ = ["PPO", "PPOConfig", "evaluate", "load"]
__version__ = "0.1.0"


def load(path: str) -> PPO:
    """Load a saved agent (model file or run directory) for prediction."""
    return PPO.load(path)
