"""Observation specs, encoders and per-leaf storage: every space kind, nested Dict/Tuple,
channel-first and channel-last images, bit-exact uint8 storage, user encoders, and the errors
for what ppolab cannot encode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs_for_tests as E
from ppolab import PPO
from ppolab.config import PPOConfig
from ppolab.encoders import CNNEncoder, build_encoder, zeros
from ppolab.errors import ConfigError, EnvironmentSpecError, ModelFileError
from ppolab.observations import Leaf, ObservationSpec
from ppolab.policies import ActorCritic
from ppolab.rollout import allocate

SMALL_CNN = dict(cnn_channels=(8,), cnn_kernels=(3,), cnn_strides=(1,), cnn_features=32)


@pytest.mark.parametrize("space, kind, shape, dtype, channels_last", [
    (spaces.Box(0, 255, (84, 84, 3), np.uint8), "image", (84, 84, 3), "uint8", True),
    (spaces.Box(0, 255, (4, 84, 84), np.uint8), "image", (4, 84, 84), "uint8", False),
    (spaces.Box(0, 255, (84, 84), np.uint8), "image", (84, 84), "uint8", False),
    (spaces.Box(0, 1, (10, 10, 4), bool), "image", (10, 10, 4), "bool", True),
    (spaces.Box(0, 1, (10, 10, 10), bool), "image", (10, 10, 10), "bool", True),  # a tie: HWC
    (spaces.Box(0, 1, (3, 64, 64), np.float32), "vector", (3, 64, 64), "float32", False),
    (spaces.Box(0, 255, (7,), np.uint8), "vector", (7,), "float32", False),
    (spaces.Discrete(16, start=2), "discrete", (), "int64", False),
    (spaces.MultiDiscrete([3, 4]), "multidiscrete", (2,), "int64", False),
    (spaces.MultiBinary(5), "binary", (5,), "int8", False),
])
def test_leaf_kinds_and_image_layout(space, kind, shape, dtype, channels_last):
    spec = ObservationSpec.from_space(space)
    assert not spec.structured and len(spec.leaves) == 1
    leaf = spec.single
    assert (leaf.kind, leaf.shape, leaf.dtype, leaf.channels_last) == (kind, shape, dtype, channels_last)
    assert ObservationSpec.from_dict(spec.to_dict()) == spec


def test_nested_dict_and_tuple_leaves_are_keyed_by_path():
    spec = ObservationSpec.from_space(E.NestedObsEnv().observation_space)
    assert spec.structured
    assert [(leaf.key, leaf.kind) for leaf in spec.leaves] == [
        ("camera", "image"), ("state/0", "vector"), ("state/1", "discrete"),
        ("state/2/bits", "binary"), ("state/2/dice", "multidiscrete")]
    assert ObservationSpec.from_space(spec.to_space()) == spec
    sample = E.NestedObsEnv().observation_space.sample()
    stored = spec.storage(sample)
    assert set(stored) == {leaf.key for leaf in spec.leaves}
    assert stored["camera"].dtype == np.uint8 and stored["state/1"].dtype == np.int64
    np.testing.assert_array_equal(stored["state/2/dice"], sample["state"][2]["dice"])
    assert spec.problem(sample) is None


@pytest.mark.parametrize("env_class", [E.NestedObsEnv, E.DictMixEnv, E.PixelSideEnv])
@pytest.mark.parametrize("shared_encoder", [True, False])
def test_actor_critic_output_shapes_for_every_leaf_kind(env_class, shared_encoder):
    space = env_class().observation_space
    spec = ObservationSpec.from_space(space)
    config = PPOConfig(**SMALL_CNN, shared_encoder=shared_encoder)
    policy = ActorCritic(spec, 3, config, space)
    T, N = 5, 2
    obs = {k: v.reshape(T, N, *v.shape[1:]) for k, v in zeros(spec, T * N).items()} if spec.structured \
        else zeros(spec, T * N).reshape(T, N, *spec.shape)
    dist, values = policy(obs)
    assert dist.logits.shape == (T, N, 3) and dist.logits.dtype == torch.float32
    assert values.shape == (T, N)
    assert policy.distribution(obs).logits.shape == (T, N, 3) and policy.value(obs).shape == (T, N)
    assert (policy.critic_encoder is None) == shared_encoder


def test_one_hot_binary_and_vector_encodings():
    spec = ObservationSpec.from_space(spaces.Dict({
        "d": spaces.Discrete(4, start=1), "m": spaces.MultiDiscrete([2, 3]),
        "b": spaces.MultiBinary(3), "v": spaces.Box(-1, 1, (2, 2), np.float32)}))
    encoder = build_encoder(spec, PPOConfig())
    obs = {"b": torch.tensor([[1, 0, 1]], dtype=torch.int8), "d": torch.tensor([3]),
           "m": torch.tensor([[1, 2]]), "v": torch.tensor([[[0.5, -0.5], [1.0, 0.0]]])}
    out = encoder(obs)
    # leaf order is the space's (Dict sorts its keys): b, d, m, v
    expected = [1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0.5, -0.5, 1.0, 0.0]
    assert encoder.features == 16
    assert out.tolist() == [expected]


def test_channel_last_image_is_the_channel_first_image_transposed():
    hwc = Leaf("", "image", (20, 20, 3), "uint8", channels_last=True)
    chw = Leaf("", "image", (3, 20, 20), "uint8")
    a = CNNEncoder(hwc, (8, 8), (3, 3), (2, 1), 16)
    b = CNNEncoder(chw, (8, 8), (3, 3), (2, 1), 16)
    b.load_state_dict(a.state_dict())
    image = torch.randint(0, 256, (4, 20, 20, 3), dtype=torch.uint8)
    torch.testing.assert_close(a(image), b(image.permute(0, 3, 1, 2)), rtol=1e-5, atol=1e-6)
    # uint8 is scaled to [0, 1] inside the network: the same image as floats in [0, 1]
    bool_leaf = Leaf("", "image", (3, 20, 20), "bool")
    c = CNNEncoder(bool_leaf, (8, 8), (3, 3), (2, 1), 16)
    c.load_state_dict(a.state_dict())
    bits = torch.rand(4, 3, 20, 20) > 0.5
    torch.testing.assert_close(c(bits), b((bits * 255).to(torch.uint8)), rtol=1e-5, atol=1e-6)


def test_uint8_images_are_stored_bit_exact_and_never_as_float():
    agent = PPO(E.PixelSideEnv, seed=0, n_envs=2, n_steps=16, minibatch_size=32, total_steps=32, **SMALL_CNN)
    seen = []
    original = agent.collector._observe

    def record(obs):  # the raw observations the vector env returned, in order
        seen.append(np.array(obs))
        return original(obs)

    agent.collector._observe = record
    rollout, _ = agent.collector.collect(0)
    stored = rollout.observations
    assert stored.dtype == torch.uint8 and stored.shape == (16, 2, 12, 12, 1)
    # row t is what the env returned before step t: the reset (before collect) is not in `seen`
    for t in range(1, 16):
        assert np.array_equal(stored[t].numpy(), seen[t - 1])
    agent.close()


def test_bytes_per_stored_transition_atari_vs_float32():
    spec = ObservationSpec.from_space(spaces.Box(0, 255, (4, 84, 84), np.uint8))
    stored = allocate(spec, 1, 1)
    assert stored.element_size() * stored.numel() == 4 * 84 * 84  # 28,224 bytes
    assert torch.zeros(1, 1, 4, 84, 84).element_size() * 4 * 84 * 84 == 4 * 28_224


def test_dict_observations_are_stored_per_key_in_their_dtypes():
    agent = PPO(E.DictMixEnv, seed=0, n_envs=2, n_steps=8, minibatch_size=16, total_steps=16, **SMALL_CNN)
    rollout, _ = agent.collector.collect(0)
    obs = rollout.observations
    assert {k: (v.dtype, tuple(v.shape)) for k, v in obs.items()} == {
        "image": (torch.uint8, (8, 2, 6, 6, 1)), "vector": (torch.float32, (8, 2, 2)),
        "mode": (torch.int64, (8, 2))}
    agent.close()


def test_observation_normalization_touches_vector_leaves_only():
    agent = PPO(E.DictMixEnv, seed=0, n_envs=2, n_steps=8, minibatch_size=16, total_steps=16,
                normalize_observations=True, **SMALL_CNN)
    assert list(agent.obs_normalizer.by_key) == ["vector"]
    rollout, _ = agent.collector.collect(0)
    assert rollout.observations["image"].dtype == torch.uint8
    assert int(rollout.observations["image"].max()) == 255
    assert agent.obs_normalizer.by_key["vector"].count == 2 + 8 * 2  # the reset, then every step
    agent.close()
    images_only = PPO(E.PixelSideEnv, seed=0, n_envs=2, n_steps=8, minibatch_size=16, total_steps=16,
                      normalize_observations=True, **SMALL_CNN)
    assert images_only.obs_normalizer is None  # nothing to normalize
    images_only.close()


@pytest.mark.parametrize("env, extra", [
    (E.PixelSideEnv, SMALL_CNN), (E.DictMixEnv, SMALL_CNN), (E.NestedObsEnv, {}),
    (lambda: gym.make("FrozenLake-v1", is_slippery=False), {}),
])
def test_model_file_round_trip_gives_identical_actions(tmp_path, env, extra):
    agent = PPO(env, seed=3, n_envs=2, n_steps=16, minibatch_size=32, **extra)
    agent.learn(64)
    path = agent.save(tmp_path / "model.pt")
    loaded = PPO.load(path)
    sample_env = agent.vec_env
    obs, _ = sample_env.reset(seed=11)
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    single = sample_env.single_observation_space.sample()
    assert np.array_equal(np.asarray(agent.predict(single)), np.asarray(loaded.predict(single)))
    assert loaded.env_info.observation == agent.env_info.observation
    agent.close()


def test_a_user_encoder_factory_trains_saves_and_loads(tmp_path):
    agent = PPO("CartPole-v1", seed=0, n_envs=2, n_steps=16, minibatch_size=32, encoder=E.tiny_encoder)
    assert agent.config.encoder == "envs_for_tests:tiny_encoder"
    assert agent.policy.encoder.features == 16
    agent.learn(64)
    loaded = PPO.load(agent.save(tmp_path / "m.pt"))
    obs = np.zeros((3, 4), dtype=np.float32) + 0.1
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    agent.close()


def test_a_user_encoder_must_return_batch_by_features():
    spec = ObservationSpec.from_space(spaces.Box(0, 1, (2, 3), np.float32))
    with pytest.raises(ConfigError, match=r"expected \(2, F\)") as info:
        build_encoder(spec, PPOConfig(encoder="envs_for_tests:wrong_shape_encoder"), spaces.Box(0, 1, (2, 3)))
    assert "it returned (2, 2, 3)" in str(info.value)
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        build_encoder(spec, PPOConfig(encoder="envs_for_tests:not_a_module_encoder"))
    with pytest.raises(ConfigError, match="top level"):
        PPO("CartPole-v1", encoder=lambda space: torch.nn.Flatten())


def test_unsupported_spaces_are_refused_before_anything_runs():
    with pytest.raises(EnvironmentSpecError, match=r"unsupported observation space Text\(.*Discrete, "
                                                   r"MultiDiscrete and MultiBinary"):
        PPO(E.TextObsEnv)
    with pytest.raises(EnvironmentSpecError, match="observation 'note' is Text.*unsupported_observations=drop"):
        PPO(E.DictWithTextEnv, unsupported_observations="refuse")


def test_an_unsupported_part_of_a_dict_is_dropped_with_a_notice(capsys):
    agent = PPO(E.DictWithTextEnv, n_envs=2, n_steps=16, minibatch_size=32)
    assert [leaf.key for leaf in agent.env_info.observation.leaves] == ["position"]
    err = capsys.readouterr().err
    assert "dropping observation note: Text" in err and err.count("\n") == 1
    agent.learn(32)
    agent.close()


def test_an_image_too_small_for_the_cnn_says_how_to_fix_it():
    with pytest.raises(EnvironmentSpecError) as info:
        PPO(E.TinyImageEnv)
    message = str(info.value)
    assert "6x6 pixels is too small for the CNN" in message and "at least 36x36" in message
    assert "--set cnn_kernels=3" in message
    agent = PPO(E.TinyImageEnv, n_envs=2, n_steps=16, minibatch_size=32, **SMALL_CNN)  # the fix works
    agent.close()


def test_a_model_loaded_with_an_env_of_other_observations_is_refused(tmp_path):
    agent = PPO(E.PixelSideEnv, seed=0, n_envs=2, n_steps=16, minibatch_size=32, **SMALL_CNN)
    path = agent.save(tmp_path / "m.pt")
    agent.close()
    with pytest.raises(ModelFileError, match=r"observations image 12x12x1 uint8 \(channel-last\).*"
                                             r"this env has .*observations \{image"):
        PPO.load(path, env=E.DictMixEnv)


def test_every_algorithm_trains_on_images_and_dicts():
    from ppolab import A2C, TRPO, VPG

    for cls in (PPO, TRPO, A2C, VPG):
        for env in (E.PixelSideEnv, E.DictMixEnv):
            extra = {} if cls is A2C else {"minibatch_size": 32} if cls is PPO else {"vf_minibatch_size": 32}
            agent = cls(env, seed=0, n_envs=2, n_steps=16, **SMALL_CNN, **extra)
            result = agent.learn(64)
            assert result.updates == 2
            agent.close()


def test_predict_refuses_an_observation_of_another_shape():
    agent = PPO(E.PixelSideEnv, n_envs=2, n_steps=16, minibatch_size=32, **SMALL_CNN)
    with pytest.raises(EnvironmentSpecError, match=r"predict\(\) got an observation of shape \(12, 12\)"):
        agent.predict(np.zeros((12, 12), dtype=np.uint8))
    agent.close()


def test_device_auto_is_cpu_without_cuda_and_cuda_is_refused_clearly():
    agent = PPO(E.PixelSideEnv, n_envs=2, n_steps=16, minibatch_size=32, **SMALL_CNN)
    assert agent.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    agent.close()
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device=cuda: CUDA is not available here"):
            PPO("CartPole-v1", device="cuda")
    with pytest.raises(ConfigError, match="invalid device='gpu'"):
        PPO("CartPole-v1", device="gpu")


# --------------------------------------------------------------------------- learning (slow)


@pytest.mark.slow
def test_the_cnn_policy_learns_a_pixel_task():
    """PixelSideEnv: random scores 4 of 8; the CNN must find the bright square's side."""
    agent = PPO(E.PixelSideEnv, seed=0, n_envs=8, n_steps=32, minibatch_size=64, learning_rate=1e-3,
                reward_threshold=7.5, total_steps=40_000, **SMALL_CNN)
    result = agent.learn()
    assert result.solved, result
    agent.close()


