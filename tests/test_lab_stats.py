"""Tests for ppolab.lab.stats: hand-computed values, rliable reference values, bootstrap
properties (bracketing, narrowing, stratification, determinism) and bad inputs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.stats

from ppolab.lab import stats
from ppolab.lab.stats import Estimate, ThresholdSummary

# Fixed [runs, tasks] arrays (2 tasks, different run counts) for the rliable cross-check.
RLIABLE_X = np.array([[1.0, 10.0], [2.5, 40.0], [3.0, 25.0], [7.25, 31.0], [4.0, 12.5], [0.5, 60.0], [6.0, 18.0]])
RLIABLE_Y = np.array([[2.0, 30.0], [3.0, 25.0], [1.5, 44.0], [5.0, 12.5], [4.0, 70.0]])


def noisy(runs: int, seed: int = 1, tasks: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 3.0, size=(runs, tasks))


# --- IQM and aggregates -------------------------------------------------------------------------


def test_iqm_of_eight_values_is_mean_of_middle_four():
    # sorted: 1 2 | 3 4 5 6 | 7 100 -> trim 2 at each end -> (3 + 4 + 5 + 6) / 4 = 4.5
    assert stats.iqm([7.0, 100.0, 3.0, 1.0, 6.0, 4.0, 2.0, 5.0]) == 4.5


def test_iqm_cuts_floor_quarter_when_count_is_not_a_multiple_of_four():
    # n = 10: floor(0.25 * 10) = 2 cut at each end.
    # sorted: 0 1 | 2 3 4 5 6 9 | 10 1000 -> (2 + 3 + 4 + 5 + 6 + 9) / 6 = 29 / 6
    values = [10.0, 0.0, 3.0, 1.0, 4.0, 1000.0, 5.0, 9.0, 2.0, 6.0]
    assert stats.iqm(values) == pytest.approx(29 / 6, abs=1e-12)
    # n = 7: floor(1.75) = 1 cut at each end. sorted: -50 | 2 3 4 5 6 | 70 -> 20 / 5 = 4
    assert stats.iqm([6.0, -50.0, 4.0, 70.0, 2.0, 5.0, 3.0]) == pytest.approx(4.0, abs=1e-12)


def test_iqm_pools_runs_and_tasks():
    # [[1, 10], [2, 20], [3, 30], [4, 40]] pooled: 1 2 | 3 4 10 20 | 30 40 -> 37 / 4
    assert stats.iqm([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]) == 37 / 4


def test_aggregate_median_and_mean_pool_all_runs():
    scores = [[1.0, 10.0], [2.0, 20.0], [4.0, 30.0]]
    # pooled sorted: 1 2 4 10 20 30 -> median (4 + 10) / 2 = 7; mean 67 / 6
    assert stats.aggregate(scores, "median") == 7.0
    assert stats.aggregate(scores, "mean") == pytest.approx(67 / 6, abs=1e-12)
    assert stats.aggregate(scores, "iqm") == stats.iqm(scores)


def test_rliable_reference_values():
    # Computed with rliable 1.2.0 (metrics.aggregate_iqm, metrics.probability_of_improvement,
    # library.create_performance_profile) on RLIABLE_X and RLIABLE_Y.
    assert stats.iqm(RLIABLE_X) == pytest.approx(10.71875, abs=1e-12)
    assert stats.iqm(RLIABLE_Y) == pytest.approx(13.25, abs=1e-12)
    assert stats.probability_of_improvement(RLIABLE_X, RLIABLE_Y) == pytest.approx(0.44285714285714284, abs=1e-12)
    assert stats.probability_of_improvement(RLIABLE_Y, RLIABLE_X) == pytest.approx(0.5571428571428572, abs=1e-12)
    profile = stats.performance_profile(RLIABLE_X, [0.0, 3.0, 12.5, 30.0, 100.0])
    expected = [1.0, 0.7142857142857143, 0.35714285714285715, 0.21428571428571427, 0.0]
    np.testing.assert_allclose(profile, expected, rtol=0, atol=1e-12)


def test_bootstrap_intervals_agree_with_rliable_loosely():
    # rliable 1.2.0 percentile intervals (its RNG, so only loose agreement is expected):
    # library.get_interval_estimates({"x": RLIABLE_X}, lambda s: [aggregate_iqm(s), np.median(s),
    # np.mean(s)], reps=50000) -> iqm [7.5, 17.3125], median [7.0, 12.625], mean [10.1964, 22.1964];
    # probability of improvement of X over Y with StratifiedIndependentBootstrap, reps=5000 ->
    # [0.22142857, 0.68571429].
    estimates = stats.aggregate_estimates(RLIABLE_X, reps=20000)
    reference = {"iqm": (7.5, 17.3125), "median": (7.0, 12.625), "mean": (10.196428571428571, 22.196428571428573)}
    for name, (low, high) in reference.items():
        assert estimates[name].low == pytest.approx(low, abs=0.5), name
        assert estimates[name].high == pytest.approx(high, abs=0.5), name
    improvement = stats.probability_of_improvement_estimate(RLIABLE_X, RLIABLE_Y, reps=5000)
    assert improvement.low == pytest.approx(0.22142857, abs=0.03)
    assert improvement.high == pytest.approx(0.68571429, abs=0.03)


# --- stratified bootstrap -----------------------------------------------------------------------


@pytest.mark.parametrize("name", stats.AGGREGATES)
def test_bootstrap_interval_brackets_the_point(name):
    estimate = stats.stratified_bootstrap(noisy(10, tasks=2), name, reps=1000)
    assert estimate.low <= estimate.point <= estimate.high
    assert estimate.low < estimate.high
    assert estimate.point == stats.aggregate(noisy(10, tasks=2), name)


@pytest.mark.parametrize("name", stats.AGGREGATES)
def test_bootstrap_interval_narrows_with_more_runs(name):
    few = stats.stratified_bootstrap(noisy(10), name, reps=1000)
    many = stats.stratified_bootstrap(noisy(200), name, reps=1000)
    assert many.high - many.low < 0.5 * (few.high - few.low)


def test_bootstrap_of_constant_scores_is_degenerate():
    estimates = stats.aggregate_estimates(np.full((5, 2), 3.0), reps=200)
    assert set(estimates) == {"iqm", "median", "mean"}
    for estimate in estimates.values():
        assert estimate == Estimate(3.0, 3.0, 3.0)


def test_same_seed_same_result_and_other_seed_other_bounds():
    scores = noisy(12, tasks=3)
    # same machine, same seed, same code path: bit-identical by design
    assert stats.aggregate_estimates(scores, reps=500, seed=4) == stats.aggregate_estimates(scores, reps=500, seed=4)
    first, second = (stats.stratified_bootstrap(scores, "iqm", reps=500, seed=seed) for seed in (0, 1))
    assert first.point == second.point
    assert (first.low, first.high) != (second.low, second.high)


def test_bootstrap_is_stratified_by_task():
    # Task 0 scores lie in [0, 1], task 1 in [1000, 1001]; a resample that drew runs across tasks
    # would put a value of one task into the other's column and move its mean out of range.
    rng = np.random.default_rng(0)
    scores = np.column_stack([rng.uniform(0, 1, 6), rng.uniform(1000, 1001, 6)])
    column_means = []

    def record(sample: np.ndarray) -> float:
        column_means.append(sample.mean(axis=0))
        assert sample.shape == (6, 2)
        return float(sample.mean())

    stats.stratified_bootstrap(scores, record, reps=300)
    column_means = np.array(column_means)
    assert len(column_means) == 301  # the original scores, then every resample
    assert np.all((column_means[:, 0] >= 0) & (column_means[:, 0] <= 1))
    assert np.all((column_means[:, 1] >= 1000) & (column_means[:, 1] <= 1001))


def test_vectorised_bootstrap_keeps_runs_per_task():
    # Task 0 all 0, task 1 all 1: every stratified resample holds five 0s and five 1s, so its
    # IQM (0 0 0 1 1 1 after trimming 2 each end), median and mean are all exactly 0.5.
    # Pooled resampling would vary the count of 1s and give a non-degenerate interval.
    scores = np.column_stack([np.zeros(5), np.ones(5)])
    for estimate in stats.aggregate_estimates(scores, reps=500).values():
        assert estimate == Estimate(0.5, 0.5, 0.5)


# --- probability of improvement -----------------------------------------------------------------


def test_probability_of_improvement_extremes():
    low, high = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]
    assert stats.probability_of_improvement(low, high) == 0.0
    assert stats.probability_of_improvement(high, low) == 1.0
    assert stats.probability_of_improvement(low, low) == 0.5
    assert stats.probability_of_improvement(np.full((3, 2), 5.0), np.full((4, 2), 5.0)) == 0.5


def test_probability_of_improvement_counts_ties_as_half():
    # x = 1: beats none of 2 2 4 -> 0;  x = 2: ties 2 and 2 -> 0.5 + 0.5 = 1;  x = 3: beats 2 and 2 -> 2
    # (0 + 1 + 2) / (3 * 3) = 1/3
    assert stats.probability_of_improvement([1.0, 2.0, 3.0], [2.0, 2.0, 4.0]) == pytest.approx(1 / 3, abs=1e-12)


def test_probability_of_improvement_averages_over_tasks():
    # task 0: x dominates (1.0); task 1: x is dominated (0.0) -> 0.5
    x = [[10.0, 0.0], [11.0, 1.0]]
    y = [[1.0, 10.0], [2.0, 11.0], [3.0, 12.0]]
    assert stats.probability_of_improvement(x, y) == 0.5


def test_probability_of_improvement_estimate():
    x, y = noisy(10, seed=1, tasks=2), noisy(8, seed=2, tasks=2) + 1.0
    estimate = stats.probability_of_improvement_estimate(x, y, reps=1000)
    assert estimate.point == stats.probability_of_improvement(x, y)
    assert estimate.low <= estimate.point <= estimate.high
    assert estimate.low < estimate.high
    # same machine, same seed, same code path: bit-identical by design
    assert estimate == stats.probability_of_improvement_estimate(x, y, reps=1000)
    dominated = stats.probability_of_improvement_estimate([1.0, 2.0], [3.0, 4.0, 5.0], reps=200)
    assert dominated == Estimate(0.0, 0.0, 0.0)


# --- performance profiles -----------------------------------------------------------------------


def test_performance_profile_counts_scores_strictly_above_tau():
    # scores 1 2 2 3: > 0: all 4; > 1: 2 2 3; > 2: 3; > 2.5: 3; > 3: none
    profile = stats.performance_profile([1.0, 2.0, 2.0, 3.0], [0.0, 1.0, 2.0, 2.5, 3.0])
    np.testing.assert_array_equal(profile, [1.0, 0.75, 0.25, 0.25, 0.0])
    # two tasks pooled: 1 10 3 20; > 2: 10 3 20; > 15: 20
    np.testing.assert_array_equal(stats.performance_profile([[1.0, 10.0], [3.0, 20.0]], [2.0, 15.0]), [0.75, 0.25])


def test_performance_profile_band_brackets_point_and_is_monotone():
    scores = noisy(15, tasks=2)
    taus = np.linspace(0.0, 20.0, 41)
    point, low, high = stats.performance_profile_band(scores, taus, reps=1000)
    np.testing.assert_array_equal(point, stats.performance_profile(scores, taus))
    assert np.all(low <= point) and np.all(point <= high)
    assert np.any(low < high)
    for curve in (point, low, high):
        assert np.all(np.diff(curve) <= 0)


# --- threshold summary --------------------------------------------------------------------------


def test_threshold_summary_all_reached():
    assert stats.threshold_summary([300, 100, 200]) == ThresholdSummary(3, 3, 1.0, 200.0)
    assert stats.threshold_summary([100, 400, 200, 300]).median == 250.0  # (200 + 300) / 2


def test_threshold_summary_none_reached():
    assert stats.threshold_summary([None, None, None]) == ThresholdSummary(0, 3, 0.0, None)


def test_threshold_summary_exactly_half_reached_has_no_median():
    # sorted with +inf for unreached: 100 300 | inf inf -> middle pair (300, inf) -> None
    assert stats.threshold_summary([100, None, 300, None]) == ThresholdSummary(2, 4, 0.5, None)


def test_threshold_summary_censored_median_in_seconds():
    # 1.5 2.5 4.0 inf -> (2.5 + 4.0) / 2 = 3.25
    summary = stats.threshold_summary([4.0, 1.5, None, 2.5])
    assert summary == ThresholdSummary(3, 4, 0.75, 3.25)
    # odd count: 20.25 50.5 inf -> 50.5
    assert stats.threshold_summary([None, 50.5, 20.25]).median == 50.5


# --- learning-curve bands -----------------------------------------------------------------------


@pytest.mark.parametrize("name", stats.AGGREGATES)
def test_curve_band_on_overlapping_linear_runs(name):
    # run A: y = x on [0, 10]; run B: y = 50 + 10 x on [5, 20]. With two runs the IQM trims
    # floor(0.5) = 0 and the median is the mean of the two, so all statistics are the mean.
    xs = [np.array([0.0, 10.0]), np.array([5.0, 20.0])]
    ys = [np.array([0.0, 10.0]), np.array([100.0, 250.0])]
    grid = np.array([-1.0, 0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0])
    point, low, high = stats.curve_band(xs, ys, grid, statistic=name, reps=500)
    both = [np.nan, np.nan, np.nan, (5 + 100) / 2, (7.5 + 125) / 2, (10 + 150) / 2, np.nan, np.nan, np.nan]
    only = [np.nan, 0.0, 2.5, np.nan, np.nan, np.nan, 200.0, 250.0, np.nan]
    expected = np.where(np.isnan(both), only, both)
    np.testing.assert_allclose(point, expected, rtol=0, atol=1e-12)
    # a point covered by one run has that run's value in every resample that covers it
    single = np.isfinite(np.array(only))
    np.testing.assert_array_equal(low[single], point[single])
    np.testing.assert_array_equal(high[single], point[single])
    assert np.all(np.isnan(low[[0, -1]])) and np.all(np.isnan(high[[0, -1]]))
    covered_by_both = slice(3, 6)
    assert np.all(low[covered_by_both] < point[covered_by_both])
    assert np.all(point[covered_by_both] < high[covered_by_both])


@pytest.mark.parametrize("name", stats.AGGREGATES)
def test_curve_band_matches_scores_aggregate_over_covering_runs(name):
    rng = np.random.default_rng(3)
    starts, ends = rng.uniform(0, 40, 9), rng.uniform(60, 100, 9)
    xs = [np.linspace(a, b, 30) for a, b in zip(starts, ends, strict=True)]
    ys = [rng.normal(size=30).cumsum() for _ in range(9)]
    grid = np.linspace(0.0, 100.0, 51)
    point, low, high = stats.curve_band(xs, ys, grid, statistic=name, reps=300)
    for j, g in enumerate(grid):
        values = [np.interp(g, x, y) for x, y in zip(xs, ys, strict=True) if x[0] <= g <= x[-1]]
        if values:
            reference = scipy.stats.trim_mean(values, 0.25) if name == "iqm" else stats.aggregate(values, name)
            assert point[j] == pytest.approx(reference, abs=1e-9)
            assert low[j] <= point[j] + 1e-9 and point[j] <= high[j] + 1e-9
        else:
            assert np.isnan(point[j]) and np.isnan(low[j]) and np.isnan(high[j])


def test_curve_band_is_fast_and_deterministic():
    rng = np.random.default_rng(0)
    xs = [np.sort(rng.uniform(0, 1e5, 300)) for _ in range(20)]
    ys = [rng.normal(size=300).cumsum() for _ in range(20)]
    grid = np.linspace(0, 1e5, 200)
    start = time.perf_counter()
    first = stats.curve_band(xs, ys, grid, statistic="iqm", reps=1000)
    assert time.perf_counter() - start < 2.0
    second = stats.curve_band(xs, ys, grid, statistic="iqm", reps=1000)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)  # same machine, same seed, same code path: bit-identical by design


# --- bad inputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stats.iqm([]), "empty"),
        (lambda: stats.iqm(np.empty((0, 2))), "empty"),
        (lambda: stats.iqm([1.0, np.nan]), "NaN"),
        (lambda: stats.aggregate([1.0, np.inf], "mean"), "inf"),
        (lambda: stats.iqm(np.ones((2, 2, 2))), "shaped"),
        (lambda: stats.aggregate([1.0, 2.0], "max"), "unknown aggregate"),
        (lambda: stats.stratified_bootstrap([1.0, 2.0], "iqm", confidence=0.0), "confidence"),
        (lambda: stats.stratified_bootstrap([1.0, 2.0], "iqm", confidence=1.0), "confidence"),
        (lambda: stats.aggregate_estimates([1.0, 2.0], confidence=95), "confidence"),
        (lambda: stats.stratified_bootstrap([1.0, 2.0], "iqm", reps=0), "reps"),
        (lambda: stats.probability_of_improvement(np.ones((3, 2)), np.ones((3, 3))), "tasks"),
        (lambda: stats.probability_of_improvement([], [1.0]), "empty"),
        (lambda: stats.probability_of_improvement_estimate([1.0], [np.nan]), "NaN"),
        (lambda: stats.probability_of_improvement_estimate([1.0], [2.0], reps=-5), "reps"),
        (lambda: stats.performance_profile([1.0], [np.nan]), "taus"),
        (lambda: stats.performance_profile_band([1.0], [0.0], confidence=1.5), "confidence"),
        (lambda: stats.threshold_summary([]), "at least one"),
        (lambda: stats.threshold_summary([1.0, float("nan")]), "numbers or None"),
        (lambda: stats.curve_band([], [], np.arange(3.0)), "at least one run"),
        (lambda: stats.curve_band([np.array([0.0, 1.0])], [], np.arange(3.0)), "one xs and one ys"),
        (lambda: stats.curve_band([np.array([1.0, 0.0])], [np.array([0.0, 1.0])], np.arange(3.0)), "increasing"),
        (lambda: stats.curve_band([np.array([0.0, 1.0])], [np.array([0.0, np.nan])], np.arange(3.0)), "NaN"),
        (lambda: stats.curve_band([np.array([0.0, 1.0])], [np.array([0.0])], np.arange(3.0)), "equal length"),
        (lambda: stats.curve_band([np.array([0.0, 1.0])], [np.array([0.0, 1.0])], np.arange(3.0), "max"), "unknown"),
        (lambda: stats.curve_band([np.array([0.0, 1.0])], [np.array([0.0, 1.0])], np.array([])), "grid"),
    ],
)
def test_bad_inputs_raise_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
