"""The packaged templates of both stages, built once per test session.

`chalice package` builds the dependency zip once into `.chalice/deployments`
(about half a minute on a clean clone) and reuses it for the second stage and
every later run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("dev", "prod")
CHALICE = Path(sys.executable).with_name("chalice")


def package(stage: str, out: Path) -> dict[str, Any]:
    """Run the README's package command for `stage` into `out` and load the merged template."""
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    result = subprocess.run(
        [str(CHALICE), "package", "--stage", stage, "--merge-template", "infra/resources.json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"chalice package --stage {stage}:\n{result.stdout}\n{result.stderr}"
    return dict(json.loads((out / "sam.json").read_text()))


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """stage -> directory holding `sam.json` and `deployment.zip`."""
    base = tmp_path_factory.mktemp("packaged")
    for stage in STAGES:
        package(stage, base / stage)
    return {stage: base / stage for stage in STAGES}


@pytest.fixture(scope="session")
def templates(packaged: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """stage -> the merged template."""
    return {stage: json.loads((path / "sam.json").read_text()) for stage, path in packaged.items()}
