"""The exercises' conclusions: every claim is computed from the sweep's results (synthetic sweeps
in the formats ``ppolab sweep`` writes, built by test_lab_report's ``make_sweep``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_lab_report import ERROR, make_sweep

from ppolab.lab import stats
from ppolab.lab.conclusions import conclude
from ppolab.lab.results import (
    kl_clip_correlation,
    load_sweep,
)


def line(text: str, start: str) -> str:
    return next(row for row in text.splitlines() if row.startswith(start))


def test_a_clear_winner_is_named_with_its_numbers(tmp_path: Path) -> None:
    scores = {"0.1": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0], "0.2": [400.0, 410.0, 420.0, 430.0, 440.0, 450.0],
              "0.3": [100.0, 120.0, 110.0, 130.0, 140.0, 150.0]}
    data = load_sweep(make_sweep(tmp_path, scores))
    text = conclude(data, reps=500)
    iqm = {k: stats.iqm(np.array(v)) for k, v in scores.items()}
    ranking = line(text, "Ranking by IQM: ")
    assert ranking.startswith(f"Ranking by IQM: clip_coef=0.2 {iqm['0.2']:.1f} [")
    assert ranking.index("clip_coef=0.3") < ranking.index("clip_coef=0.1") and ranking.count(" > ") == 2
    # two comparisons of the best: each probability interval at 1 - 0.05 / 2
    p = stats.probability_of_improvement_estimate(scores["0.2"], scores["0.1"], 500, confidence=0.975)
    versus = line(text, "clip_coef=0.2 vs clip_coef=0.1: ")
    assert f"IQM {iqm['0.2'] - iqm['0.1']:+.1f}" in versus and "do not overlap" in versus
    assert f"= {p.point:.2f} [{p.low:.2f}, {p.high:.2f}] (97.5% interval, widened for 2 comparisons)" in versus
    assert versus.endswith("better with these seeds.")
    assert "after 12,000 steps" in line(text, "Score: ")


def test_too_few_seeds_are_never_called_better(tmp_path: Path) -> None:
    data = load_sweep(make_sweep(tmp_path, {"0.1": [10.0, 20.0, 30.0, 40.0], "0.2": [400.0, 410.0, 420.0, 430.0]}))
    text = conclude(data, reps=500)
    assert "Only 4 finished seed(s)" in text
    versus = line(text, "clip_coef=0.2 vs clip_coef=0.1: ")
    assert "do not overlap" in versus and versus.endswith("these seeds cannot tell them apart.")


def test_overlapping_configurations_are_not_called_different(tmp_path: Path) -> None:
    data = load_sweep(make_sweep(tmp_path, {"0.1": [100.0, 300.0, 200.0, 250.0], "0.2": [110.0, 290.0, 210.0, 240.0]}))
    versus = line(conclude(data, reps=500), "clip_coef=0.")
    assert "intervals overlap" in versus and versus.endswith("these seeds cannot tell them apart.")


def test_a_ceiling_is_said_as_such(tmp_path: Path) -> None:
    text = conclude(load_sweep(make_sweep(tmp_path, {"0.1": [500.0] * 3, "0.2": [500.0] * 3})), reps=200)
    assert " = clip_coef=" in line(text, "Ranking by IQM: ")
    assert "Every trial scored 500" in text


def test_kl_and_clip_fraction_lines_only_for_ppo(tmp_path: Path) -> None:
    ppo = load_sweep(make_sweep(tmp_path / "ppo", {"0.1": [10.0, 20.0, 30.0], "0.2": [100.0, 200.0, 300.0]}))
    rho, n = kl_clip_correlation(ppo)  # type: ignore[misc]
    text = conclude(ppo, reps=200)
    assert f"Across {n:,} PPO updates, approx KL and clip fraction have Spearman rank correlation {rho:.2f}" in text
    assert "Within each configuration: clip_coef=0.1 rho" in text
    assert "Per configuration, median approx KL per update" in text and "From the smallest to the largest peak KL" in text
    a2c = load_sweep(make_sweep(tmp_path / "a2c", {"0.1": [10.0, 20.0], "0.2": [100.0, 200.0]}, algo="a2c"))
    assert "Spearman" not in conclude(a2c, reps=200)


def test_failed_trials_are_counted_and_no_data_says_so(tmp_path: Path) -> None:
    text = conclude(load_sweep(make_sweep(tmp_path / "some", {"0.1": [10.0, ERROR], "0.2": [100.0, 200.0]})), reps=200)
    assert "1 trial(s) failed" in text
    none = conclude(load_sweep(make_sweep(tmp_path / "none", {"0.1": [ERROR], "0.2": [ERROR]})), reps=200)
    assert "No trial finished" in none and "Ranking" not in none