@pytest.mark.slow
def test_a_dict_env_of_image_vector_and_discrete_parts_is_learned():
    """DictMixEnv: the right action needs the image, the vector or neither, as the discrete
    mode says; random scores 4 of 8, and no single part gets past about 6."""
    agent = PPO(E.DictMixEnv, seed=0, n_envs=8, n_steps=32, minibatch_size=64, learning_rate=1e-3,
                reward_threshold=7.0, total_steps=60_000, **SMALL_CNN)
    result = agent.learn()
    assert result.solved, result
    agent.close()


@pytest.mark.slow
def test_frozen_lake_not_slippery_is_solved_by_the_defaults():
    agent = PPO(lambda: gym.make("FrozenLake-v1", is_slippery=False), seed=0, total_steps=50_000)
    assert agent.env_info.observation.single.kind == "discrete"
    result = agent.learn()
    assert result.solved and result.reward_threshold == 0.7, result
    agent.close()


@pytest.mark.slow
def test_minatar_breakout_preset_learns():
    """MinAtar Breakout (10x10x4 bool images) with its preset: a random policy scores about 0.5
    a game; 80k steps bring seed 0 past 3 (measured: 3.4 at 81,920 steps, 4.3 at 200k)."""
    pytest.importorskip("minatar")
    agent = PPO("MinAtar/Breakout-v1", seed=0)
    assert agent.env_info.observation.single.dtype == "bool"
    result = agent.learn(40 * 2048)
    assert result.final_mean_return_100 >= 2.0, result
    agent.close()


