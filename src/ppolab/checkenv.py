"""``ppolab check-env``: can ppolab train on this environment, and does it behave?

Three checks on one env made from a registered id or ``module:Attr`` as training makes it
(:func:`ppolab.envs.make_env`), each reported with its outcome: Gymnasium's own environment
checker (``gymnasium.utils.env_checker.check_env``; its warnings are reported as warnings),
ppolab's supported spaces (:func:`ppolab.envs.check_spaces`, which also says which network
ppolab would build), and random actions for a number of steps, resetting at episode ends, where
every observation must fit the observation space (:meth:`ObservationSpec.problem`, the check
the collector makes too), every reward be finite, and neither ``step`` nor ``reset`` may raise.
A target that cannot be made at all is an :class:`EnvironmentSpecError`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from ppolab import masks
from ppolab.action_spaces import ActionSpec
from ppolab.config import Config, defaults_origin, preset
from ppolab.envs import check_spaces, make_env, resolve_env_id
from ppolab.errors import ConfigError, EnvironmentFaultError, EnvironmentSpecError
from ppolab.observations import Leaf, ObservationSpec, check_image_size

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
    env = make_env(target)
    try:
        return _check(env, target, steps)
    finally:
        try:
            env.close()
        except Exception as exc:  # noqa: BLE001  (the report is made; a failing close is a warning)
            warnings.warn(f"{target}: close() raised {type(exc).__name__}: {exc}", stacklevel=2)


def _check(env: gym.Env, target: str, steps: int) -> CheckReport:
    description = [f"observations: {env.observation_space}", f"actions: {env.action_space}"]
    checks: list[Check] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checks.append(_gymnasium_check(env))
        notices: list[str] = []
        try:
            observation, action = check_spaces(env.observation_space, env.action_space, target,
                                               notify=notices.append)
        except EnvironmentSpecError as exc:
            checks.append(Check("ppolab supports the spaces", False, str(exc)))
            checks.append(Check(f"{steps} random steps", None, "needs supported spaces"))
        else:
            kind = "box" if action.kind == "box" else "discrete"
            env_id = resolve_env_id(target)
            config = preset(env_id, "ppo", kind)
            description.append("ppolab will use: " + _policy(action))
            description += [f"  {line}" for line in network_lines(observation, config)]
            description.append("ppolab train starts from: " + defaults_origin(env_id, "ppo", kind))
            try:
                for leaf in observation.leaves:
                    if leaf.kind == "image" and not config.encoder:
                        check_image_size(leaf, config.cnn_kernels, config.cnn_strides, target)
            except EnvironmentSpecError as exc:
                checks.append(Check("ppolab supports the spaces", False, str(exc)))
            else:
                checks.append(Check("ppolab supports the spaces", True, "; ".join(notices)))
            checks.append(_random_steps(env, observation, action, steps))
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


def network_lines(observation: ObservationSpec, config: Config) -> list[str]:
    """The network ``config`` builds for ``observation``, one line per part, in words."""
    if config.encoder:
        encoders = [f"your encoder {config.encoder} on {observation.describe()}"]
    else:
        encoders = [f"{leaf.key + ': ' if leaf.key else ''}{leaf.describe()} -> {_encoder(leaf, config)}"
                    for leaf in observation.leaves]
    if observation.dropped:
        encoders.append(f"dropped (no encoder): {', '.join(observation.dropped)}")
    shared = "one encoder for actor and critic" if config.shared_encoder else "an encoder each for actor and critic"
    if config.hidden_sizes:
        sizes = ",".join(map(str, config.hidden_sizes))
        trunk = (f"trunk MLP {sizes} ({config.activation}), "
                 f"{'one shared by both heads' if config.shared_trunk else 'one per head'}")
    else:
        trunk = "no trunk MLP: the heads read the encoder's features"
    lines = [*(f"encoder: {e}" for e in encoders), f"{shared}; {trunk}"]
    if config.recurrent != "none":
        whose = "one shared by actor and critic" if config.shared_recurrent else "one each for actor and critic"
        lines.append(f"memory: {config.recurrent.upper()} of {config.recurrent_hidden_size} units after the "
                     f"encoder, {whose}")
    return lines


def _encoder(leaf: Leaf, config: Config) -> str:
    if leaf.kind == "image":
        convs = ", ".join(f"{c} {k}x{k}/{s}" for c, k, s in zip(config.cnn_channels, config.cnn_kernels,
                                                               config.cnn_strides))
        nature = " (the Nature CNN)" if (config.cnn_channels, config.cnn_kernels, config.cnn_strides) == (
            (32, 64, 64), (8, 4, 3), (4, 2, 1)) else ""
        scale = "/255" if leaf.dtype == "uint8" else "as 0/1"
        return f"CNN{nature}: {scale}, conv {convs}, linear {config.cnn_features}, {config.cnn_activation}"
    if leaf.kind in ("discrete", "multidiscrete"):
        return f"one-hot, {leaf.flat_size} values"
    normalized = ", normalized" if config.normalize_observations else ""
    return f"{leaf.flat_size} values to the MLP{normalized}"


def _policy(action: ActionSpec) -> str:
    if action.kind == "discrete":
        n, start = action.nvec[0], action.start[0]
        what = f"a categorical policy over {n} actions" + (f" ({start}..{start + n - 1})" if start else "")
    elif action.kind == "multidiscrete":
        what = f"one categorical per action component (sizes {', '.join(map(str, action.nvec))})"
    else:
        d = len(action.low)
        what = (f"a diagonal Gaussian policy over {d} action dimension{'s' if d > 1 else ''}, "
                "clipped to the bounds (or tanh-squashed with squash_actions=true)")
    return what


class _Fault(Exception):
    """The first thing wrong in the random steps, as the check's detail."""


