"""Action masks (ppolab.masks): masked actions have probability exactly 0 and are never drawn,
entropy and KL are those of the valid actions, masks come from info["action_mask"] or an
action_masks() method, are stored in the rollout and used in every update, and a bad mask
stops training with a one-line error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from envs_for_tests import MaskedChoiceEnv
from ppolab import A2C, PPO, TRPO, VPG
from ppolab.action_spaces import ActionSpec
from ppolab.agent import Agent
from ppolab.distributions import Categorical, MultiCategorical
from ppolab.errors import ConfigError, EnvironmentFaultError, ModelFileError
from ppolab.evaluation import evaluate
from ppolab.masks import checked
from test_algorithms import collect_batch

SMALL = dict(n_envs=4, n_steps=32, minibatch_size=64, total_steps=4096)
CHOICE = "envs_for_tests:MaskedChoiceEnv"
DISCRETE_6 = ActionSpec("discrete", nvec=(6,), start=(0,))
PAIR = ActionSpec("multidiscrete", nvec=(3, 4), start=(0, 0))


def random_masks(rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
    mask = torch.rand(rows, n, generator=generator) < 0.5
    mask[torch.arange(rows), torch.randint(n, (rows,), generator=generator)] = True
    return mask


# --- the distributions ------------------------------------------------------------------------


def test_no_masked_action_is_ever_drawn_in_100k_samples():
    g = torch.Generator().manual_seed(0)
    n = 100_000
    logits = torch.randn(n, 6, generator=g) * 3
    mask = random_masks(n, 6, g)
    dist = Categorical(logits, mask)
    actions = dist.sample(g)
    assert mask[torch.arange(n), actions].all()
    assert (dist.log_probs.exp()[~mask] == 0).all()  # exactly 0, not just small
    assert mask[torch.arange(n), dist.mode()].all()

    pair_mask = torch.cat([random_masks(n, 3, g), random_masks(n, 4, g)], dim=1)
    pair = MultiCategorical(torch.randn(n, 7, generator=g) * 3, (3, 4), pair_mask)
    drawn = pair.sample(g)
    assert pair_mask[torch.arange(n), drawn[:, 0]].all()
    assert pair_mask[torch.arange(n), 3 + drawn[:, 1]].all()


def test_masked_samples_follow_the_softmax_over_the_valid_actions():
    g = torch.Generator().manual_seed(1)
    logits = torch.tensor([0.5, 2.0, -1.0, 1.0])
    mask = torch.tensor([True, False, True, True])
    n = 100_000
    actions = Categorical(logits.expand(n, 4), mask.expand(n, 4)).sample(g)
    frequencies = torch.bincount(actions, minlength=4).double() / n
    expected = torch.zeros(4, dtype=torch.float64)
    expected[mask] = torch.softmax(logits[mask].double(), 0)
    assert torch.allclose(frequencies, expected, atol=0.006)  # about 4 standard errors


def test_masked_entropy_and_kl_are_those_of_the_valid_actions():
    g = torch.Generator().manual_seed(2)
    rows = 64
    p_logits, q_logits = torch.randn(rows, 6, generator=g, dtype=torch.float64), torch.randn(
        rows, 6, generator=g, dtype=torch.float64)
    mask = random_masks(rows, 6, g)
    p, q = Categorical(p_logits, mask), Categorical(q_logits, mask)
    for i in range(rows):
        valid = mask[i]
        p_valid = torch.softmax(p_logits[i][valid], 0)
        q_valid = torch.softmax(q_logits[i][valid], 0)
        assert p.entropy()[i].item() == pytest.approx(-(p_valid * p_valid.log()).sum().item(), abs=1e-12)
        assert p.kl(q)[i].item() == pytest.approx((p_valid * (p_valid / q_valid).log()).sum().item(), abs=1e-12)
    # uniform logits: the entropy is log(number of valid actions)
    uniform = Categorical(torch.zeros(rows, 6), mask)
    assert torch.allclose(uniform.entropy(), mask.sum(1).float().log(), atol=1e-6)
    # MultiDiscrete: the sum over components of their masked entropies
    pair_mask = torch.tensor([[True, False, True, False, True, True, False]])
    pair = MultiCategorical(torch.zeros(1, 7), (3, 4), pair_mask)
    assert pair.entropy().item() == pytest.approx(math.log(2) + math.log(2), abs=1e-6)


def test_masked_logits_get_no_gradient_and_nothing_is_nan():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 6, generator=g, requires_grad=True)
    mask = random_masks(32, 6, g)
    dist = Categorical(logits, mask)
    old = Categorical(torch.randn(32, 6, generator=g), mask)
    loss = dist.log_prob(dist.sample(g)).sum() + dist.entropy().sum() + old.kl(dist).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert (logits.grad[~mask] == 0).all() and (logits.grad[mask] != 0).any()


# --- checking what the env gives --------------------------------------------------------------


def test_a_mask_of_the_wrong_dtype_or_shape_is_refused_naming_the_shapes():
    needed = np.ones(2, dtype=bool)
    with pytest.raises(EnvironmentFaultError, match=r"dtype float32 at step 8; expected bool or integers.*\(6,\)"):
        checked(np.ones((2, 6), dtype=np.float32), DISCRETE_6, needed, "at step 8")
    with pytest.raises(EnvironmentFaultError, match=r"shape \(5,\) at step 8; expected \(6,\), one flag per action"):
        checked(np.ones((2, 5), dtype=bool), DISCRETE_6, needed, "at step 8")
    with pytest.raises(EnvironmentFaultError, match=r"expected \(7,\).*components' flags one after the other"):
        checked(np.ones((2, 12), dtype=bool), PAIR, needed, "at step 8")


def test_a_state_without_valid_actions_is_refused_unless_its_action_is_ignored():
    masks = np.ones((3, 6), dtype=np.int8)
    masks[1] = 0
    with pytest.raises(EnvironmentFaultError, match=r"env 1's action mask has no valid action at step 40"):
        checked(masks, DISCRETE_6, np.ones(3, dtype=bool), "at step 40")
    # env 1 is at an autoreset step: its mask is never used, and is stored as all-valid
    out = checked(masks, DISCRETE_6, np.array([True, False, True]), "at step 40")
    assert out.dtype == bool and out.all()
    pair = np.ones((1, 7), dtype=bool)
    pair[0, 3:] = False
    with pytest.raises(EnvironmentFaultError, match="no valid action for action component 1"):
        checked(pair, PAIR, np.ones(1, dtype=bool), "at step 0")


# --- training ---------------------------------------------------------------------------------


@pytest.mark.parametrize("env, source, vectorization", [
    (CHOICE, "info", "sync"), ("envs_for_tests:MethodMaskedChoiceEnv", "method", "sync"),
    ("envs_for_tests:MethodMaskedChoiceEnv", "method", "async"), (CHOICE, "info", "async")])
def test_masks_come_from_info_or_from_the_action_masks_method(env, source, vectorization):
    """The env raises on an invalid action: training runs only if every action was valid."""
    agent = PPO(env, seed=0, vectorization=vectorization, **SMALL)
    try:
        assert agent.env_info.action_mask == source and agent.uses_action_masks
        agent.learn(1024)
        rollout = agent.collector.rollout
        taken = rollout.masks.gather(-1, rollout.actions.unsqueeze(-1)).squeeze(-1)
        assert taken.all()
        assert not rollout.masks.all()  # the stored masks are the env's, not all-valid
    finally:
        agent.close()


def test_the_ratio_is_exactly_one_before_the_first_step_and_needs_the_stored_masks():
    agent = PPO(CHOICE, seed=0, **SMALL)
    try:
        batch = collect_batch(agent)
        with torch.no_grad():
            masked = agent.policy.distribution(batch.observations, batch.masks).log_prob(batch.actions)
            unmasked = agent.policy.distribution(batch.observations).log_prob(batch.actions)
    finally:
        agent.close()
    assert batch.masks is not None and batch.masks.shape == (len(batch), 6)
    assert torch.allclose(masked, batch.log_probs, atol=1e-6, rtol=0)
    assert (unmasked - batch.log_probs).abs().max() > 0.1  # without the masks the ratio is not 1


@pytest.mark.parametrize("cls", [PPO, TRPO, A2C, VPG], ids=["ppo", "trpo", "a2c", "vpg"])
def test_every_algorithm_trains_with_masks(cls):
    settings = {"n_envs": 4, "n_steps": 32, "total_steps": 2048}
    if cls is PPO:
        settings["minibatch_size"] = 64
    agent = cls(CHOICE, seed=0, **settings)
    try:
        result = agent.learn()
    finally:
        agent.close()
    assert result.total_steps == 2048 and math.isfinite(result.final_mean_return_100)


def test_multidiscrete_masks_and_an_all_invalid_terminal_mask():
    for env in ("envs_for_tests:MaskedPairEnv", "envs_for_tests:TerminalMaskEnv"):
        agent = PPO(env, seed=0, **SMALL)
        try:
            agent.learn(1024)
        finally:
            agent.close()


def test_a_masked_policy_learns_the_masked_task():
    """Random valid actions earn about 3 of 8; the masked policy learns the best valid one."""
    agent = PPO(CHOICE, seed=0, n_envs=8, n_steps=64, minibatch_size=128, learning_rate=3e-3,
                total_steps=40_960, reward_threshold=7.5)
    try:
        result = agent.learn()
    finally:
        agent.close()
    assert result.solved, result


def test_a_state_without_valid_actions_stops_training_naming_the_env_and_step():
    agent = PPO("envs_for_tests:NoValidActionEnv", seed=0, **SMALL)
    try:
        with pytest.raises(EnvironmentFaultError, match=r"env \d's action mask has no valid action at step [\d,]+;"):
            agent.learn(1024)
    finally:
        agent.close()


@pytest.mark.parametrize("env, message", [
    ("envs_for_tests:WrongMaskShapeEnv", r"shape \(5,\) at the start of training; expected \(6,\)"),
    ("envs_for_tests:FloatMaskEnv", r"dtype float32 at the start of training"),
])
def test_bad_masks_are_refused_before_training(env, message):
    with pytest.raises(EnvironmentFaultError, match=message):
        PPO(env, seed=0, **SMALL)


def test_masks_can_be_turned_off_or_demanded():
    with pytest.raises(ConfigError, match="has no action_masks\\(\\) method"):
        PPO(CHOICE, seed=0, action_masks="method", **SMALL)
    with pytest.raises(ConfigError, match="gives no info\\['action_mask'\\]"):
        PPO("CartPole-v1", seed=0, action_masks="info", **SMALL)
    agent = PPO(CHOICE, seed=0, action_masks="off", **SMALL)
    try:
        assert not agent.uses_action_masks and agent.collector.rollout.masks is None
        with pytest.raises(EnvironmentFaultError, match="invalid action"):  # the env's own refusal
            agent.learn(4096)
    finally:
        agent.close()
    plain = PPO("CartPole-v1", seed=0, **SMALL)  # auto, and the env has no masks
    try:
        assert plain.env_info.action_mask is None
    finally:
        plain.close()


# --- using a masked policy ------------------------------------------------------------------------


def test_predict_needs_and_obeys_masks_and_the_model_file_remembers(tmp_path):
    agent = PPO(CHOICE, seed=0, **SMALL)
    try:
        agent.learn(1024)
        path = agent.save(tmp_path / "model.pt")
    finally:
        agent.close()
    loaded = Agent.load(path)
    assert loaded.uses_action_masks and loaded.env_info.action_mask == "info"
    env = MaskedChoiceEnv()
    obs, info = env.reset(seed=0)
    with pytest.raises(ConfigError, match=r"trained with action masks .*action_mask="):
        loaded.predict(obs)
    with pytest.raises(ConfigError, match=r"shape \(4,\) given to predict\(\); expected \(6,\)"):
        loaded.predict(obs, action_mask=np.ones(4, dtype=bool))
    for _ in range(200):
        for deterministic in (True, False):
            action = loaded.predict(obs, deterministic, action_mask=info["action_mask"])
            assert info["action_mask"][action] == 1
        obs, _, terminated, _, info = env.step(action)
        if terminated:
            obs, info = env.reset()
    g = torch.Generator().manual_seed(4)
    batch_masks = random_masks(16, 6, g).numpy()
    actions = loaded.predict(np.ones((16, 6), dtype=np.float32), action_mask=batch_masks)
    assert batch_masks[np.arange(16), actions].all()
    with pytest.raises(ModelFileError, match=r"trained with action masks from info\['action_mask'\]; this env provides none"):
        Agent.load(path, env="envs_for_tests:PlainChoiceEnv")


def test_evaluate_gives_the_policy_the_masks():
    agent = PPO(CHOICE, seed=0, **SMALL)
    try:
        result = evaluate(agent, episodes=3)
    finally:
        agent.close()
    assert result.lengths == [8, 8, 8]


def test_cli_trains_and_evaluates_an_env_that_raises_on_invalid_actions(run_cli, tmp_path):
    proc = run_cli(["train", CHOICE, "--steps", "2048", "--set", "n_envs=4", "--set", "n_steps=64",
                    "--set", "minibatch_size=64", "--out", tmp_path, "--name", "run", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", tmp_path / "run", "--episodes", "3"])
    assert proc.returncode == 0, proc.stderr
    assert "mean return" in proc.stdout
    proc = run_cli(["train", "envs_for_tests:NoValidActionEnv", "--steps", "2048", "--set", "n_envs=4",
                    "--set", "n_steps=64", "--set", "minibatch_size=64", "--out", tmp_path, "--quiet"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "action mask has no valid action at step" in proc.stderr
