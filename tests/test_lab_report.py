"""The sweep report: loading a sweep directory, its statistics, and report.md / report.html /
figures written from synthetic sweep directories in the formats that ``ppolab sweep`` writes."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path
from urllib.parse import unquote

import matplotlib.image
from matplotlib.ticker import EngFormatter
import numpy as np
import pytest

from ppolab.errors import RunDirectoryError
from ppolab.lab.figures import FIGURES as FIGURE_BUILDERS
from ppolab.lab.figures import ReportData, x_axis
from ppolab.lab.report import write_report
from ppolab.lab.results import (
    improvement_table,
    kl_clip_correlation,
    load_sweep,
    summarize,
)

EPISODE_COLUMNS = ["episode", "global_step", "wall_seconds", "return", "length"]
HEAD = ["update", "global_step", "wall_seconds", "sps", "learning_rate"]
TAIL = ["explained_variance", "episodes", "rolling_return", "rolling_length"]
STATS = {
    "ppo": ["policy_loss", "value_loss", "entropy", "approx_kl_logr", "approx_kl", "clip_fraction", "grad_norm",
            "kl_beta", "epochs", "gradient_steps", "stopped_early"],
    "a2c": ["policy_loss", "value_loss", "entropy", "approx_kl", "grad_norm"],
}
THRESHOLD = 250.0
REPS = 200  # bootstrap resamples: enough for the assertions, fast


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _write_run(run_dir: Path, algo: str, seed: int, final_return: float, episodes: int) -> dict:
    """A run directory whose returns ramp from 10 to ``final_return``; PPO's clip fraction grows
    with its approximate KL. Returns the trial's RESULT."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    returns = np.linspace(10.0, final_return, episodes)
    steps = 200 * np.arange(1, episodes + 1)
    steps[1::5] = steps[::5][: len(steps[1::5])]  # two envs finishing on the same step
    seconds = np.round(0.01 * steps, 3)
    rows = zip(range(1, episodes + 1), steps, seconds, returns, returns.astype(int), strict=True)
    _write_csv(run_dir / "episodes.csv", EPISODE_COLUMNS, [list(row) for row in rows])
    updates = 30
    kl = 10 ** rng.uniform(-4, -1, updates)
    clip = np.clip(0.15 * (np.log10(kl) + 4) + rng.normal(0, 0.03, updates), 0, 1)
    rows = []
    for u in range(updates):
        values = {"update": u + 1, "global_step": 512 * (u + 1), "wall_seconds": 0.1 * u, "sps": 5000.0,
                  "learning_rate": 3e-4, "approx_kl": kl[u], "clip_fraction": clip[u],
                  "explained_variance": "" if u == 0 else 0.5, "episodes": 2 * u, "rolling_return": 20.0,
                  "rolling_length": 20.0}
        rows.append([values.get(c, 0.0) for c in HEAD + STATS[algo] + TAIL])
    _write_csv(run_dir / "metrics.csv", HEAD + STATS[algo] + TAIL, rows)
    solved = np.flatnonzero(returns >= THRESHOLD)
    result = {"score": final_return, "eval_returns": [final_return] * 10, "final_mean_return": final_return,
              "total_steps": int(steps[-1]), "wall_seconds": float(seconds[-1]), "reward_threshold": THRESHOLD,
              "solved_at_step": int(steps[solved[0]]) if len(solved) else None,
              "solved_at_seconds": float(seconds[solved[0]]) if len(solved) else None}
    (run_dir / "summary.json").write_text(json.dumps({"total_steps": result["total_steps"]}))
    return result


def make_sweep(path: Path, scores: dict[str, list[float | str]], algo: str = "ppo", episodes: int = 60) -> Path:
    """A sweep directory with one configuration ``clip_coef=<key>`` per key of ``scores`` and one
    trial per seed: a number is a done trial with that score, a string a failed trial with that error
    (its run directory holds only config.yaml, as after an early crash)."""
    configs = [{"label": f"clip_coef={key}", "overrides": {"clip_coef": key}} for key in scores]
    seeds = list(range(max(len(v) for v in scores.values())))
    trials, status = [], {}
    for config, values in zip(configs, scores.values(), strict=True):
        for seed, value in enumerate(values):
            name = f"{config['label']}__s{seed}"
            trials.append({"name": name, "config": config["label"], "algo": algo, "seed": seed,
                           "overrides": config["overrides"]})
            run_dir = path / "runs" / name
            if isinstance(value, str):
                run_dir.mkdir(parents=True)
                (run_dir / "config.yaml").write_text(f"algo: {algo}\n")
                status[name] = {"state": "failed", "error": value, "seconds": 0.5, "result": None}
            else:
                result = _write_run(run_dir, algo, seed, value, episodes)
                status[name] = {"state": "done", "error": None, "seconds": 3.0, "result": result}
    plan = {"version": 1, "env_id": "CartPole-v1", "algo": algo, "grid": {"clip_coef": list(scores)},
            "seeds": seeds, "steps": 12000, "score": {"kind": "eval", "episodes": 10},
            "configs": configs, "trials": trials}
    (path / "sweep.json").write_text(json.dumps(plan))
    (path / "status.json").write_text(json.dumps({"trials": status}))
    return path


