"""PPOConfig validation, value parsing, unknown keys, and config files."""

from __future__ import annotations

import json

import pytest

import gymnasium as gym

from ppolab.config import PRESETS, PPOConfig, load_config_file, parse_assignments, parse_value, preset
from ppolab.errors import ConfigError
from ppolab.envs import register_namespace


def error_of(**kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        PPOConfig(**kwargs)
    return str(info.value)


def test_defaults_are_valid_and_typed():
    c = PPOConfig()
    assert c.batch_size == c.n_envs * c.n_steps
    assert isinstance(c.hidden_sizes, tuple)
    assert c.target_kl is None
    assert PPOConfig.from_dict(c.to_dict()) == c  # round trip through a plain dict


@pytest.mark.parametrize("algo, env_id", [(a, e) for a in PRESETS for e in sorted(PRESETS[a])])
def test_every_preset_is_a_registered_env_and_a_valid_config(algo, env_id):
    register_namespace(env_id)  # MinAtar, MiniGrid: their packages register the ids
    gym.spec(env_id)  # raises for an unknown or misspelled id
    config = preset(env_id, algo)
    assert {k: getattr(config, k) for k in PRESETS[algo][env_id]} == PRESETS[algo][env_id]


def test_unknown_env_gets_the_defaults():
    assert preset("MyEnv-v0") == preset(None) == PPOConfig()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# ------------------------------------------------------------------ range checks
@pytest.mark.parametrize("value", [0, 0.0, -0.1, float("nan"), float("inf")])
def test_clip_coef_must_be_positive_and_finite(value):
    msg = error_of(clip_coef=value)
    assert "clip_coef" in msg and "(0, 1]" in msg and repr(float(value)) in msg


@pytest.mark.parametrize("name", ["gamma", "gae_lambda"])
@pytest.mark.parametrize("value", [-0.01, 1.01, 2, float("nan")])
def test_discount_and_lambda_in_unit_interval(name, value):
    msg = error_of(**{name: value})
    assert f"{name}=" in msg and "[0, 1]" in msg and repr(float(value)) in msg


@pytest.mark.parametrize("name", ["gamma", "gae_lambda"])
@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_discount_and_lambda_bounds_are_allowed(name, value):
    assert getattr(PPOConfig(**{name: value}), name) == value


def test_minibatch_larger_than_batch():
    msg = error_of(n_envs=2, n_steps=4, minibatch_size=9)
    assert "minibatch_size=9" in msg
    assert "8" in msg and "n_envs" in msg and "n_steps" in msg  # names the batch size and its parts
    assert PPOConfig(n_envs=2, n_steps=4, minibatch_size=8).minibatch_size == 8


@pytest.mark.parametrize("name", ["n_envs", "n_steps", "total_steps", "n_epochs", "minibatch_size"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_must_be_positive(name, value):
    msg = error_of(**{name: value})
    assert f"invalid {name}={value}" in msg and "[1, " in msg


def test_bad_activation_lists_the_choices():
    msg = error_of(activation="sigmoid")
    assert "activation='sigmoid'" in msg and "tanh" in msg and "relu" in msg


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(learning_rate=0), "learning_rate"),
        (dict(learning_rate=float("inf")), "learning_rate"),
        (dict(ent_coef=-0.01), "ent_coef"),
        (dict(vf_coef=-1), "vf_coef"),
        (dict(max_grad_norm=0), "max_grad_norm"),
        (dict(target_kl=0), "target_kl"),
        (dict(hidden_sizes=(64,) * 9), "hidden_sizes"),
        (dict(cnn_channels=()), "cnn_channels"),
        (dict(cnn_channels=(32, 64), cnn_kernels=(8, 4, 3), cnn_strides=(4, 2)), "cnn_kernels"),
        (dict(shared_encoder=False, shared_trunk=True), "shared_trunk"),
        (dict(device="gpu"), "device"),
        (dict(device="cuda:x"), "device"),
        (dict(device="auto\n"), "device"),
        (dict(encoder="no_colon"), "encoder"),
        (dict(unsupported_observations="ignore"), "unsupported_observations"),
        (dict(hidden_sizes=(64, 0)), "hidden_sizes"),
        (dict(vectorization="threads"), "vectorization"),
        (dict(seed=-1), "seed"),
        (dict(rolling_window=0), "rolling_window"),
        (dict(torch_threads=0), "torch_threads"),
    ],
)
def test_other_fields_are_checked(kwargs, name):
    assert f"invalid {name}=" in error_of(**kwargs)


def test_replace_validates_again():
    with pytest.raises(ConfigError, match="gamma"):
        PPOConfig().replace(gamma=1.5)
    assert PPOConfig().replace(gamma=0.9).gamma == 0.9


# ------------------------------------------------------------------ unknown keys
def test_unknown_key_in_replace_suggests_the_closest():
    with pytest.raises(ConfigError) as info:
        PPOConfig().replace(learning_rat=1e-3)
    msg = str(info.value)
    assert "'learning_rat'" in msg and "'learning_rate'" in msg


