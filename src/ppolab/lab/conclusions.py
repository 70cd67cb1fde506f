"""What a sweep's results say, in a few sentences whose every number is computed from them.

The claims are the ones the statistics can carry: the ranking by interquartile mean (IQM), whether
the best configuration's 95% interval overlaps the others', the probability that it beats each
(with its interval), how many seeds reached the reward threshold, and for PPO how the KL between
old and new policy moves with the clip fraction.
"""

from __future__ import annotations

import numpy as np

from ppolab.lab.results import (
    ConfigSummary,
    SweepData,
    improvement_table,
    kl_clip_correlation,
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

    summaries = [s for s in summarize(data, reps=reps) if s.done]
    steps = data.plan["steps"]
    budget = f"after {steps:,} steps" if steps else "after each preset's total_steps"
    lines = [f"Score: {score_description(data.plan['score'])} {budget}; {len(data.plan['seeds'])} seeds "
             "per configuration."]
    if not summaries:
        return "\n".join([*lines, "No trial finished, so there is nothing to conclude."])
    ranked = sorted(summaries, key=lambda s: -s.estimates["iqm"].point)
    lines.append("Ranking by IQM: " + " > ".join(f"{name(s.label)} {_est(s.estimates['iqm'])}" for s in ranked) + ".")
    lines += _comparisons(data, ranked, name, reps)
    lines += _thresholds(ranked, name)
    correlation = kl_clip_correlation(data)
    if correlation is not None:
        lines += _kl_lines(data, ranked, name, correlation)
    failed = sum(s.failed for s in summarize(data, reps=1))
    if failed:
        lines.append(f"{failed} trial(s) failed and are left out (see the report).")
    return "\n".join(lines)


def _est(e: Estimate) -> str:
    return f"{e.point:.1f} [{e.low:.1f}, {e.high:.1f}]"


def _comparisons(data: SweepData, ranked: list[ConfigSummary], name, reps: int) -> list[str]:  # noqa: ANN001
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


def _thresholds(ranked: list[ConfigSummary], name) -> list[str]:  # noqa: ANN001
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


def _kl_lines(data: SweepData, ranked: list[ConfigSummary], name, correlation: tuple[float, int]) -> list[str]:  # noqa: ANN001
    rho, n = correlation
    lines = [f"Across {n:,} PPO updates, approx KL and clip fraction have Spearman rank correlation "
             f"{rho:.2f}: " + ("the more the policy moved, the more samples hit the clip." if rho > 0.5 else
                              "they move together only loosely." if rho > 0 else "they do not move together.")]
    per_config = []
    for s in ranked:
        kls = [t.metrics["approx_kl"] for t in data.trials
               if t.config == s.label and t.metrics is not None and "approx_kl" in t.metrics]
        clips = [t.metrics["clip_fraction"] for t in data.trials
                 if t.config == s.label and t.metrics is not None and "clip_fraction" in t.metrics]
        if kls and clips:
            per_config.append((float(np.nanmedian(np.concatenate(kls))), float(np.nanmedian(np.concatenate(clips))), s))
    if len(per_config) >= 2:
        per_config.sort(key=lambda item: item[0])
        lines.append("Median approx KL per update (clip fraction, IQM score): " + "; ".join(
            f"{name(s.label)} {kl:.4f} ({clip:.2f}, {s.estimates['iqm'].point:.1f})" for kl, clip, s in per_config) + ".")
        low, high = per_config[0], per_config[-1]
        change = high[2].estimates["iqm"].point - low[2].estimates["iqm"].point
        lines.append(f"Going from the smallest to the largest median KL ({low[0]:.4f} -> {high[0]:.4f}), "
                     f"the IQM score {'rose' if change > 0 else 'fell'} by {abs(change):.1f}.")
    return lines
