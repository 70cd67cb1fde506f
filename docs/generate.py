"""Write the reference pages that come from the code, so that they cannot drift from it:

    docs/reference/cli.md              every command's --help (ppolab.cli.build_parser)
    docs/reference/hyperparameters.md  every hyperparameter of every algorithm, with its default,
                                       the values it may take and what it does (ppolab.config)

    python docs/generate.py            write them (make docs runs this first)
    python docs/generate.py --check    exit 1 if a committed page differs (tests/test_docs.py)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
HELP_WIDTH = "100"  # argparse wraps at $COLUMNS: fixed, so the page is the same on every terminal


def cli_page() -> str:
    from ppolab.cli import build_parser

    os.environ["COLUMNS"] = HELP_WIDTH
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    lines = ["# Command line", "", "Generated from the parsers by `docs/generate.py`: what `ppolab COMMAND --help`",
             "prints.", "", "```text", parser.format_help().rstrip(), "```"]
    for name, sub in commands.choices.items():
        lines += ["", f"## ppolab {name}", "", "```text", sub.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _allowed(cls: type, field: dataclasses.Field) -> str:
    from ppolab.config import Bounds, _field_bounds

    bounds = _field_bounds(cls, field.name)
    hint = typing.get_type_hints(cls)[field.name]
    if isinstance(bounds, tuple):
        return " \\| ".join(f"`{choice}`" for choice in bounds)
    if hint is bool or hint == "bool":
        return "`true` \\| `false`"
    if isinstance(bounds, Bounds):
        integer = int in typing.get_args(hint) or hint is int or field.name == "hidden_sizes"
        text = bounds.describe(integer)
        if field.name == "hidden_sizes":
            text = f"widths, each {text.removeprefix('an ')}"
        return text + (", or none" if type(None) in typing.get_args(hint) else "")
    return "text, or none" if type(None) in typing.get_args(hint) else "text"


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return "`" + ",".join(map(str, value)) + "`" if value else "(none)"
    if value is None:
        return "none"
    return f"`{str(value).lower() if isinstance(value, bool) else value}`"


def hyperparameters_page() -> str:
    from ppolab.config import CONFIG_CLASSES

    lines = ["# Hyperparameters", "",
             "Generated from the config dataclasses by `docs/generate.py`. Set them with",
             "`ppolab train ENV --set KEY=VALUE`, a YAML or JSON file (`--config FILE`), or",
             "`PPO(env, key=value)`. Every value is checked when the config is made: a value outside",
             "its range is refused with a one-line message before anything runs. A tuned preset",
             "(`ppolab train ENV` on an env that has one) changes some defaults; `ppolab check-env ENV`",
             "says which settings a run starts from."]
    for algo, cls in CONFIG_CLASSES.items():
        lines += ["", f"## {algo}", "", "| name | default | values | what it does |", "| --- | --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            help_text = field.metadata["help"].replace("|", "\\|")
            lines.append(f"| `{field.name}` | {_shown(field.default)} | {_allowed(cls, field)} | {help_text} |")
    return "\n".join(lines) + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_page,
    "reference/hyperparameters.md": hyperparameters_page,
}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for relative, page in PAGES.items():
        path, text = HERE / relative, page()
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(relative)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run: python docs/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
