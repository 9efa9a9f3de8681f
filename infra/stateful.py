"""What the `chalice deploy` path needs besides Chalice: the stateful stack and the stage's IAM policy.

`chalice deploy` (unlike `chalice package`) merges no template, so the tables and
the topic are deployed first as their own stack, built here from the same
`infra/resources.json`, under the names `.chalice/config.json` gives the stage;
and the functions' permissions come from `.chalice/policy-<stage>.json`, the
union of the per-function policies in `infra/resources.json`, rendered with those
names. The `chalice package` path needs neither: it merges `resources.json` whole.

    python -m infra.stateful template --stage dev > out/stateful-dev.json
    python -m infra.stateful policy --stage dev > .chalice/policy-dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from infra.cfn import render
from infra.tables import env_var_for, template

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = "chalice-realtime"
# The topic `app.py` subscribes `run_job` to by name (`JOBS_TOPIC`); `chalice deploy` resolves it in the
# deploying account and region, so this stack must create it under exactly that name.
JOBS_TOPIC_NAME = "chalice-realtime-jobs"
# The WebSocket API's stage (Chalice's `api_gateway_stage`) and the Management API methods the code uses.
API_STAGE = "api"


def stage_environment(stage: str) -> dict[str, str]:
    """The environment variables `.chalice/config.json` sets for `stage` (global ones included)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    if stage not in config["stages"]:
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json")
    stage_env = config["stages"][stage].get("environment_variables", {})
    return {**config.get("environment_variables", {}), **stage_env}


def stateful_template(stage: str) -> dict[str, Any]:
    """A standalone template with the tables (named as in config.json) and the jobs topic.

    stateful_template("dev")["Resources"]["ConnectionsTable"]["Properties"]["TableName"]
    # 'chalice-realtime-dev-connections'
    """
    env = stage_environment(stage)
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for logical_id, resource in template()["Resources"].items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            name = env[env_var_for(logical_id)]
            resources[logical_id] = {
                "Type": resource["Type"],
                # Named tables cannot be replaced in place: keep them when the stack is deleted by mistake.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {"TableName": name, **resource["Properties"]},
            }
            outputs[f"{logical_id}Name"] = {"Value": {"Ref": logical_id}}
        elif resource.get("Type") == "AWS::SNS::Topic":
            resources[logical_id] = {
                "Type": resource["Type"],
                "Properties": {**resource.get("Properties", {}), "TopicName": JOBS_TOPIC_NAME},
            }
            outputs[f"{logical_id}Arn"] = {"Value": {"Ref": logical_id}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{APP_NAME} {stage}: tables and jobs topic for the `chalice deploy` path",
        "Resources": resources,
        "Outputs": outputs,
    }


def stage_policy(stage: str) -> dict[str, Any]:
    """The union of every function's statements in resources.json, for `.chalice/policy-<stage>.json`.

    Account and region are `*` (the file is committed, not per account); tables, topic and
    parameter are this stage's by name. Logs are limited to the stage's functions' log groups.
    """
    env = stage_environment(stage)
    stack = f"{APP_NAME}-{stage}"
    resources = template()["Resources"]
    refs = {"AWS::Partition": "aws", "AWS::Region": "*", "AWS::AccountId": "*", "AWS::StackName": stack}
    attrs: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            name = env[env_var_for(logical_id)]
            refs[logical_id] = name
            attrs[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:*:*:table/{name}"
        elif resource.get("Type") == "AWS::SNS::Topic":
            refs[logical_id] = f"arn:aws:sns:*:*:{JOBS_TOPIC_NAME}"
    # Chalice creates the WebSocket API on the first deploy: its id is not known before.
    refs["WebsocketAPI"] = "*"
    grants: dict[str, set[str]] = defaultdict(set)
    for resource in resources.values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "OwnLogGroup":
                    continue  # the template's own log groups; replaced by the stage prefix below
                rendered = render(statement["Resource"], refs, attrs)
                for arn in [rendered] if isinstance(rendered, str) else rendered:
                    grants[arn] |= set(statement["Action"])
    statements: list[dict[str, Any]] = [
        {
            "Sid": "StageLogGroups",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:*:*:log-group:/aws/lambda/{stack}*",
        }
    ]
    by_actions: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for arn, granted in sorted(grants.items()):
        by_actions[tuple(sorted(granted))].append(arn)
    for actions, arns in sorted(by_actions.items()):
        statements.append(
            {"Effect": "Allow", "Action": list(actions), "Resource": arns if len(arns) > 1 else arns[0]}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.stateful", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["template", "policy"])
    parser.add_argument("--stage", required=True)
    args = parser.parse_args(argv)
    document = stateful_template(args.stage) if args.what == "template" else stage_policy(args.stage)
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
