"""Making vector environments from what users pass, and checking that ppolab can train on them.

Accepted: a registered Gymnasium id (``"CartPole-v1"``), ``"package.module:Attr"`` naming an env
class or factory, an env instance, a zero-argument factory, or a ready ``gymnasium.vector.VectorEnv``.
Everything becomes a vector env with Gymnasium 1.x's default *next-step* autoreset, which the
collector (:mod:`ppolab.rollout`) relies on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from ppolab.action_spaces import ActionSpec
from ppolab.errors import (
    EnvironmentFaultError,
    EnvironmentSpecError,
    PPOLabError,
    closest,
)

# Ids that older material uses and Gymnasium 1.x renamed.
RENAMED_IDS = {
    "LunarLander-v2": "LunarLander-v3",
    "LunarLanderContinuous-v2": "LunarLanderContinuous-v3",
    "BipedalWalker-v2": "BipedalWalker-v3",
    "CarRacing-v2": "CarRacing-v3",
}

EnvSource = str | gym.Env | gym.vector.VectorEnv | Callable[[], gym.Env]


@dataclass(frozen=True)
class EnvInfo:
    """What the rest of ppolab needs to know about an environment."""

    env_id: str  # a registered id, "module:Attr", or a description of the user's object
    obs_shape: tuple[int, ...]
    action: ActionSpec
    reward_threshold: float | None

    @property
    def n_actions(self) -> int:
        """Discrete(n): n."""
        return self.action.nvec[0]

    @property
    def action_start(self) -> int:
        """Discrete(n, start=s): actions are s .. s+n-1."""
        return self.action.start[0]

    def to_dict(self) -> dict:
        return {"env_id": self.env_id, "obs_shape": list(self.obs_shape),
                "action": dataclasses.asdict(self.action), "reward_threshold": self.reward_threshold}

    @classmethod
    def from_dict(cls, data: dict) -> EnvInfo:
        return cls(data["env_id"], tuple(data["obs_shape"]), ActionSpec(**data["action"]),
                   data["reward_threshold"])


def resolve_env_id(env_id: str) -> str:
    """The current name for a renamed id (with a one-line notice on stderr), else ``env_id``."""
    new = RENAMED_IDS.get(env_id)
    if new is None:
        return env_id
    print(f"note: {env_id} does not exist in Gymnasium 1.x; using {new}", file=sys.stderr)
    return new


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(env_id)
    except gym.error.Error:
        pass
    suggestions = closest(env_id, gym.registry.keys(), n=5)
    if not suggestions:  # different version suffix, same name
        stem = env_id.split("-v")[0].lower()
        suggestions = sorted(k for k in gym.registry if k.lower().startswith(stem))[:5]
    hint = (
        "; closest registered ids: " + ", ".join(suggestions)
        if suggestions
        else "; list them with: python -c \"import gymnasium; gymnasium.pprint_registry()\""
    )
    raise EnvironmentSpecError(f"unknown environment '{env_id}'{hint}")


def _import_attr(path: str) -> Callable[[], gym.Env]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise EnvironmentSpecError(
            f"cannot import module '{module_name}' for environment '{path}' "
            f"({type(exc).__name__}: {exc})"
        ) from None
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        raise EnvironmentSpecError(
            f"'{path}': module '{module_name}' has no env class or factory named '{attr}'"
        )
    return target


def check_spaces(
    observation_space: gym.Space, action_space: gym.Space, where: str, squash_actions: bool = False
) -> ActionSpec:
    """The action spec, or :class:`EnvironmentSpecError` unless ppolab supports these spaces."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise EnvironmentSpecError(
            f"{where}: unsupported observation space {observation_space}; ppolab supports Box "
            "observations (wrap others, e.g. gymnasium.wrappers.FlattenObservation)"
        )
    return ActionSpec.from_space(action_space, squash_actions, where)


