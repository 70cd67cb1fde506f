"""Devices: the CPU everywhere, CUDA where it exists (those tests skip elsewhere). Model files
load on any device; the optimizer follows the network when it moves."""

from __future__ import annotations

import pytest
import torch

import envs_for_tests as E
from ppolab import PPO, TRPO
from ppolab.devices import resolve_device, restore_generator

SMALL_CNN = dict(cnn_channels=(8,), cnn_kernels=(3,), cnn_strides=(1,), cnn_features=32)
SMALL = dict(n_envs=2, n_steps=16, minibatch_size=32)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_auto_is_the_cpu_for_mlps_and_cuda_only_with_a_cnn():
    assert resolve_device("auto", heavy_encoder=False).type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto", heavy_encoder=True).type == expected
    assert resolve_device("cpu", heavy_encoder=True).type == "cpu"


def test_a_generator_state_from_another_device_reseeds_instead_of_failing():
    gen = torch.Generator().manual_seed(0)
    restore_generator(gen, torch.zeros(16, dtype=torch.uint8), seed=5)  # a CUDA-sized state
    assert torch.equal(torch.rand(3, generator=gen), torch.rand(3, generator=torch.Generator().manual_seed(5)))


def test_a_model_saved_with_device_cuda_loads_on_a_machine_without_it(tmp_path, capsys):
    agent = PPO("CartPole-v1", seed=0, **SMALL)
    agent.learn(64)
    path = agent.save(tmp_path / "m.pt")
    agent.close()
    # the same file, as if trained on a GPU machine: its config says cuda
    from ppolab import modelfile

    data = modelfile.load(path)
    data["config"]["device"] = "cuda:7"
    modelfile.save(path, {k: v for k, v in data.items() if k not in ("format", "format_version")})
    loaded = PPO.load(path)
    if torch.cuda.device_count() < 8:
        assert loaded.device.type == "cpu" and "loading m.pt with device=auto" in capsys.readouterr().err
    assert PPO.load(path, device="cpu").device.type == "cpu"


@cuda
@pytest.mark.parametrize("env, extra", [("CartPole-v1", {}), (E.PixelSideEnv, SMALL_CNN), (E.DictMixEnv, SMALL_CNN)])
def test_training_on_cuda_and_loading_on_the_cpu(tmp_path, env, extra):
    agent = PPO(env, seed=0, device="cuda", **SMALL, **extra)
    assert agent.policy.device.type == "cuda"
    before = [p.detach().clone() for p in agent.policy.parameters()]
    agent.learn(128)
    assert all(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters()) if a.numel() > 1)
    path = agent.save(tmp_path / "m.pt")
    on_cpu = PPO.load(path, device="cpu")
    obs, _ = agent.vec_env.reset(seed=3)
    for name, p in agent.policy.state_dict().items():
        torch.testing.assert_close(p.cpu(), on_cpu.policy.state_dict()[name], rtol=0, atol=0)
    # the same weights give the same policy on both devices, up to float rounding (cuDNN and the
    # CPU sum convolutions in different orders)
    stored = agent.env_info.observation.storage(obs)

    def as_tensor(device: str):
        if isinstance(stored, dict):
            return {k: torch.as_tensor(v, device=device) for k, v in stored.items()}
        return torch.as_tensor(stored, device=device)

    with torch.no_grad():
        gpu_logits = agent.policy.distribution(as_tensor("cuda")).logits.cpu()
        cpu_logits = on_cpu.policy.distribution(as_tensor("cpu")).logits
    torch.testing.assert_close(gpu_logits, cpu_logits, rtol=1e-4, atol=1e-5)
    agent.close()


@cuda
def test_trpo_and_resume_on_cuda(tmp_path):
    agent = TRPO(E.PixelSideEnv, seed=0, device="cuda", n_envs=2, n_steps=16, vf_minibatch_size=32, **SMALL_CNN)
    assert agent.learn(64).updates == 2
    path = agent.save(tmp_path / "m.pt")
    agent.close()
    again = TRPO.load(path, env=E.PixelSideEnv)
    assert again.device.type == "cuda"
    assert again.learn(64).updates == 4
    again.close()


@cuda
def test_the_optimizer_follows_the_network_to_cuda():
    from ppolab.optim import Adam

    net = torch.nn.Linear(3, 2)
    opt = Adam(net, lr=1e-2)
    net.to("cuda")
    net(torch.ones(4, 3, device="cuda")).sum().backward()
    before = net.weight.detach().clone()
    opt.step()
    assert opt.state["exp_avg"][0].device.type == "cuda"
    assert not torch.equal(before, net.weight.detach())
