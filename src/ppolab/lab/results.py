"""A sweep directory's results, read back and summarised: each trial's state, score and curves
(:func:`load_sweep`), and per configuration the statistics of :mod:`ppolab.lab.stats`
(:func:`summarize`, :func:`improvement_table`, :func:`kl_clip_correlation`). The report and the
exercises' conclusions both start here."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.stats

from ppolab.errors import RunDirectoryError
from ppolab.files import read_json
from ppolab.lab import stats
from ppolab.lab.stats import Estimate, ThresholdSummary
from ppolab.lab.sweep import PLAN_FILE, STATUS_FILE


def score_description(score: dict) -> str:
    """What a trial's score is, from the plan's ``score`` entry."""
    if score.get("kind") == "eval":
        return f"mean return of {score.get('episodes')} evaluation episodes of the final policy"
    if score.get("kind") == "train":
        return f"mean return of the last {score.get('episodes')} training episodes"
    return "the trial's score"


@dataclass
class TrialData:
    """One trial: its plan entry, its status, and the curves of its run directory (None if absent)."""

    name: str
    config: str
    algo: str
    seed: int
    state: str  # pending | running | done | failed
    error: str | None
    result: dict | None
    episodes: np.ndarray | None  # [episodes, 3]: global_step, wall_seconds, return
    metrics: dict[str, np.ndarray] | None  # metrics.csv columns by name; empty cells are NaN

    @property
    def score(self) -> float | None:
        """The score of a done trial, None for any other trial (or a done one without a finite score)."""
        value = (self.result or {}).get("score") if self.state == "done" else None
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


@dataclass
class SweepData:
    """A sweep directory: its plan (``sweep.json``) and every planned trial, in plan order."""

    path: Path
    plan: dict
    trials: list[TrialData]

    def configs(self) -> list[str]:
        """The configuration labels, in plan order."""
        return [config["label"] for config in self.plan["configs"]]

    def budget_text(self) -> str:
        """The steps per trial, as asked and as trained: a trial trains whole rollouts, so the
        budget is rounded up to its algorithm's n_envs * n_steps."""
        asked = self.plan.get("steps")
        trained = sorted({int(t.result["total_steps"]) for t in self.trials
                          if t.state == "done" and t.result and t.result.get("total_steps")})
        if not asked:
            return "each preset's own budget"
        if not trained or trained == [asked]:
            return f"{asked:,} steps"
        span = f"{trained[0]:,}" if len(trained) == 1 else f"{trained[0]:,} to {trained[-1]:,}"
        return f"{span} steps ({asked:,} asked, rounded up to whole rollouts)"


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _read_csv(path: Path) -> dict[str, np.ndarray] | None:
    """A CSV file's columns as float arrays (empty or non-numeric cells NaN); None if absent.
    Rows of the wrong length, such as a last line cut short by a crash, are skipped."""
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return None
    header, body = rows[0], [row for row in rows[1:] if len(row) == len(rows[0])]
    return {name: np.array([_to_float(row[i]) for row in body]) for i, name in enumerate(header)}


def _load_trial(run_dir: Path, entry: dict, status: dict) -> TrialData:
    columns = _read_csv(run_dir / "episodes.csv") or {}
    wanted = ("global_step", "wall_seconds", "return")
    episodes = np.column_stack([columns[c] for c in wanted]) if all(c in columns for c in wanted) else None
    if episodes is not None:
        episodes = episodes[np.isfinite(episodes).all(axis=1)]
    return TrialData(entry["name"], entry["config"], entry["algo"], int(entry["seed"]),
                     status.get("state", "pending"), status.get("error"), status.get("result"),
                     episodes, _read_csv(run_dir / "metrics.csv"))


def load_sweep(sweep_dir: str | Path) -> SweepData:
    """Read a sweep directory: ``sweep.json``, ``status.json`` (every trial pending without it)
    and each trial's ``runs/<name>/{episodes,metrics}.csv``. :class:`RunDirectoryError` when
    ``sweep.json`` is missing or is not a sweep plan."""
    path = Path(sweep_dir)
    plan = read_json(path / PLAN_FILE, "the sweep plan")
    status_path = path / STATUS_FILE
    status = read_json(status_path, "the trials' states").get("trials", {}) if status_path.is_file() else {}
    try:
        data = SweepData(path, plan, [_load_trial(path / "runs" / entry["name"], entry, status.get(entry["name"]) or {})
                                      for entry in plan["trials"]])
        data.configs()  # every configuration has a label
    except (KeyError, TypeError, AttributeError) as e:
        raise RunDirectoryError(f"{path / 'sweep.json'} is not a ppolab sweep plan ({type(e).__name__}: {e}); "
                                "it was damaged or written by another program") from None
    return data


