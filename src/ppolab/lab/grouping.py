"""Which trials of a sweep share a process as a population (``--population auto``).

Trials can train as one population (:mod:`ppolab.population`) when their algorithm, env,
structure (:data:`ppolab.population.STRUCTURAL`) and budget are the same, and the algorithm and
observations are ones a population handles. Each such group is split into populations so that
every worker gets one (a population trains on one core), with at most :data:`MAX_MEMBERS` members
each; the others train one per process, as with ``--population off``.

The split depends only on the trials and the number of workers, so the same sweep on the same
machine forms the same populations, run after run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ppolab.lab.plan import TrialSpec

POPULATION_MODES = ("auto", "off")
MAX_MEMBERS = 64  # members of one population: beyond this, batching gains little and memory grows


@dataclass(frozen=True)
class Grouping:
    """The units of work (a list of one trial, or of a population's members) and, per reason,
    how many trials run one per process for it."""

    units: list[list[TrialSpec]]
    alone: dict[str, int]

    @property
    def populations(self) -> list[list[TrialSpec]]:
        return [unit for unit in self.units if len(unit) > 1]

    def describe(self) -> str:
        """One line: how the trials will run."""
        pops = self.populations
        parts = []
        if pops:
            sizes = sorted({len(p) for p in pops})
            size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
            parts.append(f"{sum(len(p) for p in pops)} trials as {len(pops)} population"
                         f"{'s' if len(pops) > 1 else ''} of {size}")
        for reason, count in self.alone.items():
            parts.append(f"{count} one per process ({reason})")
        return "; ".join(parts)


def group(specs: list[TrialSpec], workers: int, mode: str = "auto") -> Grouping:
    """The units ``specs`` run as on ``workers`` workers (see the module docstring)."""
    if mode == "off" or not specs:
        return Grouping([[s] for s in specs], {"--population off": len(specs)} if specs and mode == "off" else {})
    buckets: dict[tuple, list[TrialSpec]] = {}
    alone: Counter[str] = Counter()
    lone_units: list[list[TrialSpec]] = []
    observation_problems: dict[str, str | None] = {}
    for spec in specs:
        problem, key = _problem_and_key(spec, observation_problems)
        if problem is not None:
            alone[problem] += 1
            lone_units.append([spec])
        else:
            buckets.setdefault(key, []).append(spec)
    units: list[list[TrialSpec]] = []
    for members in buckets.values():
        if len(members) == 1:
            alone["no other trial to share a process with"] += 1
            lone_units.append(members)
            continue
        count = max(min(workers, len(members) // 2), -(-len(members) // MAX_MEMBERS))
        units += [members[len(members) * i // count:len(members) * (i + 1) // count] for i in range(count)]
    return Grouping(units + lone_units, dict(alone))


def _problem_and_key(spec: TrialSpec, observation_problems: dict[str, str | None]) -> tuple[str | None, tuple]:
    """Why ``spec`` trains alone, or None and the key of the trials it can share a process with;
    ``observation_problems`` caches the env's verdict."""
    from ppolab.lab.trial import trial_config
    from ppolab.population import config_problem, structure

    try:
        config = trial_config(spec)
    except Exception:  # noqa: BLE001  (the trial reports its own error when it runs)
        return "its config is invalid", ()
    problem = config_problem(spec.algo, config)
    if problem is None:
        if spec.env_id not in observation_problems:
            observation_problems[spec.env_id] = _observation_problem(spec.env_id, config.unsupported_observations)
        problem = observation_problems[spec.env_id]
    if problem is not None:
        return problem, ()
    return None, (spec.algo, spec.env_id, structure(config), config.total_steps)


def _observation_problem(env_id: str, unsupported: str) -> str | None:
    from ppolab.envs import make_single_env
    from ppolab.observations import ObservationSpec
    from ppolab.population import observation_problem

    env = make_single_env(env_id)
    try:
        return observation_problem(ObservationSpec.from_space(env.observation_space, env_id, unsupported))
    finally:
        env.close()
