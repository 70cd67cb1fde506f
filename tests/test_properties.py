"""Property-based tests (Hypothesis) of bad input, systematically (issue 12, item 6).

Any generated value is either refused before anything is written, with a one-line message, or
trains one update without a traceback (and with finite statistics and weights):

* ``test_each_field``: every field of every algorithm's config class, one at a time, from a
  strategy built from the field's type and declared bounds that covers values inside, at and
  just outside the bounds, wild magnitudes (+-10**30, 1e300, nan, inf, subnormals, -0.0),
  wrong types, and the value as text (as ``--set`` and YAML give it). A new field is covered
  automatically: the test is parametrized over ``dataclasses.fields`` of each config class.
* ``test_whole_config``: many fields drawn together, mostly valid values, per algorithm.
* ``test_cli_train``: ``ppolab train`` in-process with generated ``--name``, ``--steps``,
  ``--seed``, ``--algo`` and ``--set`` pairs: exit 0 with one run directory directly under
  ``--out``, or exit 2 with exactly one line on stderr and nothing written anywhere.

Profiles (selected with the environment variable HYPOTHESIS_PROFILE, default ``ci``):

* ``ci``: few examples per test, derandomized (the same examples on every run), no example
  database; the whole file runs in about a minute or two.
* ``long``: many examples, random (a different search on every run); run it by hand::

      HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest -p no:cacheprovider \\
          --hypothesis-show-statistics tests/test_properties.py

  PPOLAB_MAX_EXAMPLES=N sets every test's examples to N (per parametrized case), to fit a
  time budget; PPOLAB_DEBUG_EVENTS=1 adds each refusal's message to the statistics. A failure
  prints the falsifying example and a ``@reproduce_failure`` blob.

Fixed cases run in every profile, whatever the search draws: ``test_extreme_corners`` (the
config property at corners of several bounds at once: the largest steps they allow),
``test_free_text_fields`` (every listed value of the string fields without choices, ``device``
and ``encoder``, see ``FREE_TEXT``),
``test_cli_train_names`` and ``test_cli_train_edge_arguments`` (the CLI property for names
around NAME_MAX = 255 bytes and line breaks in arguments that errors echo).

Exclusions, for time only (each is a valid config that trains, just slowly):

* hidden layers whose consecutive widths multiply to more than 2**20 weights in all (e.g. two
  layers of 4096): building the network alone takes seconds to minutes on one thread
  (orthogonal init is a QR decomposition per layer, actor and critic each: 2 x 4096 took 15 s to
  build, 8 x 4096 took 77 s to build and 13 s for one 16-step update, on a loaded machine).
* rollouts of more than 4096 steps per env (n_steps is stepped one at a time: 2**20 steps
  would take minutes), and on Pendulum-v1 more than 4096 transitions: n_envs up to its bound
  (65,536) is tried on CartPole-v1 only, whose vectorized implementation steps all envs at once
  (Pendulum-v1 builds one env object per env: 65,536 of them take half a minute); on
  CartPole-v1 batches above 65,536 transitions (n_envs * n_steps) are left out.
* more than 4096 gradient steps in one update (epochs x minibatches), in test_whole_config
  only: each field alone stays far below (n_epochs=1000 on the small config is 2000 steps).
* CLI ``--steps`` is generated valid only up to a few rollouts (up to 96 steps): a valid
  ``--steps 1e5`` is simply a long run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import assume as _assume
from hypothesis import event as _event
from hypothesis import note as _note
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from ppolab import cli
from ppolab.agent import Agent
from ppolab.config import (
    CONFIG_CLASSES,
    FLOAT32_MAX,
    FLOAT32_TINY,
    MAX_BATCH,
    Bounds,
    _field_bounds,
    _float32,
    parse_value,
)
from ppolab.errors import ConfigError, PPOLabError, TrainingDivergedError

# --------------------------------------------------------------------------------------------
# Profiles

_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much,
           HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=5, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_HEALTH, print_blob=True)
settings.register_profile("long", max_examples=1000, deadline=None, derandomize=False, database=None,
                          suppress_health_check=_HEALTH, print_blob=True)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(ci: int, long: int) -> int:
    """Examples per test (per parametrized case) under the active profile; PPOLAB_MAX_EXAMPLES
    overrides."""
    if os.environ.get("PPOLAB_MAX_EXAMPLES"):
        return int(os.environ["PPOLAB_MAX_EXAMPLES"])
    return long if PROFILE == "long" else ci


def note(message: str) -> None:
    if currently_in_test_context():
        _note(message)


def event(message: str) -> None:
    if currently_in_test_context():
        _event(message)


def assume(condition: bool) -> None:
    """Hypothesis's assume inside a property; outside one (the fixed cases), a plain check."""
    if currently_in_test_context():
        _assume(condition)
    else:
        assert condition, "a fixed case beyond the time limits of this file"


# --------------------------------------------------------------------------------------------
# Strategies: the values a field may be given, valid or not

