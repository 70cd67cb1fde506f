"""The learning-curve figure: episode returns, their rolling mean, and the solved threshold."""

from __future__ import annotations

import csv
from pathlib import Path


def learning_curve(
    episodes_csv: Path, out_png: Path, title: str, threshold: float | None,
    solved_at_step: int | None, window: int = 100,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps, returns = [], []
    with open(episodes_csv, newline="") as f:
        for row in csv.DictReader(f):
            steps.append(int(row["global_step"]))
            returns.append(float(row["return"]))
    steps_a, returns_a = np.asarray(steps), np.asarray(returns)

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    if len(returns_a):
        ax.plot(steps_a, returns_a, ".", ms=2.5, alpha=0.35, color="tab:blue", label="episode return")
        cumsum = np.cumsum(np.insert(returns_a, 0, 0.0))
        counts = np.minimum(np.arange(1, len(returns_a) + 1), window)
        rolling = (cumsum[1:] - cumsum[np.maximum(np.arange(1, len(returns_a) + 1) - window, 0)]) / counts
        ax.plot(steps_a, rolling, color="tab:blue", lw=2, label=f"rolling mean of last {window}")
    else:
        ax.text(0.5, 0.5, "no finished episodes", transform=ax.transAxes, ha="center")
    if threshold is not None:
        ax.axhline(threshold, color="tab:green", ls="--", lw=1.2, label=f"solved threshold ({threshold:g})")
    if solved_at_step is not None:
        ax.axvline(solved_at_step, color="tab:red", ls=":", lw=1.2, label=f"solved at step {solved_at_step:,}")
    ax.set_title(title)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # a run too short for any episode to end has none
        ax.legend(loc="lower right", fontsize=8)
    # fixed margins that fit the labels of any return scale: tight_layout would draw the figure a
    # second time to measure them, doubling the cost (a population writes one curve per member)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.11, top=0.93)
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
