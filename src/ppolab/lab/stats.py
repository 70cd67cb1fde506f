"""Statistics for reporting sweeps over seeds, after Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice" (the rliable library): interquartile mean, stratified bootstrap
percentile intervals, probability of improvement and performance profiles, on numpy and scipy.

Score arrays are shaped ``[runs]`` (one task) or ``[runs, tasks]`` (one task = one environment).
All randomness comes from ``np.random.default_rng(seed)``: the same inputs give the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike

AGGREGATES = ("iqm", "median", "mean")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a bootstrap percentile interval ``[low, high]``."""

    point: float
    low: float
    high: float


@dataclass(frozen=True)
class ThresholdSummary:
    """How many of ``runs`` reached a threshold, and the censored median of when they did."""

    reached: int
    runs: int
    fraction: float
    median: float | None


def _scores(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite float array ``[runs, tasks]``; a 1-D array is one task."""
    array = np.asarray(scores, dtype=float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be shaped [runs] or [runs, tasks], got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); need at least one run per task")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf; drop or fix the failed runs first")
    return array


def _check_bootstrap(reps: int, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    if int(reps) != reps or reps < 1:
        raise ValueError(f"reps must be a positive integer, e.g. 2000; got {reps}")


def _check_name(name: str) -> None:
    if name not in AGGREGATES:
        raise ValueError(f"unknown aggregate {name!r}; choose one of {', '.join(AGGREGATES)}")


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 - c)/2`` and ``(1 + c)/2`` quantiles of bootstrap ``samples`` along axis 0."""
    low, high = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return low, high


def _resample(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified bootstrap resamples ``[reps, runs, tasks, ...]`` of ``[runs, tasks, ...]``:
    within each task (column), draw ``runs`` runs of that task with replacement, so every
    resample keeps the number of runs per task."""
    runs, tasks = scores.shape[:2]
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def iqm(scores: ArrayLike) -> float:
    """Interquartile mean over all runs and tasks: the mean of the middle 50% of the pooled
    scores, trimming ``floor(0.25 n)`` scores at each end (``scipy.stats.trim_mean(x, 0.25)``,
    rliable's ``aggregate_iqm``)."""
    return float(scipy.stats.trim_mean(_scores(scores).ravel(), 0.25))


def _aggregate_rows(samples: np.ndarray, name: str) -> np.ndarray:
    """``name`` of each row of ``samples`` ``[reps, n]``."""
    if name == "iqm":
        return scipy.stats.trim_mean(samples, 0.25, axis=1)
    return np.median(samples, axis=1) if name == "median" else samples.mean(axis=1)


def aggregate(scores: ArrayLike, name: str) -> float:
    """The aggregate ``name`` of the scores pooled over runs and tasks: ``"iqm"`` (see `iqm`),
    ``"median"`` or ``"mean"``. Unlike rliable's median of per-task means, the median is over all
    runs, so it stays meaningful for a single task."""
    _check_name(name)
    return float(_aggregate_rows(_scores(scores).reshape(1, -1), name)[0])


def stratified_bootstrap(
    scores: ArrayLike,
    statistic: str | Callable[[np.ndarray], float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``statistic`` with a stratified bootstrap percentile interval.

    Each of ``reps`` resamples draws, within each task, as many runs as the task has, with
    replacement. The point is the statistic on the original scores; the interval is the
    ``(1 - c)/2`` and ``(1 + c)/2`` quantiles of the statistic over the resamples. ``statistic`` is
    an aggregate name (``"iqm"``, ``"median"``, ``"mean"``; vectorised) or a callable applied to
    the scores and then to each resample, as arrays ``[runs, tasks]``."""
    array = _scores(scores)
    _check_bootstrap(reps, confidence)
    samples = _resample(array, int(reps), np.random.default_rng(seed))
    if isinstance(statistic, str):
        point = aggregate(array, statistic)
        values = _aggregate_rows(samples.reshape(len(samples), -1), statistic)
    else:
        point = float(statistic(array))
        values = np.array([float(statistic(sample)) for sample in samples])
    low, high = _percentile_interval(values, confidence)
    return Estimate(point, float(low), float(high))


def aggregate_estimates(
    scores: ArrayLike, reps: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, Estimate]:
    """IQM, median and mean, each with a stratified bootstrap interval (one seed, so the same
    resamples for all three)."""
    return {name: stratified_bootstrap(scores, name, reps, confidence, seed) for name in AGGREGATES}


def _pair_scores(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x, y = _scores(x, "x"), _scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} tasks but y has {y.shape[1]}; pass the same tasks")
    return x, y


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-task ``P(X > Y) + 0.5 P(X = Y)`` along the runs axis (-2): the Mann-Whitney U of x
    (the count of pairs with x > y, ties counting one half) divided by ``n m``."""
    n, m = x.shape[-2], y.shape[-2]
    # The p-value is not used; the asymptotic method avoids the exact null distribution's cost.
    u = scipy.stats.mannwhitneyu(x, y, axis=-2, method="asymptotic").statistic
    return u / (n * m)


def probability_of_improvement(x: ArrayLike, y: ArrayLike) -> float:
    """Probability that a run of X beats a run of Y, averaged over tasks:
    ``mean_t [P(X_t > Y_t) + 0.5 P(X_t = Y_t)]``, each term Mann-Whitney ``U / (n m)`` for n runs
    of X and m runs of Y (rliable's ``probability_of_improvement``)."""
    x, y = _pair_scores(x, y)
    return float(_improvement(x, y).mean())


def probability_of_improvement_estimate(
    x: ArrayLike,
    y: ArrayLike,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """`probability_of_improvement` with a percentile interval from resampling x and y
    independently, each stratified by task."""
    x, y = _pair_scores(x, y)
    _check_bootstrap(reps, confidence)
    rng = np.random.default_rng(seed)
    values = _improvement(_resample(x, int(reps), rng), _resample(y, int(reps), rng)).mean(axis=1)
    low, high = _percentile_interval(values, confidence)
    return Estimate(probability_of_improvement(x, y), float(low), float(high))


def _taus(taus: ArrayLike) -> np.ndarray:
    taus = np.asarray(taus, dtype=float)
    if taus.ndim != 1 or taus.size == 0 or np.isnan(taus).any():
        raise ValueError(f"taus must be a non-empty 1-D array of thresholds, no NaN; got {taus!r}")
    return taus


def performance_profile(scores: ArrayLike, taus: ArrayLike) -> np.ndarray:
    """Score distribution ``F(tau)``: the fraction of all runs (pooled over tasks) with score
    strictly greater than ``tau``, for each ``tau`` (rliable's ``score_distributions``)."""
    return (_scores(scores)[..., None] > _taus(taus)).mean(axis=(0, 1))


def performance_profile_band(
    scores: ArrayLike,
    taus: ArrayLike,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`performance_profile` and its stratified bootstrap band: ``(point, low, high)``, each
    shaped like ``taus``."""
    array, taus = _scores(scores), _taus(taus)
    _check_bootstrap(reps, confidence)
    exceeds = (array[..., None] > taus).astype(float)  # [runs, tasks, taus]
    samples = _resample(exceeds, int(reps), np.random.default_rng(seed)).mean(axis=(1, 2))
    low, high = _percentile_interval(samples, confidence)
    return exceeds.mean(axis=(0, 1)), low, high


def threshold_summary(values: Sequence[float | None]) -> ThresholdSummary:
    """Summary of when runs reached a threshold; ``values[i]`` is the step (or second) at which
    run i reached it, or None if it never did.

    The median is censored: unreached runs count as ``+inf``; for an even count it is the mean
    of the two middle values. It is None when that is infinite, i.e. unless more than half of
    the runs reached the threshold."""
    if len(values) == 0:
        raise ValueError("threshold_summary needs at least one run")
    times = np.array([np.inf if v is None else float(v) for v in values])
    if np.isnan(times).any() or np.isneginf(times).any():
        raise ValueError(f"threshold values must be numbers or None, got {list(values)}")
    reached = int(np.isfinite(times).sum())
    median = float(np.median(times))  # the mean of inf and a number is inf, as the rule wants
    runs = len(times)
    return ThresholdSummary(reached, runs, reached / runs, median if np.isfinite(median) else None)


def _nan_aggregate(samples: np.ndarray, name: str) -> np.ndarray:
    """``name`` over axis 1 of ``samples`` ``[reps, runs, points]``, ignoring NaN; NaN where a
    column is all NaN. IQM trims ``floor(0.25 k)`` of the k values at each end, as `iqm` does."""
    ordered = np.sort(samples, axis=1)  # NaN sorts last, so the k valid values come first
    count = np.isfinite(ordered).sum(axis=1, keepdims=True)
    rank = np.arange(samples.shape[1])[None, :, None]
    if name == "median":
        lower = np.take_along_axis(ordered, np.maximum(count - 1, 0) // 2, axis=1)
        upper = np.take_along_axis(ordered, count // 2, axis=1)
        result = (lower + upper) / 2
    else:
        cut = count // 4 if name == "iqm" else np.zeros_like(count)
        keep = (rank >= cut) & (rank < count - cut)
        with np.errstate(invalid="ignore", divide="ignore"):
            result = np.where(keep, ordered, 0.0).sum(axis=1, keepdims=True) / (count - 2 * cut)
    return np.where(count > 0, result, np.nan)[:, 0]


def curve_band(
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    grid: np.ndarray,
    statistic: str = "iqm",
    reps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An aggregate learning curve and its bootstrap band: ``(point, low, high)`` on ``grid``.

    Run i's curve (``xs[i]`` strictly increasing, ``ys[i]``) is interpolated linearly at the grid
    points inside ``[xs[i][0], xs[i][-1]]`` and is missing (NaN) outside. At each grid point the
    ``statistic`` (``"iqm"``, ``"median"``, ``"mean"``) is taken over the runs that cover it; NaN
    where none does. The band resamples runs with replacement; resamples with no run covering a
    point are left out of that point's quantiles."""
    _check_name(statistic)
    _check_bootstrap(reps, confidence)
    grid = np.asarray(grid, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError("grid must be a non-empty 1-D array of finite numbers")
    if len(xs) != len(ys) or len(xs) == 0:
        raise ValueError(f"need one xs and one ys per run, at least one run; got {len(xs)}, {len(ys)}")
    curves = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ValueError(f"run {i}: xs and ys must be non-empty 1-D arrays of equal length")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError(f"run {i}: xs or ys contains NaN or inf")
        if np.any(np.diff(x) <= 0):
            raise ValueError(f"run {i}: xs must be strictly increasing")
        curves.append(np.interp(grid, x, y, left=np.nan, right=np.nan))
    curves = np.stack(curves)  # [runs, points]
    point = _nan_aggregate(curves[None], statistic)[0]
    rows = np.random.default_rng(seed).integers(0, len(curves), size=(int(reps), len(curves)))
    samples = _nan_aggregate(curves[rows], statistic)  # [reps, points]
    low, high = np.full_like(point, np.nan), np.full_like(point, np.nan)
    covered = np.isfinite(point)
    if covered.any():
        q = [(1 - confidence) / 2, (1 + confidence) / 2]
        low[covered], high[covered] = np.nanquantile(samples[:, covered], q, axis=0)
    return point, low, high
