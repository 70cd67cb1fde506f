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
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_examples() -> list[tuple[str, str]]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for k, code in enumerate(PYTHON_BLOCK.findall(page.read_text())):
            if not code.lstrip().startswith("from ppolab import PPO, TRPO, A2C, VPG, Agent"):  # the API page's list of names
                found.append((f"{page.relative_to(DOCS)}#{k + 1}", code))
    return found


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