def test_unknown_key_in_from_dict():
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict({"gae_lamda": 0.9})
    assert "'gae_lamda'" in str(info.value) and "'gae_lambda'" in str(info.value)


def test_unknown_key_in_parse_assignments():
    with pytest.raises(ConfigError) as info:
        parse_assignments(["n_epoch=3"])
    assert "'n_epoch'" in str(info.value) and "'n_epochs'" in str(info.value)


def test_unknown_key_without_a_close_match_has_no_suggestion():
    with pytest.raises(ConfigError) as info:
        PPOConfig.from_dict({"zzzzzz": 1})
    assert "'zzzzzz'" in str(info.value) and "did you mean" not in str(info.value)


def test_parse_assignments_format():
    assert parse_assignments(["learning_rate=1e-3", " n_envs = 4 "]) == {"learning_rate": "1e-3", "n_envs": "4"}
    for bad in ["learning_rate", "=3"]:
        with pytest.raises(ConfigError, match="key=value"):
            parse_assignments([bad])


def test_assignments_to_config_end_to_end():
    c = PPOConfig.from_dict(parse_assignments(
        ["total_steps=1e5", "hidden_sizes=32,16", "target_kl=0.02", "anneal_lr=false", "gamma=0.98"]
    ))
    assert c.total_steps == 100_000 and type(c.total_steps) is int
    assert c.hidden_sizes == (32, 16)
    assert c.target_kl == 0.02
    assert c.anneal_lr is False
    assert c.gamma == 0.98


# ------------------------------------------------------------------ parse_value
def test_parse_int():
    assert parse_value("total_steps", "1e5", int) == 100_000
    assert type(parse_value("total_steps", "1e5", int)) is int
    assert parse_value("total_steps", "1_000_000", int) == 1_000_000
    assert parse_value("n_envs", 8.0, int) == 8
    for bad in ["abc", "1.5", True]:
        with pytest.raises(ConfigError) as info:
            parse_value("n_steps", bad, int)
        msg = str(info.value)
        assert "n_steps" in msg and repr(bad) in msg and "an integer" in msg


def test_parse_int_keeps_large_integers_exact():
    """A 64-bit seed given as a string must not be rounded through float."""
    assert parse_value("seed", "9007199254740993", int) == 9007199254740993  # 2**53 + 1
    assert PPOConfig(seed="4294967295").seed == 2**32 - 1  # the largest seed NumPy accepts
    with pytest.raises(ConfigError) as info:
        PPOConfig(seed="4294967296")
    assert "seed" in str(info.value) and "4_294_967_295" in str(info.value)


def test_parse_float():
    assert parse_value("learning_rate", "3e-4", float) == 3e-4
    assert parse_value("learning_rate", 1, float) == 1.0 and type(parse_value("learning_rate", 1, float)) is float
    with pytest.raises(ConfigError) as info:
        parse_value("learning_rate", "fast", float)
    assert "learning_rate" in str(info.value) and "'fast'" in str(info.value) and "a number" in str(info.value)


def test_parse_tuple():
    assert parse_value("hidden_sizes", "64,64", tuple[int, ...]) == (64, 64)
    assert parse_value("hidden_sizes", "[128, 64]", tuple[int, ...]) == (128, 64)
    assert parse_value("hidden_sizes", [32, 32, 32], tuple[int, ...]) == (32, 32, 32)
    assert parse_value("hidden_sizes", 64, tuple[int, ...]) == (64,)
    with pytest.raises(ConfigError) as info:
        parse_value("hidden_sizes", "64,big", tuple[int, ...])
    assert "hidden_sizes" in str(info.value) and "64,64" in str(info.value)


def test_parse_optional():
    for text in ["none", "None", "null", ""]:
        assert parse_value("target_kl", text, float | None) is None
    assert parse_value("target_kl", None, float | None) is None
    assert parse_value("target_kl", "0.015", float | None) == 0.015
    assert PPOConfig(target_kl="none").target_kl is None
    with pytest.raises(ConfigError, match="target_kl"):
        parse_value("target_kl", "abc", float | None)


def test_parse_bool():
    for text in ["true", "True", "yes", "on", "1"]:
        assert parse_value("anneal_lr", text, bool) is True
    for text in ["false", "FALSE", "no", "off", "0"]:
        assert parse_value("anneal_lr", text, bool) is False
    assert parse_value("anneal_lr", False, bool) is False
    with pytest.raises(ConfigError) as info:
        parse_value("anneal_lr", "maybe", bool)
    assert "anneal_lr" in str(info.value) and "true or false" in str(info.value)


def test_strings_in_the_constructor_are_coerced():
    c = PPOConfig(n_envs="4", n_steps="16", minibatch_size="32", clip_value_loss="false",
                  hidden_sizes="8,8", learning_rate="1e-3")
    assert (c.n_envs, c.n_steps, c.minibatch_size) == (4, 16, 32)
    assert c.clip_value_loss is False and c.hidden_sizes == (8, 8) and c.learning_rate == 1e-3