ENVS = ("CartPole-v1", "Pendulum-v1")  # discrete and continuous (log_std_init, squash_actions)
MAX_TEST_BATCH = 4096  # transitions per rollout in a Python-stepped env (see the module docstring)
MAX_TEST_WEIGHTS = 2**20  # weights between hidden layers (see the module docstring)
MAX_TEST_GRADIENT_STEPS = 4096  # per update (see the module docstring)


def _hint(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _kind(cls: type, name: str) -> tuple[Any, bool]:
    """(the field's base type: int, float, bool, str or tuple, whether it is Optional)."""
    hint = _hint(cls, name)
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    return (tuple if typing.get_origin(hint) is tuple else hint), optional


WILD = st.one_of(  # a value of the wrong type for most fields
    st.none(), st.booleans(), st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=2),
    st.floats(), st.integers(), st.just(()), st.just({}),
)


def _texts(value: Any, *formats: Any) -> st.SearchStrategy[str]:
    """``value`` written as text in one of several ways (as --set or YAML may give it)."""
    written = []
    for fmt in (str, *formats):
        with contextlib.suppress(ValueError, OverflowError, TypeError):
            written.append(fmt(value))
    return st.sampled_from(written)


def _as_text(strategy: st.SearchStrategy, *formats: Any) -> st.SearchStrategy[str]:
    return strategy.flatmap(lambda v: _texts(v, *formats))


def int_values(bounds: Bounds) -> st.SearchStrategy:
    lo, hi = int(bounds.low), int(bounds.high)
    ints = st.one_of(
        st.integers(lo - 3, lo + 3), st.integers(hi - 3, hi + 3), st.integers(lo, hi),
        st.integers(lo, min(hi, lo + 64)), st.integers(),
        st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, 10**30, -(10**30), 10**400]),
    )
    integral_floats = st.integers(lo - 3, hi + 3).map(float)
    return st.one_of(
        ints, integral_floats, st.floats(),
        _as_text(ints, lambda v: f"{v:_}", lambda v: f" {v} ", lambda v: f"{float(v):e}"),
        _as_text(st.floats()), WILD,
    )


def _near(x: float) -> list[float]:
    return [x, math.nextafter(x, -math.inf), math.nextafter(x, math.inf)]


def float_values(bounds: Bounds) -> st.SearchStrategy:
    special = [
        *_near(bounds.low), *_near(bounds.high), *_near(FLOAT32_TINY), *_near(FLOAT32_MAX),
        *_near(-FLOAT32_MAX), -FLOAT32_TINY, 1e-39, 5e-324, -0.0, 0.0, 1.0, -1.0, 1e300, -1e300,
        math.nan, math.inf, -math.inf,
    ]
    floats = st.one_of(
        st.sampled_from(special),
        st.floats(bounds.low, bounds.high, exclude_min=bounds.low_open, exclude_max=bounds.high_open),
        st.floats(),
    )
    return st.one_of(
        floats, st.integers(int(max(bounds.low, -1e6)) - 2, int(min(bounds.high, 1e6)) + 2),
        _as_text(floats, repr, lambda v: f"{v:e}", lambda v: f"{v:.3g}"), WILD,
    )


def bool_values() -> st.SearchStrategy:
    words = ["true", "false", "yes", "no", "on", "off", "1", "0", "y", "n", "t", "2", "", "none"]
    return st.one_of(
        st.booleans(), st.sampled_from(words), st.sampled_from(words).map(str.upper),
        st.sampled_from(words).map(lambda w: f" {w.title()} "), st.sampled_from([0, 1, 2, -1, 0.0, 1.0]),
        WILD,
    )


def str_values(choices: tuple[str, ...]) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(choices), st.sampled_from(choices).map(str.upper),
        st.sampled_from(choices).map(lambda c: f" {c}"), st.sampled_from(["", "none", "null"]), WILD,
    )


def width_lists(bounds: Bounds) -> st.SearchStrategy:
    lo, hi = int(bounds.low), int(bounds.high)
    width = st.one_of(
        st.integers(1, 16), st.integers(lo - 2, lo + 2), st.integers(hi - 2, hi + 2),
        st.sampled_from([0, -1, 10**30, 2**31]), st.just(8.0), st.just(8.5),
    )
    lists = st.lists(width, min_size=0, max_size=10)
    small = st.lists(st.integers(1, 16), min_size=1, max_size=9)  # up to one layer too many
    return st.one_of(
        lists, lists.map(tuple), small,
        lists.map(lambda ws: ",".join(map(str, ws))), small.map(lambda ws: ",".join(map(str, ws))),
        small.map(str), small.map(lambda ws: " , ".join(map(str, ws)) + ","),
        st.sampled_from(["8", "8,,8", "[8, 8]", "(8,)", "8;8", "8 8", "", "0x8", "1e3"]),
        st.integers(-2, 20), WILD,
    )


