"""``ppolab check-env``: can ppolab train on this environment, and does it behave?

Three checks on one env made from a registered id or ``module:Attr``, each reported with its
outcome: Gymnasium's own environment checker (``gymnasium.utils.env_checker.check_env``; its
warnings are reported as warnings), ppolab's supported spaces (:func:`ppolab.envs.check_spaces`),
and random actions for a number of steps, resetting at episode ends, where every observation must
have the observation space's shape and be finite, every reward finite, and neither ``step`` nor
``reset`` may raise. A target that cannot be made at all is an :class:`EnvironmentSpecError`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from ppolab.action_spaces import ActionSpec
from ppolab.envs import (
    _import_attr,
    _spec,
    check_spaces,
    make_single_env,
    resolve_env_id,
)
from ppolab.config import defaults_origin
from ppolab.errors import ConfigError, EnvironmentSpecError, PPOLabError

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Check:
    """One check: what was checked, whether it passed, and what was found."""

    name: str
    passed: bool | None  # None: skipped, because an earlier check failed
    detail: str = ""


@dataclass
class CheckReport:
    """The outcome of :func:`check_environment`."""

    target: str
    description: list[str]  # observation space, action space, what ppolab will use
    checks: list[Check]
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def render(self) -> str:
        """The report as printed by ``ppolab check-env``."""
        lines = [f"environment: {self.target}", *(f"  {d}" for d in self.description), "checks:"]
        for c in self.checks:
            status = {True: "ok", False: "FAILED", None: "skipped"}[c.passed]
            lines.append(f"  {status:<8}{c.name}" + (f": {c.detail}" if c.detail else ""))
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        failed = sum(c.passed is False for c in self.checks)
        if self.ok:
            lines.append(f"verdict: ok, ppolab can train on {self.target}")
        else:
            lines.append(f"verdict: FAILED ({failed} of {len(self.checks)} checks failed)")
        return "\n".join(lines)


def check_environment(target: str, steps: int = 1000) -> CheckReport:
    """Make one env from ``target`` (a registered id or ``module:Attr``) and check it; see the
    module docstring. Raises :class:`EnvironmentSpecError` when the env cannot be made."""
    if steps < 1:
        raise ConfigError(f"invalid steps={steps}: must be an integer >= 1")
    env = _make(target)
    try:
        return _check(env, target, steps)
    finally:
        try:
            env.close()
        except Exception as exc:  # noqa: BLE001  (the report is made; a failing close is a warning)
            warnings.warn(f"{target}: close() raised {type(exc).__name__}: {exc}", stacklevel=2)


def _make(target: str) -> gym.Env:
    if ":" in target:
        factory = _import_attr(target)
        try:
            env = factory()
        except PPOLabError:
            raise
        except Exception as exc:
            raise EnvironmentSpecError(
                f"'{target}' failed to create an env ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        name = resolve_env_id(target)
        _spec(name)  # an unknown id: the error suggests the closest registered ones
        try:
            env = make_single_env(name)
        except PPOLabError:
            raise
        except Exception as exc:
            raise EnvironmentSpecError(f"cannot make {name} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(env, gym.Env):
        raise EnvironmentSpecError(
            f"'{target}' made a {type(env).__name__}, not a gymnasium.Env; subclass gymnasium.Env"
        )
    return env


def _check(env: gym.Env, target: str, steps: int) -> CheckReport:
    description = [f"observations: {env.observation_space}", f"actions: {env.action_space}"]
    checks: list[Check] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checks.append(_gymnasium_check(env))
        try:
            action = check_spaces(env.observation_space, env.action_space, target)
        except EnvironmentSpecError as exc:
            checks.append(Check("ppolab supports the spaces", False, str(exc)))
            checks.append(Check(f"{steps} random steps", None, "needs supported spaces"))
        else:
            checks.append(Check("ppolab supports the spaces", True))
            description.append("ppolab will use: " + _policy(env.observation_space.shape, action))
            kind = "box" if action.kind == "box" else "discrete"
            description.append("ppolab train starts from: " + defaults_origin(resolve_env_id(target), "ppo", kind))
            checks.append(_random_steps(env, steps))
    seen: list[str] = []
    for w in caught:
        text = " ".join(_ANSI.sub("", str(w.message)).removeprefix("WARN: ").split())
        if text not in seen:
            seen.append(text)
    return CheckReport(target, description, checks, seen)


def _gymnasium_check(env: gym.Env) -> Check:
    name = "Gymnasium's environment checker"
    try:
        # The unwrapped env, as the checker asks; rendering is not checked (ppolab trains
        # without it, and checking the "human" mode would open a window).
        check_env(env.unwrapped, skip_render_check=True)
    except Exception as exc:  # noqa: BLE001  (whatever the checker raises is its verdict)
        return Check(name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
    return Check(name, True)


def _policy(obs_shape: tuple[int, ...], action: ActionSpec) -> str:
    if action.kind == "discrete":
        n, start = action.nvec[0], action.start[0]
        what = f"a categorical policy over {n} actions" + (f" ({start}..{start + n - 1})" if start else "")
    elif action.kind == "multidiscrete":
        what = f"one categorical per action component (sizes {', '.join(map(str, action.nvec))})"
    else:
        d = len(action.low)
        what = (f"a diagonal Gaussian policy over {d} action dimension{'s' if d > 1 else ''}, "
                "clipped to the bounds (or tanh-squashed with squash_actions=true)")
    return f"{what}, MLPs on the {math.prod(obs_shape)} observation values"


class _Fault(Exception):
    """The first thing wrong in the random steps, as the check's detail."""


