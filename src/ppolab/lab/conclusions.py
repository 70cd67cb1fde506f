"""What a sweep's results say, in a few sentences whose every number is computed from them.

The claims are the ones the statistics can carry: the ranking by interquartile mean (IQM), and
for the best configuration against each other one, whether their 95% IQM intervals overlap and
the probability that the best beats it on a random seed. Because the best was picked from these
same results and is compared k - 1 times, that probability's interval is widened to
1 - 0.05 / (k - 1) (Bonferroni) before it is called better, and with fewer than
:data:`MIN_SEEDS` finished seeds per configuration nothing is called better at all. Then how many
seeds reached the reward threshold, and for PPO how the KL between old and new policy moves with
the clip fraction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ppolab.lab import stats
from ppolab.lab.results import (
    ConfigSummary,
    SweepData,
    kl_clip_correlation,
    kl_clip_points,
    score_description,
    spearman,
    summarize,
)
from ppolab.lab.stats import Estimate

MIN_SEEDS = 5  # below this many finished seeds per configuration, no configuration is called better
FAMILY_CONFIDENCE = 0.95  # for all the best-vs-other comparisons together


def conclude(data: SweepData, reps: int = 2000, summaries: list[ConfigSummary] | None = None) -> str:
    """The conclusion, one claim per line; ``summaries`` are :func:`summarize`'s, if already computed."""
    from ppolab.lab.exercises import EXERCISES

    exercise = EXERCISES.get(data.plan.get("exercise") or "")
    names = exercise.names if exercise else {}

    def name(label: str) -> str:
        return names.get(label, label)

    every = summaries if summaries is not None else summarize(data, reps=reps)
    scored = [s for s in every if s.estimates]
    budget = f"after {data.budget_text()}"
    finished = sorted({len(s.scores) for s in scored})
    planned = len(data.plan["seeds"])
    seeds = f"{planned} seed{'s' * (planned != 1)} per configuration"
    if finished and finished != [planned]:
        seeds += f" ({finished[0]}{'' if len(finished) == 1 else f'-{finished[-1]}'} finished)"
    lines = [f"Score: {score_description(data.plan['score'])} {budget}; {seeds}."]
    if not scored:
        return "\n".join([*lines, "No trial finished, so there is nothing to conclude."])
    ranked = sorted(scored, key=lambda s: -s.estimates["iqm"].point)
    ranking = f"{name(ranked[0].label)} {_est(ranked[0].estimates['iqm'])}"
    for before, s in zip(ranked, ranked[1:], strict=False):
        tie = s.estimates["iqm"].point == before.estimates["iqm"].point
        ranking += f" {'=' if tie else '>'} {name(s.label)} {_est(s.estimates['iqm'])}"
    lines.append(f"Ranking by IQM: {ranking}.")
    all_scores = np.concatenate([s.scores for s in scored])
    if len(scored) > 1 and np.ptp(all_scores) == 0:
        lines.append(f"Every trial scored {all_scores[0]:g}: at this budget the score cannot separate the "
                     "configurations; look at the learning curves, or run with fewer --steps.")
    lines += _comparisons(ranked, name, reps)
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


def _comparisons(ranked: list[ConfigSummary], name: Callable[[str], str], reps: int) -> list[str]:
    if len(ranked) < 2:
        return []
    best, others = ranked[0], ranked[1:]
    confidence = 1 - (1 - FAMILY_CONFIDENCE) / len(others)
    fewest = min(len(s.scores) for s in ranked)
    lines = []
    if fewest < MIN_SEEDS:
        lines.append(f"Only {fewest} finished seed(s) in some configuration: too few to call any configuration "
                     f"better (that takes {MIN_SEEDS} or more); the numbers below are descriptive.")
    for other in others:
        a, b = best.estimates["iqm"], other.estimates["iqm"]
        p = stats.probability_of_improvement_estimate(best.scores, other.scores, reps, confidence=confidence)
        overlap = a.low <= b.high and b.low <= a.high
        better = p.low > 0.5 and fewest >= MIN_SEEDS
        verdict = ("better with these seeds." if better and not overlap else
                   "likely better, but more seeds would firm it up." if better else
                   "these seeds cannot tell them apart.")
        interval = f"{100 * confidence:.1f}% interval" + (f", widened for {len(others)} comparisons"
                                                         if len(others) > 1 else "")
        lines.append(
            f"{name(best.label)} vs {name(other.label)}: IQM {a.point - b.point:+.1f}; the 95% IQM intervals "
            f"{'overlap' if overlap else 'do not overlap'}; P({name(best.label)} beats it on a random seed) = "
            f"{p.point:.2f} [{p.low:.2f}, {p.high:.2f}] ({interval}): {verdict}")
    return lines


