"""The package as users get it: a wheel and an sdist built from the sources, the wheel installed
into a fresh venv (not editable), a short training and an evaluation with it, and the public
API type-checked by mypy against that installation (which ships py.typed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import ppolab

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("src", "pyproject.toml", "README.md", "CHANGELOG.md", "constraints.txt")


def run(*command: object, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(map(str, command))}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_trains_evaluates_and_type_checks(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    source.mkdir()
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation", "--outdir", dist, source)
    version = ppolab.__version__
    wheel, sdist = dist / f"ppolab-{version}-py3-none-any.whl", dist / f"ppolab-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(p.name for p in dist.iterdir())

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, ppolab_script = env_dir / "bin" / "python", env_dir / "bin" / "ppolab"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", ROOT / "constraints.txt",
        wheel)
    where = run(python, "-c", "import ppolab, pathlib; p = pathlib.Path(ppolab.__file__).parent; "
                "print(ppolab.__version__, (p / 'py.typed').is_file(), p)", cwd=tmp_path).stdout.split()
    assert where[:2] == [version, "True"] and str(env_dir) in where[2]  # the wheel's copy, not the sources

    run(ppolab_script, "train", "CartPole-v1", "--steps", 1024, "--set", "n_envs=4", "--set", "n_steps=128",
        "--set", "minibatch_size=256", "--out", tmp_path / "runs", "--name", "smoke", "--quiet", cwd=tmp_path)
    evaluated = run(ppolab_script, "eval", tmp_path / "runs" / "smoke", "--episodes", 2, cwd=tmp_path)
    assert "CartPole-v1: mean return" in evaluated.stdout

    mypy = [sys.executable, "-m", "mypy", "--python-executable", python, "--follow-imports=silent",
            "--ignore-missing-imports"]
    checked = run(*mypy, ROOT / "tests" / "typecheck_public_api.py", cwd=tmp_path)
    assert "Success: no issues found" in checked.stdout
    # ppolab's types are seen, not Any: a wrong use is an error
    wrong = tmp_path / "wrong.py"
    wrong.write_text('from ppolab import PPO\n\nsteps: int = PPO("CartPole-v1").save("m.pt")\n')
    proc = subprocess.run([*map(str, mypy), str(wrong)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and 'expression has type "Path", variable has type "int"' in proc.stdout, proc.stdout
