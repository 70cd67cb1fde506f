"""A sweep directory turned into a report: ``report.md``, ``report.html`` and ``figures/*.png``.

`load_sweep` reads the plan, the trials' states and their run directories' curves; `summarize`
and `improvement_table` compute the statistics (:mod:`ppolab.lab.stats`); `write_report` draws
the figures and renders both reports from one list of blocks, so that the Markdown and the
self-contained HTML (figures embedded) always say the same thing.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import tempfile
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import scipy.stats
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from ppolab.errors import RunDirectoryError
from ppolab.lab import stats
from ppolab.lab.stats import AGGREGATES, Estimate, ThresholdSummary

ROLLING_WINDOW = 20  # episodes in the rolling mean of the learning curves
CURVE_POINTS = 200  # grid points of the learning curves and performance profiles
DPI = 110
AGGREGATE_NAMES = {"iqm": "IQM", "median": "median", "mean": "mean"}


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


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirectoryError(f"{path.parent} is not a sweep directory: it has no {path.name} ({what}); "
                                "give the directory that `ppolab sweep` created") from None
    except (OSError, ValueError) as e:
        raise RunDirectoryError(f"cannot read {path} ({what}): {e}; the file is damaged") from None
    if not isinstance(data, dict):
        raise RunDirectoryError(f"{path} ({what}) holds a {type(data).__name__}, not a JSON object")
    return data


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
    plan = _read_json(path / "sweep.json", "the sweep plan")
    status_path = path / "status.json"
    status = _read_json(status_path, "the trials' states").get("trials", {}) if status_path.is_file() else {}
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


def _kl_clip_points(data: SweepData) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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


def kl_clip_correlation(data: SweepData) -> tuple[float, int] | None:
    """Spearman's rank correlation between approx_kl and clip_fraction over every update of every
    trial, and the number of updates; None without such metrics (not PPO), with fewer than three
    updates, or when either is constant (the correlation is undefined)."""
    points = list(_kl_clip_points(data).values())
    kl = np.concatenate([p[0] for p in points]) if points else np.empty(0)
    clip = np.concatenate([p[1] for p in points]) if points else np.empty(0)
    if len(kl) < 3 or np.ptp(kl) == 0 or np.ptp(clip) == 0:
        return None
    return float(scipy.stats.spearmanr(kl, clip).statistic), len(kl)


# --- figures -----------------------------------------------------------------------------------

@dataclass
class _Report:
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
        score = self.data.plan.get("score") or {}
        if score.get("kind") == "eval":
            return f"mean return of {score.get('episodes')} evaluation episodes of the final policy"
        if score.get("kind") == "train":
            return f"mean return of the last {score.get('episodes')} training episodes"
        return "the trial's score"

    def scored(self) -> list[ConfigSummary]:
        return [s for s in self.summaries if s.estimates]


class _NoData(Exception):
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


def _learning_curves(report: _Report, column: int, xlabel: str) -> tuple[Figure, str]:
    curves: dict[str, list] = {}
    for trial in report.data.trials:
        if trial.score is not None and trial.episodes is not None:
            x, y = _rolling_curve(trial.episodes, column)
            if len(x) >= 2:
                curves.setdefault(trial.config, []).append((x, y))
    if not curves:
        raise _NoData("no done trial has two or more finished training episodes")
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
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    title = (f"{report.data.plan.get('env_id')}: IQM over seeds of the rolling mean training return\n"
             f"(last {ROLLING_WINDOW} episodes), 95% bootstrap band")
    _style(ax, title, xlabel, "rolling mean return", legend=True)
    caption = (f"IQM across seeds of each run's mean return over its last {ROLLING_WINDOW} training episodes, "
               f"against {xlabel}, drawn where every run has data; shaded: 95% bootstrap band over runs.")
    return fig, caption


def _final_scores(report: _Report) -> tuple[Figure, str]:
    scored = report.scored()
    if not scored:
        raise _NoData("no trial finished with a score")
    fig, axes = _axes(3, width=11, height=1.6 + 0.45 * len(scored))
    for i, (ax, name) in enumerate(zip(axes, AGGREGATES, strict=True)):
        _intervals(ax, [s.label for s in scored], [s.estimates[name] for s in scored],
                   [report.colours[s.label] for s in scored])
        _style(ax, AGGREGATE_NAMES[name], "")
        ax.tick_params(labelleft=i == 0)
    fig.suptitle(f"Final scores: point estimate and 95% stratified bootstrap CI ({report.reps} resamples)")
    fig.supxlabel(f"score: {report.score_text}", fontsize=10)
    return fig, f"IQM, median and mean of the score ({report.score_text}) with 95% bootstrap confidence intervals."


def _performance_profiles(report: _Report) -> tuple[Figure, str]:
    scored = report.scored()
    if not scored:
        raise _NoData("no trial finished with a score")
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


def _probability_of_improvement(report: _Report) -> tuple[Figure, str]:
    scored = report.scored()
    if len(scored) < 2:
        raise _NoData("it needs two or more configurations with done trials")
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


def _kl_vs_clip_fraction(report: _Report) -> tuple[Figure, str]:
    points = _kl_clip_points(report.data)
    if not points:
        raise _NoData("no trial logged both approx_kl and clip_fraction (PPO's statistics)")
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


FIGURES: tuple[tuple[str, Callable[[_Report], tuple[Figure, str]]], ...] = (
    ("learning_curves_steps.png", lambda r: _learning_curves(r, 0, "environment steps")),
    ("learning_curves_seconds.png", lambda r: _learning_curves(r, 1, "wall-clock seconds")),
    ("final_scores.png", _final_scores),
    ("performance_profiles.png", _performance_profiles),
    ("probability_of_improvement.png", _probability_of_improvement),
    ("kl_vs_clip_fraction.png", _kl_vs_clip_fraction),
)


# --- text --------------------------------------------------------------------------------------

# The report as a list of blocks, rendered to Markdown and to HTML by one function each.
_Link = namedtuple("_Link", "text href")  # href relative to the sweep directory
_Heading = namedtuple("_Heading", "text level", defaults=(2,))
_Paragraph = namedtuple("_Paragraph", "text")
_Table = namedtuple("_Table", "header rows")  # rows of cells: str or _Link
_Image = namedtuple("_Image", "path caption")  # path relative to the sweep directory
_Items = namedtuple("_Items", "items")


def _estimate(estimate: Estimate | None, digits: int = 1) -> str:
    if estimate is None:
        return "no data"
    return f"{estimate.point:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)} ({', '.join(map(str, seeds))})"


def _header_blocks(report: _Report, conclusion: str | None) -> list:
    plan = report.data.plan
    grid = "; ".join(f"{key} ∈ {{{', '.join(map(str, values))}}}" for key, values in (plan.get("grid") or {}).items())
    algos = ", ".join(dict.fromkeys(t.algo for t in report.data.trials)) or str(plan.get("algo"))
    title = f"{plan.get('env_id')} sweep: {algos}, {grid or 'no grid'}, {_seeds_text(list(plan.get('seeds', [])))}"
    blocks: list = [_Heading(title, 1)]
    if conclusion:
        blocks.append(_Paragraph(conclusion))
    steps = plan.get("steps")
    blocks.append(_Paragraph(
        f"Score: the {report.score_text}. Budget: {_number(steps) + ' steps' if steps else 'each preset’s own'}"
        f" per trial. IQM is the interquartile mean (the mean of the middle 50% of runs); brackets are 95% "
        f"stratified bootstrap confidence intervals over runs ({report.reps} resamples)."))
    unfinished = sum(t.state in ("pending", "running") for t in report.data.trials)
    if unfinished:
        blocks.append(_Paragraph(f"{unfinished} trials are still pending or running; this report covers the others."))
    return blocks


def _summary_blocks(report: _Report) -> list:
    rows = []
    for s in report.summaries:
        steps, seconds = s.steps_to_threshold, s.seconds_to_threshold
        rows.append([s.label, str(s.runs), str(s.done), str(s.failed),
                     *(_estimate(s.estimates.get(name)) for name in AGGREGATES),
                     f"{steps.reached}/{steps.runs}" if steps else "no threshold" if s.estimates else "no data",
                     _number(steps.median) if steps else "—", _number(seconds.median, 1) if seconds else "—"])
    header = ["configuration", "runs", "done", "failed", *(f"{AGGREGATE_NAMES[n]} [95% CI]" for n in AGGREGATES),
              "reached threshold", "median steps to threshold", "median seconds to threshold"]
    threshold = "" if report.threshold is None else f" ({report.threshold:g})"
    note = (f"Reached threshold: runs whose rolling mean training return reached the reward threshold{threshold}. "
            "The medians count runs that never reached it as infinitely slow (censored), so they show — "
            "unless more than half of the runs reached it.")
    if not report.scored():
        note = "No data: no trial finished with a score, so there are no estimates. " + note
    return [_Heading("Configurations"), _Table(header, rows), _Paragraph(note)]


def _improvement_blocks(report: _Report) -> list:
    labels = [s.label for s in report.scored()]
    if len(labels) < 2:
        return [_Heading("Probability of improvement"),
                _Paragraph("Not computed: it needs two or more configurations with done trials.")]
    rows = [[a, *("—" if a == b else _estimate(report.improvements[a, b], 2) for b in labels)] for a in labels]
    return [_Heading("Probability of improvement"), _Paragraph(
        "P(row > column): the probability that a run of the row configuration scores higher than a run "
        "of the column configuration (ties count half), with 95% bootstrap CI; 0.5 means no difference."),
        _Table(["row > column", *labels], rows)]


def _figure_blocks(report: _Report, figures_dir: Path) -> list:
    blocks: list = [_Heading("Figures")]
    figures_dir.mkdir(parents=True, exist_ok=True)
    for name, draw in FIGURES:
        try:
            fig, caption = draw(report)
        except _NoData as why:
            (figures_dir / name).unlink(missing_ok=True)  # a figure from an earlier report would mislead
            blocks.append(_Paragraph(f"{name} not drawn: {why}."))
            continue
        png = io.BytesIO()
        fig.savefig(png, format="png")
        _write_atomic(figures_dir / name, png.getvalue())
        blocks.append(_Image(f"figures/{name}", caption))
    return blocks


def _run_link(data: SweepData, name: str) -> str | _Link:
    run_dir = Path("runs") / name
    if (data.path / run_dir / "summary.json").is_file():
        return _Link("summary.json", f"{run_dir}/summary.json")
    return _Link("directory", f"{run_dir}/") if (data.path / run_dir).is_dir() else "—"


def _trial_blocks(report: _Report) -> list:
    failed = [t for t in report.data.trials if t.state == "failed"]
    blocks: list = [_Heading("Failed trials")]
    blocks.append(_Items([f"{t.name}: {t.error or 'no error message was recorded'}" for t in failed])
                  if failed else _Paragraph("No trial failed."))
    rows = []
    for t in report.data.trials:
        result = t.result or {}
        rows.append([t.name, t.state, _number(t.score, 1), _number(result.get("total_steps")),
                     _number(result.get("wall_seconds"), 1), _number(result.get("solved_at_step")),
                     _run_link(report.data, t.name)])
    header = ["trial", "state", "score", "steps", "seconds", "reached threshold at step", "run"]
    return [*blocks, _Heading("Trials"), _Table(header, rows)]


def _url(path: str) -> str:
    return quote(path, safe="/=+,")


def _markdown_text(text: str) -> str:
    for char in "\\`*<|":
        text = text.replace(char, "\\" + char)
    return " ".join(text.splitlines())


def _markdown(blocks: list) -> str:
    def cell(value: str | _Link) -> str:
        if isinstance(value, _Link):
            return f"[{_markdown_text(value.text)}]({_url(value.href)})"
        return _markdown_text(value)

    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append("#" * level + " " + _markdown_text(text))
            case _Paragraph(text):
                parts.append(_markdown_text(text))
            case _Table(header, rows):
                lines = [header, ["---"] * len(header), *rows]
                parts.append("\n".join("| " + " | ".join(map(cell, line)) + " |" for line in lines))
            case _Image(path, caption):
                parts.append(f"![{Path(path).stem}]({_url(path)})\n\n{_markdown_text(caption)}")
            case _Items(items):
                parts.append("\n".join("- " + _markdown_text(item) for item in items))
    return "\n\n".join(parts) + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em}th{background:#f3f3f3}td{white-space:nowrap}
figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:.9em;color:#555}"""