def _thresholds(ranked: list[ConfigSummary], name: Callable[[str], str]) -> list[str]:
    if any(s.steps_to_threshold is None for s in ranked):
        return []
    if all(s.steps_to_threshold.reached == 0 for s in ranked):  # type: ignore[union-attr]
        return ["No seed's rolling training return reached the environment's reward threshold within the "
                "budget, so there is no time to threshold to compare."]
    parts = []
    for s in ranked:
        t, seconds = s.steps_to_threshold, s.seconds_to_threshold
        assert t is not None and seconds is not None
        when = "" if t.median is None else f" (median {t.median:,.0f} steps, {seconds.median:.1f} s)"
        parts.append(f"{name(s.label)} {t.reached} of {t.runs} finished seeds{when}")
    return ["Reached the reward threshold (rolling mean of training returns): " + "; ".join(parts) + "."]


def _kl_lines(data: SweepData, ranked: list[ConfigSummary], name: Callable[[str], str],
              correlation: tuple[float, int]) -> list[str]:
    rho, n = correlation
    lines = [f"Across {n:,} PPO updates, approx KL and clip fraction have Spearman rank correlation "
             f"{rho:.2f}: {_strength(rho)}"]
    points = kl_clip_points(data)
    within = {label: r for label, (kl, clip) in points.items() if (r := spearman(kl, clip)) is not None}
    if len(within) > 1:
        lines.append("Within each configuration: " + "; ".join(f"{name(label)} rho {r:.2f}" for label, r in within.items())
                     + (". Each configuration follows its own curve, so the pooled correlation is weaker than "
                        "within any one of them." if min(within.values()) > rho else "."))
    per_config = sorted((row for s in ranked if (row := _kl_profile(data, s)) is not None), key=lambda r: r[1])
    if len(per_config) >= 2:
        lines.append("Per configuration, median approx KL per update, median over seeds of the largest KL of "
                     "an update (median clip fraction; final entropy; IQM score): " + "; ".join(
                         f"{name(s.label)} {kl:.4f}, {peak:.4f} ({clip:.2f}; {entropy:.2f}; {s.estimates['iqm'].point:.1f})"
                         for kl, peak, clip, entropy, s in per_config) + ".")
        low, high = per_config[0], per_config[-1]
        change = high[4].estimates["iqm"].point - low[4].estimates["iqm"].point
        moved = "did not change" if change == 0 else f"{'rose' if change > 0 else 'fell'} by {abs(change):.1f}"
        lines.append(f"From the smallest to the largest peak KL ({low[1]:.4f} -> {high[1]:.4f}), the IQM "
                     f"score {moved}.")
    return lines


def _kl_profile(data: SweepData, summary: ConfigSummary) -> tuple[float, float, float, float, ConfigSummary] | None:
    """A configuration's (median KL per update, median over seeds of each seed's largest KL,
    median clip fraction, median final entropy) over its finished PPO trials."""
    runs = [t.metrics for t in data.trials if t.config == summary.label and t.score is not None and t.metrics
            and {"approx_kl", "clip_fraction", "entropy"} <= t.metrics.keys() and np.isfinite(t.metrics["approx_kl"]).any()]
    if not runs:
        return None
    kl = np.concatenate([m["approx_kl"] for m in runs])
    clip = np.concatenate([m["clip_fraction"] for m in runs])
    entropy = [m["entropy"][np.isfinite(m["entropy"])][-1] for m in runs if np.isfinite(m["entropy"]).any()]
    return (float(np.nanmedian(kl)), float(np.median([np.nanmax(m["approx_kl"]) for m in runs])),
            float(np.nanmedian(clip)), float(np.median(entropy)) if entropy else float("nan"), summary)


def _strength(rho: float) -> str:
    if rho >= 0.7:
        return "the more the policy moved, the more samples hit the clip."
    if rho >= 0.3:
        return "they move together, but loosely."
    if rho > -0.3:
        return "they hardly move together."
    return "the clip fraction falls as the KL grows."
