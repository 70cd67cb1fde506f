"""``ppolab sweep``: the plan, the local and Ray executors, resuming after a real signal, failing
trials, and the report and exercise commands end to end (tiny CartPole budgets)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from conftest import cli_env, ppolab_command

from ppolab.errors import ConfigError, RunDirectoryError
from ppolab.lab import stats
from ppolab.lab.executors import LocalExecutor, RayExecutor
from ppolab.lab.grouping import group
from ppolab.lab.plan import SweepPlan, parse_grid
from ppolab.lab.sweep import Sweep

STEPS = "4096"  # 8 updates of the CartPole preset's 16 x 32 rollouts
FAST = ["--steps", STEPS, "--score-episodes", "3", "--quiet"]


def tiny_plan(**changes: object) -> SweepPlan:
    fields = dict(env_id="CartPole-v1", algo="ppo", grid=parse_grid(["clip_coef=0.1,0.3"]), seeds=[0, 1],
                  steps=int(STEPS), score_episodes=3)
    fields.update(changes)
    return SweepPlan(**fields)  # type: ignore[arg-type]


def run_sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ppolab_command(), "sweep", "CartPole-v1", *args], env=cli_env(), text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def states(sweep_dir: Path) -> dict[str, str]:
    return {name: e["state"] for name, e in json.loads((sweep_dir / "status.json").read_text())["trials"].items()}


def results(sweep_dir: Path) -> dict[str, dict]:
    return {name: e["result"] for name, e in json.loads((sweep_dir / "status.json").read_text())["trials"].items()}


# --- the plan


def test_grid_is_the_cross_product_times_seeds_in_order() -> None:
    plan = SweepPlan("CartPole-v1", "ppo", parse_grid(["clip_coef=0.1,0.2", "n_epochs=1,4,8"]), seeds=[0, 1, 2])
    trials = plan.trials()
    assert len(trials) == 2 * 3 * 3
    assert [c["n_epochs"] for c in plan.configs] == ["1", "4", "8", "1", "4", "8"]
    assert trials[0].name == "clip_coef=0.1__n_epochs=1__s0" and trials[0].config == "clip_coef=0.1, n_epochs=1"
    assert trials[0].overrides == {"clip_coef": "0.1", "n_epochs": "1"}
    assert len({t.name for t in trials}) == len(trials)
    assert plan.default_name() == SweepPlan.from_dict(plan.to_dict()).default_name()
    assert plan.default_name() != tiny_plan().default_name()


def test_grid_values_with_commas_and_algo_as_a_key() -> None:
    assert parse_grid(["hidden_sizes=64,64;128,128"]) == {"hidden_sizes": ["64,64", "128,128"]}
    plan = SweepPlan("CartPole-v1", "ppo", parse_grid(["algo=ppo,a2c"]), seeds=[0])
    assert [(t.algo, t.overrides) for t in plan.trials()] == [("ppo", {}), ("a2c", {})]


@pytest.mark.parametrize(("grid", "message"), [
    (["clip_cof=0.1,0.2"], "did you mean 'clip_coef'"),
    (["clip_coef"], "--grid expects key=v1,v2"),
    (["clip_coef=0.1,0.1"], "repeats a value"),
    (["algo=ppo,sac"], "unknown algo 'sac'"),
    (["algo=ppo,a2c", "clip_coef=0.1,0.2"], "'clip_coef' is not a hyperparameter of a2c: a sweep over --grid algo"),
])
def test_a_bad_grid_is_refused_before_anything_runs(grid: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SweepPlan("CartPole-v1", "ppo", parse_grid(grid), seeds=[0])


def test_a_sweep_directory_refuses_another_plan_and_a_second_driver(tmp_path: Path) -> None:
    with Sweep.open(tmp_path / "s", tiny_plan()):
        with pytest.raises(RunDirectoryError, match="another ppolab sweep is running in"):
            Sweep.open(tmp_path / "s", tiny_plan())
    with pytest.raises(RunDirectoryError, match="holds a different sweep .*seeds"):
        Sweep.open(tmp_path / "s", tiny_plan(seeds=[0, 1, 2]))
    Sweep.open(tmp_path / "s", tiny_plan()).close()  # the refusals left it unlocked
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not a sweep directory"):
        Sweep.open(tmp_path / "other", tiny_plan())


# --- executors: the same trials give the same results on either backend


def _start_ray_cluster() -> str:
    """A Ray cluster of its own (``ray start --head``), as a user's cluster would be; its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, timeout=120, env=cli_env())
    return f"127.0.0.1:{port}"