class FaultGuard(gym.Wrapper):
    """Names the sub-env behind a fault: an exception in ``step``/``reset`` becomes an
    :class:`EnvironmentFaultError` saying ``env I raised Type: message in step()``, and an
    observation whose shape differs from the observation space's is refused the same way
    (Gymnasium would otherwise fail later, stacking the sub-env observations, without saying
    which env). The collector appends the global step to these messages.

    ``ppolab_env_index`` is set by :func:`make_vec_env`, through the constructor or
    ``VectorEnv.set_attr`` (which sets it on this, the outermost, wrapper).
    """

    ppolab_env_index: int | None = None

    def __init__(self, env: gym.Env, index: int | None = None) -> None:
        super().__init__(env)
        self.ppolab_env_index = index
        self._obs_shape = env.observation_space.shape

    def step(self, action: Any) -> tuple:
        return self._call("step()", self.env.step, action)

    def reset(self, **kwargs: Any) -> tuple:
        return self._call("reset()", self.env.reset, **kwargs)

    def _call(self, method: str, fn: Callable[..., tuple], *args: Any, **kwargs: Any) -> tuple:
        try:
            result = fn(*args, **kwargs)
        except PPOLabError:
            raise
        except Exception as exc:
            raise self._raised(exc, method) from exc
        self._check_shape(result[0], method)
        return result

    def _name(self) -> str:
        return "a sub-env" if self.ppolab_env_index is None else f"env {self.ppolab_env_index}"

    def _raised(self, exc: Exception, method: str) -> EnvironmentFaultError:
        return EnvironmentFaultError(f"{self._name()} raised {type(exc).__name__}: {exc} in {method}")

    def _check_shape(self, observation: Any, method: str) -> None:
        shape = np.shape(observation)
        if shape != self._obs_shape:
            raise EnvironmentFaultError(
                f"{self._name()} returned an observation of shape {shape} instead of "
                f"{self._obs_shape} (its observation space's shape) from {method}"
            )


def _guarded(factory: Callable[[], gym.Env], index: int, worker: bool = False) -> gym.Env:
    return FaultGuard(_as_worker(factory()) if worker else factory(), index)