def test_resume_with_a_cnn_policy_continues_the_run(tmp_path):
    """Stopped after 2 of 4 updates, saved, loaded with its env and resumed: the schedule, the
    counters, the optimizer state and the weights carry on."""
    kwargs = dict(seed=4, n_envs=2, n_steps=32, minibatch_size=32, **SMALL_CNN)
    agent = PPO(E.PixelSideEnv, **kwargs)
    agent.learn(256, callback=lambda row: row["update"] < 2)
    assert agent.updates == 2 and agent.schedule == (0, 256)
    path = agent.save(tmp_path / "ckpt.pt")
    state = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    agent.close()
    loaded = PPO.load(path, env=E.PixelSideEnv)
    assert loaded.policy.encoder.convs[0].weight.dtype == torch.float32
    for name, value in loaded.policy.state_dict().items():
        assert torch.equal(value, state[name]), name  # same machine: bit-identical
    assert loaded.algorithm.optimizer.step_count == 2 * 4 * 2  # updates x epochs x minibatches
    rows: list[dict] = []
    result = loaded.resume(callback=rows.append)
    assert [r["update"] for r in rows] == [3, 4] and result.total_steps == 256
    assert not torch.equal(loaded.policy.encoder.convs[0].weight, state["encoder.convs.0.weight"])
    loaded.close()


