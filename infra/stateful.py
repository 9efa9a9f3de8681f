"""What the `chalice deploy` path needs besides Chalice: the stateful stack and the stage's IAM policy.

`chalice deploy` (unlike `chalice package`) merges no template, so the tables,
the topic and the fan-out queues are deployed first as their own stack, built here from the same
`infra/resources.json`, under the names `.chalice/config.json` gives the stage;
and the functions' permissions come from `.chalice/policy-<stage>.json`, the
union of the per-function policies in `infra/resources.json`, rendered with those
names in the stage's own account and region (read from its `JOBS_TOPIC_ARN`) and
for its own WebSocket API (read from its `WEBSOCKET_ENDPOINT`, once set). The
`chalice package` path needs neither: it merges `resources.json` whole.

    python -m infra.stateful template --stage dev > out/stateful-dev.json
    python -m infra.stateful policy --stage dev > .chalice/policy-dev.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.cfn import render
from infra.tables import env_var_for, template

ROOT = Path(__file__).resolve().parents[1]
APP_NAME = "chalice-realtime"
# The WebSocket API's stage (Chalice's `api_gateway_stage`), the last part of `WEBSOCKET_ENDPOINT`.
API_STAGE = "api"
# What `.chalice/config.json` holds until the deployer puts in the data stack's `JobsTopicArn` output.
PLACEHOLDER = "SET-ME"
# A resource attribute kept from resources.json: what happens to a table's data on delete or replacement.
KEPT_ATTRIBUTES = ("DeletionPolicy", "UpdateReplacePolicy")
# Statements for what only the packaged template sets up: active tracing and the job runner's dead-letter
# queue (Chalice's own deploy configures neither; docs/deploy.md).
PACKAGE_PATH_ONLY = ("Tracing", "OnFailureDestination")
_TOPIC_ARN = re.compile(r"arn:aws:sns:(?P<region>[^:]+):(?P<account>[^:]+):(?P<name>[^:]+)")
_ENDPOINT = re.compile(
    r"https://(?P<api>[a-z0-9]+)\.execute-api\.(?P<region>[^.]+)\.amazonaws\.com/(?P<stage>[^/]+)/?"
)


class StageNotConfigured(ValueError):
    """`.chalice/config.json` does not say where the stage lives (or says something inconsistent)."""


def jobs_topic_name(stage: str) -> str:
    """The stage's own jobs topic: `chalice-realtime-dev-jobs`. `app.py` subscribes `run_job` to it by name
    when `JOBS_TOPIC_ARN` is unset; a topic per stage keeps one stage's functions off another's topic."""
    return f"{APP_NAME}-{stage}-jobs"


@dataclass(frozen=True)
class StageLocation:
    """Where a stage's resources are: the account, the region and (once deployed) its WebSocket API id.

    topic = "arn:aws:sns:eu-west-1:111122223333:chalice-realtime-dev-jobs"
    StageLocation.of("dev", {"JOBS_TOPIC_ARN": topic})
    # StageLocation(account='111122223333', region='eu-west-1', topic_arn=topic, websocket_api=None)
    """

    account: str
    region: str
    topic_arn: str
    websocket_api: str | None

    @classmethod
    def of(cls, stage: str, env: Mapping[str, str]) -> StageLocation:
        topic = _TOPIC_ARN.fullmatch(env.get("JOBS_TOPIC_ARN", ""))
        if topic is None:
            raise StageNotConfigured(
                f"stage {stage!r}: set JOBS_TOPIC_ARN in .chalice/config.json to the data stack's "
                "JobsTopicArn output (the policy takes the account and region from it)"
            )
        if topic["name"] != jobs_topic_name(stage):
            raise StageNotConfigured(
                f"stage {stage!r}: JOBS_TOPIC_ARN names topic {topic['name']!r}, not this stage's "
                f"{jobs_topic_name(stage)!r}"
            )
        api = None
        endpoint = env.get("WEBSOCKET_ENDPOINT", "")
        if endpoint:
            match = _ENDPOINT.fullmatch(endpoint)
            if match is None or match["stage"] != API_STAGE or match["region"] != topic["region"]:
                raise StageNotConfigured(
                    f"stage {stage!r}: WEBSOCKET_ENDPOINT must be https://<api id>.execute-api."
                    f"{topic['region']}.amazonaws.com/{API_STAGE}, not {endpoint!r}"
                )
            api = match["api"]
        return cls(topic["account"], topic["region"], topic.group(0), api)

    @property
    def is_placeholder(self) -> bool:
        return PLACEHOLDER in self.topic_arn


def stage_environment(stage: str) -> dict[str, str]:
    """The environment variables `.chalice/config.json` sets for `stage` (global ones included)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    if stage not in config["stages"]:
        raise SystemExit(f"no stage {stage!r} in .chalice/config.json")
    stage_env = config["stages"][stage].get("environment_variables", {})
    return {**config.get("environment_variables", {}), **stage_env}


def queue_name(resource: Mapping[str, Any], stage: str) -> str:
    """A queue's `QueueName` in resources.json for `stage`: `chalice-realtime-dev-fanout`."""
    return str(render(resource["Properties"]["QueueName"], {"AWS::StackName": f"{APP_NAME}-{stage}"}, {}))