def _random_steps(env: gym.Env, steps: int) -> Check:
    """``steps`` random actions (seeded), resetting at episode ends; the first fault fails it."""
    name = f"{steps} random steps"
    shape = env.observation_space.shape
    env.action_space.seed(0)
    episodes = 1

    def call(method: str, fn: Callable[[], Any], size: int, when: str) -> tuple:
        try:
            result = fn()
        except Exception as exc:
            raise _Fault(f"{method} raised {type(exc).__name__}: {exc} {when}") from exc
        if not isinstance(result, tuple) or len(result) != size:
            raise _Fault(f"{method} returned {type(result).__name__} {when}, not a tuple of {size}")
        return result

    def check_observation(obs: Any, when: str) -> None:
        array = np.asarray(obs)
        if not np.issubdtype(array.dtype, np.number):
            raise _Fault(f"observation of dtype {array.dtype} (not numbers) {when}")
        if array.shape != shape:
            raise _Fault(f"observation of shape {array.shape} instead of {shape} {when}")
        if not np.isfinite(array).all():
            flat = array.reshape(-1)
            i = int(np.flatnonzero(~np.isfinite(flat))[0])
            position = ", ".join(str(int(k)) for k in np.unravel_index(i, shape))
            raise _Fault(f"non-finite observation {when}: observation[{position}] = {float(flat[i])}")

    try:
        obs, _ = call("reset()", lambda: env.reset(seed=0), 2, "at the first reset")
        check_observation(obs, "from the first reset")
        for step in range(1, steps + 1):
            when = f"at step {step} (episode {episodes})"
            obs, reward, terminated, truncated, _ = call(
                "step()", lambda: env.step(env.action_space.sample()), 5, when)
            check_observation(obs, when)
            try:
                rewards = np.asarray(reward, dtype=np.float64).reshape(-1)
                ended = bool(terminated) or bool(truncated)
            except (TypeError, ValueError) as exc:
                raise _Fault(f"reward {reward!r} or terminated/truncated flags {terminated!r}, {truncated!r} "
                             f"are not a number and two booleans {when} ({exc})") from None
            if rewards.shape != (1,):
                raise _Fault(f"reward of shape {np.shape(reward)} (not a number) {when}")
            if not np.isfinite(rewards).all():
                raise _Fault(f"non-finite reward {when}: reward = {float(rewards[0])}")
            if ended:
                episodes += 1
                obs, _ = call("reset()", env.reset, 2, f"after step {step}")
                check_observation(obs, f"from the reset after step {step}")
    except _Fault as fault:
        return Check(name, False, str(fault))
    ended = episodes - 1
    return Check(name, True, f"{ended} episode{'s' if ended != 1 else ''} ended")
