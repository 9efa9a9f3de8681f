"""The `chalice deploy` path: the stateful stack and the stage policies, built from infra/resources.json."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra.stateful import (
    StageNotConfigured,
    jobs_topic_name,
    stage_environment,
    stage_policy,
    stateful_template,
)
from infra.tables import env_var_for, table_resources
from tests.deploy.conftest import ROOT, STAGES

# Two stages deployed as the deploy docs say, in one account and region, each with its own WebSocket API.
ACCOUNT, REGION = "111122223333", "eu-west-1"
WEBSOCKET_APIS = {"dev": "devws1234", "prod": "prodws5678"}
USER_DATA_TABLES = ("JobsTable", "MessagesTable", "PaymentsTable", "RoomsTable")


def deployed_environment(stage: str, *, websocket: bool = True) -> dict[str, str]:
    """The stage's config.json variables after the deployer filled in the data stack's and API's values."""
    env = {
        **stage_environment(stage),
        "JOBS_TOPIC_ARN": f"arn:aws:sns:{REGION}:{ACCOUNT}:{jobs_topic_name(stage)}",
    }
    if websocket:
        env["WEBSOCKET_ENDPOINT"] = f"https://{WEBSOCKET_APIS[stage]}.execute-api.{REGION}.amazonaws.com/api"
    return env


def resources_of(policy: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for statement in policy["Statement"]:
        granted = statement["Resource"]
        found.extend([granted] if isinstance(granted, str) else granted)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_the_committed_stage_policy_is_the_one_built_from_resources_json(stage: str) -> None:
    committed = json.loads((ROOT / ".chalice" / f"policy-{stage}.json").read_text())
    assert committed == stage_policy(stage), f"run: python -m infra.stateful policy --stage {stage}"


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_policy_pins_account_and_region_and_names_only_this_stage(stage: str) -> None:
    other = next(s for s in STAGES if s != stage)
    policy = stage_policy(stage, deployed_environment(stage))
    for statement in policy["Statement"]:
        assert all("*" not in action for action in statement["Action"])
    resources = resources_of(policy)
    assert resources
    for resource in resources:
        assert resource.startswith("arn:aws:") and f":{REGION}:{ACCOUNT}:" in resource, resource
        assert f"-{other}" not in resource and WEBSOCKET_APIS[other] not in resource, resource
    assert f"arn:aws:sns:{REGION}:{ACCOUNT}:chalice-realtime-{stage}-jobs" in resources
    own_api = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{WEBSOCKET_APIS[stage]}/api/"
    connections = [r for r in resources if ":execute-api:" in r]
    assert connections and all(r.startswith(own_api) for r in connections)


def test_dev_functions_reach_nothing_of_prod() -> None:
    dev, prod = (resources_of(stage_policy(s, deployed_environment(s))) for s in ("dev", "prod"))
    # What prod's functions touch, made concrete: a connection id, a log stream.
    prod_resources = [r.replace("*", "L0SM9cOFvHcCIhw=") for r in prod]
    reachable = [(pattern, r) for pattern in dev for r in prod_resources if fnmatch.fnmatchcase(r, pattern)]
    assert reachable == []


def test_before_the_websocket_api_exists_no_connection_call_is_granted() -> None:
    policy = stage_policy("dev", deployed_environment("dev", websocket=False))
    assert not [r for r in resources_of(policy) if ":execute-api:" in r]
    assert [s for s in policy["Statement"] if "sns:Publish" in s["Action"]]


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("JOBS_TOPIC_ARN", "", "set JOBS_TOPIC_ARN"),
        ("JOBS_TOPIC_ARN", f"arn:aws:sns:{REGION}:{ACCOUNT}:chalice-realtime-prod-jobs", "not this stage's"),
        ("WEBSOCKET_ENDPOINT", "https://devws1234.execute-api.us-east-1.amazonaws.com/api", "must be"),
    ],
)
def test_a_stage_pointing_elsewhere_gets_no_policy(variable: str, value: str, complaint: str) -> None:
    env = {**deployed_environment("dev"), variable: value}
    with pytest.raises(StageNotConfigured, match=complaint):
        stage_policy("dev", env)


@pytest.mark.parametrize("stage", STAGES)
def test_the_policy_command_warns_while_the_topic_is_the_placeholder(stage: str, tmp_path: Path) -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "infra.stateful", "policy", "--stage", stage],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    assert "SET-ME placeholder" in generated.stderr  # the committed config.json is not a deployment's
    assert json.loads(generated.stdout) == stage_policy(stage)


@pytest.mark.parametrize("stage", STAGES)
def test_the_stateful_template_names_tables_as_config_json_does_and_passes_cfn_lint(
    stage: str, tmp_path: Path
) -> None:
    built: dict[str, Any] = stateful_template(stage)
    env = stage_environment(stage)
    for logical_id, props in table_resources().items():
        table = built["Resources"][logical_id]["Properties"]
        assert table == {"TableName": env[env_var_for(logical_id)], **props}
    assert built["Resources"]["JobsTopic"]["Properties"]["TopicName"] == f"chalice-realtime-{stage}-jobs"
    path = tmp_path / "stateful.json"
    path.write_text(json.dumps(built))
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_stateful_stack_keeps_user_data_and_lets_connections_go(stage: str) -> None:
    resources = stateful_template(stage)["Resources"]
    for logical_id in USER_DATA_TABLES:
        assert resources[logical_id]["DeletionPolicy"] == "Retain", logical_id
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain", logical_id
    for logical_id in ("MessagesTable", "PaymentsTable"):
        recovery = resources[logical_id]["Properties"]["PointInTimeRecoverySpecification"]
        assert recovery == {"PointInTimeRecoveryEnabled": True}, logical_id
    assert "DeletionPolicy" not in resources["ConnectionsTable"]  # rows of two hours at most


@pytest.mark.parametrize("stage", STAGES)
def test_the_app_subscribes_the_job_runner_to_this_stages_topic(stage: str) -> None:
    """As `chalice deploy` imports app.py: with the stage's config.json variables in the environment."""
    show = "import app; print(app.JOBS_TOPIC)"
    for env, expected in (
        (deployed_environment(stage), f"arn:aws:sns:{REGION}:{ACCOUNT}:chalice-realtime-{stage}-jobs"),
        ({**stage_environment(stage), "JOBS_TOPIC_ARN": ""}, f"chalice-realtime-{stage}-jobs"),
    ):
        clean = {k: v for k, v in os.environ.items() if not k.endswith("_TABLE") and k != "JOBS_TOPIC_ARN"}
        imported = subprocess.run(
            [sys.executable, "-c", show],
            cwd=ROOT,
            env={**clean, **env, "AWS_DEFAULT_REGION": REGION},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip() == expected
