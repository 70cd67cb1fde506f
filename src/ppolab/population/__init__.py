"""Population training: P agents of one architecture trained side by side in one process, with
one batched forward and backward pass for all of them (see :mod:`.engine`).

    from ppolab import PPO
    from ppolab.population import Population

    agents = [PPO("CartPole-v1", seed=s, clip_coef=c) for s in range(5) for c in (0.1, 0.2)]
    results = Population(agents).learn(25_000)

Each agent keeps its own seed and scalar hyperparameters (learning rate and its annealing, clip
range, entropy and value coefficients, gamma, lambda, max grad norm, target_kl, normalization,
budget), its own optimizer state, generators, normalizers and episode statistics, and stays an
ordinary :class:`~ppolab.agent.PPO`: save, predict and evaluate it as any other. With the same
seed, a member's first update is a lone run's to float rounding.

What must be shared is the structure (:data:`STRUCTURAL`) and the env's spaces.
:func:`why_not` says why a set of agents cannot form a population.
"""

from __future__ import annotations

from typing import Any

from ppolab.population.engine import Outcome, train_population

__all__ = ["Population", "Outcome", "why_not", "STRUCTURAL"]

# The settings every member must share: they fix the shapes of the stacked network and batches.
STRUCTURAL = ("n_envs", "n_steps", "n_epochs", "minibatch_size", "hidden_sizes", "activation", "shared_trunk",
              "shared_encoder", "normalize_advantages", "clip_value_loss", "policy_objective", "device")


def config_problem(algo: str, config: Any) -> str | None:
    """Why an agent of ``algo`` with ``config`` cannot be a population member, or None."""
    if algo != "ppo":
        return f"{algo.upper()} agents train one per process (populations are PPO only)"
    if config.recurrent != "none":
        return "recurrent policies train one per process"
    if config.policy_objective != "clip":
        return f"policy_objective={config.policy_objective} trains one per process (populations use the clipped objective)"
    if config.encoder:
        return "a custom encoder trains one per process"
    return None


def observation_problem(spec: Any) -> str | None:
    """Why observations of this :class:`~ppolab.observations.ObservationSpec` cannot be a
    population's, or None (flat vectors: the MLP encoder)."""
    if spec.structured or spec.single.kind != "vector":
        return f"{spec.describe()} observations train one per process (populations take flat vectors)"
    return None


def structure(config: Any) -> tuple:
    """The values of :data:`STRUCTURAL`: agents with equal ones can share a population."""
    return tuple(getattr(config, name) for name in STRUCTURAL)


def why_not(agents: list[Any]) -> str | None:
    """None if ``agents`` can train as one population, else why not, in one line."""
    if not agents:
        return "a population needs at least one agent"
    first = agents[0]
    for agent in agents:
        problem = (config_problem(getattr(agent, "algo", type(agent).__name__), agent.config)
                   or observation_problem(agent.env_info.observation))
        if problem is not None:
            return problem
        if agent.collector is None:
            return "an agent loaded without an environment cannot train"
        if len(set(agent.algorithm.optimizer.steps)) > 1:
            return "an agent whose parameters were updated different numbers of times cannot join a population"
        for name in STRUCTURAL:
            if getattr(agent.config, name) != getattr(first.config, name):
                return (f"{name} differs ({getattr(first.config, name)} and {getattr(agent.config, name)}): members must "
                        f"share {', '.join(STRUCTURAL)}")
        if agent.env_info.observation != first.env_info.observation or agent.env_info.action != first.env_info.action:
            return "members must have the same observation and action spaces"
        if agent.env_info.action_mask != first.env_info.action_mask:
            return "members must all use action masks, or none"
    return None


class Population:
    """PPO agents trained side by side (see the module docstring); ``learn`` and ``resume``
    work as each agent's own would, for all of them at once."""

    def __init__(self, agents: list[Any]) -> None:
        from ppolab.errors import ConfigError

        problem = why_not(agents)
        if problem is not None:
            raise ConfigError(f"these agents cannot train as one population: {problem}")
        self.agents = list(agents)

    def __len__(self) -> int:
        return len(self.agents)

    def learn(self, total_steps: int | None = None, reporters: list[Any] | None = None) -> list[Outcome]:
        """Train every agent for ``total_steps`` more steps (default: each one's
        ``config.total_steps``), as each one's ``learn`` would; ``reporters[p]`` (a
        :class:`~ppolab.rundir.RunReporter` or None) records agent p. Returns each agent's
        :class:`Outcome`: its :class:`~ppolab.train.TrainResult`, or the error that stopped
        it (an env fault, a diverged update) while the others went on."""
        for agent in self.agents:
            agent.plan(total_steps)
            agent._saved_rng = agent._in_flight = None
        return self.resume(reporters)

    def resume(self, reporters: list[Any] | None = None) -> list[Outcome]:
        """Finish every agent's planned schedule (after :meth:`learn`'s ``plan``, or after
        loading checkpoints, as :meth:`ppolab.agent.Agent.resume` does)."""
        for agent in self.agents:
            agent.prepare_resume()
        return train_population(self.agents, reporters or [None] * len(self.agents))

    def close(self) -> None:
        for agent in self.agents:
            agent.close()