# String fields without a tuple of choices: free text checked by the config (a pattern) or only
# when the network is built (a factory path). Each lists what its bounds allow (valid) and
# near misses (anything); a new such field needs an entry here (test_every_field_has_a_strategy).
# The valid devices that this machine lacks are refused when the agent is built, in one line.
FREE_TEXT: dict[str, tuple[list[str], list[str]]] = {
    "device": (
        ["auto", "cpu"] + (["cuda", "cuda:0"] if torch.cuda.is_available() else []),
        ["cuda", "cuda:0", "cuda:7", "mps", "gpu", "CPU", " cpu", "cpu ", "cuda:", "cuda:-1", "cuda:x", "cuda0",
         "cpu:0", "auto\n", "", "none"],
    ),
    "encoder": (
        ["envs_for_tests:tiny_encoder"],  # a real factory (tests/ is importable under pytest)
        ["envs_for_tests:wrong_shape_encoder", "envs_for_tests:not_a_module_encoder", "envs_for_tests:missing",
         "no_such_module_xyz:factory", "envs_for_tests", "envs_for_tests.tiny_encoder", ":", "a:", ":b",
         "envs_for_tests:tiny_encoder:x", "torch:nn", "os:getcwd", "", " "],
    ),
}


def free_text_values(name: str) -> st.SearchStrategy:
    valid, near = FREE_TEXT[name]
    choices = valid + near
    return st.one_of(
        st.sampled_from(choices), st.sampled_from(choices).map(str.upper),
        st.sampled_from(choices).map(lambda c: f" {c}"),
        st.text(max_size=12), WILD,
    )


def field_values(cls: type, name: str) -> st.SearchStrategy:
    """Values for one field, inside, at and outside its declared bounds, and of wrong types."""
    kind, optional = _kind(cls, name)
    bounds = _field_bounds(cls, name)
    if kind is bool:
        values = bool_values()
    elif kind is str and name in FREE_TEXT:
        values = free_text_values(name)
    elif kind is str:
        assert isinstance(bounds, tuple), f"{cls.__name__}.{name}: a string field without choices"
        values = str_values(bounds)
    elif kind is tuple:
        values = width_lists(bounds)
    elif kind is int:
        values = int_values(bounds)
    elif kind is float:
        values = float_values(bounds)
    else:
        raise AssertionError(f"{cls.__name__}.{name}: no strategy for {kind}")
    if optional:
        values = st.one_of(values, st.sampled_from([None, "none", "null", "~", "", " None ", "NULL"]))
    return values


def valid_values(cls: type, name: str) -> st.SearchStrategy:
    """Values for one field that its own bounds allow (other fields may still refuse them),
    kept small where size means time."""
    kind, optional = _kind(cls, name)
    bounds = _field_bounds(cls, name)
    small = {"n_envs": (1, 8), "n_steps": (1, 64), "minibatch_size": (1, 64), "vf_minibatch_size": (1, 64),
             "n_epochs": (1, 16), "vf_epochs": (1, 16), "cg_iters": (1, 32), "line_search_steps": (1, 32),
             "torch_threads": (1, 2), "total_steps": (1, 1024), "rolling_window": (1, 200)}
    if kind is bool:
        values = st.booleans()
    elif kind is str and name in FREE_TEXT:
        values = st.sampled_from(FREE_TEXT[name][0])
    elif kind is str:
        values = st.sampled_from(bounds)
    elif kind is tuple:
        # hidden_sizes may be empty (the heads read the encoder's features); the CNN needs a layer
        values = st.lists(st.integers(1, 32), min_size=0 if name == "hidden_sizes" else 1, max_size=3).map(tuple)
    elif kind is int:
        lo, hi = small.get(name, (int(bounds.low), int(bounds.high)))
        values = st.integers(lo, hi)
    else:
        values = valid_floats(bounds)
    return st.one_of(values, st.none()) if optional else values


def valid_floats(bounds: Bounds) -> st.SearchStrategy[float]:
    """Floats the bounds allow that float32 holds: inside, at the closed ends, and the
    smallest normal float32 magnitudes."""

    def representable(v: float) -> float:  # a magnitude below FLOAT32_TINY: 0 or the tiniest
        if v == 0 or abs(v) >= FLOAT32_TINY:
            return v
        return 0.0 if bounds.contains(0.0) else math.copysign(FLOAT32_TINY, v)

    inside = st.floats(bounds.low, bounds.high, exclude_min=bounds.low_open, exclude_max=bounds.high_open)
    edges = [x for x in (bounds.low, bounds.high, FLOAT32_TINY, -FLOAT32_TINY, 0.0)
             if bounds.contains(x) and _float32(x)]
    return st.one_of(inside.map(representable), st.sampled_from(edges))


# --------------------------------------------------------------------------------------------
# The property


CNN_FIELDS = ("cnn_channels", "cnn_kernels", "cnn_strides")  # one value per convolution in each
CNN_FILL = {"cnn_channels": (8,), "cnn_kernels": (3,), "cnn_strides": (1,)}

SMALL = dict(n_envs=2, n_steps=8, total_steps=16, torch_threads=1, checkpoint_every=0, hidden_sizes=(8,),
             stop_when_solved=False)
SMALL_PER_ALGO = {
    "ppo": dict(minibatch_size=8, n_epochs=2),
    "a2c": {},
    "trpo": dict(vf_minibatch_size=8, vf_epochs=2, cg_iters=5, line_search_steps=5),
    "vpg": dict(vf_minibatch_size=8, vf_epochs=2),
}


