"""The ``ppolab`` command: ``train``, ``resume``, ``eval``, ``check-env``, and the lab's
``sweep``, ``report`` and ``exercise``.

Heavy imports (torch, gymnasium) happen inside the commands so that ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ppolab import clock  # noqa: F401  (records the process start time first)

if TYPE_CHECKING:
    from ppolab.agent import Agent
    from ppolab.lab.grouping import Grouping
    from ppolab.lab.plan import SweepPlan
    from ppolab.lab.sweep import Sweep
    from ppolab.rundir import RunReporter
    from ppolab.train import TrainResult


def _hyperparameter_epilog() -> str:
    from ppolab.config import (CONFIG_CLASSES, CONTINUOUS_DEFAULTS, PRESET_FAMILIES, PRESETS, describe_changes,
                               field_help)

    def shown(default: object) -> object:
        return ",".join(map(str, default)) if isinstance(default, tuple) else default

    def line(name: str, help_text: str, default: object) -> str:
        return f"  {name:<22} {help_text} [default: {shown(default)}]"

    helps = {algo: field_help(algo) for algo in CONFIG_CLASSES}
    common = {k: v for k, v in helps["ppo"].items() if all(k in fields for fields in helps.values())}
    lines = ["hyperparameters (--set key=value, or a YAML/JSON file with --config):", "", " every algorithm:"]
    lines += [line(name, *entry) for name, entry in common.items()]
    for algo, fields in helps.items():
        lines += ["", f" --algo {algo} only:"]
        lines += [line(name, *entry) for name, entry in fields.items() if name not in common]
        changed = [f"{name}={shown(default)}" for name, (_, default) in fields.items()
                   if name in common and default != common[name][1]]
        if changed:
            lines.append(f"  (its own defaults: {', '.join(changed)})")
    lines.append("")
    for algo, presets in PRESETS.items():
        families = [f"{prefix}* (every id)" for prefix in PRESET_FAMILIES.get(algo, {})]
        lines.append(f"tuned {algo} presets replace the defaults for: " + ", ".join([*presets, *families]))
    lines += ["", "an env without a tuned preset starts from the defaults above when its actions are discrete, and "
              "from these published continuous-control settings when they are continuous (Box), since the "
              "discrete-control defaults fail there:"]
    lines += [f"  {algo:<5} {describe_changes(values)}" for algo, values in CONTINUOUS_DEFAULTS.items()]
    lines.append("precedence: defaults (by action space) < preset < --config < --set < --seed/--steps/--no-early-stop")
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32 - 1], got {value}")
    return value


MAX_NAME_BYTES = 255 - len("..12345678.tmp")  # the staging name, .NAME.XXXXXXXX.tmp, must fit too


def _run_name(text: str) -> str:
    """A run directory's name: one path component inside --out, never a path that leads out."""
    if not text or text.startswith(".") or any(c in text for c in "/\\\0"):
        raise argparse.ArgumentTypeError(
            f"must be a single directory name (no '/', not starting with '.': ppolab's temporary "
            f"names do), got {text!r}; use --out for the parent directory")
    if len(os.fsencode(text)) > MAX_NAME_BYTES:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_NAME_BYTES} bytes (file names hold 255, and the run is built under "
            f"a temporary name {len('..12345678.tmp')} longer), got {len(os.fsencode(text))}")
    return text


