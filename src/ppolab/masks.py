"""Action masks: which actions are valid in the current state, and where they come from.

An env says it in one of two ways, and ppolab reads whichever it provides (``action_masks=auto``):

* ``info["action_mask"]`` from ``reset`` and ``step`` (the Gymnasium convention: Taxi, and
  ``Discrete.sample(mask=...)``);
* a method ``env.action_masks()`` (the sb3-contrib ``MaskablePPO`` convention), called after
  every ``reset`` and ``step``.

A mask is one flag per action, ``[n]`` for ``Discrete(n)`` and ``[sum(nvec)]`` for
``MultiDiscrete(nvec)`` (the components' flags one after the other), of dtype bool or integer
(0 = invalid). Every state needs at least one valid action (in each component). Masked actions
get probability exactly 0 (:class:`~ppolab.distributions.Categorical`).

The mask of a next-step autoreset step (the final observation of an episode, whose action the
vector env ignores) is never used: it may be anything, and is stored as all-valid.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ppolab.action_spaces import ActionSpec
from ppolab.errors import ConfigError, EnvironmentFaultError

INFO_KEY = "action_mask"
METHOD = "action_masks"
SOURCE_NAMES = {"info": f"info['{INFO_KEY}']", "method": f"the env's {METHOD}() method"}


def mask_size(action: ActionSpec) -> int | None:
    """Flags per state for these actions, or None for Box actions (which are never masked)."""
    return None if action.kind == "box" else action.head_dim


def choose_source(setting: str, has_info: bool, has_method: bool, action: ActionSpec, name: str) -> str | None:
    """``"info"``, ``"method"`` or None (no masks), from ``setting`` (``config.action_masks``)
    and what the env provides; an explicit source the env does not provide is a ConfigError."""
    if setting == "off":
        return None
    if setting != "auto":
        if action.kind == "box":
            raise ConfigError(f"action_masks={setting}: masks apply to Discrete and MultiDiscrete actions; "
                              f"{name} has {action.describe()} actions; use action_masks=auto or off")
        if not (has_info if setting == "info" else has_method):
            what = (f"gives no info['{INFO_KEY}'] from reset()" if setting == "info"
                    else f"has no {METHOD}() method")
            raise ConfigError(f"action_masks={setting}, but {name} {what}; use action_masks=auto or off")
        return setting
    if action.kind == "box":
        return None
    return "info" if has_info else "method" if has_method else None


def has_method(env: gym.Env) -> bool:
    """Whether ``env`` (through its wrappers) has a callable ``action_masks``."""
    try:
        return callable(env.get_wrapper_attr(METHOD))
    except AttributeError:
        return False


def checked(masks: Any, action: ActionSpec, needed: np.ndarray, where: str) -> np.ndarray:
    """``masks`` ``[N, A]`` (A: :func:`mask_size`) as bool, rows not ``needed`` set all-valid; or
    an :class:`EnvironmentFaultError` for a wrong shape or dtype, or a state with no valid action."""
    masks = _as_array(masks)
    n, size = len(needed), action.head_dim
    if masks.dtype.kind not in "biu":
        raise EnvironmentFaultError(
            f"action mask of dtype {masks.dtype} {where}; expected bool or integers (0 = invalid), "
            f"shape ({size},) for {action.describe()} actions")
    if masks.shape != (n, size):
        got = masks.shape[1:] if masks.ndim >= 1 and masks.shape[0] == n else masks.shape
        raise EnvironmentFaultError(
            f"action mask of shape {tuple(got)} {where}; expected ({size},), one flag per action of "
            f"{action.describe()}" + (" (the components' flags one after the other)"
                                      if action.kind == "multidiscrete" else ""))
    masks = masks != 0
    masks[~needed] = True
    bounds = np.cumsum((0, *action.nvec))
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        empty = np.flatnonzero(~masks[:, lo:hi].any(axis=1))
        if len(empty):
            part = f" for action component {k}" if len(action.nvec) > 1 else ""
            whose = f"env {int(empty[0])}'s" if n > 1 else "the"
            raise EnvironmentFaultError(
                f"{whose} action mask has no valid action{part} {where}; every state needs at least one "
                "valid action")
    return masks


def _as_array(masks: Any) -> np.ndarray:
    """A mask array from what an env or the vector info gave (arrays, lists, an object array)."""
    array = np.asarray(masks)
    if array.dtype == object:
        try:
            array = np.stack([np.asarray(m) for m in array])
        except ValueError as exc:
            raise EnvironmentFaultError(f"action masks of different shapes from the sub-envs ({exc})") from None
    return array


def read_vector(source: str, env: gym.vector.VectorEnv, infos: dict, action: ActionSpec,
                needed: np.ndarray, where: str) -> np.ndarray:
    """The masks ``[N, size]`` (bool) of the N sub-envs' current states."""
    if source == "method":
        return checked(np.stack([np.asarray(m) for m in env.call(METHOD)]), action, needed, where)
    masks, present = infos.get(INFO_KEY), infos.get("_" + INFO_KEY)
    missing = needed if masks is None or present is None else needed & ~np.asarray(present, dtype=bool)
    if missing.any():
        raise EnvironmentFaultError(f"env {int(np.flatnonzero(missing)[0])} gave no info['{INFO_KEY}'] {where}; "
                                    f"it gave one at the start of training")
    if masks is None:  # no row is needed
        return np.ones((len(needed), action.head_dim), dtype=bool)
    return checked(masks, action, needed, where)


def read_single(source: str, env: gym.Env, info: dict, action: ActionSpec, where: str) -> np.ndarray:
    """The mask ``[size]`` (bool) of one env's current state."""
    if source == "method":
        mask = env.get_wrapper_attr(METHOD)()
    elif INFO_KEY in info:
        mask = info[INFO_KEY]
    else:
        raise EnvironmentFaultError(f"the env gave no info['{INFO_KEY}'] {where}")
    return checked(np.asarray(mask)[None], action, np.ones(1, dtype=bool), where)[0]
