"""This project's infrastructure holds the core's exactly as `chalice-realtime infra` writes it for any app.

The core's CloudFormation lives in the package (`chalice_realtime`'s `infra` command); the project's
`infra/resources.json` adds its features around it. Running the command over the project's own
template and config must change nothing, and every statement the project gives a function for the
core must be one the command writes: so there is one source, the package's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chalice.utils import to_cfn_resource_name

from infra.cfn import references

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("chalice-realtime")
# The project's functions that call notify besides its REST routes (app.py: the job runner, the sweeper).
NOTIFYING = ("run_job", "sweep_stale_jobs")
CORE_RESOURCES = {"ConnectionsTable", "TopicsTable", "WebsocketAPI", "FanoutQueue", "FanoutDeadLetterQueue"}


def run_infra(app_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(CLI), "infra", "--app-dir", str(app_dir), *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    (tmp_path / ".chalice").mkdir()
    shutil.copy(ROOT / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    shutil.copy(ROOT / "infra" / "resources.json", tmp_path / "resources.json")
    return tmp_path


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def notifying_args() -> list[str]:
    return [arg for name in NOTIFYING for arg in ("--notifying-function", name)]


def test_the_infra_command_leaves_the_projects_template_and_config_as_they_are(project_copy: Path) -> None:
    run_infra(project_copy, "--template", "resources.json", *notifying_args())

    assert load(project_copy / "resources.json") == load(ROOT / "infra" / "resources.json"), (
        "infra/resources.json differs from the core's CloudFormation (chalice_realtime/cli/infra.py): "
        "change the package, then run `chalice-realtime infra --template infra/resources.json` here"
    )
    assert load(project_copy / ".chalice" / "config.json") == load(ROOT / ".chalice" / "config.json")


def test_every_core_statement_of_the_project_is_one_the_command_writes(tmp_path: Path) -> None:
    run_infra(tmp_path, *notifying_args())
    core = load(tmp_path / "realtime-resources.json")["Resources"]
    project = load(ROOT / "infra" / "resources.json")["Resources"]
    for role_id, resource in project.items():
        if not role_id.endswith("Role") or "Policies" not in resource.get("Properties", {}):
            continue
        statements = [s for p in resource["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        for_core = [
            s for s in statements if s["Sid"] in ("OwnLogGroup", "Tracing") or references(s) & CORE_RESOURCES
        ]
        assert role_id in core, f"{role_id} touches the core's resources: add its function to NOTIFYING"
        (policy,) = core[role_id]["Properties"]["Policies"]
        assert for_core == policy["PolicyDocument"]["Statement"], role_id
    assert project["ConnectionsTable"] == core["ConnectionsTable"]
    assert project["TopicsTable"] == core["TopicsTable"]


def test_the_command_names_functions_as_chalice_does(tmp_path: Path) -> None:
    run_infra(tmp_path, "--notifying-function", "handle_orders", "--notifying-function", "nightly-report")
    resources = load(tmp_path / "realtime-resources.json")["Resources"]
    for name in ("websocket_connect", "realtime_auth", "handle_orders", "nightly-report"):
        assert f"{to_cfn_resource_name(name)}Role" in resources, name
        assert to_cfn_resource_name(name) in resources, name
