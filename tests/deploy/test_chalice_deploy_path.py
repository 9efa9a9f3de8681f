"""The `chalice deploy` path: the stateful stack and the stage policies, built from infra/resources.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.stateful import stage_environment, stage_policy, stateful_template
from infra.tables import env_var_for, table_resources
from tests.deploy.conftest import ROOT, STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_the_committed_stage_policy_is_the_one_built_from_resources_json(stage: str) -> None:
    committed = json.loads((ROOT / ".chalice" / f"policy-{stage}.json").read_text())
    assert committed == stage_policy(stage), f"run: python -m infra.stateful policy --stage {stage}"


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_policy_names_only_this_stage_and_no_wildcard_action(stage: str) -> None:
    other = next(s for s in STAGES if s != stage)
    for statement in stage_policy(stage)["Statement"]:
        assert all("*" not in action for action in statement["Action"])
        granted = statement["Resource"]
        for resource in [granted] if isinstance(granted, str) else granted:
            assert resource != "*" and f"-{other}" not in resource, resource


@pytest.mark.parametrize("stage", STAGES)
def test_the_stateful_template_names_tables_as_config_json_does_and_passes_cfn_lint(
    stage: str, tmp_path: Path
) -> None:
    built: dict[str, Any] = stateful_template(stage)
    env = stage_environment(stage)
    for logical_id, props in table_resources().items():
        table = built["Resources"][logical_id]["Properties"]
        assert table == {"TableName": env[env_var_for(logical_id)], **props}
    assert built["Resources"]["JobsTopic"]["Properties"]["TopicName"] == _app_topic()
    path = tmp_path / "stateful.json"
    path.write_text(json.dumps(built))
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _app_topic() -> str:
    from app import JOBS_TOPIC

    return JOBS_TOPIC
