"""Making vector environments from what users pass, and checking that ppolab can train on them.

Accepted: a registered Gymnasium id (``"CartPole-v1"``), ``"package.module:Attr"`` naming an env
class or factory, an env instance, a zero-argument factory, or a ready ``gymnasium.vector.VectorEnv``.
Everything becomes a vector env with Gymnasium 1.x's default *next-step* autoreset, which the
collector (:mod:`ppolab.rollout`) relies on.

One env is made in one place, :func:`make_env` (training, evaluation and ``check-env`` alike):
it registers the ids of the optional packages on first use (``ALE/`` ids: ale-py, with the
Atari preprocessing of :mod:`ppolab.atari`; ``MinAtar/``: minatar; ``MiniGrid-`` and
``BabyAI-``: minigrid) and says which extra to install when one is missing.
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
from gymnasium.vector import AutoresetMode

from ppolab import atari, masks, snapshots, tasks
from ppolab.action_spaces import ActionSpec
from ppolab.observations import ObservationSpec
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
    observation: ObservationSpec
    action: ActionSpec
    reward_threshold: float | None
    # Episode returns come from info["ppolab_score"] at each real episode end (whole unclipped
    # games under the Atari preprocessing) instead of the sum of the rewards trained on.
    scores_from_info: bool = False
    # Where the valid actions come from ("info" or "method", see ppolab.masks); None: unmasked.
    # Known once the collector has reset the envs.
    action_mask: str | None = None
    # The sub-envs have an action_masks() method (looked up on one env before any worker
    # starts: asking an async vector env for a missing attribute shuts its workers down).
    has_mask_method: bool = dataclasses.field(default=False, compare=False)
    space: gym.Space | None = dataclasses.field(default=None, compare=False)  # the observation space

    @property
    def n_actions(self) -> int:
        """Discrete(n): n."""
        return self.action.nvec[0]

    @property
    def action_start(self) -> int:
        """Discrete(n, start=s): actions are s .. s+n-1."""
        return self.action.start[0]

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """The shape of a single-leaf observation."""
        return self.observation.shape

    @property
    def observation_space(self) -> gym.Space:
        """The env's observation space, or one rebuilt from the spec (a loaded model)."""
        return self.space if self.space is not None else self.observation.to_space()

    def to_dict(self) -> dict:
        return {"env_id": self.env_id, "observation": self.observation.to_dict(),
                "action": dataclasses.asdict(self.action), "reward_threshold": self.reward_threshold,
                "scores_from_info": self.scores_from_info, "action_mask": self.action_mask}

    @classmethod
    def from_dict(cls, data: dict) -> EnvInfo:
        observation = (ObservationSpec.from_dict(data["observation"]) if "observation" in data
                       else ObservationSpec.vector(tuple(data["obs_shape"])))  # files before 0.2
        return cls(data["env_id"], observation, ActionSpec(**data["action"]), data["reward_threshold"],
                   bool(data.get("scores_from_info", False)), data.get("action_mask"))


# Ids of optional packages: the prefix, the extra that installs them, and how to register them.
def _register_minatar() -> None:
    import minatar.gym

    if "MinAtar/Breakout-v1" not in gym.registry:
        minatar.gym.register_envs()


def _register_minigrid() -> None:
    import minigrid  # noqa: F401  (registers its ids on import)


NAMESPACES: dict[str, tuple[str, Callable[[], None]]] = {
    atari.ATARI_NAMESPACE: ("atari", atari.register),
    "MinAtar/": ("minatar", _register_minatar),
    "MiniGrid-": ("minigrid", _register_minigrid),
    "BabyAI-": ("minigrid", _register_minigrid),
    tasks.NAMESPACE: ("", tasks.register),  # ppolab's own tasks: nothing to install
}


def register_namespace(env_id: str) -> None:
    """Register the ids of the optional package ``env_id`` belongs to, if any, or say which
    extra installs it."""
    for prefix, (extra, register) in NAMESPACES.items():
        if env_id.startswith(prefix):
            if extra == "atari":
                register()  # its own message names both ale-py and OpenCV
                return
            try:
                register()
            except ImportError:
                raise EnvironmentSpecError(
                    f"{env_id} needs the {extra} package: pip install 'ppolab[{extra}]'") from None
            return


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
    observation_space: gym.Space, action_space: gym.Space, where: str, squash_actions: bool = False,
    unsupported: str = "drop", notify: Callable[[str], None] | None = None,
) -> tuple[ObservationSpec, ActionSpec]:
    """The observation and action specs, or :class:`EnvironmentSpecError` unless ppolab supports
    these spaces (see :class:`~ppolab.observations.ObservationSpec`)."""
    observation = ObservationSpec.from_space(observation_space, where, unsupported, notify)
    return observation, ActionSpec.from_space(action_space, squash_actions, where)


