"""What a sweep's results say, in a few sentences whose every number is computed from them.

The claims are the ones the statistics can carry: the ranking by interquartile mean (IQM), whether
the best configuration's 95% interval overlaps the others', the probability that it beats each
(with its interval), how many seeds reached the reward threshold, and for PPO how the KL between
old and new policy moves with the clip fraction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.stats

from ppolab.lab.results import (
    ConfigSummary,
    SweepData,
    improvement_table,
    kl_clip_correlation,
    kl_clip_points,
    score_description,
    summarize,
)
from ppolab.lab.stats import Estimate


def conclude(data: SweepData, reps: int = 2000) -> str:
    from ppolab.lab.exercises import EXERCISES

    exercise = EXERCISES.get(data.plan.get("exercise") or "")
    names = exercise.names if exercise else {}

    def name(label: str) -> str:
        return names.get(label, label)

    every = summarize(data, reps=reps)
    summaries = [s for s in every if s.done]
    steps = data.plan["steps"]
    budget = f"after {steps:,} steps" if steps else "after each preset's total_steps"
    lines = [f"Score: {score_description(data.plan['score'])} {budget}; {len(data.plan['seeds'])} seeds "
             "per configuration."]
    if not summaries:
        return "\n".join([*lines, "No trial finished, so there is nothing to conclude."])
    ranked = sorted(summaries, key=lambda s: -s.estimates["iqm"].point)
    ranking = f"{name(ranked[0].label)} {_est(ranked[0].estimates['iqm'])}"
    for before, s in zip(ranked, ranked[1:], strict=False):
        tie = s.estimates["iqm"].point == before.estimates["iqm"].point
        ranking += f" {'=' if tie else '>'} {name(s.label)} {_est(s.estimates['iqm'])}"
    lines.append(f"Ranking by IQM: {ranking}.")
    all_scores = np.concatenate([s.scores for s in summaries])
    if len(summaries) > 1 and np.ptp(all_scores) == 0:
        lines.append(f"Every trial scored {all_scores[0]:g}: at this budget the score cannot separate the "
                     "configurations; look at the learning curves, or run with fewer --steps.")
    lines += _comparisons(data, ranked, name, reps)
    lines += _thresholds(ranked, name)
    correlation = kl_clip_correlation(data)
    if correlation is not None:
        lines += _kl_lines(data, ranked, name, correlation)
    failed = sum(s.failed for s in every)
    if failed:
        lines.append(f"{failed} trial(s) failed and are left out (see the report).")
    return "\n".join(lines)


def _est(e: Estimate) -> str:
    return f"{e.point:.1f} [{e.low:.1f}, {e.high:.1f}]"


def _comparisons(data: SweepData, ranked: list[ConfigSummary], name: Callable[[str], str], reps: int) -> list[str]:
    if len(ranked) < 2:
        return []
    best = ranked[0]
    table = improvement_table(data, ranked, reps=reps)
    lines = []
    for other in ranked[1:]:
        a, b = best.estimates["iqm"], other.estimates["iqm"]
        p = table[(best.label, other.label)]
        overlap = a.low <= b.high and b.low <= a.high
        verdict = ("the IQM intervals overlap, and" if overlap else "the IQM intervals do not overlap;")
        certain = p.low > 0.5
        lines.append(
            f"{name(best.label)} vs {name(other.label)}: IQM {a.point - b.point:+.1f}; {verdict} "
            f"P({name(best.label)} beats it on a random seed) = {p.point:.2f} [{p.low:.2f}, {p.high:.2f}]"
            + (": better with these seeds." if certain and not overlap else
               ": likely better, but more seeds would firm it up." if certain else
               ": these seeds cannot tell them apart."))
    return lines


def _thresholds(ranked: list[ConfigSummary], name: Callable[[str], str]) -> list[str]:
    if all(s.steps_to_threshold is not None and s.steps_to_threshold.reached == 0 for s in ranked):
        return ["No seed's rolling training return reached the environment's reward threshold within the "
                "budget, so there is no time to threshold to compare."]
    parts = []
    for s in ranked:
        t = s.steps_to_threshold
        if t is None:
            return []
        when = "" if t.median is None else f" (median {t.median:,.0f} steps"
        if t.median is not None and s.seconds_to_threshold is not None and s.seconds_to_threshold.median is not None:
            when += f", {s.seconds_to_threshold.median:.1f} s"
        when += ")" if when else ""
        parts.append(f"{name(s.label)} {t.reached}/{t.runs}{when}")
    return ["Seeds whose rolling training return reached the reward threshold: " + "; ".join(parts) + "."]


def _kl_lines(data: SweepData, ranked: list[ConfigSummary], name: Callable[[str], str],
              correlation: tuple[float, int]) -> list[str]:
    rho, n = correlation
    lines = [f"Across {n:,} PPO updates, approx KL and clip fraction have Spearman rank correlation "
             f"{rho:.2f}: " + _strength(rho)]
    points = kl_clip_points(data)
    within = {label: scipy.stats.spearmanr(kl, clip).statistic for label, (kl, clip) in points.items()
              if len(kl) >= 3 and np.ptp(kl) > 0 and np.ptp(clip) > 0}
    if len(within) > 1:
        lines.append("Within each configuration: " + "; ".join(f"{name(label)} rho {r:.2f}" for label, r in within.items())
                     + (". Each configuration follows its own curve, so the pooled correlation is weaker than "
                        "within any one of them." if min(within.values()) > rho else "."))
    per_config = sorted(((float(np.median(points[s.label][0])), float(np.median(points[s.label][1])), s)
                         for s in ranked if s.label in points), key=lambda item: item[0])
    if len(per_config) >= 2:
        lines.append("Median approx KL per update (clip fraction, IQM score): " + "; ".join(
            f"{name(s.label)} {kl:.4f} ({clip:.2f}, {s.estimates['iqm'].point:.1f})" for kl, clip, s in per_config) + ".")
        low, high = per_config[0], per_config[-1]
        change = high[2].estimates["iqm"].point - low[2].estimates["iqm"].point
        moved = "did not change" if change == 0 else f"{'rose' if change > 0 else 'fell'} by {abs(change):.1f}"
        lines.append(f"From the smallest to the largest median KL ({low[0]:.4f} -> {high[0]:.4f}), the IQM "
                     f"score {moved}.")
    return lines


def _strength(rho: float) -> str:
    if rho > 0.7:
        return "the more the policy moved, the more samples hit the clip."
    return "they move together only loosely." if rho > 0.3 else "they hardly move together."