ERROR = "TrainingDivergedError: loss became NaN at step 4,096 <see log>"
SCORES = {"0.1": [10.0, 20.0, 30.0, ERROR], "0.2": [100.0, 200.0, 300.0, 1000.0]}
A, B = "clip_coef=0.1", "clip_coef=0.2"
FIGURES = ["learning_curves_steps.png", "learning_curves_seconds.png", "final_scores.png",
           "performance_profiles.png", "probability_of_improvement.png", "kl_vs_clip_fraction.png"]


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two-configuration sweep, with its report written."""
    sweep = make_sweep(tmp_path_factory.mktemp("sweep"), SCORES)
    written = write_report(sweep, conclusion="B beats A & that is <expected>.", reps=REPS)
    assert (written.html, written.markdown) == (sweep / "report.html", sweep / "report.md")
    return sweep


def test_load_sweep_reads_every_trial_its_state_and_curves(reported: Path) -> None:
    data = load_sweep(reported)
    assert data.configs() == [A, B]
    assert [t.name for t in data.trials] == [f"{c}__s{s}" for c in (A, B) for s in range(4)]
    assert [t.state for t in data.trials] == ["done"] * 3 + ["failed"] + ["done"] * 4
    failed = data.trials[3]
    assert failed.error == ERROR and failed.result is None and failed.score is None
    assert failed.episodes is None and failed.metrics is None
    done = data.trials[0]
    assert done.episodes.shape == (60, 3) and done.episodes[0].tolist() == [200.0, 2.0, 10.0]
    assert done.metrics["clip_fraction"].shape == (30,)
    assert np.isnan(done.metrics["explained_variance"][0])  # an empty cell


def test_summarize_counts_and_hand_computed_estimates(reported: Path) -> None:
    a, b = summarize(load_sweep(reported), reps=REPS)
    assert (a.label, a.algo, a.runs, a.done, a.failed) == (A, "ppo", 4, 3, 1)
    assert a.scores.tolist() == [10.0, 20.0, 30.0]
    assert b.scores.tolist() == [100.0, 200.0, 300.0, 1000.0]
    assert b.estimates["iqm"].point == pytest.approx(250.0)  # trims 100 and 1000
    assert b.estimates["median"].point == pytest.approx(250.0)
    assert b.estimates["mean"].point == pytest.approx(400.0)
    assert a.estimates["iqm"].point == pytest.approx(20.0)  # 3 runs: nothing trimmed
    low, high = b.estimates["mean"].low, b.estimates["mean"].high
    assert 100.0 <= low <= 400.0 <= high <= 1000.0
    # threshold 250: reached by B's 300 and 1000 runs, never by A
    assert (b.steps_to_threshold.reached, b.steps_to_threshold.runs) == (2, 4)
    assert b.steps_to_threshold.median is None  # half never reached it
    assert a.seconds_to_threshold.reached == 0


def test_probability_of_improvement_table(reported: Path) -> None:
    data = load_sweep(reported)
    table = improvement_table(data, summarize(data, reps=REPS), reps=REPS)
    assert set(table) == {(A, B), (B, A)}
    assert table[B, A].point == pytest.approx(1.0) and table[B, A].low > 0.9
    assert table[A, B].point == pytest.approx(0.0) and table[A, B].high < 0.1


def test_write_report_writes_every_figure_as_a_readable_png(reported: Path) -> None:
    assert (reported / "report.md").is_file()
    for name in FIGURES:
        image = matplotlib.image.imread(reported / "figures" / name)
        assert image.ndim == 3 and 150 < image.shape[0] < 2000 and 500 < image.shape[1] < 2000, name
        assert image[..., :3].std() > 0.01, f"{name} is blank"
        assert f"figures/{name}" in (reported / "report.md").read_text()


def test_html_is_self_contained_and_links_only_to_existing_files(reported: Path) -> None:
    page = (reported / "report.html").read_text()
    images = re.findall(r'src="([^"]*)"', page)
    assert len(images) == len(FIGURES)
    for src in images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):]).startswith(b"\x89PNG")
    links = re.findall(r'href="([^"]*)"', page)
    assert f"runs/{A}__s0/summary.json" in [unquote(h) for h in links]
    assert f"runs/{A}__s3/" in [unquote(h) for h in links]  # the failed trial has no summary.json
    for href in links:
        assert not href.startswith(("/", "http")) and (reported / unquote(href)).exists(), href
    assert "<script" not in page and "stylesheet" not in page


def test_reports_say_the_same_things(reported: Path) -> None:
    markdown, page = (reported / "report.md").read_text(), (reported / "report.html").read_text()
    for text in ("250.0 [", "1.00 [", "CartPole-v1", "mean return of 10 evaluation episodes", "12,000"):
        assert text in markdown and text in page, text
    assert "B beats A &amp; that is &lt;expected&gt;." in page  # escaped
    assert "B beats A & that is \\<expected>." in markdown
    # the failed trial's error, escaped for each format
    assert "TrainingDivergedError: loss became NaN at step 4,096 &lt;see log&gt;" in page
    assert "TrainingDivergedError: loss became NaN at step 4,096 \\<see log>" in markdown


def test_sweep_where_every_trial_failed_still_gets_a_report(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, {"0.1": ["boom one", "boom two"], "0.2": ["boom three", "boom four"]})
    write_report(sweep, reps=REPS)
    markdown, page = (sweep / "report.md").read_text(), (sweep / "report.html").read_text()
    assert "No data" in markdown and "No data" in page
    assert "not drawn" in markdown and "boom four" in page
    assert not list((sweep / "figures").glob("*.png"))
    assert "<img" not in page


def test_missing_or_corrupt_sweep_json_is_a_run_directory_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="no sweep.json"):
        load_sweep(tmp_path)
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(RunDirectoryError, match="damaged"):
        write_report(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"version": 1}))
    with pytest.raises(RunDirectoryError, match="not a ppolab sweep plan"):
        load_sweep(tmp_path)


def test_kl_clip_correlation(reported: Path, tmp_path: Path) -> None:
    rho, n = kl_clip_correlation(load_sweep(reported))
    assert rho > 0.8 and n == 7 * 30  # 7 done trials of 30 updates each
    a2c = make_sweep(tmp_path, {"7e-4": [50.0, 60.0], "1e-3": [70.0, 80.0]}, algo="a2c")
    assert kl_clip_correlation(load_sweep(a2c)) is None
    write_report(a2c, reps=REPS)
    assert not (a2c / "figures" / "kl_vs_clip_fraction.png").exists()
    assert "kl_vs_clip_fraction.png not drawn" in (a2c / "report.md").read_text()


@pytest.mark.parametrize(("seconds", "label", "scale"), [
    (30.0, "wall-clock time (seconds)", 1.0), (600.0, "wall-clock time (seconds)", 1.0),
    (601.0, "wall-clock time (minutes)", 60.0), (7200.0, "wall-clock time (minutes)", 60.0)])
def test_time_axis_is_in_seconds_or_minutes_with_the_unit_in_its_label(seconds, label, scale) -> None:
    assert x_axis(1, seconds) == (label, scale)
    assert x_axis(0, 10**7) == ("environment steps", 1.0)  # steps keep their own axis


def test_time_axis_ticks_are_plain_seconds(reported: Path) -> None:
    """The seconds figure once used an engineering formatter, whose 'm' (milli) read as minutes."""
    data = load_sweep(reported)
    summaries = summarize(data, reps=REPS)
    report = ReportData(data, summaries, improvement_table(data, summaries, reps=REPS), REPS)
    figure = dict(FIGURE_BUILDERS)["learning_curves_seconds.png"](report)[0]
    axis = figure.axes[0]
    assert axis.get_xlabel() == "wall-clock time (seconds)"
    assert not isinstance(axis.xaxis.get_major_formatter(), EngFormatter)
    steps = dict(FIGURE_BUILDERS)["learning_curves_steps.png"](report)[0].axes[0]
    assert steps.get_xlabel() == "environment steps"


def test_budget_says_the_steps_asked_for_and_the_steps_trained(reported: Path) -> None:
    data = load_sweep(reported)
    assert data.budget_text() == "12,000 steps"  # every synthetic trial trained exactly what was asked
    done = [t for t in data.trials if t.state == "done"]
    for trial, trained in zip(done, [12288, 12800] * len(done)):  # two algorithms' rollout sizes
        trial.result["total_steps"] = trained
    assert data.budget_text() == "12,288 to 12,800 steps (12,000 asked, rounded up to whole rollouts)"
    for trial in done:
        trial.result["total_steps"] = 12288
    assert data.budget_text() == "12,288 steps (12,000 asked, rounded up to whole rollouts)"
    data.plan["steps"] = None
    assert data.budget_text() == "each preset's own budget"
    assert "Budget: 12,000 steps per trial." in (reported / "report.md").read_text()
