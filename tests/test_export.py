"""ppolab export: the exported policy, run without ppolab (onnxruntime; torch.jit.load), acts as
predict(deterministic=True) does on observations from the env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from ppolab import PPO, Agent
from ppolab.envs import make_env
from ppolab.export import export, signature
from ppolab.observations import tree_map

N_OBSERVATIONS = 1000
SMALL_CNN = dict(cnn_channels=(4,), cnn_kernels=(3,), cnn_strides=(1,), cnn_features=16)
CASES = {
    "discrete actions": ("CartPole-v1", {}),
    "box actions, normalized observations": ("Pendulum-v1", {"normalize_observations": True}),
    "box actions, squashed": ("Pendulum-v1", {"squash_actions": True}),
    "discrete observations": ("FrozenLake-v1", {}),
    "masks": ("envs_for_tests:MaskedChoiceEnv", {"minibatch_size": 64}),
    "multidiscrete masks": ("envs_for_tests:MaskedPairEnv", {}),
    "image": ("envs_for_tests:PixelSideEnv", SMALL_CNN),
    "dict": ("envs_for_tests:DictMixEnv", {**SMALL_CNN, "normalize_observations": True}),
    "recurrent": ("ppolab/CueMemory-v0", {"recurrent": "lstm", "normalize_observations": True}),
}


def trained(env_id: str, settings: dict) -> Agent:
    agent = PPO(env_id, **{"seed": 1, "n_envs": 2, "n_steps": 32, "minibatch_size": 32, **settings})
    agent.learn(128)
    return agent


def episodes(agent: Agent, env_id: str) -> list[tuple[object, np.ndarray | None, bool]]:
    """N_OBSERVATIONS (observation, action mask, first step of an episode) from the env, acting
    at random among the valid actions."""
    env = make_env(env_id)
    env.action_space.seed(0)
    seen = []
    obs, info = env.reset(seed=0)
    start = True
    while len(seen) < N_OBSERVATIONS:
        mask = info.get("action_mask") if agent.uses_action_masks else None
        seen.append((obs, None if mask is None else np.asarray(mask, dtype=bool), start))
        if mask is None:
            action = env.action_space.sample()
        elif agent.env_info.action.kind == "discrete":
            action = int(np.random.default_rng(len(seen)).choice(np.flatnonzero(mask)))
        else:  # MaskedPairEnv: the components' flags one after the other
            action = np.array([np.flatnonzero(mask[:3])[-1], np.flatnonzero(mask[3:])[-1]])
        obs, _, terminated, truncated, info = env.step(action)
        start = terminated or truncated
        if start:
            obs, info = env.reset()
    env.close()
    return seen


def stacked(agent: Agent, seen: list) -> list[np.ndarray]:
    """The batched inputs of the exported policy (observation leaves, then the masks)."""
    keys = [leaf.key for leaf in agent.env_info.observation.leaves]
    leaves = [np.stack([np.asarray(o if not k else o[k]) for o, _, _ in seen]) for k in keys]
    leaves = [x.astype(leaf.dtype) for x, leaf in zip(leaves, agent.env_info.observation.leaves)]
    if agent.uses_action_masks:
        leaves.append(np.stack([m for _, m, _ in seen]))
    return leaves


def predicted(agent: Agent, seen: list) -> tuple[np.ndarray, list[torch.Tensor] | None]:
    """predict's actions, and for a recurrent policy the state each step started from."""
    if not agent.policy.recurrent:
        spec = agent.env_info.observation
        obs = stacked(agent, seen)
        batch = obs[0] if not spec.structured else {leaf.key: x for leaf, x in zip(spec.leaves, obs)}
        return agent.predict(batch, action_mask=obs[-1] if agent.uses_action_masks else None), None
    memory, actions, states = agent.new_memory(), [], []
    for obs, mask, start in seen:
        if start:
            memory.reset()
        states.append(memory.state * ~memory.starts.unsqueeze(-1))  # what the step sees
        actions.append(agent.predict(obs, action_mask=mask, memory=memory))
    return np.stack(actions), states


def log_prob(agent: Agent, observation: object, mask: np.ndarray | None, state: torch.Tensor | None,
             action: np.ndarray) -> float:
    """log pi(action | observation) as predict computes pi (``action`` as the env takes it)."""
    spec = agent.env_info.observation
    stored = tree_map(lambda x: x[None], spec.storage(observation))
    if agent.obs_normalizer is not None:
        stored = agent.obs_normalizer(stored, update=False)
    obs = tree_map(torch.as_tensor, stored)
    mask_t = None if mask is None else torch.as_tensor(mask[None])
    with torch.no_grad():
        if state is None:
            dist = agent.policy.distribution(obs, mask_t)
        else:
            dist = agent.policy.step(obs, state, torch.zeros(1, dtype=torch.bool), mask_t)[0]
        start = np.asarray(agent.env_info.action.start)
        stored_action = np.asarray(action) - (start[0] if agent.env_info.action.kind == "discrete" else start)
        return dist.log_prob(torch.as_tensor(stored_action)[None]).item()


def run_exported(agent: Agent, seen: list, call) -> np.ndarray:  # noqa: ANN001 - call(inputs) -> outputs
    inputs = stacked(agent, seen)
    if not agent.policy.recurrent:
        return call(inputs)[0]
    state, actions = np.zeros((1, agent.policy.state_size), dtype=np.float32), []
    for i, (_, _, start) in enumerate(seen):
        if start:
            state = np.zeros_like(state)
        action, state = call([x[i:i + 1] for x in inputs] + [state])
        actions.append(action[0])
    return np.stack(actions)