def one_line(message: str) -> str:
    """``message`` with its line breaks written as escapes: an error echoes what the user typed
    (an id, a key, a path), which may hold one, and an error is one line."""
    return message.translate({10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 0x85: "\\x85",
                              0x2028: "\\u2028", 0x2029: "\\u2029"})


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one --help away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ppolab",
        description="Train, evaluate and study PPO and trust-region agents on Gymnasium environments.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train", help="train an agent and write a run directory",
        description="Train an agent (PPO unless --algo says otherwise) on ENV_ID with a live progress "
        "bar. Writes a run directory with the "
        "resolved config, metrics.csv, episodes.csv, TensorBoard events, model.pt, "
        "learning_curve.png and summary.json.",
        epilog=_hyperparameter_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("env_id", metavar="ENV_ID",
                       help="a Gymnasium id (e.g. CartPole-v1) or module:Attr naming an env class or factory")
    train.add_argument("--algo", help="ppo | trpo | a2c | vpg (default: the --config file's algo, else ppo; "
                       "each one's hyperparameters are listed below)")
    train.add_argument("--seed", type=int, help="random seed (default: 0)")
    train.add_argument("--steps", metavar="N",
                       help="environment steps to train for, e.g. 200000 or 2e5, rounded up to whole "
                       "rollouts of n_envs * n_steps (default: the preset's total_steps)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one hyperparameter; repeatable (see the list below)")
    train.add_argument("--config", metavar="FILE", help="YAML or JSON file of hyperparameters")
    train.add_argument("--out", default="runs", metavar="DIR", help="parent directory of run directories (default: runs)")
    train.add_argument("--name", type=_run_name,
                       help="run directory name, one path component (default: ENV-algo-sSEED-TIMESTAMP)")
    train.add_argument("--no-early-stop", action="store_true", help="train the full budget even once solved")
    train.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard events")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an existing run directory of the same name (only a ppolab run directory)")

    resume = sub.add_parser(
        "resume", help="continue an interrupted or crashed run",
        description="Continue the run in RUN_DIR from its newest complete checkpoint, to the step "
        "budget it was started with, as if it had never stopped: counters, optimizer, normalizers, "
        "learning-rate schedule, random generators and the episodes in flight (envs, observations, "
        "recurrent states) continue, and metrics.csv, episodes.csv and TensorBoard continue without "
        "duplicated or missing rows. Envs that cannot be saved (Box2D, MuJoCo, Atari, anything that "
        "does not pickle) start new episodes, with a note.",
    )
    resume.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by ppolab train")
    resume.add_argument("--new-episodes", action="store_true",
                        help="start new episodes instead of unpickling the envs saved in the checkpoint "
                        "(for a checkpoint you did not write yourself)")
    resume.add_argument("--quiet", action="store_true", help="no progress output")

    ev = sub.add_parser(
        "eval", help="evaluate a trained agent",
        description="Run evaluation episodes with the model in RUN_DIR (or a model file) and print "
        "the mean and standard deviation of the episode returns.",
    )
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a model.pt file")
    ev.add_argument("--episodes", type=_positive_int, default=10, help="episodes to run (default: 10)")
    ev.add_argument("--deterministic", action="store_true",
                    help="take the most likely action instead of sampling from the policy")
    ev.add_argument("--seed", type=_seed, default=1_000_000, help="seed of the first episode (default: 1000000)")
    ev.add_argument("--video", metavar="FILE", help="record the episodes to FILE (.gif, or .mp4 with ppolab[video])")

    exp = sub.add_parser(
        "export", help="write a trained policy as one self-contained file (ONNX or TorchScript)",
        description="Write the policy in RUN_DIR (or a model file) as one file that maps observations "
        "to actions without ppolab or Gymnasium: observation normalization, image scaling, the "
        "network and the action's offset, clipping or squashing are in it; masked policies take "
        "the action mask as an input, recurrent ones their state. Prints the inputs and outputs. "
        "ONNX needs pip install 'ppolab[export]'.",
    )
    exp.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a model.pt file")
    exp.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="default: onnx")
    exp.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    exp.add_argument("--sample", action="store_true",
                     help="sample actions from the policy instead of taking the most likely one")

    check = sub.add_parser(
        "check-env", help="check that ppolab can train on an environment",
        description="Make one ID_OR_PATH env and run Gymnasium's environment checker, ppolab's "
        "supported-space check, and --steps random steps (every observation of the right shape "
        "and finite, every reward finite, no exception). Prints each check and a verdict; exits "
        "0 when all pass, 1 when one fails, 2 when the env cannot be made.",
    )
    check.add_argument("target", metavar="ID_OR_PATH",
                       help="a Gymnasium id (e.g. CartPole-v1) or module:Attr naming an env class or factory")
    check.add_argument("--steps", type=_positive_int, default=1000, metavar="N",
                       help="random steps to take (default: 1000)")
    _add_lab_commands(sub)
    return parser