# ------------------------------------------------------------------ config files
def test_load_yaml(tmp_path):
    path = tmp_path / "ppo.yaml"
    # PyYAML reads 1e-3 (no dot) as a string: the config must still turn it into a float
    path.write_text(
        "algo: ppo\nenv_id: CartPole-v1\nlearning_rate: 1e-3\nhidden_sizes: [32, 32]\n"
        "target_kl: null\nanneal_lr: false\nn_envs: 4\n"
    )
    data = load_config_file(path)
    assert "algo" not in data and "env_id" not in data
    c = PPOConfig.from_dict(data)
    assert c.learning_rate == 1e-3 and c.hidden_sizes == (32, 32) and c.target_kl is None
    assert c.anneal_lr is False and c.n_envs == 4


def test_load_json(tmp_path):
    path = tmp_path / "ppo.json"
    path.write_text(json.dumps({"gamma": 0.98, "n_epochs": 3, "hidden_sizes": [16]}))
    c = PPOConfig.from_dict(load_config_file(path))
    assert c.gamma == 0.98 and c.n_epochs == 3 and c.hidden_sizes == (16,)


def test_load_empty_yaml_is_empty(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert load_config_file(path) == {}


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("bad.yaml", "gamma: [0.9\nlr: 2\n", "cannot parse"),
        ("bad.json", '{"gamma": 0.9,}', "cannot parse"),
        ("list.yaml", "- 1\n- 2\n", "mapping"),
        ("unknown.yaml", "learning_rat: 0.1\n", "learning_rate"),
    ],
)
def test_malformed_files(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)  # the CLI prints it as one line
    if needle != "learning_rate":
        assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "nope.yaml")


def test_continuous_actions_without_a_preset_get_the_continuous_defaults():
    from ppolab.agent import default_config
    from ppolab.config import CONTINUOUS_DEFAULTS, config_class

    for algo in CONTINUOUS_DEFAULTS:
        config, _, origin = default_config("MountainCarContinuous-v0", algo)
        assert origin.startswith(f"the {algo} continuous-control defaults")
        assert config == config_class(algo)(**CONTINUOUS_DEFAULTS[algo])
        assert config.normalize_observations and config.normalize_rewards
        assert default_config("Acrobot-v1", algo)[0] == config_class(algo)()  # discrete: the defaults
        assert default_config("Pendulum-v1", "ppo")[0] == preset("Pendulum-v1")  # a preset wins
    ppo = default_config("MountainCarContinuous-v0", "ppo")[0]
    assert (ppo.n_envs, ppo.n_steps, ppo.n_epochs, ppo.minibatch_size, ppo.learning_rate) == (1, 2048, 10, 64, 3e-4)


def test_a_factory_is_not_called_once_more_to_choose_the_defaults():
    """Choosing the defaults makes one env to look at its action space; from a factory that env
    is the first one trained on, so the factory is called exactly n_envs times."""
    from ppolab import PPO

    made = []

    def factory():
        made.append(1)
        return gym.make("MountainCarContinuous-v0")

    agent = PPO(factory)
    try:
        assert agent.config.n_envs == 1 and agent.config.normalize_observations
        assert len(made) == 1
    finally:
        agent.close()


@pytest.mark.parametrize(("values", "message"), [
    (dict(clip_coef=1e300), "invalid clip_coef=1e+300: must be a number in (0, 1] (representable in float32)"),
    (dict(ent_coef=1e-40), "invalid ent_coef=1e-40: must be a number in [0, 100] (representable in float32)"),
    (dict(n_envs=100_000), "invalid n_envs=100000: must be an integer in [1, 65_536]"),
    (dict(hidden_sizes=(64,) * 9), "invalid hidden_sizes=(64, 64, 64, 64, 64, 64, 64, 64, 64): must be 0 to 8 layer widths"),
    (dict(hidden_sizes=(64, 5000)), "must be layer widths each an integer in [1, 4096]"),
    (dict(n_envs=1000, total_steps=1000), "invalid total_steps=1000: must be at least one rollout, "
     "n_envs * n_steps = 1000 * 128 = 128,000 steps"),
    (dict(reward_threshold=float("inf")), "invalid reward_threshold=inf"),
    (dict(log_std_init=100.0), "invalid log_std_init=100.0: must be a number in [-20, 20]"),
])
def test_every_numeric_field_has_bounds_the_float32_math_can_carry(values, message):
    assert message in error_of(**values)


def test_every_numeric_field_declares_its_bounds():
    """A new numeric or choice field without bounds would get no range check at all."""
    import dataclasses

    from ppolab.config import CONFIG_CLASSES, _field_bounds

    free_text = {"encoder", "device"}  # checked in _validate: a 'module:Attr' path, a device pattern
    for cls in CONFIG_CLASSES.values():
        for f in dataclasses.fields(cls):
            if f.type not in ("bool",) and f.name not in free_text:
                assert _field_bounds(cls, f.name) is not None, f"{cls.__name__}.{f.name} has no bounds"
