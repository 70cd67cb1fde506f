"""The documentation site cannot rot: it builds with --strict (no broken link or reference), its
generated reference pages match the code, and every Python example in it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# A Python block, with the reason it is not run when a "<!-- not run: REASON -->" line precedes it.
PYTHON_BLOCK = re.compile(r"(?:^<!-- not run: (.*?) -->\n)?^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
# The examples too slow for the suite (or that stand for the user's own data), each with its reason.
NOT_RUN = {
    "guides/python.md#1": "a tour of calls; obs, info and memory stand for your own",
    "guides/lab.md#1": "ten trials of 50,000 steps, minutes; the lab's tests run smaller sweeps",
}


def examples() -> dict[str, tuple[str | None, str]]:
    """Every Python block of the docs: ``page#k -> (reason it is not run, or None; code)``."""
    found = {}
    for page in sorted(DOCS.rglob("*.md")):
        for k, (reason, code) in enumerate(PYTHON_BLOCK.findall(page.read_text())):
            found[f"{page.relative_to(DOCS)}#{k + 1}"] = (reason or None, code)
    return found


def python_examples() -> list[tuple[str, str]]:
    return [(name, code) for name, (reason, code) in examples().items() if reason is None]


def test_the_examples_not_run_are_the_listed_ones() -> None:
    assert {name: reason for name, (reason, _) in examples().items() if reason} == NOT_RUN


def test_the_site_builds_strict(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "site" / "chapter" / "index.html").is_file()
    assert "clipped_surrogate" in (tmp_path / "site" / "chapter" / "index.html").read_text()  # mkdocstrings ran


def test_the_generated_reference_pages_match_the_code() -> None:
    proc = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name, code", python_examples(), ids=[name for name, _ in python_examples()])
def test_every_python_example_runs(tmp_path: Path, name: str, code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name}:\n{proc.stderr[-3000:]}"


SHELL_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_commands() -> list[tuple[str, list[str]]]:
    """Every command line of the shell examples in the docs and the README, split into words
    (comments dropped, continuation lines joined)."""
    import shlex

    found = []
    for page in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in SHELL_BLOCK.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    found.append((f"{page.relative_to(ROOT)}: {line.strip()}", words))
    return found


def test_every_shell_example_names_what_exists() -> None:
    """The shell examples train for minutes, so they are checked rather than run: every
    ``ppolab`` line parses with the real parser and sets only real hyperparameters, every
    ``make`` target, ``pip`` extra and script exists."""
    import tomllib

    from ppolab.cli import build_parser
    from ppolab.config import CONFIG_CLASSES

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    fields = {name for cls in CONFIG_CLASSES.values() for name in cls.__dataclass_fields__} | {"algo"}
    commands = shell_commands()
    assert len(commands) > 40
    for where, words in commands:
        if words[0] == "ppolab":
            try:
                args = build_parser().parse_args(words[1:])
            except SystemExit as exc:  # --help exits 0 once it has printed
                assert exc.code == 0 and "--help" in words, f"{where}: the parser refuses it"
                continue
            for assignment in [*getattr(args, "set", []), *(getattr(args, "grid", None) or [])]:
                assert assignment.partition("=")[0] in fields, f"{where}: no hyperparameter {assignment!r}"
        elif words[0] == "make":
            assert set(words[1:]) <= targets, f"{where}: no such make target"
        elif words[:3] == ["pip", "install", "-e"] and "[" in words[-1]:
            assert set(words[-1][words[-1].index("[") + 1:-1].split(",")) <= extras, f"{where}: no such extra"
        elif words[0] == "python" and words[1].endswith(".py"):
            assert (ROOT / words[1]).is_file(), f"{where}: no such script"


def test_the_model_file_page_lists_every_key_a_model_file_has(tmp_path: Path) -> None:
    from ppolab import PPO, modelfile

    documented = re.findall(r"^\| `(\w+)` \|", (DOCS / "reference" / "model-files.md").read_text(), re.MULTILINE)
    agent = PPO("CartPole-v1", n_envs=2, n_steps=32, minibatch_size=32)
    agent.learn(64)
    path = agent.save(tmp_path / "model.pt")
    agent.close()
    written = set(modelfile.load(path)) | {"sha256"}  # load() checks and drops the checksum
    assert sorted(documented) == sorted(written)