def small_config(algo: str) -> dict[str, Any]:
    """A valid config whose one update is cheap (2 envs x 8 steps, one layer of 8)."""
    return {**SMALL, **SMALL_PER_ALGO[algo]}


def _parsed(cls: type, name: str, value: Any) -> Any:
    """``value`` as the field's type, or None when it does not parse."""
    try:
        return parse_value(name, value, _hint(cls, name))
    except ConfigError:
        return None


def gradient_steps(cfg: Any) -> int:
    """Gradient steps in one update: epochs x minibatches (PPO), value-fit epochs x minibatches
    (TRPO, VPG); A2C takes one."""
    if hasattr(cfg, "n_epochs"):
        return cfg.n_epochs * -(-cfg.batch_size // cfg.minibatch_size)
    if hasattr(cfg, "vf_epochs"):
        return cfg.vf_epochs * -(-cfg.batch_size // cfg.vf_minibatch_size)
    return 1


LINE_BREAKS = "\n\r\v\f"  # what a terminal shows as a new line


def is_one_line(text: str) -> bool:
    return not any(c in text for c in LINE_BREAKS)


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message.strip(), f"{type(exc).__name__} with an empty message"
    assert is_one_line(message), f"{type(exc).__name__} message is not one line: {message!r}"
    return message


def train_one_update(algo: str, values: dict[str, Any], env_id: str, names: list[str]) -> str:
    """The property: ``config_class(algo)(**values)`` raises a one-line ConfigError naming one
    of ``names``, or the agent refuses the env in one line, or one update trains with finite
    statistics and weights. Returns what happened ("refused", "env-refused", "trained")."""
    cls = CONFIG_CLASSES[algo]
    try:
        cfg = cls(**values)
    except ConfigError as exc:
        message = one_line(exc)
        assert any(name in message for name in names), f"{message!r} names none of {names}"
        note(f"refused: {message}")
        event("refused by the config" + (": " + message.split(":")[0] if os.environ.get("PPOLAB_DEBUG_EVENTS") else ""))
        return "refused"
    # Time only, see the module docstring.
    widths = cfg.hidden_sizes
    assume(sum(a * b for a, b in zip(widths, widths[1:])) <= MAX_TEST_WEIGHTS)
    if env_id == "CartPole-v1":
        assume(cfg.n_steps <= MAX_TEST_BATCH and cfg.batch_size <= 65_536)
    else:
        assume(cfg.batch_size <= MAX_TEST_BATCH)
    assume(gradient_steps(cfg) <= MAX_TEST_GRADIENT_STEPS)
    start = time.perf_counter()
    try:
        agent = Agent.registry[algo](env_id, config=cfg)
    except PPOLabError as exc:  # e.g. vectorization=vector_entry_point for an env without one
        assert not isinstance(exc, TrainingDivergedError)
        note(f"env refused: {one_line(exc)}")
        event("refused by the env")
        torch.set_num_threads(1)
        return "env-refused"
    rows: list[dict[str, Any]] = []
    try:
        result = agent.learn(cfg.batch_size, callback=rows.append)
        built_and_trained = time.perf_counter() - start
        note(f"one update in {built_and_trained:.2f} s")
        assert result.updates == 1 or (result.solved and cfg.stop_when_solved), result
        for row in rows:
            for key, stat in row.items():
                # explained_variance is NaN by definition when the return targets do not vary
                if key != "explained_variance" and isinstance(stat, float):
                    assert math.isfinite(stat), f"{key}={stat} after one update: {row}"
        for pname, param in agent.policy.named_parameters():
            assert torch.isfinite(param).all(), f"non-finite {pname} after one update"
    finally:
        agent.close()
        torch.set_num_threads(1)  # torch_threads may have been anything up to 1024
    event("trained one update")
    return "trained"


# --------------------------------------------------------------------------------------------
# 1. Every field of every algorithm, one at a time

FIELD_CASES = [(algo, f.name) for algo, cls in CONFIG_CLASSES.items() for f in dataclasses.fields(cls)]


def env_for(name: str) -> st.SearchStrategy[str]:
    # n_envs up to 65,536 only on the env with a vectorized implementation (module docstring)
    return st.just("CartPole-v1") if name == "n_envs" else st.sampled_from(ENVS)


def with_field(algo: str, name: str, value: Any) -> dict[str, Any]:
    """The small config with ``name`` set to ``value``. Where the field sizes the rollout, the
    fields tied to it (total_steps, the other of n_envs/n_steps, the minibatch sizes) are set so
    that a valid value is not refused for them."""
    cls = CONFIG_CLASSES[algo]
    values = small_config(algo)
    if name in ("n_envs", "n_steps"):
        other = "n_steps" if name == "n_envs" else "n_envs"
        values.update({other: 1, "total_steps": 10**12})
        size = _parsed(cls, name, value)
        batch = min(max(size, 1), MAX_BATCH) if isinstance(size, int) else 1
        for mb in ("minibatch_size", "vf_minibatch_size"):
            if mb in values:
                values[mb] = batch  # one gradient step per epoch, however large the batch
    if name in CNN_FIELDS:
        # one value per convolution: the other two CNN fields get as many as this one has
        size = _parsed(cls, name, value)
        if isinstance(size, tuple) and 1 <= len(size) <= 8:
            values.update({other: CNN_FILL[other] * len(size) for other in CNN_FIELDS if other != name})
    values[name] = value
    return values


@pytest.mark.parametrize("algo, name", FIELD_CASES, ids=[f"{a}-{n}" for a, n in FIELD_CASES])
@settings(max_examples=examples(ci=5, long=1000))
@given(data=st.data())
def test_each_field(algo, name, data):
    cls = CONFIG_CLASSES[algo]
    value = data.draw(field_values(cls, name) | valid_values(cls, name), label=name)
    env_id = data.draw(env_for(name), label="env")
    train_one_update(algo, with_field(algo, name, value), env_id, [name])


def test_every_field_has_a_strategy():
    """A new field needs bounds (or choices) the strategies can read: numbers get Bounds,
    strings a tuple of choices, bools nothing."""
    for algo, name in FIELD_CASES:
        cls = CONFIG_CLASSES[algo]
        kind, _ = _kind(cls, name)
        bounds = _field_bounds(cls, name)
        if kind is bool:
            assert bounds is None, (algo, name)
        elif kind is str and name in FREE_TEXT:
            assert bounds is None, (algo, name)  # free text: its strategy is in FREE_TEXT
            valid, near = FREE_TEXT[name]
            assert valid and near, (algo, name)
        elif kind is str:
            assert isinstance(bounds, tuple) and bounds, (algo, name)
        else:
            assert isinstance(bounds, Bounds), (algo, name)
        field_values(cls, name)


# --------------------------------------------------------------------------------------------
# 2. Many fields at once, per algorithm


SIZE_FIELDS = ("n_envs", "n_steps", "total_steps", "minibatch_size", "vf_minibatch_size")


@st.composite
def config_dicts(draw: Any, algo: str) -> dict[str, Any]:
    """Values for many fields at once: a random set of fields, each given a value its own
    bounds allow, and a few of them (0 to 2) given anything. The rollout size is drawn first and
    total_steps and the minibatch sizes mostly fit it, so that most drawn configs train."""
    cls = CONFIG_CLASSES[algo]
    names = [f.name for f in dataclasses.fields(cls)]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=len(names)), label="fields")
    n_wild = draw(st.sampled_from([0, 0, 0, 1, 2]), label="fields given anything")
    wild = set(draw(st.lists(st.sampled_from(chosen), unique=True, min_size=min(n_wild, len(chosen)),
                             max_size=min(n_wild, len(chosen))), label="given anything"))
    values: dict[str, Any] = {}
    for name in chosen:
        if name in wild:
            values[name] = draw(field_values(cls, name), label=name)
        elif name == "shared_trunk" and "vf_epochs" in names:
            values[name] = False  # the only value TRPO and VPG take (checked in test_each_field)
        elif name not in SIZE_FIELDS:
            values[name] = draw(valid_values(cls, name), label=name)
    n_envs = values["n_envs"] = draw(valid_values(cls, "n_envs"), label="n_envs")
    n_steps = values["n_steps"] = draw(valid_values(cls, "n_steps"), label="n_steps")
    batch = n_envs * n_steps
    fits, anything = st.integers(batch, 4 * batch), st.integers(1, 2 * batch)  # mostly fits the rollout
    values["total_steps"] = draw(st.one_of(fits, fits, fits, anything), label="total_steps")
    for mb in ("minibatch_size", "vf_minibatch_size"):
        if mb in names:
            fits = st.integers(1, batch)
            values[mb] = draw(st.one_of(fits, fits, fits, anything), label=mb)
    for name in wild & set(SIZE_FIELDS):
        values[name] = draw(field_values(cls, name), label=name)
    if set(CNN_FIELDS) & (set(chosen) - wild):  # one value per convolution, in all three fields
        n_conv = draw(st.integers(1, 3), label="convolutions")
        for name in set(CNN_FIELDS) - wild:
            values[name] = tuple(draw(st.lists(st.integers(1, 8), min_size=n_conv, max_size=n_conv), label=name))
    return values