def stateful_template(stage: str) -> dict[str, Any]:
    """A standalone template with the tables (named as in config.json) and the stage's jobs topic.

    What happens to each table on a stack delete or replacement is resources.json's: the tables
    holding user data are kept, the connections table (rows of at most two hours) is not.

    stateful_template("dev")["Resources"]["ConnectionsTable"]["Properties"]["TableName"]
    # 'chalice-realtime-dev-connections'
    """
    env = stage_environment(stage)
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for logical_id, resource in template()["Resources"].items():
        kept = {name: resource[name] for name in KEPT_ATTRIBUTES if name in resource}
        if resource.get("Type") == "AWS::DynamoDB::Table":
            name = env[env_var_for(logical_id)]
            resources[logical_id] = {
                "Type": resource["Type"],
                **kept,
                "Properties": {"TableName": name, **resource["Properties"]},
            }
            outputs[f"{logical_id}Name"] = {"Value": {"Ref": logical_id}}
        elif logical_id == "JobsTopic":
            resources[logical_id] = {
                "Type": resource["Type"],
                **kept,
                "Properties": {**resource.get("Properties", {}), "TopicName": jobs_topic_name(stage)},
            }
            outputs[f"{logical_id}Arn"] = {"Value": {"Ref": logical_id}}
        elif resource.get("Type") == "AWS::SQS::Queue" and "QueueName" in resource["Properties"]:
            # The fan-out queue and its dead-letter queue, named as the packaged stack names them (the
            # job runner's on-failure queue is the packaged path's only).
            name = queue_name(resource, stage)
            resources[logical_id] = {**resource, "Properties": {**resource["Properties"], "QueueName": name}}
            outputs[f"{logical_id}Url"] = {"Value": {"Ref": logical_id}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"{APP_NAME} {stage}: tables and jobs topic for the `chalice deploy` path",
        "Resources": resources,
        "Outputs": outputs,
    }


def stage_policy(stage: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The union of every function's statements in resources.json, for `.chalice/policy-<stage>.json`.

    Every ARN is in the stage's own account and region (`StageLocation`), and names the stage's
    own tables, topic, parameter, log groups and WebSocket API, so one stage's functions cannot
    reach another's connections, topic or data. Before the stage's `WEBSOCKET_ENDPOINT` is set
    (the first deploy creates the API) no `@connections` call is granted: nothing can be posted
    without the endpoint anyway. `env` defaults to the stage's variables in config.json.
    """
    env = stage_environment(stage) if env is None else env
    where = StageLocation.of(stage, env)
    stack = f"{APP_NAME}-{stage}"
    arn = f"arn:aws:{{service}}:{where.region}:{where.account}:{{resource}}"
    resources = template()["Resources"]
    refs = {
        "AWS::Partition": "aws",
        "AWS::Region": where.region,
        "AWS::AccountId": where.account,
        "AWS::StackName": stack,
    }
    attrs: dict[str, str] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::DynamoDB::Table":
            name = env[env_var_for(logical_id)]
            refs[logical_id] = name
            attrs[f"{logical_id}.Arn"] = arn.format(service="dynamodb", resource=f"table/{name}")
        elif logical_id == "JobsTopic":
            refs[logical_id] = where.topic_arn
        elif resource.get("Type") == "AWS::SQS::Queue" and "QueueName" in resource["Properties"]:
            attrs[f"{logical_id}.Arn"] = arn.format(service="sqs", resource=queue_name(resource, stage))
    if where.websocket_api is not None:
        refs["WebsocketAPI"] = where.websocket_api
    grants: dict[str, set[str]] = defaultdict(set)
    for resource in resources.values():
        for policy in resource.get("Properties", {}).get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "OwnLogGroup":
                    continue  # the template's own log groups; replaced by the stage prefix below
                if statement.get("Sid") in PACKAGE_PATH_ONLY:
                    continue
                if where.websocket_api is None and "execute-api:ManageConnections" in statement["Action"]:
                    continue
                rendered = render(statement["Resource"], refs, attrs)
                for granted in [rendered] if isinstance(rendered, str) else rendered:
                    grants[granted] |= set(statement["Action"])
    statements: list[dict[str, Any]] = [
        {
            "Sid": "StageLogGroups",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": arn.format(service="logs", resource=f"log-group:/aws/lambda/{stack}*"),
        }
    ]
    by_actions: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for granted, granted_actions in sorted(grants.items()):
        by_actions[tuple(sorted(granted_actions))].append(granted)
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
    if args.what == "template":
        document = stateful_template(args.stage)
    else:
        env = stage_environment(args.stage)
        try:
            where = StageLocation.of(args.stage, env)
        except StageNotConfigured as exc:
            raise SystemExit(str(exc)) from None
        if where.is_placeholder:
            print(
                f"warning: JOBS_TOPIC_ARN of stage {args.stage!r} is still the {PLACEHOLDER} placeholder: "
                "set it to the data stack's JobsTopicArn output and run this again before `chalice deploy`",
                file=sys.stderr,
            )
        elif where.websocket_api is None:
            print(
                f"note: stage {args.stage!r} has no WEBSOCKET_ENDPOINT yet, so no @connections call is "
                "granted; set it after the first `chalice deploy`, run this again and deploy again",
                file=sys.stderr,
            )
        document = stage_policy(args.stage, env)
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
