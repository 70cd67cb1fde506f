"""The figures of docs/guides/diagnostics.md, from real runs: PPO on CartPole-v1 with its preset,
and the same run with a learning rate ten times too large, side by side per update.

    python docs/figures/diagnostics.py      # about half a minute; writes docs/figures/*.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ppolab import PPO  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = {"preset (lr 7e-3)": {}, "lr 0.07, ten times too large": {"learning_rate": 0.07}}
PANELS = [("rolling_return", "rolling mean return"), ("approx_kl", "approximate KL to pi_old"),
          ("clip_fraction", "clip fraction"), ("entropy", "policy entropy (nats)")]


def run(settings: dict) -> list[dict]:
    rows: list[dict] = []
    agent = PPO("CartPole-v1", seed=0, stop_when_solved=False, anneal_lr=False, **settings)
    agent.learn(60 * agent.config.batch_size, callback=rows.append)
    agent.close()
    return rows


def main() -> None:
    results = {name: run(settings) for name, settings in RUNS.items()}
    fig, axes = plt.subplots(1, len(PANELS), figsize=(16, 3.6))
    for ax, (key, label) in zip(axes, PANELS):
        for name, rows in results.items():
            ax.plot([r["update"] for r in rows], [r[key] for r in rows], label=name)
        ax.set_xlabel("update")
        ax.set_title(label)
        if key in ("approx_kl",):
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "diagnostics_learning_rate.png", dpi=110)
    for name, rows in results.items():
        last = rows[-1]
        print(f"{name}: return {last['rolling_return']:.1f}, kl {max(r['approx_kl'] for r in rows):.3f} (max), "
              f"clip {max(r['clip_fraction'] for r in rows):.2f} (max), entropy {last['entropy']:.3f} (last)")


if __name__ == "__main__":
    main()