@pytest.mark.parametrize("algo", list(CONFIG_CLASSES))
@settings(max_examples=examples(ci=40, long=3000))
@given(data=st.data())
def test_whole_config(algo, data):
    drawn = data.draw(config_dicts(algo), label="fields")
    env_id = data.draw(st.sampled_from(ENVS), label="env")
    values = {**small_config(algo), **drawn}
    names = [f.name for f in dataclasses.fields(CONFIG_CLASSES[algo])] + ["n_envs * n_steps"]
    train_one_update(algo, values, env_id, names)


# Corners of the bounds, together, in every CI run: the largest steps the bounds allow (a learning
# rate of 0.1, RMSprop's alpha 0.9999: beyond them one A2C update sent log_std to -944).
EXTREMES = {  # id: (algo, env, fields over the small config)
    "ppo-entropy-push": ("ppo", "Pendulum-v1", dict(ent_coef=100.0, learning_rate=0.1, n_epochs=1000,
                                                    max_grad_norm=FLOAT32_MAX)),
    "ppo-narrow-std": ("ppo", "Pendulum-v1", dict(log_std_init=-20.0, learning_rate=0.1, n_epochs=300,
                                                  max_grad_norm=FLOAT32_MAX, policy_objective="none")),
    "ppo-kl-penalty": ("ppo", "Pendulum-v1", dict(log_std_init=20.0, squash_actions=True, learning_rate=0.1,
                                                  policy_objective="kl_penalty", kl_beta_init=1e6, kl_target=10.0)),
    "ppo-joint-loss": ("ppo", "CartPole-v1", dict(ent_coef=100.0, vf_coef=100.0, learning_rate=0.1, n_epochs=300,
                                                  max_grad_norm=FLOAT32_MAX)),
    "ppo-tiny-clips": ("ppo", "Pendulum-v1", dict(normalize_observations=True, observation_clip=FLOAT32_TINY,
                                                  normalize_rewards=True, reward_clip=FLOAT32_TINY)),
    "ppo-one-transition": ("ppo", "Pendulum-v1", dict(n_envs=1, n_steps=1, total_steps=1, minibatch_size=1,
                                                      learning_rate=0.1, n_epochs=1000, ent_coef=100.0)),
    "a2c-rmsprop": ("a2c", "Pendulum-v1", dict(learning_rate=0.1, rmsprop_alpha=0.9999)),
    "a2c-rmsprop-eps": ("a2c", "Pendulum-v1", dict(learning_rate=0.1, optimizer_eps=1e-12, ent_coef=100.0,
                                                   max_grad_norm=FLOAT32_MAX)),
    "a2c-adam": ("a2c", "Pendulum-v1", dict(optimizer="adam", learning_rate=0.1, optimizer_eps=1e-12,
                                            log_std_init=-20.0, max_grad_norm=FLOAT32_MAX)),
    "trpo-no-damping": ("trpo", "Pendulum-v1", dict(log_std_init=-20.0, cg_damping=0.0, max_kl=10.0, cg_iters=1000)),
    "trpo-wide-std": ("trpo", "Pendulum-v1", dict(log_std_init=20.0, squash_actions=True, cg_damping=1e6,
                                                  max_kl=10.0, ent_coef=100.0)),
    "trpo-discrete": ("trpo", "CartPole-v1", dict(cg_damping=0.0, max_kl=10.0, cg_iters=1000, ent_coef=100.0,
                                                  line_search_steps=1000, backtrack_coef=FLOAT32_TINY)),
    "vpg-entropy": ("vpg", "Pendulum-v1", dict(ent_coef=100.0, learning_rate=0.1, max_grad_norm=FLOAT32_MAX,
                                               log_std_init=20.0)),
    "vpg-critic": ("vpg", "Pendulum-v1", dict(vf_learning_rate=0.1, vf_epochs=1000, max_grad_norm=FLOAT32_MAX,
                                              normalize_rewards=True, reward_clip=FLOAT32_MAX, gamma=1.0)),
    # no hidden layers: the heads read the observation, so nothing damps a large step
    "ppo-no-hidden-layers": ("ppo", "Pendulum-v1", dict(hidden_sizes=(), learning_rate=0.1, n_epochs=300,
                                                        ent_coef=100.0, max_grad_norm=FLOAT32_MAX)),
    "trpo-no-hidden-layers": ("trpo", "CartPole-v1", dict(hidden_sizes=(), cg_damping=0.0, max_kl=10.0,
                                                          cg_iters=1000)),
    # a user's encoder with weights, one for the actor and one for the critic
    "a2c-own-encoders": ("a2c", "Pendulum-v1", dict(encoder="envs_for_tests:tiny_encoder", shared_encoder=False,
                                                    learning_rate=0.1, max_grad_norm=FLOAT32_MAX)),
}


