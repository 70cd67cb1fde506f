"""``ppolab sweep --population auto``: which trials share a process, populations end to end
through the CLI, reproducibility, and a population that dies (tiny CartPole budgets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_env, ppolab_command

from ppolab import load
from ppolab.lab.grouping import MAX_MEMBERS, group
from ppolab.lab.plan import SweepPlan, parse_grid

STEPS = 4096


def plan(grid: list[str], seeds: int, **changes: object) -> SweepPlan:
    return SweepPlan(env_id="CartPole-v1", algo="ppo", grid=parse_grid(grid), seeds=list(range(seeds)),
                     steps=STEPS, score_episodes=3, **changes)  # type: ignore[arg-type]


def sweep(out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ppolab_command(), "sweep", "CartPole-v1", "--steps", str(STEPS), "--score-episodes", "3",
                           "--out", str(out), *args], env=cli_env(), text=True, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def status(out: Path) -> dict[str, dict]:
    return json.loads((out / "status.json").read_text())["trials"]


def test_trials_that_can_share_a_process_form_one_population_per_worker():
    trials = plan(["clip_coef=0.1,0.2,0.3,0.4"], 2).trials()
    grouping = group(trials, workers=2)
    assert [[t.name for t in unit] for unit in grouping.units] == [
        [t.name for t in trials[:4]], [t.name for t in trials[4:]]]  # contiguous, in plan order
    assert grouping.describe() == "8 trials as 2 populations of 4"
    assert group(trials, workers=2).units == grouping.units  # the same trials, the same populations
    assert [len(u) for u in group(trials, workers=16).units] == [2, 2, 2, 2]  # at least two members each
    off = group(trials, workers=2, mode="off")
    assert [len(u) for u in off.units] == [1] * 8 and off.describe() == "8 one per process (--population off)"


def test_trials_a_population_cannot_take_run_one_per_process_with_the_reason():
    grouping = group(plan(["algo=ppo,trpo"], 3).trials(), workers=1)
    assert [len(u) for u in grouping.units] == [3, 1, 1, 1]
    assert grouping.describe() == ("3 trials as 1 population of 3; "
                                   "3 one per process (TRPO agents train one per process (populations are PPO only))")
    grouping = group(plan(["recurrent=none,lstm", "n_envs=16,32"], 1).trials(), workers=1)
    assert [len(u) for u in grouping.units] == [1, 1, 1, 1]  # different structures do not mix
    assert grouping.alone == {"recurrent policies train one per process": 2, "no other trial to share a process with": 2}
    grouping = group(plan(["clip_coef=0.1,-1"], 2).trials(), workers=1)
    assert grouping.alone == {"its config is invalid": 2} and [len(u) for u in grouping.units] == [2, 1, 1]


def test_a_population_has_at_most_max_members():
    trials = plan(["clip_coef=0.1,0.2"], MAX_MEMBERS + 1).trials()
    sizes = [len(u) for u in group(trials, workers=1).units]
    assert sum(sizes) == len(trials) and max(sizes) <= MAX_MEMBERS and len(sizes) == 3


@pytest.mark.slow
def test_a_population_sweep_leaves_ordinary_trials_and_repeats_exactly(tmp_path: Path):
    """Through the CLI on one worker: four trials as one population, each with its own run
    directory, result and log entry; the same command elsewhere gives the same results (same
    machine: bit-identical)."""
    first = sweep(tmp_path / "a", "--grid", "clip_coef=0.1,0.3", "--seeds", "2", "--workers", "1")
    assert first.returncode == 0, first.stderr
    assert "running 4 trials as 1 population of 4" in first.stderr
    trials = status(tmp_path / "a")
    assert {e["state"] for e in trials.values()} == {"done"}
    for name, entry in trials.items():
        run = tmp_path / "a" / "runs" / name
        assert json.loads((run / "summary.json").read_text())["total_steps"] == STEPS == entry["result"]["total_steps"]
        agent = load(run)
        assert agent.config.seed == int(name[-1]) and agent.config.clip_coef == float(name.split("=")[1][:3])
        assert len(entry["result"]["eval_returns"]) == 3
        assert (tmp_path / "a" / "logs" / f"{name}.log").is_file()
    assert (tmp_path / "a" / "report.html").is_file()
    again = sweep(tmp_path / "b", "--grid", "clip_coef=0.1,0.3", "--seeds", "2", "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert {n: e["result"]["eval_returns"] for n, e in status(tmp_path / "b").items()} == {
        n: e["result"]["eval_returns"] for n, e in trials.items()}
    assert {n: e["result"]["final_mean_return"] for n, e in status(tmp_path / "b").items()} == {
        n: e["result"]["final_mean_return"] for n, e in trials.items()}
    assert len({e["result"]["final_mean_return"] for e in trials.values()}) == 4  # four different trials


@pytest.mark.slow
def test_a_population_that_dies_has_its_members_retried_alone(tmp_path: Path):
    out = tmp_path / "s"
    proc = subprocess.Popen([*ppolab_command(), "sweep", "CartPole-v1", "--grid", "clip_coef=0.1,0.3", "--seeds", "2",
                             "--workers", "1", "--steps", "30000", "--score-episodes", "3", "--quiet", "--out", str(out)],
                            env=cli_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    os.kill(_population_running(out, proc), signal.SIGKILL)  # the population's process, as the out-of-memory killer would
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    trials = status(out)
    assert {e["state"] for e in trials.values()} == {"done"}
    assert len({e["pid"] for e in trials.values() if "pid" in e}) == 0  # pids are cleared once done
    for name in trials:  # each ran again in a process of its own: its log is its own now
        assert "trained in a population" not in (out / "logs" / f"{name}.log").read_text()
        assert json.loads((out / "runs" / name / "summary.json").read_text())["total_steps"] >= 30000


@pytest.mark.slow
def test_a_sweep_killed_while_its_population_trains_resumes_and_completes(tmp_path: Path):
    out = tmp_path / "s"
    args = ["--grid", "clip_coef=0.1,0.3", "--seeds", "2", "--workers", "1", "--score-episodes", "3", "--quiet",
            "--out", str(out)]
    proc = subprocess.Popen([*ppolab_command(), "sweep", "CartPole-v1", "--steps", "30000", *args], env=cli_env(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    pid = _population_running(out, proc)
    os.kill(proc.pid, signal.SIGKILL)  # the sweep itself
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _state(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", "the population outlived its sweep"
    assert {e["state"] for e in status(out).values()} <= {"pending", "running"}
    again = subprocess.run([*ppolab_command(), "sweep", "CartPole-v1", "--steps", "30000", *args], env=cli_env(),
                           text=True, capture_output=True, timeout=600, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr
    assert {e["state"] for e in status(out).values()} == {"done"}
    assert all(e["result"]["total_steps"] >= 30000 for e in status(out).values())


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _population_running(out: Path, proc: subprocess.Popen[str]) -> int:
    """The pid of the sweep's one population once it has finished an update."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            pids = {e.get("pid") for e in status(out).values() if e["state"] == "running"}
        except (OSError, ValueError, KeyError):
            pids = set()
        if len(pids) == 1 and None not in pids and (out / "runs" / "clip_coef=0.1__s0" / "metrics.csv").is_file():
            return pids.pop()
        time.sleep(0.05)
    raise AssertionError(f"the population never ran: {proc.poll()}")
