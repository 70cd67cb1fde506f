"""The environments of the episodes in flight, saved with a checkpoint so that a resumed run
continues those episodes exactly.

A checkpoint falls between two rollouts. To go on from it as if the run had never stopped, the
resumed run needs each env as it was, and the collector's side of the same episodes (see
:meth:`ppolab.rollout.Collector.in_flight`). Envs are saved by pickling them (cloudpickle):

* envs that ppolab vectorized itself (sync or async) are saved one by one by their
  :class:`~ppolab.envs.FaultGuard`, in the worker that holds them. A fresh vector env does not
  know which envs were due for Gymnasium's next-step autoreset, so the guard replays that step
  itself: its next ``step`` resets the env and returns reward 0, as the vector env would have;
* a vector env that runs in this process and was not made by ppolab (CartPole's native one, a
  ready SyncVectorEnv) is pickled whole, with its own autoreset flags.

What cannot be saved: a ready async vector env (its workers are out of reach), an env that does
not pickle, and an env that pickles only its constructor arguments (Gymnasium's ``EzPickle``:
the Box2D, MuJoCo and Atari envs), whose copy would be a new episode. A run on such envs resumes
with new episodes, and says why.

Restoring unpickles: only :meth:`ppolab.agent.Agent.resume` does it, and ``ppolab resume
--new-episodes`` declines it. Loading a model for ``predict`` or ``eval`` never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.utils import EzPickle

if TYPE_CHECKING:
    import torch

GUARDED = "ppolab_guarded"  # set on a vector env whose sub-envs are all FaultGuards (see envs._vectorize)
SAVE_METHOD, RESTORE_METHOD = "ppolab_save_env", "ppolab_restore_env"


def _layers(env: Any) -> list[Any]:
    """``env`` and every env it wraps, outermost first."""
    layers = [env]
    while isinstance(layers[-1], (gym.Wrapper, gym.vector.VectorWrapper)):
        layers.append(layers[-1].env)
    return layers


def unsaveable(env: Any) -> str | None:
    """Why pickling ``env`` would not save its episode, or None."""
    for layer in _layers(env):
        if isinstance(layer, EzPickle):
            return f"{type(layer).__name__} pickles only its constructor arguments (EzPickle)"
    return None


def dumps(env: Any) -> tuple[bytes | None, str | None]:
    """``(pickle of env, None)``, or ``(None, why not)``. Never raises: in an async worker an
    exception would stop the worker."""
    problem = unsaveable(env)
    if problem is not None:
        return None, problem
    try:
        return cloudpickle.dumps(env), None
    except Exception as exc:  # noqa: BLE001 - anything the env's pickling raises
        return None, f"{type(env.unwrapped).__name__} does not pickle ({type(exc).__name__}: {exc})"


def loads(blob: bytes) -> Any:
    return cloudpickle.loads(blob)


def _tensor(blob: bytes) -> torch.Tensor:
    import torch  # here: envs.py imports this module, and check-env answers without torch

    return torch.frombuffer(bytearray(blob), dtype=torch.uint8) if blob else torch.zeros(0, dtype=torch.uint8)


def capture(vec_env: gym.vector.VectorEnv) -> dict[str, Any]:
    """The envs as plain tensors for a model file: ``{"sub_envs": [uint8 tensor per env]}``,
    ``{"vector": uint8 tensor}``, or ``{"problem": why they cannot be saved}``."""
    if getattr(vec_env, GUARDED, False):
        saved = vec_env.call(SAVE_METHOD)
        problems = [why for _, why in saved if why is not None]
        if problems:
            return {"problem": problems[0]}
        return {"sub_envs": [_tensor(blob) for blob, _ in saved]}
    if isinstance(vec_env.unwrapped, gym.vector.AsyncVectorEnv):
        return {"problem": "the envs run in the workers of a vector env ppolab did not make"}
    blob, problem = dumps(vec_env)
    return {"problem": problem} if blob is None else {"vector": _tensor(blob)}


def restore(vec_env: gym.vector.VectorEnv, saved: dict[str, Any],
            autoreset_next: np.ndarray) -> tuple[gym.vector.VectorEnv, str | None]:
    """Put the envs :func:`capture` saved back: returns the vector env to use from now on (a new
    object when the whole vector env was saved; the old one is closed) and None, or ``vec_env``
    and why the envs could not be restored. ``autoreset_next`` says which envs are due for a
    next-step autoreset (sub-envs only; a whole vector env keeps its own flags)."""
    if "vector" in saved:
        try:
            restored = loads(saved["vector"].numpy().tobytes())
        except Exception as exc:  # noqa: BLE001 - a pickle can raise anything
            return vec_env, f"the saved vector env does not load ({type(exc).__name__}: {exc})"
        if not isinstance(restored, gym.vector.VectorEnv) or restored.num_envs != vec_env.num_envs:
            return vec_env, "the saved vector env does not match this run's"
        vec_env.close()
        return restored, None
    if not getattr(vec_env, GUARDED, False):
        return vec_env, "the envs were saved one by one, and this vector env is not one ppolab made"
    blobs = [t.numpy().tobytes() for t in saved["sub_envs"]]
    if len(blobs) != vec_env.num_envs:
        return vec_env, f"{len(blobs)} envs were saved, this run has {vec_env.num_envs}"
    problems = [p for p in vec_env.call(RESTORE_METHOD, blobs, [bool(x) for x in autoreset_next]) if p]
    return vec_env, (problems[0] if problems else None)