@pytest.mark.parametrize("algo, env_id, fields", EXTREMES.values(), ids=EXTREMES.keys())
def test_extreme_corners(algo, env_id, fields):
    values = {**small_config(algo), **fields}
    assert train_one_update(algo, values, env_id, list(fields)) == "trained"


FREE_TEXT_CASES = [(name, value) for name, (valid, near) in FREE_TEXT.items() for value in valid + near]


@pytest.mark.parametrize("name, value", FREE_TEXT_CASES, ids=[f"{n}={v!r}" for n, v in FREE_TEXT_CASES])
def test_free_text_fields(name, value):
    """Every listed value of the free-text fields, in every CI run (the search draws only a few):
    refused in one line, or one update trains."""
    train_one_update("ppo", with_field("ppo", name, value), "CartPole-v1", [name])


# --------------------------------------------------------------------------------------------
# 3. ppolab train, in-process

ALL_FIELDS = sorted({f.name for cls in CONFIG_CLASSES.values() for f in dataclasses.fields(cls)})
CLI_BASE = ["n_envs=2", "n_steps=8", "hidden_sizes=8", "torch_threads=1"]
CLI_BASE_PER_ALGO = {"ppo": ["minibatch_size=8", "n_epochs=1"], "a2c": [],
                     "trpo": ["vf_minibatch_size=8", "vf_epochs=1"], "vpg": ["vf_minibatch_size=8", "vf_epochs=1"]}