def _as_worker(env: gym.Env) -> gym.Env:
    """Called in an async worker process: leave Ctrl-C to the main process, which stops after
    its update and checkpoints (the terminal sends SIGINT to the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return env


def make_vec_env(
    source: EnvSource, n_envs: int, vectorization: str = "auto", squash_actions: bool = False
) -> tuple[gym.vector.VectorEnv, EnvInfo]:
    """A next-step-autoreset vector env of ``n_envs`` copies of ``source``, and its :class:`EnvInfo`.

    Raises :class:`EnvironmentSpecError` for unknown ids and unsupported spaces, before any
    training starts. Sub-envs that ppolab vectorizes itself (sync or async) are wrapped in
    :class:`FaultGuard`; native vector implementations and ready vector envs are used as they are.
    """
    threshold = None
    if isinstance(source, gym.vector.VectorEnv):
        vec_env, name = source, type(source.unwrapped).__name__
        if source.spec is not None:  # gym.make_vec sets it
            name, threshold = source.spec.id, source.spec.reward_threshold
    elif isinstance(source, str) and ":" not in source:
        name = resolve_env_id(source)
        spec = _spec(name)
        threshold = spec.reward_threshold
        mode = vectorization
        if mode == "auto":
            mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        if mode == "vector_entry_point" and spec.vector_entry_point is None:
            raise EnvironmentSpecError(
                f"{name} has no vectorized implementation; use vectorization=sync or async"
            )
        # Check the spaces on one env first, so a bad env fails fast without spawning workers.
        with _gym_errors(name):
            if mode == "async":
                probe = gym.make(name)
                check_spaces(probe.observation_space, probe.action_space, name)
                probe.close()
            guarded = mode in ("sync", "async")
            wrappers = [_as_worker, FaultGuard] if mode == "async" else [FaultGuard]
            vec_env = gym.make_vec(name, num_envs=n_envs, vectorization_mode=mode,
                                   wrappers=wrappers if guarded else None)
            if guarded:
                vec_env.set_attr("ppolab_env_index", list(range(n_envs)))
    else:
        if isinstance(source, str):
            name, factory = source, _import_attr(source)
        elif isinstance(source, gym.Env):
            if vectorization == "async":
                raise EnvironmentSpecError(
                    "async vectorization needs an env id or a factory, not an env instance"
                )
            name = type(source.unwrapped).__name__
            factory = _copier(source, n_envs)
        elif callable(source):
            name, factory = getattr(source, "__name__", type(source).__name__), source
        else:
            raise EnvironmentSpecError(
                f"cannot make an environment from {type(source).__name__}; pass a Gymnasium id, "
                "'module:Attr', an env instance, a factory, or a gymnasium.vector.VectorEnv"
            )
        try:
            first = factory()
        except PPOLabError:
            raise
        except Exception as exc:
            raise EnvironmentSpecError(
                f"'{name}' failed to create an env ({type(exc).__name__}: {exc}); pass a class or "
                "factory that can be called with no arguments"
            ) from None
        if not isinstance(first, gym.Env):
            raise EnvironmentSpecError(f"'{name}' made a {type(first).__name__}, not a gymnasium.Env")
        if first.spec is not None:
            threshold = first.spec.reward_threshold
            if not isinstance(source, str):
                name = first.spec.id  # a registered env, so `ppolab eval` can make it again
        check_spaces(first.observation_space, first.action_space, name)
        fns = [lambda first=first: FaultGuard(first, 0)]
        fns += [functools.partial(_guarded, factory, i) for i in range(1, n_envs)]
        if vectorization == "async":
            first.close()
            fns = [functools.partial(_guarded, factory, i, True) for i in range(n_envs)]
        vec_cls = gym.vector.AsyncVectorEnv if vectorization == "async" else gym.vector.SyncVectorEnv
        vec_env = vec_cls(fns, autoreset_mode=AutoresetMode.NEXT_STEP)

    try:
        action = check_spaces(vec_env.single_observation_space, vec_env.single_action_space, name,
                              squash_actions)
        mode = vec_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise EnvironmentSpecError(
                f"{name}: vector env uses autoreset mode {mode}; ppolab needs "
                "AutoresetMode.NEXT_STEP (the Gymnasium 1.x default)"
            )
    except EnvironmentSpecError:
        vec_env.close()
        raise
    info = EnvInfo(
        env_id=name,
        obs_shape=tuple(int(d) for d in vec_env.single_observation_space.shape),
        action=action,
        reward_threshold=None if threshold is None else float(threshold),
    )
    return vec_env, info


def action_kind(source: EnvSource) -> tuple[str | None, EnvSource]:
    """``"box"`` for continuous actions, ``"discrete"`` for the others, or None when ``source``
    cannot be made (:func:`make_vec_env` then says why); and the source to make the envs from.
    An id or ``module:Attr`` is made once to look; a factory's env is kept and handed out first
    (a factory may count what it makes), so it is never called once more than it would be."""
    if isinstance(source, gym.vector.VectorEnv):
        return _kind(source.single_action_space), source
    if isinstance(source, gym.Env):
        return _kind(source.action_space), source
    try:
        if isinstance(source, str):
            env = make_single_env(source) if ":" in source else gym.make(resolve_env_id(source))
            kind = _kind(env.action_space)
            env.close()
            return kind, source
        env = source()
        kind = _kind(env.action_space)
    except Exception:  # noqa: BLE001  (making it for training reports the same failure)
        return None, source
    return kind, _Primed(source, env)


def _kind(space: gym.Space) -> str:
    return "box" if isinstance(space, gym.spaces.Box) else "discrete"


class _Primed:
    """A factory whose first env was already made: that one is handed out first."""

    def __init__(self, factory: Callable[[], gym.Env], first: gym.Env) -> None:
        self.factory, self.first = factory, first
        self.__name__ = getattr(factory, "__name__", type(factory).__name__)

    def __call__(self) -> gym.Env:
        if self.first is None:
            return self.factory()
        env, self.first = self.first, None
        return env


def make_single_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One (non-vector) env by id or ``module:Attr``, e.g. for evaluation and video."""
    if ":" in env_id:
        factory = _import_attr(env_id)
        try:
            return factory(render_mode=render_mode) if render_mode else factory()
        except TypeError:
            return factory()
    name = resolve_env_id(env_id)
    if name not in gym.registry:
        raise EnvironmentSpecError(
            f"cannot make environment '{name}' again: it is not a registered id (the model was "
            "trained on an env object); evaluate it in Python with your own env and agent.predict()"
        )
    with _gym_errors(name):
        return gym.make(name, render_mode=render_mode)


@contextlib.contextmanager
def _gym_errors(name: str) -> Iterator[None]:
    """Turn Gymnasium's errors (a missing dependency such as MuJoCo or Box2D, a bad argument)
    into one-line :class:`EnvironmentSpecError` messages."""
    try:
        yield
    except gym.error.DependencyNotInstalled as exc:
        raise EnvironmentSpecError(f"{name} needs a package that is not installed: {exc}") from None
    except gym.error.Error as exc:
        raise EnvironmentSpecError(f"cannot make {name}: {exc}") from None


def _copier(env: gym.Env, n_envs: int) -> Callable[[], gym.Env]:
    """A factory that hands out ``env`` itself first, then deep copies of it."""
    copies: list[gym.Env] = []

    def factory() -> gym.Env:
        if not copies:
            copies.append(env)
            return env
        try:
            clone = copy.deepcopy(env)
        except Exception as exc:
            raise EnvironmentSpecError(
                f"cannot copy the env instance {type(env).__name__} for {n_envs} parallel envs "
                f"({exc}); pass a factory (lambda: MyEnv()) or n_envs=1"
            ) from None
        copies.append(clone)
        return clone

    return factory