def _html(blocks: list, root: Path) -> str:
    esc = html.escape

    def cell(value: str | _Link) -> str:
        return f'<a href="{esc(_url(value.href))}">{esc(value.text)}</a>' if isinstance(value, _Link) else esc(value)

    parts = []
    for block in blocks:
        match block:
            case _Heading(text, level):
                parts.append(f"<h{level}>{esc(text)}</h{level}>")
            case _Paragraph(text):
                parts.append(f"<p>{esc(text)}</p>")
            case _Table(header, rows):
                head = "".join(f"<th>{esc(h)}</th>" for h in header)
                body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>\n" for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead>\n<tbody>{body}</tbody></table>")
            case _Image(path, caption):
                data = base64.b64encode((root / path).read_bytes()).decode("ascii")
                parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                             f"<figcaption>{esc(caption)}</figcaption></figure>")
            case _Items(items):
                parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>")
    title = next((b.text for b in blocks if isinstance(b, _Heading)), "sweep report")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_STYLE}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over: no reader sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(sweep_dir: str | Path, conclusion: str | None = None, reps: int = 2000) -> Path:
    """Write ``report.md``, ``report.html`` (self-contained) and ``figures/*.png`` into a sweep
    directory, from whatever trials have finished; returns the path of ``report.html``.
    Figures without data are left out and the report says why."""
    data = load_sweep(sweep_dir)
    summaries = summarize(data, reps=reps)
    report = _Report(data, summaries, improvement_table(data, summaries, reps=reps), reps)
    blocks = [*_header_blocks(report, conclusion), *_summary_blocks(report), *_improvement_blocks(report),
              *_figure_blocks(report, data.path / "figures"), *_trial_blocks(report)]
    _write_atomic(data.path / "report.md", _markdown(blocks).encode())
    _write_atomic(data.path / "report.html", _html(blocks, data.path).encode())
    return data.path / "report.html"
