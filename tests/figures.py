"""Figures in the docs that tests prove, counted from those tests and written into the pages.

    python -m tests.figures            # rewrites every marked figure under docs/
    python -m tests.figures --check    # exits 1, naming the pages, if one differs

A page marks a figure as `<!-- figure: NAME -->46<!-- /figure -->`; only what is between the two
comments is rewritten. Each figure is read from the constants the test asserts with (its source is
parsed, not imported: the fault tests need the local stack), so the page says what the test checks.
`tests/app/test_docs.py` fails when a page differs from what this command would write.
"""

from __future__ import annotations

import argparse
import ast
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MANAGEMENT_API_FAULTS = ROOT / "tests" / "integration" / "test_faults_management_api.py"
CONNECT_RACE = ROOT / "realtime" / "tests" / "test_faults_connect_race.py"
FIGURE = re.compile(r"(<!-- figure: (?P<name>[a-z0-9-]+) -->)(?P<value>.*?)(<!-- /figure -->)")


def constant(path: Path, name: str) -> Any:
    """The literal a module assigns to `name` at its top level."""
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path.relative_to(ROOT)} assigns no {name}")


def interleavings(*thread_steps: int) -> int:
    """How many orders two threads' steps can be taken in, each thread's own steps in order."""
    return math.comb(sum(thread_steps), thread_steps[-1])


def connect_race_interleavings() -> str:
    """`test_no_interleaving_of_connect_and_notify_leaves_an_open_socket_without_a_row`: a connect, then a
    connect and a disconnect, each against a notify."""
    connect = len(constant(CONNECT_RACE, "CONNECT_STEPS"))
    disconnect = len(constant(CONNECT_RACE, "DISCONNECT_STEPS"))
    notify = len(constant(CONNECT_RACE, "NOTIFY_STEPS"))
    return f"{interleavings(connect, notify)} + {interleavings(connect + disconnect, notify)}"


FIGURES: dict[str, Callable[[], str]] = {
    "management-api-faults": lambda: str(sum(constant(MANAGEMENT_API_FAULTS, "FAULTS_PER_ROUND"))),
    "management-api-frames": lambda: str(sum(constant(MANAGEMENT_API_FAULTS, "FRAMES_PER_SOCKET"))),
    "connect-race-interleavings": connect_race_interleavings,
}


def render(page: str, figures: dict[str, str]) -> str:
    """`page` with every marked figure set to `figures[name]` (KeyError for a name there is none of)."""
    return FIGURE.sub(lambda m: f"{m.group(1)}{figures[m.group('name')]}{m.group(4)}", page)


def marked(page: str) -> list[str]:
    """The figure names a page marks, in order."""
    return [match.group("name") for match in FIGURE.finditer(page)]


def current() -> dict[str, str]:
    """Every figure, counted now."""
    return {name: count() for name, count in FIGURES.items()}


def pages() -> list[Path]:
    return sorted(path for path in DOCS.glob("*.md") if FIGURE.search(path.read_text()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a page differs")
    args = parser.parse_args(argv)
    figures = current()
    stale = []
    for path in pages():
        text = path.read_text()
        rendered = render(text, figures)
        if rendered != text:
            stale.append(str(path.relative_to(ROOT)))
            if not args.check:
                path.write_text(rendered)
    for name, value in figures.items():
        print(f"{name}: {value}")
    if stale:
        print(("differs: " if args.check else "wrote: ") + ", ".join(stale), file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