def _random_steps(env: gym.Env, observation: ObservationSpec, action: ActionSpec, steps: int) -> Check:
    """``steps`` random actions (seeded), resetting at episode ends; the first fault fails it.
    Where the env masks actions (:mod:`ppolab.masks`), the actions are drawn from the valid
    ones and every mask is checked as training checks it."""
    name = f"{steps} random steps"
    env.action_space.seed(0)
    episodes = 1
    source: str | None = None

    def random_action(info: dict, when: str) -> Any:
        if source is None:
            return env.action_space.sample()
        try:
            mask = masks.read_single(source, env, info, action, when)
        except EnvironmentFaultError as exc:
            raise _Fault(str(exc)) from None
        parts = np.split(mask.astype(np.int8), np.cumsum(action.nvec)[:-1])
        return env.action_space.sample(mask=parts[0] if action.kind == "discrete" else tuple(parts))

    def call(method: str, fn: Callable[[], Any], size: int, when: str) -> tuple:
        try:
            result = fn()
        except Exception as exc:
            raise _Fault(f"{method} raised {type(exc).__name__}: {exc} {when}") from exc
        if not isinstance(result, tuple) or len(result) != size:
            raise _Fault(f"{method} returned {type(result).__name__} {when}, not a tuple of {size}")
        return result

    def check_observation(obs: Any, when: str) -> None:
        problem = observation.problem(obs)
        if problem is None:
            return
        if problem.kind == "non-finite":
            raise _Fault(f"non-finite observation {when}: {problem.entry}")
        raise _Fault(f"observation {problem.detail} {when}")

    try:
        obs, info = call("reset()", lambda: env.reset(seed=0), 2, "at the first reset")
        check_observation(obs, "from the first reset")
        if isinstance(info, dict):
            source = masks.choose_source("auto", masks.INFO_KEY in info, masks.has_method(env), action, "")
        for step in range(1, steps + 1):
            when = f"at step {step} (episode {episodes})"
            chosen = random_action(info, f"before step {step}")
            obs, reward, terminated, truncated, info = call("step()", lambda: env.step(chosen), 5, when)
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
                obs, info = call("reset()", env.reset, 2, f"after step {step}")
                check_observation(obs, f"from the reset after step {step}")
    except _Fault as fault:
        return Check(name, False, str(fault))
    ended = episodes - 1
    masked = f"; actions drawn from the valid ones, masked by {masks.SOURCE_NAMES[source]}" if source else ""
    return Check(name, True, f"{ended} episode{'s' if ended != 1 else ''} ended{masked}")