NAMES = st.one_of(
    st.text(max_size=16),
    st.sampled_from(["", ".", "..", "/", "a/b", "../x", "../../escape", "/abs/path", "/tmp", "~", "~/x",
                     ".hidden", "run", "run 1", "-x", "--quiet", "a\\b", "nul\0byte", "名前", "ümlaut",
                     "con", "a" * 255, "a" * 256, "a" * 240, "\u2028", " ", "x\n"]),
    st.integers(200, 300).map(lambda n: "r" * n),
)
STEPS = st.one_of(
    st.integers(-5, 96).map(str),  # valid only up to a few rollouts: see the module docstring
    st.sampled_from(["0", "-5", "abc", "", " ", "1e1", "3.2e1", "16.0", "16.5", "1_6", " 32 ", "0x10",
                     "1e400", "nan", "inf", "-inf", "1e13", str(10**12 + 1), str(10**30), "9" * 5000,
                     "١٦", "--steps", "-1e3"]),
    st.text(max_size=8),
)
SEEDS = st.one_of(
    st.integers(-3, 3).map(str), st.integers(2**32 - 3, 2**32 + 3).map(str),
    st.sampled_from(["", "abc", "1e3", "0x1", str(10**30), "-0"]), st.text(max_size=6),
)

def run_train(capsys: Any, argv: list[str], name: str | None, out_exists: bool) -> int:
    """The CLI property: ``ppolab train ARGV --out OUT`` (OUT fresh, in a fresh parent, run from
    a fresh working directory) exits 0 with one run directory (named ``name``, if given) in
    OUT and nothing written elsewhere, or exits 2 with exactly one line on stderr, nothing on
    stdout and nothing written at all (not even OUT when it did not exist)."""
    argv = list(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        parent, cwd = root / "parent", root / "cwd"
        parent.mkdir()
        cwd.mkdir()
        out = parent / "out"
        if out_exists:
            out.mkdir()
        argv += ["--out", str(out), "--quiet", "--no-tensorboard"]
        note(f"argv: {argv!r}")
        capsys.readouterr()
        with contextlib.chdir(cwd):
            try:
                status = cli.main(argv)
            except SystemExit as exc:  # argparse: one line, status 2
                status = exc.code
            finally:
                torch.set_num_threads(1)
        captured = capsys.readouterr()
        note(f"status {status}; stderr: {captured.err!r}")
        event(f"exit {status}" + (": " + captured.err[:60] if os.environ.get("PPOLAB_DEBUG_EVENTS") else ""))

        assert status in (0, 2), f"exit status {status!r}; stderr: {captured.err!r}"
        assert "Traceback" not in captured.err
        assert os.listdir(cwd) == [], f"written into the working directory: {os.listdir(cwd)}"
        assert os.listdir(parent) == (["out"] if out_exists or status == 0 else []), (
            f"written next to --out: {os.listdir(parent)}")
        if status == 0:
            runs = os.listdir(out)
            assert len(runs) == 1, runs
            if name is not None:
                assert runs == [name]
            assert (out / runs[0] / "config.yaml").is_file()
            assert (out / runs[0] / "model.pt").is_file()
        else:
            assert captured.err.endswith("\n") and is_one_line(captured.err[:-1]), (
                f"refused without exactly one line on stderr: {captured.err!r}")
            assert captured.err.startswith(("ppolab: error: ", "ppolab train: error: ")), captured.err
            assert captured.out == "", captured.out
            if out_exists:
                assert os.listdir(out) == [], f"refused but wrote {os.listdir(out)}"
    return status


# hidden_sizes for the CLI: widths up to 4096 only in one layer (time: see the module docstring)
CLI_HIDDEN = st.one_of(
    st.lists(st.integers(-1, 64), min_size=0, max_size=9).map(lambda ws: ",".join(map(str, ws))),
    st.sampled_from(["4096", "4097", "0", "-8", "8,,8", "[8, 8]", "8.5", "1e3", "9" * 40, "none", ""]),
)


@st.composite
def set_pairs(draw: Any, algo: str | None, wild: bool) -> list[str]:
    """0 to 3 ``--set`` items: a known key with a value its bounds allow; with ``wild``, at
    least one is any key (another algorithm's, a typo, random text) with any value, or has no
    ``=`` at all."""
    cls = CONFIG_CLASSES.get(algo or "ppo", CONFIG_CLASSES["ppo"])
    own = [f.name for f in dataclasses.fields(cls)]
    pairs = []
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(own))
        value = draw(valid_values(cls, key))
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        pairs.append(f"{key}={text}")
    for _ in range(draw(st.integers(1, 2)) if wild else 0):
        key = draw(st.one_of(st.sampled_from(own), st.sampled_from(ALL_FIELDS), st.text(max_size=10),
                             st.sampled_from(["learning_rat", "LEARNING_RATE", " gamma", "=", "", "algo", "gam\nma"])))
        if key == "hidden_sizes":
            text = draw(CLI_HIDDEN)
        elif key in own and key != "total_steps" and draw(st.booleans()):
            value = draw(field_values(cls, key))
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        else:
            text = draw(st.text(max_size=10))
        pair = draw(st.sampled_from([f"{key}={text}", f"{key} = {text}", key])) if key else f"={text}"
        pairs.insert(draw(st.integers(0, len(pairs))), pair)
    return pairs