def test_cnn_sizes_and_activation_are_settable():
    spec = ObservationSpec.from_space(spaces.Box(0, 255, (3, 20, 20), np.uint8))
    config = PPOConfig(cnn_channels=(4, 6), cnn_kernels=(5, 3), cnn_strides=(2, 1), cnn_features=10,
                       cnn_activation="tanh")
    encoder = build_encoder(spec, config)
    convs = [m for m in encoder.convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(4, (5, 5), (2, 2)), (6, (3, 3), (1, 1))]
    assert all(isinstance(m, torch.nn.Tanh) for m in encoder.convs if not isinstance(m, torch.nn.Conv2d))
    out = encoder(torch.full((2, 3, 20, 20), 255, dtype=torch.uint8))
    assert out.shape == (2, 10) and bool((out.abs() <= 1).all())


@pytest.mark.parametrize("settings", [{}, {"shared_trunk": True}, {"shared_encoder": False}])
def test_a_discrete_observation_is_looked_up_as_its_one_hot_would_be_multiplied(settings):
    """Discrete(n) into a trunk: the first layer takes column s of its weight (plus the bias)
    instead of multiplying a one-hot of s; outputs and gradients are the one-hot's (to float
    rounding: the gradient sums the same terms in another order)."""
    from torch.nn import functional as F

    space = spaces.Discrete(7, start=3)
    policy = ActorCritic(ObservationSpec.from_space(space), 3, PPOConfig(**settings), space)
    assert policy._lookup
    obs = torch.tensor([3, 9, 5, 5, 4, 3, 8, 6])

    def outputs(by_lookup: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        policy.zero_grad()
        if by_lookup:
            dist, value = policy(obs)
        else:
            x = F.one_hot(obs - 3, 7).float()
            dist = policy.policy_head(policy._trunk(policy._actor_layers, x))
            value = F.linear(policy._trunk(policy._critic_layers, x), *policy._value_head).squeeze(-1)
        (dist.log_prob(torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])).sum() + value.square().sum()).backward()
        return dist.logits.detach(), value.detach(), [p.grad.clone() for p in policy.parameters()]

    looked_up, multiplied = outputs(True), outputs(False)
    torch.testing.assert_close(looked_up[0], multiplied[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(looked_up[1], multiplied[1], rtol=1e-6, atol=1e-6)
    for a, b in zip(looked_up[2], multiplied[2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_recurrent_core_or_no_trunk_gets_the_one_hot_itself():
    space = spaces.Discrete(5)
    for settings in ({"recurrent": "gru"}, {"hidden_sizes": ()}):
        policy = ActorCritic(ObservationSpec.from_space(space), 2, PPOConfig(**settings), space)
        assert not policy._lookup