def onnx_session(agent: Agent, tmp_path: Path, deterministic: bool = True) -> onnxruntime.InferenceSession:
    """``agent`` exported to ONNX, loaded."""
    path = export(agent, tmp_path / "policy.onnx", "onnx", deterministic=deterministic)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def assert_same_actions(agent: Agent, seen: list, exported: np.ndarray,
                        expected: tuple[np.ndarray, list[torch.Tensor] | None]) -> None:
    """Box actions equal to 1e-5. Discrete actions equal exactly, except where the policy scores
    both choices alike to float rounding (a near tie of a briefly trained policy, which another
    runtime's last bits may break the other way); at most 1% of the observations may be such ties."""
    actions, states = expected
    assert exported.shape == actions.shape
    if agent.env_info.action.kind == "box":
        np.testing.assert_allclose(exported, actions, rtol=0, atol=1e-5)
        return
    differ = np.flatnonzero((exported != actions).reshape(len(actions), -1).any(axis=1))
    assert len(differ) <= len(actions) // 100, f"{len(differ)} of {len(actions)} actions differ"
    for i in differ:
        obs, mask, _ = seen[i]
        state = None if states is None else states[i]
        scores = [log_prob(agent, obs, mask, state, a) for a in (exported[i], actions[i])]
        assert abs(scores[0] - scores[1]) < 1e-4, f"observation {i}: {exported[i]} against {actions[i]}, {scores}"


@pytest.mark.parametrize("case", CASES)
def test_the_onnx_file_acts_as_predict_does(tmp_path: Path, case: str) -> None:
    env_id, settings = CASES[case]
    agent = trained(env_id, settings)
    try:
        session = onnx_session(agent, tmp_path)
        inputs, outputs = signature(agent)
        assert [i.name for i in session.get_inputs()] == [p.name for p in inputs]
        assert [o.name for o in session.get_outputs()] == [p.name for p in outputs]
        seen = episodes(agent, env_id)
        names = [p.name for p in inputs]
        exported = run_exported(agent, seen, lambda xs: session.run(None, dict(zip(names, xs))))
        assert_same_actions(agent, seen, exported, predicted(agent, seen))
    finally:
        agent.close()


@pytest.mark.parametrize("case", ["discrete actions", "box actions, normalized observations", "masks", "recurrent"])
def test_the_torchscript_file_acts_as_predict_does(tmp_path: Path, case: str) -> None:
    env_id, settings = CASES[case]
    agent = trained(env_id, settings)
    try:
        path = export(agent, tmp_path / "policy.pt", "torchscript")
        module = torch.jit.load(str(path))

        def call(xs: list[np.ndarray]) -> list[np.ndarray]:
            out = module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in xs))
            return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]

        seen = episodes(agent, env_id)
        assert_same_actions(agent, seen, run_exported(agent, seen, call), predicted(agent, seen))
    finally:
        agent.close()


def test_a_sampled_gaussian_export_varies_within_the_bounds(tmp_path: Path) -> None:
    agent = trained("Pendulum-v1", {"log_std_init": 0.5})
    try:
        session = onnx_session(agent, tmp_path, deterministic=False)
        actions = session.run(None, {"obs": np.zeros((500, 3), dtype=np.float32)})[0]
    finally:
        agent.close()
    assert actions.shape == (500, 1) and actions.min() >= -2.0 and actions.max() <= 2.0
    assert actions.std() > 0.3  # samples of exp(0.5) ~ 1.6 around a near-zero mean, clipped at 2


def test_a_sampled_export_draws_valid_and_varied_actions(tmp_path: Path) -> None:
    agent = trained("envs_for_tests:MaskedChoiceEnv", {"minibatch_size": 64})
    try:
        session = onnx_session(agent, tmp_path, deterministic=False)
        obs = np.zeros((500, 6), dtype=np.float32)
        mask = np.zeros((500, 6), dtype=bool)
        mask[:, [1, 4]] = True
        actions = session.run(None, {"obs": obs, "action_mask": mask})[0]
    finally:
        agent.close()
    assert set(actions.tolist()) == {1, 4}  # only valid actions, and not always the same one


def test_the_cli_exports_a_run_directory(tmp_path: Path, run_cli) -> None:  # noqa: ANN001
    proc = run_cli(["train", "CartPole-v1", "--steps", "512", "--set", "n_envs=2", "--set", "n_steps=128",
                    "--set", "minibatch_size=128",
                    "--out", tmp_path, "--name", "run", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(["export", tmp_path / "run", "--format", "onnx", "--out", tmp_path / "policy.onnx"])
    assert proc.returncode == 0, proc.stderr
    assert "inputs: obs: float32 [B, 4]" in proc.stdout and "outputs: action: int64 [B]" in proc.stdout
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    agent = Agent.load(tmp_path / "run")
    assert np.array_equal(session.run(None, {"obs": obs})[0], agent.predict(obs))
    proc = run_cli(["export", tmp_path / "run", "--format", "tflite", "--out", tmp_path / "x"])
    assert proc.returncode == 2 and "invalid choice: 'tflite'" in proc.stderr