def _notice(message: str) -> None:
    print(message, file=sys.stderr)


class FaultGuard(gym.Wrapper):
    """Names the sub-env behind a fault: an exception in ``step``/``reset`` becomes an
    :class:`EnvironmentFaultError` saying ``env I raised Type: message in step()``, and an
    observation whose shape differs from the observation space's is refused the same way
    (Gymnasium would otherwise fail later, stacking the sub-env observations, without saying
    which env). The collector appends the global step to these messages.

    ``ppolab_env_index`` is set by :func:`make_vec_env`, through the constructor or
    ``VectorEnv.set_attr`` (which sets it on this, the outermost, wrapper).

    It also saves and restores the env it wraps for a checkpoint (see :mod:`ppolab.snapshots`),
    in whichever process holds it; the vector env reaches these through ``call``.
    """

    ppolab_env_index: int | None = None

    def __init__(self, env: gym.Env, index: int | None = None) -> None:
        super().__init__(env)
        self.ppolab_env_index = index
        self._spec = ObservationSpec.from_space(env.observation_space)
        self._autoreset_due = False  # a restored env whose episode ended before the checkpoint

    def step(self, action: Any) -> tuple:
        if self._autoreset_due:  # what the vector env's next-step autoreset would have done
            observation, info = self.reset()
            return observation, 0.0, False, False, info
        return self._call("step()", self.env.step, action)

    def reset(self, **kwargs: Any) -> tuple:
        self._autoreset_due = False
        return self._call("reset()", self.env.reset, **kwargs)

    def ppolab_save_env(self) -> tuple[bytes | None, str | None]:
        return snapshots.dumps(self.env)

    def ppolab_restore_env(self, blobs: list[bytes], autoreset_due: list[bool]) -> str | None:
        """Replace the wrapped env with this env's entry of ``blobs``; None, or why not (never
        raises: an exception would stop an async worker)."""
        try:
            env = snapshots.loads(blobs[self.ppolab_env_index or 0])
        except Exception as exc:  # noqa: BLE001 - a pickle can raise anything
            return f"{self._name()}'s saved state does not load ({type(exc).__name__}: {exc})"
        with contextlib.suppress(Exception):
            self.env.close()
        self.env = env
        self._autoreset_due = autoreset_due[self.ppolab_env_index or 0]
        return None

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
        problem = self._spec.problem(observation, finite=False)
        if problem is not None:
            why = " (its observation space's shape)" if problem.kind == "shape" else ""
            raise EnvironmentFaultError(
                f"{self._name()} returned an observation {problem.detail}{why} from {method}")


def _guarded(factory: Callable[[], gym.Env], index: int, worker: bool = False) -> gym.Env:
    return FaultGuard(_as_worker(factory()) if worker else factory(), index)