@dataclass
class ConfigSummary:
    """One configuration's trials: counts, scores, aggregates and how soon they reached the threshold."""

    label: str
    algo: str
    runs: int
    done: int
    failed: int
    scores: np.ndarray  # the done trials' scores, in seed order
    estimates: dict[str, Estimate]  # iqm, median, mean; {} without a done trial
    steps_to_threshold: ThresholdSummary | None  # None when the env has no reward threshold
    seconds_to_threshold: ThresholdSummary | None


def _to_threshold(trials: list[TrialData], key: str) -> ThresholdSummary | None:
    if not any(t.result.get("reward_threshold") is not None for t in trials):
        return None
    return stats.threshold_summary([t.result.get(key) for t in trials])


def summarize(data: SweepData, reps: int = 2000, seed: int = 0) -> list[ConfigSummary]:
    """Per configuration, in plan order: trial counts, the done trials' scores with their IQM,
    median and mean (95% stratified bootstrap intervals), and when the runs reached the threshold."""
    summaries = []
    for label in data.configs():
        trials = [t for t in data.trials if t.config == label]
        scored = sorted((t for t in trials if t.score is not None), key=lambda t: t.seed)
        scores = np.array([t.score for t in scored], dtype=float)
        summaries.append(ConfigSummary(
            label, ", ".join(dict.fromkeys(t.algo for t in trials)), len(trials),
            sum(t.state == "done" for t in trials), sum(t.state == "failed" for t in trials), scores,
            stats.aggregate_estimates(scores, reps=reps, seed=seed) if len(scores) else {},
            _to_threshold(scored, "solved_at_step"), _to_threshold(scored, "solved_at_seconds")))
    return summaries


def improvement_table(data: SweepData, summaries: list[ConfigSummary], reps: int = 2000,
                      seed: int = 0) -> dict[tuple[str, str], Estimate]:
    """``P(a run of config a scores higher than a run of config b)`` (ties count half) with a 95%
    bootstrap interval, for each ordered pair of distinct configurations that have scores, keyed
    ``(a, b)`` in the plan's configuration order."""
    order = {label: i for i, label in enumerate(data.configs())}
    scored = sorted((s for s in summaries if len(s.scores)), key=lambda s: order.get(s.label, len(order)))
    return {(a.label, b.label): stats.probability_of_improvement_estimate(a.scores, b.scores, reps, seed=seed)
            for a in scored for b in scored if a is not b}


def kl_clip_points(data: SweepData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per configuration, every logged update's (approx_kl, clip_fraction) where both are numbers."""
    points: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for trial in data.trials:
        metrics = trial.metrics or {}
        if "approx_kl" in metrics and "clip_fraction" in metrics:
            kl, clip = metrics["approx_kl"], metrics["clip_fraction"]
            keep = np.isfinite(kl) & np.isfinite(clip)
            old_kl, old_clip = points.get(trial.config, (np.empty(0), np.empty(0)))
            points[trial.config] = (np.append(old_kl, kl[keep]), np.append(old_clip, clip[keep]))
    return {label: pair for label, pair in points.items() if len(pair[0])}


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation; None with fewer than three points or a constant side
    (where it is undefined)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(scipy.stats.spearmanr(x, y).statistic)


def kl_clip_correlation(data: SweepData) -> tuple[float, int] | None:
    """Spearman's rank correlation between approx_kl and clip_fraction over every update of every
    trial, and the number of updates; None without such metrics (not PPO) or where
    :func:`spearman` is undefined."""
    points = list(kl_clip_points(data).values())
    kl = np.concatenate([p[0] for p in points]) if points else np.empty(0)
    clip = np.concatenate([p[1] for p in points]) if points else np.empty(0)
    rho = spearman(kl, clip)
    return None if rho is None else (rho, len(kl))
