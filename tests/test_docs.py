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
    "guides/memory-and-masks.md#2": "500,000 steps of Taxi, about a minute; tests/test_masks.py trains Taxi",
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