def _as_worker(env: gym.Env) -> gym.Env:
    """Called in an async worker process: leave Ctrl-C to the main process, which stops after
    its update and checkpoints (the terminal sends SIGINT to the whole process group)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return env


def make_vec_env(
    source: EnvSource, n_envs: int, vectorization: str = "auto", squash_actions: bool = False,
    unsupported: str = "drop",
) -> tuple[gym.vector.VectorEnv, EnvInfo]:
    """A next-step-autoreset vector env of ``n_envs`` copies of ``source``, and its :class:`EnvInfo`.

    Raises :class:`EnvironmentSpecError` for unknown ids and unsupported spaces, before any
    training starts. Sub-envs that ppolab vectorizes itself (sync or async) are wrapped in
    :class:`FaultGuard`; native vector implementations and ready vector envs are used as they are.
    ``unsupported`` says what to do with Dict/Tuple parts no encoder handles (drop or refuse).
    """
    threshold = None
    scores_from_info = mask_method = False
    if isinstance(source, gym.vector.VectorEnv):
        vec_env, name = source, type(source.unwrapped).__name__
        sub_envs = getattr(source.unwrapped, "envs", None)  # a SyncVectorEnv's; never ask async workers
        mask_method = bool(sub_envs) and masks.has_method(sub_envs[0])
        if source.spec is not None:  # gym.make_vec sets it
            name, threshold = source.spec.id, source.spec.reward_threshold
    elif isinstance(source, str) and ":" not in source:
        name = resolve_env_id(source)
        register_namespace(name)
        spec = _spec(name)
        threshold = spec.reward_threshold
        mode = vectorization
        if atari.is_atari(name):
            if mode == "vector_entry_point":
                raise EnvironmentSpecError(
                    f"{name}: ALE's own vector env clips rewards and reports no game scores; ppolab "
                    "applies the Atari preprocessing itself, use vectorization=auto, sync or async")
            mode = "sync" if mode == "auto" else mode
        if mode == "auto":
            mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        if mode == "vector_entry_point":
            if spec.vector_entry_point is None:
                raise EnvironmentSpecError(
                    f"{name} has no vectorized implementation; use vectorization=sync or async")
            with _gym_errors(name):
                vec_env = gym.make_vec(name, num_envs=n_envs, vectorization_mode=mode)
        else:
            vec_env, scores_from_info, mask_method = _vectorize(functools.partial(make_env, name), name, n_envs,
                                                                mode, unsupported)
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
        first = _call_factory(factory, name)
        if first.spec is not None:
            threshold = first.spec.reward_threshold
            if not isinstance(source, str):
                name = first.spec.id  # a registered env, so `ppolab eval` can make it again
        vec_env, scores_from_info, mask_method = _vectorize(factory, name, n_envs, vectorization, unsupported,
                                                            first)

    try:
        space = vec_env.single_observation_space
        observation, action = check_spaces(space, vec_env.single_action_space, name, squash_actions,
                                           unsupported, _notice)
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
        observation=observation,
        action=action,
        reward_threshold=None if threshold is None else float(threshold),
        scores_from_info=scores_from_info,
        has_mask_method=mask_method,
        space=space,
    )
    return vec_env, info


def _vectorize(factory: Callable[[], gym.Env], name: str, n_envs: int, mode: str, unsupported: str,
               first: gym.Env | None = None) -> tuple[gym.vector.VectorEnv, bool, bool]:
    """A sync or async vector env of ``factory``'s envs, each in a :class:`FaultGuard`;
    whether they report whole-game scores (:func:`ppolab.atari.reports_game_scores`); and
    whether they have an ``action_masks()`` method. The spaces are checked on the first env
    (made here, or passed in) before any worker starts."""
    if first is None:
        first = _call_factory(factory, name)
    scores_from_info, mask_method = atari.reports_game_scores(first), masks.has_method(first)
    try:
        check_spaces(first.observation_space, first.action_space, name, unsupported=unsupported)
    except EnvironmentSpecError:
        first.close()
        raise
    if mode == "async":
        first.close()
        fns = [functools.partial(_guarded, factory, i, True) for i in range(n_envs)]
        vec_env = gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
    else:
        fns = [lambda first=first: FaultGuard(first, 0)]
        fns += [functools.partial(_guarded, factory, i) for i in range(1, n_envs)]
        vec_env = gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.NEXT_STEP)
    setattr(vec_env, snapshots.GUARDED, True)
    return vec_env, scores_from_info, mask_method


def _call_factory(factory: Callable[[], gym.Env], name: str) -> gym.Env:
    """``factory()``, with what went wrong said in one :class:`EnvironmentSpecError`."""
    try:
        env = factory()
    except PPOLabError:
        raise
    except Exception as exc:
        raise EnvironmentSpecError(
            f"'{name}' failed to create an env ({type(exc).__name__}: {exc}); pass a class or "
            "factory that can be called with no arguments"
        ) from None
    if not isinstance(env, gym.Env):
        raise EnvironmentSpecError(
            f"'{name}' made a {type(env).__name__}, not a gymnasium.Env; subclass gymnasium.Env")
    return env


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
            env = make_env(source)
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


def make_env(target: str, training: bool = True, render_mode: str | None = None) -> gym.Env:
    """One (non-vector) env from a registered id or ``module:Attr``: the one place envs are
    made from names. ALE ids get the Atari preprocessing (:func:`ppolab.atari.make_atari_env`;
    ``training=False`` leaves out the life-loss episodes and the reward clipping, so that an
    episode's return is the game score)."""
    if ":" in target:
        factory = _import_attr(target)
        if render_mode:
            try:
                return _call_factory(functools.partial(factory, render_mode=render_mode), target)
            except EnvironmentSpecError:
                pass  # a factory without a render_mode argument
        return _call_factory(factory, target)
    name = resolve_env_id(target)
    register_namespace(name)
    _spec(name)  # an unknown id: the error suggests the closest registered ones
    with _gym_errors(name):
        if atari.is_atari(name):
            return atari.make_atari_env(name, training=training, render_mode=render_mode)
        return gym.make(name, render_mode=render_mode)


def make_single_env(env_id: str, render_mode: str | None = None) -> gym.Env:
    """One env to evaluate a model on (``training=False``), by id or ``module:Attr``."""
    if ":" not in env_id:
        name = resolve_env_id(env_id)
        register_namespace(name)
        if name not in gym.registry:
            raise EnvironmentSpecError(
                f"cannot make environment '{name}' again: it is not a registered id (the model was "
                "trained on an env object); evaluate it in Python with your own env and agent.predict()"
            )
    return make_env(env_id, training=False, render_mode=render_mode)


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