SAFE_NAMES = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)
VALID_NAMES = st.text(min_size=1, max_size=16).filter(
    lambda n: n[0] not in ".-" and not any(c in n for c in "/\\\0"))
VALID_STEPS = st.integers(16, 96).map(str) | st.sampled_from(["1.6e1", "3.2e1", "16.0", "1_6", " 32 ", "١٦"])


@settings(max_examples=examples(ci=60, long=3000))
@given(data=st.data())
def test_cli_train(data, capsys):
    # About half the examples give every argument a value that is allowed (they may still be
    # refused together, e.g. a minibatch larger than the rollout); the others give one or two
    # of the arguments anything.
    wild = data.draw(st.just(set()) | st.sets(st.sampled_from(["algo", "name", "steps", "seed", "set"]),
                                              min_size=1, max_size=2), label="given anything")
    algo = data.draw(st.sampled_from(["PPO", "sac", "", "ppo ", "pp\no"]) | st.text(max_size=6) if "algo" in wild
                     else st.none() | st.sampled_from(list(CONFIG_CLASSES)), label="algo")
    name = data.draw(NAMES if "name" in wild else st.none() | SAFE_NAMES | VALID_NAMES, label="name")
    steps = data.draw(STEPS if "steps" in wild else VALID_STEPS, label="steps")
    seed = data.draw(SEEDS if "seed" in wild else st.none() | st.integers(0, 2**32 - 1).map(str), label="seed")
    pairs = data.draw(set_pairs(algo, "set" in wild), label="set")
    out_exists = data.draw(st.booleans(), label="out exists")
    name_form = data.draw(st.sampled_from(["separate", "equals"]), label="name form")

    base = CLI_BASE + CLI_BASE_PER_ALGO.get(algo or "ppo", [])
    argv = ["train", "CartPole-v1"]
    if algo is not None:
        argv += ["--algo", algo]
    for pair in [*base, *pairs]:
        argv += ["--set", pair]
    argv += ["--steps", steps] if data.draw(st.booleans(), label="steps form") else [f"--steps={steps}"]
    if seed is not None:
        argv += [f"--seed={seed}"]
    if name is not None:
        argv += ["--name", name] if name_form == "separate" else [f"--name={name}"]

    run_train(capsys, argv, name, out_exists)


# Arguments at the edges, in every CI run: a directory name may be up to 255 bytes (NAME_MAX);
# user text echoed in an error must not break its line.
EDGE_NAMES = ["run", "-x", " ", "x\n", "名前", "a" * 200, "a" * 240, "a" * 241, "a" * 255, "é" * 127, "a" * 256,
              "a" * 4096, ".", "", "../x", "/abs"]
EDGE_ARGS = {  # id: (ENV_ID, more arguments)
    "algo-newline": ("CartPole-v1", ["--algo", "pp\no"]),
    "algo-escape": ("CartPole-v1", ["--algo", "\x1b[31mppo"]),
    "set-key-newline": ("CartPole-v1", ["--set", "learning\nrate=1e-3"]),
    "set-key-cr": ("CartPole-v1", ["--set", "gam\rma=0.9"]),
    "set-value-newline": ("CartPole-v1", ["--set", "gamma=0.9\n9"]),
    "set-no-equals-newline": ("CartPole-v1", ["--set", "gamma\n"]),
    "steps-newline": ("CartPole-v1", ["--steps=1\n6"]),
    "seed-newline": ("CartPole-v1", ["--seed=1\n"]),
    "env-newline": ("Cart\nPole-v1", []),
}


def _base_sets() -> list[str]:
    return [arg for pair in CLI_BASE + CLI_BASE_PER_ALGO["ppo"] for arg in ("--set", pair)]


@pytest.mark.parametrize("out_exists", [False, True], ids=["new-out", "existing-out"])
@pytest.mark.parametrize("name", EDGE_NAMES, ids=[f"{n[:8]!r}x{len(n.encode())}" for n in EDGE_NAMES])
def test_cli_train_names(capsys, name, out_exists):
    run_train(capsys, ["train", "CartPole-v1", *_base_sets(), "--steps", "16", f"--name={name}"], name, out_exists)


@pytest.mark.parametrize("env_id, args", EDGE_ARGS.values(), ids=EDGE_ARGS.keys())
def test_cli_train_edge_arguments(capsys, env_id, args):
    run_train(capsys, ["train", env_id, *_base_sets(), "--steps", "16", *args], None, False)
