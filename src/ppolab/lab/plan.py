"""A sweep's plan: the cross product of grid values, times seeds, as named trials.

The plan is data (``sweep.json``): re-running the same command rebuilds the same plan, which is
how a sweep directory knows it is being resumed rather than reused for another experiment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ppolab.config import CONFIG_CLASSES, config_class, parse_assignments
from ppolab.errors import ConfigError

PLAN_VERSION = 1
SCORE_KINDS = ("eval", "train")


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial needs, and nothing of the machine it runs on (it travels to Ray)."""

    name: str
    config: str  # the label of its grid point
    env_id: str
    algo: str
    seed: int
    overrides: dict[str, str]
    steps: int | None
    score_kind: str
    score_episodes: int


@dataclass
class SweepPlan:
    env_id: str
    algo: str
    grid: dict[str, list[str]]
    seeds: list[int]
    steps: int | None = None
    base: dict[str, str] = field(default_factory=dict)  # --set: the same for every trial
    score_kind: str = "eval"
    score_episodes: int = 10
    exercise: str | None = None  # the chapter exercise this sweep answers (its conclusion is specific)

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("a sweep needs at least one seed")
        if self.score_kind not in SCORE_KINDS:
            raise ConfigError(f"invalid score {self.score_kind!r}: must be one of {', '.join(SCORE_KINDS)}")
        if self.score_episodes < 1:
            raise ConfigError(f"invalid score episodes {self.score_episodes}: must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"invalid steps={self.steps}: must be >= 1")
        for key, values in self.grid.items():
            if not values:
                raise ConfigError(f"--grid {key}= has no values")
            if len(set(values)) < len(values):
                raise ConfigError(f"--grid {key} repeats a value: {','.join(values)}")
        overlap = set(self.grid) & set(self.base)
        if overlap:
            raise ConfigError(f"{', '.join(sorted(overlap))} is both swept (--grid) and fixed (--set)")
        algos = self.grid.get("algo", [self.algo])
        keys = [k for k in (*self.grid, *self.base) if k != "algo"]
        for algo in algos:
            known = {f.name for f in dataclasses.fields(config_class(algo))}  # an unknown algo names the choices
            missing = [k for k in keys if k not in known]
            if len(algos) > 1 and missing:
                raise ConfigError(f"'{missing[0]}' is not a hyperparameter of {algo}: a sweep over --grid algo=... "
                                  "can only vary or fix what every algorithm in it has")
            parse_assignments([f"{k}=" for k in keys], config_class(algo))  # unknown keys name the closest one

    @property
    def configs(self) -> list[dict[str, str]]:
        """The grid's points, in the order the values were given (the last key varies fastest)."""
        keys = list(self.grid)
        return [dict(zip(keys, values, strict=True)) for values in itertools.product(*self.grid.values())]

    def trials(self) -> list[TrialSpec]:
        """Every grid point times every seed, seeds innermost."""
        specs = []
        for point in self.configs:
            label = config_label(point)
            overrides = {**self.base, **{k: v for k, v in point.items() if k != "algo"}}
            for seed in self.seeds:
                specs.append(TrialSpec(
                    name=f"{_path_safe(label)}__s{seed}", config=label, env_id=self.env_id,
                    algo=point.get("algo", self.algo), seed=seed, overrides=overrides, steps=self.steps,
                    score_kind=self.score_kind, score_episodes=self.score_episodes,
                ))
        return specs

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION, "env_id": self.env_id, "algo": self.algo, "grid": self.grid,
            "seeds": self.seeds, "steps": self.steps, "set": self.base,
            "score": {"kind": self.score_kind, "episodes": self.score_episodes},
            "configs": [{"label": config_label(p), "overrides": p} for p in self.configs],
            "trials": [asdict(t) for t in self.trials()], "exercise": self.exercise,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepPlan:
        return cls(env_id=data["env_id"], algo=data["algo"], grid=data["grid"], seeds=data["seeds"],
                   steps=data["steps"], base=data.get("set", {}), score_kind=data["score"]["kind"],
                   score_episodes=data["score"]["episodes"], exercise=data.get("exercise"))

    def default_name(self) -> str:
        """A directory name that the same command always gives: readable, plus a hash of the plan."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        swept = "-".join(self.grid) or "seeds"
        algo = "algos" if "algo" in self.grid else self.algo
        return _path_safe(f"{self.env_id}-{algo}-{swept}-{digest}")


def config_label(point: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "default"


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["clip_coef=0.1,0.2", "hidden_sizes=64,64;128,128"]`` -> values per key. Values are
    separated by commas, or by semicolons when a value itself holds commas (a list field)."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r} (e.g. --grid clip_coef=0.1,0.2,0.3)")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid")
        separator = ";" if ";" in values else ","
        grid[key] = [v.strip() for v in values.split(separator) if v.strip()]
    if "algo" in grid:
        for algo in grid["algo"]:
            if algo not in CONFIG_CLASSES:
                raise ConfigError(f"unknown algo {algo!r} in --grid algo=...; choose from {', '.join(CONFIG_CLASSES)}")
    return grid


def _path_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "=.-_+" else "_" for c in text.replace(", ", "__"))
