"""Model files and checkpoints that are not what they claim: each gets an error naming the problem."""

from __future__ import annotations

import pytest
import torch

from ppolab import PPO, TRPO, Agent
from ppolab.checkpoints import CheckpointDir
from ppolab.errors import ModelFileError
from ppolab.modelfile import checksum


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    agent.save(path)
    agent.close()
    return path


def rewrite(src, dst, edit):
    """Another writer's file: ``edit(data)`` applied, checksum recomputed."""
    data = torch.load(src, weights_only=True)
    edit(data)
    data["sha256"] = checksum({k: v for k, v in data.items() if k != "sha256"})
    torch.save(data, dst)
    return dst


def test_a_newer_format_version_names_both_versions(saved, tmp_path):
    path = rewrite(saved, tmp_path / "future.pt", lambda d: d.update(format_version=99))
    with pytest.raises(ModelFileError, match="model format version 99; this ppolab reads version 2 or older"):
        Agent.load(path)


def test_a_model_of_another_algorithm(saved, tmp_path):
    with pytest.raises(ModelFileError, match="holds a 'ppo' model, not 'trpo'"):
        TRPO.load(saved)
    path = rewrite(saved, tmp_path / "alien.pt", lambda d: d.update(algo="dqn"))
    with pytest.raises(ModelFileError, match="holds a 'dqn' model; this ppolab knows ppo, trpo, a2c, vpg"):
        Agent.load(path)


def test_weights_that_do_not_fit_the_network(saved, tmp_path):
    rewrite(saved, tmp_path / "resized.pt", lambda d: d["config"].update(hidden_sizes=[32, 32]))
    with pytest.raises(ModelFileError, match="weights do not fit the network"):
        Agent.load(tmp_path / "resized.pt")


def test_a_config_with_an_unknown_field(saved, tmp_path):
    rewrite(saved, tmp_path / "typo.pt", lambda d: d["config"].update(learning_rat=1.0))
    with pytest.raises(ModelFileError, match="malformed model file.*learning_rat"):
        Agent.load(tmp_path / "typo.pt")


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_damaged_bytes_are_detected(saved, tmp_path, where):
    raw = bytearray(saved.read_bytes())
    at = int(len(raw) * where)
    raw[at:at + 16] = bytes(b ^ 0xFF for b in raw[at:at + 16])
    (tmp_path / "damaged.pt").write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="damaged.pt is (corrupted|not a readable)"):
        Agent.load(tmp_path / "damaged.pt")


def test_an_edited_weight_breaks_the_checksum(saved, tmp_path):
    data = torch.load(saved, weights_only=True)
    next(iter(data["policy"].values())).add_(1.0)  # torch.save without a new checksum
    torch.save(data, tmp_path / "edited.pt")
    with pytest.raises(ModelFileError, match="edited.pt is corrupted: its contents do not match"):
        Agent.load(tmp_path / "edited.pt")


def test_a_run_that_never_finished_loads_from_its_newest_checkpoint(tmp_path):
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    (tmp_path / "config.yaml").write_text("algo: ppo\n")
    folder = CheckpointDir(tmp_path)
    folder.write(agent)
    agent.learn(64)
    folder.write(agent)
    loaded = Agent.load(tmp_path)  # no model.pt: a crashed run
    assert loaded.updates == agent.updates == 1
    agent.close()


def test_a_version_1_file_without_checksum_still_loads(saved, tmp_path):
    data = torch.load(saved, weights_only=True)
    del data["sha256"]
    data["format_version"] = 1
    torch.save(data, tmp_path / "v1.pt")
    assert Agent.load(tmp_path / "v1.pt").algo == "ppo"


def test_the_checksum_covers_scalars_and_nested_keys():
    base = {"step": torch.tensor(3.0), "inner": {"sha256": "x", "w": torch.zeros(2, 2).t()}}
    same = {"inner": {"w": torch.zeros(2, 2), "sha256": "x"}, "step": torch.tensor(3.0)}
    assert checksum(base) == checksum(same)  # key order and strides do not matter
    assert checksum(base) != checksum({**base, "step": torch.tensor(4.0)})
    assert checksum(base) != checksum({**base, "inner": {"sha256": "y", "w": torch.zeros(2, 2)}})
    assert checksum({**base, "sha256": "anything"}) == checksum(base)  # only the top-level one is skipped