@pytest.mark.slow
def test_local_ray_and_a_ray_cluster_give_the_same_per_trial_results(tmp_path: Path) -> None:
    """With --population auto on 2 workers, each backend trains the same two populations of two."""
    outcomes = {}
    units = group(tiny_plan().trials(), 2).units
    assert [len(u) for u in units] == [2, 2]
    for name in ("local", "ray"):
        executor = LocalExecutor(2) if name == "local" else RayExecutor(workers=2)  # a real local Ray instance
        try:
            with Sweep.open(tmp_path / name, tiny_plan()) as sweep:
                outcome = sweep.run(executor, units=units)
        finally:
            executor.close()
        assert (outcome.done, outcome.failed) == (4, 0)
        outcomes[name] = results(tmp_path / name)
    address = _start_ray_cluster()
    try:
        proc = run_sweep("--grid", "clip_coef=0.1,0.3", "--seeds", "2", "--backend", "ray", "--address", address,
                         "--out", str(tmp_path / "cluster"), "--no-report", *FAST)
    finally:
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True,
                       timeout=120, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    outcomes["cluster"] = results(tmp_path / "cluster")
    for name in ("ray", "cluster"):
        assert set(states(tmp_path / name).values()) == {"done"}
        for trial in tiny_plan().trials():  # the run directories came back to the driver
            run = tmp_path / name / "runs" / trial.name
            assert (run / "summary.json").is_file() and (run / "model.pt").is_file()
            assert (tmp_path / name / "logs" / f"{trial.name}.log").is_file()
    # every backend runs the trials on this machine with the same seeds and code: bit-identical
    # by design (trials on machines with other CPUs or BLAS builds could differ in the last bits)
    for trial, local in outcomes["local"].items():
        for name in ("ray", "cluster"):
            for key in ("score", "eval_returns", "final_mean_return", "total_steps"):
                assert local[key] == outcomes[name][trial][key], (name, trial, key)
        assert local["total_steps"] == 4096
    # different seeds and settings really are different trials
    assert len({r["final_mean_return"] for r in outcomes["local"].values()}) > 1


# --- failures and resuming


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    out = tmp_path / "s"
    proc = run_sweep("--grid", "clip_coef=0.2,-1", "--seeds", "2", "--out", str(out), "--steps", STEPS,
                     "--score", "train", "--score-episodes", "5", "--quiet")
    assert proc.returncode == 1, proc.stderr
    status = json.loads((out / "status.json").read_text())["trials"]
    assert [status[f"clip_coef=0.2__s{s}"]["state"] for s in (0, 1)] == ["done", "done"]
    for seed in (0, 1):
        failed = status[f"clip_coef=-1__s{seed}"]
        assert failed["state"] == "failed" and "clip_coef" in failed["error"] and "(0, 1]" in failed["error"]
    assert "trial clip_coef=-1__s0 failed: invalid clip_coef" in proc.stderr
    for seed in (0, 1):  # --score train: the mean return of the last 5 training episodes
        episodes = np.loadtxt(out / "runs" / f"clip_coef=0.2__s{seed}" / "episodes.csv", delimiter=",", skiprows=1)
        assert status[f"clip_coef=0.2__s{seed}"]["result"]["score"] == pytest.approx(episodes[-5:, 3].mean())
        assert status[f"clip_coef=0.2__s{seed}"]["result"]["eval_returns"] is None
    report = (out / "report.md").read_text()
    assert "clip_coef=-1__s0" in report and failed["error"] in report