def _add_lab_commands(sub: argparse._SubParsersAction) -> None:
    from ppolab.lab.exercises import EXERCISES

    def add_trial_options(p: argparse.ArgumentParser, seeds_default: int | None, steps_default: str) -> None:
        p.add_argument("--seeds", type=_positive_int, default=seeds_default, metavar="N",
                       help=f"seeds per configuration: 0..N-1 (default: {seeds_default or 'the exercise’s, 10'})")
        p.add_argument("--steps", metavar="S", help=f"environment steps per trial (default: {steps_default})")
        p.add_argument("--workers", type=_positive_int, metavar="W",
                       help="trials at a time (default: the machine's cores, or the Ray cluster's CPUs)")
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="local: a process per trial on this machine; ray: Ray tasks (pip install 'ppolab[ray]')")
        p.add_argument("--population", choices=("auto", "off"), default="auto",
                       help="auto: trials that can share a process train side by side as populations, one per "
                       "worker (PPO on flat vector observations; see the populations guide); off: a process per "
                       "trial (default: auto)")
        p.add_argument("--address", metavar="ADDR",
                       help="--backend ray: the cluster to join (e.g. auto or ray://host:10001; default: start a local Ray)")
        p.add_argument("--out", metavar="DIR", help="the sweep directory (default: sweeps/<env>-<algo>-<keys>-<hash>, "
                       "the same for the same command, so re-running it resumes)")
        p.add_argument("--score", choices=("eval", "train"), default="eval",
                       help="a trial's score: eval = mean return of evaluation episodes of the final policy; "
                       "train = mean return of the last training episodes (default: eval)")
        p.add_argument("--score-episodes", type=_positive_int, default=10, metavar="N",
                       help="episodes behind a trial's score (default: 10)")
        p.add_argument("--quiet", action="store_true", help="no progress output")

    sweep = sub.add_parser(
        "sweep", help="train many seeds and configurations in parallel, with a statistical report",
        description="Train the cross product of the --grid values times --seeds seeds, each trial an "
        "ordinary run directory under DIR/runs, then write DIR/report.md and DIR/report.html. "
        "Trials train their whole budget (no early stop). Re-running the same command resumes: finished "
        "trials are kept, interrupted and failed ones run again. A failed trial is recorded with its "
        "error and the others go on; the exit code is then 1.",
    )
    sweep.add_argument("env_id", metavar="ENV_ID", help="a Gymnasium id or module:Attr")
    sweep.add_argument("--algo", default="ppo", help="ppo | trpo | a2c | vpg (default: ppo); or sweep it: --grid algo=ppo,a2c")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="values of one hyperparameter to sweep; repeatable (the cross product is run); "
                       "separate values with ';' when they hold commas (hidden_sizes=64,64;128,128)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="fix a hyperparameter for every trial; repeatable")
    add_trial_options(sweep, seeds_default=5, steps_default="the preset's total_steps")
    sweep.add_argument("--no-report", action="store_true", help="do not write the report at the end")

    report = sub.add_parser(
        "report", help="write the statistical report of a sweep directory",
        description="Write SWEEP_DIR/report.md and a self-contained SWEEP_DIR/report.html with figures "
        "under SWEEP_DIR/figures: learning curves, final-score intervals, performance profiles, "
        "probability of improvement, KL vs clip fraction, and every number in tables.",
    )
    report.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a directory written by ppolab sweep or exercise")

    exercise = sub.add_parser(
        "exercise", help="run one of the PPO chapter's exercises as a sweep and print what the data say",
        description="Run the sweep behind one of the chapter's questions, write its report, and print a "
        "conclusion computed from the results.\n\n" + "\n".join(
            f"  {name:<7} {ex.question}" for name, ex in EXERCISES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    exercise.add_argument("name", choices=list(EXERCISES), metavar="NAME", help=" | ".join(EXERCISES))
    exercise.add_argument("--env", default=None, metavar="ENV_ID",
                          help="environment (default: the exercise's, CartPole-v1 except for memory's "
                               "ppolab/CartPoleNoVelocity-v1)")
    add_trial_options(exercise, seeds_default=None, steps_default="the exercise's on its own env: 25,000 on "
                      "CartPole-v1 (algos: 100,000; memory: 150,000 on ppolab/CartPoleNoVelocity-v1); on other "
                      "envs the preset's total_steps")


def cmd_train(args: argparse.Namespace) -> int:
    from ppolab.agent import Agent, default_config
    from ppolab.config import (
        config_class,
        config_file_algo,
        load_config_file,
        parse_assignments,
        parse_value,
    )
    from ppolab.envs import resolve_env_id
    from ppolab.errors import ConfigError
    from ppolab.progress import Progress
    from ppolab.rundir import RunReporter, check_can_create

    file_algo = config_file_algo(args.config) if args.config else None
    if args.algo and file_algo and args.algo != file_algo:
        raise ConfigError(f"{args.config} holds a '{file_algo}' config but --algo is '{args.algo}'")
    algo = args.algo or file_algo or "ppo"
    cls = config_class(algo)  # an unknown --algo is a ConfigError naming the choices
    env_id = args.env_id if ":" in args.env_id else resolve_env_id(args.env_id)
    overrides: dict = {}
    if args.config:
        overrides.update(load_config_file(args.config, cls))
    overrides.update(parse_assignments(args.set, cls))
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.steps is not None:
        overrides["total_steps"] = parse_value("--steps", args.steps, int)
    if args.no_early_stop:
        overrides["stop_when_solved"] = False
    defaults, _, origin = default_config(env_id, algo)
    config = defaults.replace(**overrides)  # validates every field

    name = args.name or f"{env_id.replace(':', '.').replace('/', '.')}-{algo}-s{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(args.out) / name
    check_can_create(run_dir, args.overwrite)
    agent = Agent.registry[algo](env_id, config=config)  # validates the environment and its spaces
    reporter = RunReporter(run_dir, Progress(f"{algo.upper()} {env_id}", quiet=args.quiet),
                           tensorboard=not args.no_tensorboard)
    try:
        agent.plan()
        reporter.create(agent, args.overwrite)
    except BaseException:
        agent.close()
        raise
    if not args.quiet:
        planned = agent.schedule[1]
        print(f"training {algo.upper()} on {env_id} (seed {config.seed}, {planned:,} steps: {planned // config.batch_size:,} "
              f"rollouts of {config.n_envs} envs x {config.n_steps} steps) -> {run_dir}\n"
              f"settings: {origin}" + (" and your overrides" if args.set or args.config else ""),
              file=sys.stderr)
    return _run_training(agent, reporter, run_dir, agent.resume)


def cmd_resume(args: argparse.Namespace) -> int:
    from ppolab.errors import RunDirectoryError
    from ppolab.runlock import RunLock, is_run_dir, remove_leftovers, restore_set_aside

    run_dir = Path(args.run_dir)
    lock = restore_set_aside(run_dir)  # a kill during --overwrite left it renamed aside
    if not is_run_dir(run_dir):
        if lock is not None:
            lock.release()
        raise RunDirectoryError(f"{run_dir} is not a ppolab run directory (no config.yaml in it)")
    # Locked before anything is read or changed (loading renames damaged checkpoints aside);
    # refused at once while another process trains in it.
    lock = lock or RunLock.acquire(run_dir)
    try:
        remove_leftovers(run_dir)
        from ppolab.progress import Progress  # torch: after the lock, so that a refusal is quick
        from ppolab.rundir import RunReporter

        agent, start, planned = _load_for_resume(run_dir)
    except BaseException:
        lock.release()
        raise
    reporter = RunReporter(run_dir, Progress(f"{agent.algo.upper()} {agent.env_id}", quiet=args.quiet), lock=lock)
    reporter.reopen(agent)
    if not args.quiet:
        print(f"resuming {agent.algo.upper()} on {agent.env_id} at step {agent.global_step:,} of "
              f"{start + planned:,} (update {agent.updates:,}) -> {run_dir}", file=sys.stderr)
    return _run_training(agent, reporter, run_dir, functools.partial(agent.resume, new_episodes=args.new_episodes))


def _load_for_resume(run_dir: Path) -> tuple[Agent, int, int]:
    import json

    from ppolab.agent import Agent
    from ppolab.checkpoints import CheckpointDir
    from ppolab.config import read_config_file
    from ppolab.errors import RunDirectoryError

    env_id = read_config_file(run_dir / "config.yaml").get("env_id")
    if not isinstance(env_id, str):
        raise RunDirectoryError(f"{run_dir / 'config.yaml'} has no env_id; it was not written by ppolab train")
    finished = (f"{run_dir} finished its training; to train further start a new run with: "
                f"ppolab train {env_id} --config {run_dir / 'config.yaml'}")
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("interrupted_by") is None:
        raise RunDirectoryError(finished)
    agent = CheckpointDir(run_dir).load_newest(lambda path: Agent.load(path, env=env_id))
    if agent.schedule is None:  # a checkpoint written after its learn() call ended
        agent.close()
        raise RunDirectoryError(finished)
    start, planned = agent.schedule
    return agent, start, planned


def _run_training(agent: Agent, reporter: RunReporter, run_dir: Path,
                  start: Callable[..., TrainResult]) -> int:
    """Run ``start(reporter=, callback=)`` under a graceful SIGINT/SIGTERM handler and print
    the verdict, or how to resume."""
    from ppolab.errors import RunDirectoryError
    from ppolab.interrupts import GracefulStop

    def keep_going(row: dict) -> bool:
        if stop.requested is None:
            return True
        reporter.interrupted_by = stop.requested
        return False

    try:
        with GracefulStop() as stop:
            result = start(reporter=reporter, callback=keep_going)
    except OSError as exc:  # a full disk, a quota, a lost mount: the newest checkpoint is intact
        with contextlib.suppress(OSError):
            reporter.close()
        raise RunDirectoryError(
            f"writing to {run_dir} failed at step {agent.global_step:,} ({exc}); the newest "
            f"complete checkpoint is kept: fix the cause, then continue with: ppolab resume {run_dir}"
        ) from None
    except KeyboardInterrupt:  # a second signal: stop at once, keep the newest checkpoint
        with contextlib.suppress(OSError):
            reporter.close()
        print(f"\nstopped at once at step {agent.global_step:,}; continue from the newest checkpoint "
              f"with: ppolab resume {run_dir}", file=sys.stderr)
        return stop.exit_code if stop.requested else 130
    finally:
        agent.close()
    if reporter.interrupted_by is not None:
        print(f"interrupted by {reporter.interrupted_by} at step {result.total_steps:,}; checkpoint "
              f"saved. Continue with: ppolab resume {run_dir}", file=sys.stderr)
        return stop.exit_code
    offset = reporter.time_offset  # a resumed run's clock continues
    if result.solved:
        verdict = (f"solved at step {result.solved_at_step:,} after {offset + result.solved_at_seconds:.1f} s "
                   f"(rolling mean >= {result.reward_threshold:g})")
    elif result.reward_threshold is not None:
        verdict = f"not solved (threshold {result.reward_threshold:g})"
    else:
        verdict = "no reward threshold for this environment"
    mean = "n/a" if result.final_mean_return_100 is None else f"{result.final_mean_return_100:.1f}"
    print(f"{verdict}; rolling mean return {mean}; {result.total_steps:,} steps in {offset + result.wall_seconds:.1f} s\n"
          f"run directory: {run_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ppolab.agent import Agent
    from ppolab.evaluation import evaluate
    from ppolab.runlock import tidy_if_free

    tidy_if_free(Path(args.run_dir))
    agent = Agent.load(args.run_dir)
    result = evaluate(agent, episodes=args.episodes, deterministic=args.deterministic,
                      seed=args.seed, video=args.video)
    mode = "deterministic" if args.deterministic else "stochastic"
    print(f"{agent.env_id}: mean return {result.mean:.2f} +- {result.std:.2f} over {args.episodes} "
          f"episodes ({mode} policy; min {min(result.returns):.1f}, max {max(result.returns):.1f})")
    if args.video:
        print(f"video: {args.video}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ppolab.agent import Agent
    from ppolab.export import export, signature

    agent = Agent.load(args.run_dir, device="cpu")
    path = export(agent, args.out, args.format, deterministic=not args.sample)
    inputs, outputs = signature(agent)
    print(f"{agent.env_id}: {args.format} policy ({'sampled' if args.sample else 'most likely'} actions) -> {path}\n"
          f"inputs: {'; '.join(p.describe() for p in inputs)}\n"
          f"outputs: {'; '.join(p.describe() for p in outputs)}")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    from ppolab.checkenv import check_environment

    report = check_environment(args.target, args.steps)
    print(report.render())
    return 0 if report.ok else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from ppolab.config import parse_assignments
    from ppolab.lab.plan import SweepPlan, parse_grid

    base = parse_assignments(args.set) if args.set else {}  # keys are checked per algorithm by the plan
    plan = SweepPlan(env_id=args.env_id, algo=args.algo, grid=parse_grid(args.grid),
                     seeds=list(range(args.seeds)), steps=_steps(args.steps), base=base,
                     score_kind=args.score, score_episodes=args.score_episodes)
    return _run_sweep(plan, args, write_report=not args.no_report)


def cmd_exercise(args: argparse.Namespace) -> int:
    from ppolab.lab.exercises import EXERCISES

    exercise = EXERCISES[args.name]
    plan = exercise.plan(env_id=args.env, seeds=args.seeds, steps=_steps(args.steps),
                         score_kind=args.score, score_episodes=args.score_episodes)
    if not args.quiet:
        print(f"exercise {args.name}: {exercise.question}", file=sys.stderr)
    return _run_sweep(plan, args, write_report=True)


def _steps(text: str | None) -> int | None:
    from ppolab.config import parse_value

    return None if text is None else parse_value("--steps", text, int)


def _run_sweep(plan: SweepPlan, args: argparse.Namespace, write_report: bool) -> int:
    import signal

    from ppolab.lab.report import write_report as write
    from ppolab.lab.sweep import run_sweep
    from ppolab.progress import TrialProgress

    def announce(sweep: Sweep, workers: int, grouping: Grouping) -> None:
        if not args.quiet:
            print(f"sweep of {len(plan.trials())} trials ({len(plan.configs)} configurations x "
                  f"{len(plan.seeds)} seeds) on {workers} workers ({args.backend}) -> {sweep.path}",
                  file=sys.stderr)
            if grouping.units:
                print(f"running {grouping.describe()}", file=sys.stderr)

    try:
        sweep, outcome = run_sweep(plan, args.out, args.backend, args.workers, args.address,
                                   TrialProgress(f"sweep {plan.env_id}", quiet=args.quiet), announce,
                                   args.population)
    except KeyboardInterrupt:  # a second Ctrl-C: the status is saved on the way out all the same
        print("\nstopped at once; finished trials are kept: continue with the same command", file=sys.stderr)
        return 130
    for name, error in outcome.failures.items():
        print(f"trial {name} failed: {error}", file=sys.stderr)
    if outcome.interrupted_by is not None:
        left = sum(1 for e in sweep.status.values() if e["state"] != "done")
        print(f"interrupted by {outcome.interrupted_by}: {left} trials left; continue with the same command",
              file=sys.stderr)
        return 128 + signal.Signals[outcome.interrupted_by].value
    if write_report:
        written = write(sweep.path)
        print(written.conclusion)
        print(f"report: {written.html} and {written.markdown}")
    return 1 if outcome.failures else 0


def cmd_report(args: argparse.Namespace) -> int:
    from ppolab.lab.report import write_report

    written = write_report(Path(args.sweep_dir))
    print(written.conclusion)
    print(f"report: {written.html} and {written.markdown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ppolab.errors import PPOLabError

    try:
        return {"train": cmd_train, "resume": cmd_resume, "eval": cmd_eval, "export": cmd_export,
                "check-env": cmd_check_env, "sweep": cmd_sweep, "report": cmd_report,
                "exercise": cmd_exercise}[args.command](args)
    except PPOLabError as exc:
        print(f"ppolab: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nppolab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
