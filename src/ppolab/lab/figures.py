"""The report's figures, each drawn from a :class:`ReportData` by one function of
:data:`FIGURES` into a matplotlib ``Figure`` (no pyplot: importing this changes no backend).
A configuration has the same colour in every figure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from ppolab.lab import stats
from ppolab.lab.results import (
    ConfigSummary,
    SweepData,
    kl_clip_correlation,
    kl_clip_points,
    score_description,
)
from ppolab.lab.stats import AGGREGATES, Estimate

ROLLING_WINDOW = 20  # episodes in the rolling mean of the learning curves
CURVE_POINTS = 200  # grid points of the learning curves and performance profiles
MINUTES_AFTER = 600  # seconds: longer runs have their time axis in minutes
DPI = 110
AGGREGATE_NAMES = {"iqm": "IQM", "median": "median", "mean": "mean"}


@dataclass
class ReportData:
    """Everything the figures and the text are drawn from."""

    data: SweepData
    summaries: list[ConfigSummary]
    improvements: dict[tuple[str, str], Estimate]
    reps: int

    @property
    def colours(self) -> dict[str, tuple]:
        labels = self.data.configs()
        cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
        return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}

    @property
    def threshold(self) -> float | None:
        found = [t.result["reward_threshold"] for t in self.data.trials
                 if t.result and t.result.get("reward_threshold") is not None]
        return float(found[0]) if found else None

    @property
    def score_text(self) -> str:
        return score_description(self.data.plan.get("score") or {})

    def scored(self) -> list[ConfigSummary]:
        return [s for s in self.summaries if s.estimates]


class NoData(Exception):
    """A figure with nothing to show; the message says why."""


def _axes(ncols: int = 1, width: float = 8.0, height: float = 4.5) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _style(ax, title: str, xlabel: str, ylabel: str = "", legend: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize=8, loc="best")


def _band(ax, x: np.ndarray, band: tuple[np.ndarray, ...], colour, label: str, steps: bool = False) -> None:
    point, low, high = band
    ax.plot(x, point, color=colour, lw=1.8, label=label, drawstyle="steps-post" if steps else "default")
    ax.fill_between(x, low, high, color=colour, alpha=0.2, lw=0, step="post" if steps else None)


def _intervals(ax, labels: list[str], estimates: list[Estimate], colours: list) -> None:
    """rliable-style interval rows: a bar over each 95% interval, a black tick at the point, first on top."""
    for y, (estimate, colour) in enumerate(zip(estimates, colours, strict=True)):
        ax.barh(y, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colour, alpha=0.6)
        ax.plot([estimate.point] * 2, [y - 0.3, y + 0.3], color="black", lw=2)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)


def _rolling_curve(episodes: np.ndarray, column: int) -> tuple[np.ndarray, np.ndarray]:
    """A run's rolling mean return (last ROLLING_WINDOW episodes, fewer at the start) against
    steps (column 0) or seconds (1). Episodes that end at the same x (different envs, or one
    logging flush) keep the last value, so x is strictly increasing."""
    returns = episodes[:, 2]
    sums, ends = np.cumsum(np.insert(returns, 0, 0.0)), np.arange(1, len(returns) + 1)
    rolling = (sums[ends] - sums[np.maximum(ends - ROLLING_WINDOW, 0)]) / np.minimum(ends, ROLLING_WINDOW)
    x, last = np.unique(episodes[::-1, column], return_index=True)
    return x, rolling[::-1][last]


def x_axis(column: int, largest: float) -> tuple[str, float]:
    """The label and divisor of a learning curve's x axis: steps, or wall-clock time in seconds,
    or in minutes once the longest run passes ``MINUTES_AFTER`` seconds."""
    if column == 0:
        return "environment steps", 1.0
    if largest > MINUTES_AFTER:
        return "wall-clock time (minutes)", 60.0
    return "wall-clock time (seconds)", 1.0


def _learning_curves(report: ReportData, column: int) -> tuple[Figure, str]:
    curves: dict[str, list] = {}
    for trial in report.data.trials:
        if trial.score is not None and trial.episodes is not None:
            x, y = _rolling_curve(trial.episodes, column)
            if len(x) >= 2:
                curves.setdefault(trial.config, []).append((x, y))
    if not curves:
        raise NoData("no done trial has two or more finished training episodes")
    xlabel, scale = x_axis(column, max(x[-1] for runs in curves.values() for x, _ in runs))
    curves = {label: [(x / scale, y) for x, y in runs] for label, runs in curves.items()}
    grid = np.linspace(min(x[0] for runs in curves.values() for x, _ in runs),
                       max(x[-1] for runs in curves.values() for x, _ in runs), CURVE_POINTS)
    fig, (ax,) = _axes()
    for label in (label for label in report.data.configs() if label in curves):
        xs, ys = zip(*curves[label], strict=True)
        band = stats.curve_band(xs, ys, grid, reps=report.reps)
        # Only where every run has data: at the ragged ends the IQM of the one or two runs still
        # going jumps about and reads as a trend.
        common = (grid >= max(x[0] for x in xs)) & (grid <= min(x[-1] for x in xs))
        band = tuple(np.where(common, b, np.nan) for b in band)
        _band(ax, grid, band, report.colours[label], f"{label} ({len(xs)} runs)")
    if report.threshold is not None:
        ax.axhline(report.threshold, color="grey", ls="--", lw=1.2, label=f"reward threshold ({report.threshold:g})")
    if column == 0:  # 10k, 1.5M; never on a time axis, where its 'm' (milli) reads as minutes
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    title = (f"{report.data.plan.get('env_id')}: IQM over seeds of the rolling mean training return\n"
             f"(last {ROLLING_WINDOW} episodes), 95% bootstrap band")
    _style(ax, title, xlabel, "rolling mean return", legend=True)
    caption = (f"IQM across seeds of each run's mean return over its last {ROLLING_WINDOW} training episodes, "
               f"against {xlabel}, drawn where every run has data; shaded: 95% bootstrap band over runs.")
    return fig, caption


def _final_scores(report: ReportData) -> tuple[Figure, str]:
    scored = report.scored()
    if not scored:
        raise NoData("no trial finished with a score")
    fig, axes = _axes(3, width=11, height=1.6 + 0.45 * len(scored))
    for i, (ax, name) in enumerate(zip(axes, AGGREGATES, strict=True)):
        _intervals(ax, [s.label for s in scored], [s.estimates[name] for s in scored],
                   [report.colours[s.label] for s in scored])
        _style(ax, AGGREGATE_NAMES[name], "")
        ax.tick_params(labelleft=i == 0)
    fig.suptitle(f"Final scores: point estimate and 95% stratified bootstrap CI ({report.reps} resamples)")
    fig.supxlabel(f"score: {report.score_text}", fontsize=10)
    return fig, f"IQM, median and mean of the score ({report.score_text}) with 95% bootstrap confidence intervals."


def _performance_profiles(report: ReportData) -> tuple[Figure, str]:
    scored = report.scored()
    if not scored:
        raise NoData("no trial finished with a score")
    scores = np.concatenate([s.scores for s in scored])
    pad = 0.05 * (np.ptp(scores) or abs(scores[0]) or 1.0)
    taus = np.linspace(scores.min() - pad, scores.max() + pad, CURVE_POINTS)
    fig, (ax,) = _axes()
    for s in scored:
        _band(ax, taus, stats.performance_profile_band(s.scores, taus, report.reps), report.colours[s.label],
              f"{s.label} ({len(s.scores)} runs)", steps=True)
    ax.set_ylim(-0.02, 1.02)
    _style(ax, "Performance profiles with 95% bootstrap bands", f"score threshold τ ({report.score_text})",
           "fraction of runs with score > τ", legend=True)
    return fig, "Fraction of runs whose score exceeds τ, for each τ; shaded: 95% bootstrap band."


def _probability_of_improvement(report: ReportData) -> tuple[Figure, str]:
    scored = report.scored()
    if len(scored) < 2:
        raise NoData("it needs two or more configurations with done trials")
    best = max(scored, key=lambda s: s.estimates["iqm"].point)
    others = [s for s in scored if s is not best]
    fig, (ax,) = _axes(height=1.8 + 0.45 * len(others))
    _intervals(ax, [f"P({best.label} > {s.label})" for s in others],
               [report.improvements[best.label, s.label] for s in others], [report.colours[s.label] for s in others])
    ax.axvline(0.5, color="grey", ls="--", lw=1.2)
    ax.set_xlim(0, 1)
    fig.suptitle(f"Probability that a run of the best configuration by IQM ({best.label})\n"
                 "beats a run of each other one, with 95% bootstrap CI", fontsize=10)
    _style(ax, "", "P(X > Y), ties counting half")
    return fig, f"P(X > Y) for the configuration with the best IQM ({best.label}) against each other one."


def _kl_vs_clip_fraction(report: ReportData) -> tuple[Figure, str]:
    points = kl_clip_points(report.data)
    if not points:
        raise NoData("no trial logged both approx_kl and clip_fraction (PPO's statistics)")
    fig, (ax,) = _axes()
    for label in (label for label in report.data.configs() if label in points):
        kl, clip = points[label]
        ax.scatter(kl, clip, s=8, alpha=0.35, color=report.colours[label], edgecolors="none", label=label)
    all_kl = np.concatenate([kl for kl, _ in points.values()])
    if all_kl.min() > 0 and all_kl.max() > 10 * all_kl.min():
        ax.set_xscale("log")
    correlation = kl_clip_correlation(report.data)
    rho = "undefined" if correlation is None else f"{correlation[0]:.2f} over {correlation[1]:,} updates"
    _style(ax, f"Approximate KL vs clip fraction, one point per update\nSpearman rank correlation ρ = {rho}",
           "approx_kl (estimated KL(old ‖ new) after the update)", "clip fraction", legend=True)
    for handle in ax.get_legend().legend_handles:
        handle.set_alpha(1)
    return fig, f"Each update's approximate KL against its clip fraction; Spearman ρ = {rho}."


FIGURES: tuple[tuple[str, Callable[[ReportData], tuple[Figure, str]]], ...] = (
    ("learning_curves_steps.png", lambda r: _learning_curves(r, 0)),
    ("learning_curves_seconds.png", lambda r: _learning_curves(r, 1)),
    ("final_scores.png", _final_scores),
    ("performance_profiles.png", _performance_profiles),
    ("probability_of_improvement.png", _probability_of_improvement),
    ("kl_vs_clip_fraction.png", _kl_vs_clip_fraction),
)