def _running_pids(sweep_dir: Path) -> list[int]:
    try:
        trials = json.loads((sweep_dir / "status.json").read_text())["trials"]
    except (OSError, ValueError):
        return []
    return [e["pid"] for e in trials.values() if e["state"] == "running" and e.get("pid")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_until(condition, proc: subprocess.Popen[str], timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_killed_sweep_resumes_running_only_the_missing_trials(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "s"
    args = ["--grid", "clip_coef=0.1,0.3", "--seeds", "2", "--workers", "1", "--population", "off", "--out", str(out),
            *FAST]
    proc = subprocess.Popen([*ppolab_command(), "sweep", "CartPole-v1", *args], env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def one_done_and_next_running() -> bool:
        try:
            found = list(states(out).values())
        except (OSError, ValueError):
            return False
        return found.count("done") >= 1 and any(_alive(pid) for pid in _running_pids(out))

    _wait_until(one_done_and_next_running, proc)
    trial_pids = _running_pids(out)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else -9), err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in trial_pids) and time.monotonic() < deadline:  # no trial outlives its sweep
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in trial_pids)
    if sig == signal.SIGINT:
        assert "continue with the same command" in err
    done = {name for name, state in states(out).items() if state == "done"}
    assert 1 <= len(done) < 4
    kept = {name: (out / "runs" / name / "summary.json").stat().st_mtime_ns for name in done}

    proc2 = run_sweep(*args)
    assert proc2.returncode == 0, proc2.stderr
    assert set(states(out).values()) == {"done"}
    assert kept == {name: (out / "runs" / name / "summary.json").stat().st_mtime_ns for name in done}
    for name, result in results(out).items():
        assert result["total_steps"] == 4096, name
    assert (out / "report.html").is_file()
    report = (out / "report.md").read_text()
    assert all(name in report for name in states(out))


# --- report and exercise commands


@pytest.mark.slow
def test_exercise_prints_a_conclusion_computed_from_the_results(tmp_path: Path) -> None:
    out = tmp_path / "clip"
    proc = subprocess.run([*ppolab_command(), "exercise", "clip", "--seeds", "2", "--out", str(out), *FAST],
                          env=cli_env(), text=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "sweep.json").read_text())
    assert plan["exercise"] == "clip" and len(plan["configs"]) == 4
    by_config: dict[str, list[float]] = {}
    for trial in plan["trials"]:
        by_config.setdefault(trial["config"], []).append(results(out)[trial["name"]]["score"])
    iqms = {label: stats.iqm(np.array(scores)) for label, scores in by_config.items()}
    best = max(iqms, key=iqms.get)  # type: ignore[arg-type]
    ranking = next(line for line in proc.stdout.splitlines() if line.startswith("Ranking by IQM: "))
    assert ranking.startswith(f"Ranking by IQM: {best} {iqms[best]:.1f} [")
    assert f"{best} vs " in proc.stdout and "P(" in proc.stdout
    again = subprocess.run([*ppolab_command(), "report", str(out)], env=cli_env(), text=True,
                           capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert ranking in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]*)"', page)
    assert len(images) == len(list((out / "figures").glob("*.png"))) == 6  # with KL vs clip fraction
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    for href in re.findall(r'href="([^"]*)"', page):
        assert (out / unquote(href)).exists(), href


def test_ray_backend_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'ppolab\[ray\]'"):
        RayExecutor()


def test_report_of_a_directory_that_is_not_a_sweep(tmp_path: Path) -> None:
    proc = subprocess.run([*ppolab_command(), "report", str(tmp_path)], env=cli_env(), text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 2 and "sweep.json" in proc.stderr
