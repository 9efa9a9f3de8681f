"""A brand-new Chalice app (`chalice new-project`) that adopts the core by following docs/adopt.md.

    app_dir = create_adopting_app(tmp_path)

The doc's tested blocks (marked `<!-- tested: ... -->`) are what this writes and runs, so the
adoption tests fail when the page stops working.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADOPT_DOC = ROOT / "docs" / "adopt.md"
APP_NAME = "my-app"
ROUTE = "/orders"  # the route the doc's app.py declares
EVENT_KEY = "orders-updated"  # the key it notifies
SNS_TOPIC = "orders"  # the topic its notifying SNS handler listens to
NOTIFYING_FUNCTIONS = ("ship_order", "expire_offers")  # the doc's SNS handler and schedule
BIN = Path(sys.executable).parent  # the project's venv: chalice, python, chalice-realtime


def doc_block(marker: str) -> str:
    """The fenced block right after `<!-- tested: marker -->`."""
    match = re.search(
        rf"<!-- tested: {re.escape(marker)} -->\n```[a-z]*\n(.*?)\n```", ADOPT_DOC.read_text(), re.DOTALL
    )
    if match is None:
        raise LookupError(f"docs/adopt.md has no block {marker!r}")
    return match.group(1)


def create_adopting_app(parent: Path) -> Path:
    """`chalice new-project my-app` in `parent`, then the doc's app.py, requirements line and commands."""
    env = {
        **os.environ,
        "REALTIME": str(ROOT),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    }
    run([str(BIN / "chalice"), "new-project", APP_NAME], parent, env)
    app_dir = parent / APP_NAME
    (app_dir / "app.py").write_text(doc_block("app.py") + "\n")
    requirements = app_dir / "requirements.txt"
    existing = requirements.read_text()
    if existing and not existing.endswith("\n"):
        existing += "\n"
    requirements.write_text(existing + doc_block("requirements.txt") + "\n")
    for step in ("install", "infra"):
        run(["bash", "-euo", "pipefail", "-c", doc_block(step)], app_dir, env, step)
    return app_dir


def run(command: list[str], cwd: Path, env: dict[str, str], step: str = "") -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"docs/adopt.md {step or command}:\n{result.stdout}\n{result.stderr}"


def config_of(app_dir: Path) -> dict[str, object]:
    return dict(json.loads((app_dir / ".chalice" / "config.json").read_text()))
