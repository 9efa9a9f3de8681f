"""`chalice-realtime`, the installed console script, against a moto server standing in for the stage.

`check` passes on a stage built from what `chalice-realtime infra` writes, and names each
misconfiguration of a broken one; `connections`, `notify` and `disconnect` act on a user's rows and
connections there. (`disconnect` closing a real socket: tests/integration/test_cli_local_stack.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from chalice_realtime.cli.check import Finding, StageCheck
from chalice_realtime.testing.store import add_connections

CLI = Path(sys.executable).with_name("chalice-realtime")
TABLE = "stage-connections"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's server on a free loopback port: the stage's DynamoDB and its Management API."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def frames_posted(connection_id: str) -> bytes | None:
    """What moto's Management API holds for `connection_id` (None: no such connection, or deleted)."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    connections = apigatewaymanagementapi_backends["123456789012"]["us-east-1"].connections
    for key in (connection_id, quote(connection_id, safe="")):  # moto's server keeps the path's encoding
        if key in connections:
            return bytes(connections[key].data)
    return None


@pytest.fixture
def stage(moto_url: str) -> Iterator[dict[str, str]]:
    """The environment of a `dev` stage whose DynamoDB and Management API are the moto server."""
    yield {
        "PATH": str(CLI.parent),
        "APP_STAGE": "dev",
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CONNECTIONS_TABLE": TABLE,
        "WEBSOCKET_ENDPOINT": moto_url,
        "REALTIME_TRANSPORT": "boto3",  # every extra set has it
    }
    dynamodb = client("dynamodb", moto_url)
    for table in dynamodb.list_tables()["TableNames"]:
        dynamodb.delete_table(TableName=table)


def client(service: str, url: str) -> Any:
    return boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def create_table_as_infra_writes_it(tmp_path: Path, env: dict[str, str], *, broken: bool = False) -> None:
    """The connections table from `chalice-realtime infra`'s template; `broken`: no index, no TTL."""
    assert cli(env, "infra", "--app-dir", str(tmp_path)).returncode == 0
    template = json.loads((tmp_path / "realtime-resources.json").read_text())
    props = template["Resources"]["ConnectionsTable"]["Properties"]
    dynamodb = client("dynamodb", env["AWS_ENDPOINT_URL"])
    dynamodb.create_table(
        TableName=TABLE,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"][:1] if broken else props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        **({} if broken else {"GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"]}),
    )
    if not broken:
        ttl = props["TimeToLiveSpecification"]
        dynamodb.update_time_to_live(
            TableName=TABLE, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
        )


class Forbidding:
    """Answers every request 403, as API Gateway does to a caller without ManageConnections."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = b'{"message":"Forbidden"}'
                self.send_response(403)
                self.send_header("x-amzn-ErrorType", "ForbiddenException")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.mark.requires_extra("oidc")
def test_check_passes_on_a_stage_built_as_infra_writes_it(
    tmp_path: Path, stage: dict[str, str], local_issuer: Any
) -> None:
    create_table_as_infra_writes_it(tmp_path, stage)
    env = {**stage, "AUTH_PROVIDER": "oidc", "OIDC_ISSUER": local_issuer.issuer, "OIDC_AUDIENCE": "app"}

    result = cli(env, "check")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"connections table '{TABLE}' has its 'by_user' index" in result.stdout
    assert "TTL is on" in result.stdout
    assert f"the signing keys of {local_issuer.issuer} can be fetched (1 keys" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("all 4 checks passed")


@pytest.mark.requires_extra("oidc")
def test_check_reports_each_misconfiguration_of_a_broken_stage(
    tmp_path: Path, stage: dict[str, str], local_issuer: Any
) -> None:
    create_table_as_infra_writes_it(tmp_path, stage, broken=True)
    forbidding = Forbidding()
    local_issuer.stop()  # the issuer's keys cannot be fetched
    env = {
        **stage,
        "WEBSOCKET_ENDPOINT": forbidding.url,
        "AUTH_PROVIDER": "oidc",
        "OIDC_ISSUER": local_issuer.issuer,
        "OIDC_AUDIENCE": "app",
    }
    try:
        result = cli(env, "check")
    finally:
        forbidding.stop()

    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 4, result.stdout
    assert f"connections table '{TABLE}' has no 'by_user' index" in failures[0]
    assert "TTL is not on for 'expires_at'" in failures[1]
    assert "403" in failures[2] and "execute-api:ManageConnections" in failures[2]
    assert "discovery document" in failures[3] and "cannot be fetched" in failures[3]
    assert result.stdout.splitlines()[-1] == "4 problems: the stage is not ready for traffic"


def test_check_reports_a_missing_table_endpoint_and_project(stage: dict[str, str]) -> None:
    env = {name: value for name, value in stage.items() if name != "WEBSOCKET_ENDPOINT"}

    result = cli(env, "check")

    assert result.returncode == 1
    assert f"FAIL connections table '{TABLE}' does not exist (CONNECTIONS_TABLE)" in result.stdout
    assert "FAIL WEBSOCKET_ENDPOINT is not set" in result.stdout
    assert "FAIL FIREBASE_PROJECT_ID is not set" in result.stdout


def test_check_reads_the_stage_from_the_apps_config(tmp_path: Path, stage: dict[str, str]) -> None:
    (tmp_path / ".chalice").mkdir()
    config = {"stages": {"prod": {"environment_variables": {"CONNECTIONS_TABLE": "prod-connections"}}}}
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    env = {name: value for name, value in stage.items() if name != "CONNECTIONS_TABLE"}

    result = cli(env, "check", "--stage", "prod", cwd=tmp_path)
    missing = cli(env, "check", "--stage", "staging", cwd=tmp_path)

    assert "connections table 'prod-connections' does not exist" in result.stdout
    assert missing.returncode == 2
    assert "no such stage" in missing.stderr


def test_a_configuration_error_is_a_clear_message_and_status_2(stage: dict[str, str]) -> None:
    result = cli({**stage, "APP_STAGE": "staging"}, "check")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "APP_STAGE must be one of local, dev, prod, not 'staging'" in result.stderr


class Simulator:
    """IAM's SimulatePrincipalPolicy answering `decision` (moto has no policy simulator)."""

    def __init__(self, decision: str) -> None:
        self.decision = decision
        self.asked: list[dict[str, Any]] = []

    def simulate_principal_policy(self, **request: Any) -> dict[str, Any]:
        self.asked.append(request)
        return {
            "EvaluationResults": [
                {"EvalActionName": "execute-api:ManageConnections", "EvalDecision": self.decision}
            ]
        }


@pytest.mark.parametrize("decision", ["allowed", "implicitDeny"])
def test_with_a_role_arn_the_permission_is_asked_of_iams_policy_simulator(
    settings: Any, decision: str
) -> None:
    role = "arn:aws:iam::111122223333:role/my-app-dev-ship_order"
    simulator = Simulator(decision)

    finding = StageCheck(
        settings, dynamodb=None, management=None, iam=simulator, role_arn=role
    ).manage_connections()  # type: ignore[arg-type]

    (request,) = simulator.asked
    assert request["PolicySourceArn"] == role
    assert request["ActionNames"] == ["execute-api:ManageConnections"]
    assert request["ResourceArns"] == [
        "arn:aws:execute-api:us-east-1:111122223333:abc123/api/POST/@connections/*"
    ]
    assert finding.ok is (decision == "allowed")
    if not finding.ok:
        assert finding == Finding(
            False,
            f"role {role} may not execute-api:ManageConnections on {request['ResourceArns'][0]} "
            "(implicitDeny): give it the PostFrames statement (chalice-realtime infra)",
        )


def test_connections_notify_and_disconnect_act_on_the_users_connections(
    tmp_path: Path, stage: dict[str, str]
) -> None:
    create_table_as_infra_writes_it(tmp_path, stage)
    dynamodb = client("dynamodb", stage["AWS_ENDPOINT_URL"])
    add_connections(dynamodb, TABLE, "uid-1", "conn-a=", "conn-b=")
    add_connections(dynamodb, TABLE, "uid-2", "conn-c=")

    listed = cli(stage, "connections", "--user", "uid-1")
    notified = cli(stage, "notify", "--user", "uid-1", "--event", "orders-updated")
    frames = [frames_posted("conn-a="), frames_posted("conn-b="), frames_posted("conn-c=")]
    disconnected = cli(stage, "disconnect", "--user", "uid-1")
    after = cli(stage, "connections", "--user", "uid-1")

    assert listed.returncode == 0
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()[:-1]] == ["conn-a=", "conn-b="]
    assert listed.stdout.splitlines()[-1] == "2 live connections of uid-1"
    assert (notified.returncode, notified.stdout) == (0, "delivered=2 gone=0 failed=0\n")
    assert frames == [b'{"event":"orders-updated"}', b'{"event":"orders-updated"}', None]
    assert disconnected.returncode == 0
    assert disconnected.stdout.splitlines()[-1] == "disconnected 2 connections of uid-1"
    assert frames_posted("conn-a=") is None  # DeleteConnection reached the Management API
    assert after.stdout == "0 live connections of uid-1\n"
    assert (
        cli(stage, "connections", "--user", "uid-2").stdout.splitlines()[-1] == "1 live connection of uid-2"
    )


def test_notify_and_members_act_on_a_topics_subscribers(stage: dict[str, str]) -> None:
    from chalice_realtime.subscriptions import Subscription, SubscriptionStore
    from chalice_realtime.testing.store import create_connections_table, create_topics_table

    dynamodb = client("dynamodb", stage["AWS_ENDPOINT_URL"])
    create_connections_table(dynamodb, TABLE)
    create_topics_table(dynamodb, "cli-topics")
    env = {**stage, "TOPICS_TABLE": "cli-topics"}
    now_ms = int(time.time() * 1000)
    subscriptions = SubscriptionStore("cli-topics", dynamodb)
    for user_id, connection_id in (("uid-1", "room-a="), ("uid-1", "room-b="), ("uid-2", "room-c=")):
        subscriptions.add(Subscription("room:42", user_id, connection_id, now_ms))
    subscriptions.add(Subscription("room:43", "uid-3", "other-d=", now_ms))

    notified = cli(env, "notify", "--topic", "room:42", "--event", "room-messages-updated")
    members = cli(env, "members", "--topic", "room:42")
    reserved = cli(env, "notify", "--topic", "room:42", "--event", "subscribed")
    both = cli(env, "notify", "--topic", "room:42", "--user", "uid-1", "--event", "orders-updated")
    bad_topic = cli(env, "members", "--topic", "Room 42")

    assert (notified.returncode, notified.stdout) == (0, "delivered=3 gone=0 failed=0\n"), notified.stderr
    sent = b'{"event":"room-messages-updated","topic":"room:42"}'
    assert [frames_posted(c) for c in ("room-a=", "room-b=", "room-c=", "other-d=")] == [
        sent,
        sent,
        sent,
        None,
    ]
    assert (members.returncode, members.stdout) == (0, "uid-1\nuid-2\n2 members of room:42\n")
    assert reserved.returncode == 2 and "'subscribed' is a key the core sends itself" in reserved.stderr
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert bad_topic.returncode == 2 and "invalid topic 'Room 42'" in bad_topic.stderr
    assert "Traceback" not in reserved.stderr + both.stderr + bad_topic.stderr


def test_a_stacks_topics_table_and_fanout_queue_are_read_when_it_has_them() -> None:
    from chalice_realtime.cli import stack_environment

    class CloudFormation:
        def __init__(self, outputs: dict[str, str]) -> None:
            self.outputs = outputs

        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
            return {"Stacks": [{"Outputs": outputs, "Parameters": []}]}

    base = {"ConnectionsTableName": "shop-connections", "WebsocketManagementEndpoint": "https://x/api"}
    queue = "https://sqs.eu-west-1.amazonaws.com/111122223333/shop-fanout"
    newer = {**base, "TopicsTableName": "shop-topics", "FanoutQueueUrl": queue}

    assert stack_environment("shop", CloudFormation(base)) == {
        "CONNECTIONS_TABLE": "shop-connections",
        "WEBSOCKET_ENDPOINT": "https://x/api",
    }
    assert stack_environment("shop", CloudFormation(newer)) == {
        "CONNECTIONS_TABLE": "shop-connections",
        "WEBSOCKET_ENDPOINT": "https://x/api",
        "TOPICS_TABLE": "shop-topics",
        "FANOUT_QUEUE_URL": queue,
    }


def test_bad_input_is_a_usage_error_not_a_traceback(stage: dict[str, str]) -> None:
    bad_key = cli(stage, "notify", "--user", "uid-1", "--event", "Orders Updated")
    no_table = cli(stage, "connections", "--user", "uid-1")
    no_endpoint = cli(
        {k: v for k, v in stage.items() if k != "WEBSOCKET_ENDPOINT"}, "disconnect", "--user", "u"
    )

    assert no_table.returncode == 1
    assert "ResourceNotFoundException" in no_table.stderr and "Query" in no_table.stderr
    assert bad_key.returncode == 2
    assert "invalid event key 'Orders Updated'" in bad_key.stderr
    assert no_endpoint.returncode == 2
    assert "WEBSOCKET_ENDPOINT is not set" in no_endpoint.stderr
    assert "Traceback" not in bad_key.stderr + no_endpoint.stderr + no_table.stderr


def test_infra_gives_a_notifying_function_its_settings_and_role_and_keeps_what_the_app_added(
    tmp_path: Path, stage: dict[str, str]
) -> None:
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(
        '{"version": "2.0", "app_name": "shop", "stages": {"dev": {}}}'
    )
    own_statement = {"Sid": "ReadOrders", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": "*"}
    own = {
        "Resources": {
            "OrdersTable": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "orders"}},
            "ShipOrderRole": {
                "Properties": {
                    "Policies": [
                        {
                            "PolicyName": "Mine",
                            "PolicyDocument": {"Version": "2012-10-17", "Statement": [own_statement]},
                        }
                    ]
                }
            },
        }
    }
    (tmp_path / "realtime-resources.json").write_text(json.dumps(own))

    first = cli(stage, "infra", "--app-dir", str(tmp_path), "--notifying-function", "ship_order")
    template = json.loads((tmp_path / "realtime-resources.json").read_text())
    config = json.loads((tmp_path / ".chalice" / "config.json").read_text())
    again = cli(stage, "infra", "--app-dir", str(tmp_path), "--notifying-function", "ship_order")
    bad = cli(stage, "infra", "--app-dir", str(tmp_path), "--notifying-function", "ship order")

    assert first.returncode == 0, first.stderr
    variables = template["Resources"]["ShipOrder"]["Properties"]["Environment"]["Variables"]
    assert variables["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
    assert "${WebsocketAPI}" in variables["WEBSOCKET_ENDPOINT"]["Fn::Sub"]
    (policy,) = template["Resources"]["ShipOrderRole"]["Properties"]["Policies"]
    assert [s["Sid"] for s in policy["PolicyDocument"]["Statement"]] == [
        "ReadOrders",
        "OwnLogGroup",
        "Tracing",
        "FindConnectionsOfUser",
        "DeleteGoneConnections",
        "PostFrames",
        "HandOnToFanoutWorkers",
    ]
    assert template["Resources"]["OrdersTable"] == own["Resources"]["OrdersTable"]
    assert config["autogen_policy"] is False and config["app_name"] == "shop"
    assert config["stages"]["dev"]["environment_variables"] == {"APP_STAGE": "dev"}
    assert (tmp_path / ".chalice" / "policy-dev.json").is_file()
    assert "is up to date" in again.stdout and "wrote" not in again.stdout
    assert bad.returncode == 2 and "'ship order' is not a Chalice function name" in bad.stderr


def test_infra_gives_a_function_that_notifies_topics_the_topics_table_too(
    tmp_path: Path, stage: dict[str, str]
) -> None:
    result = cli(
        stage,
        "infra",
        "--app-dir",
        str(tmp_path),
        "--notifying-function",
        "ship_order",
        "--topic-notifying-function",
        "close_room",
    )
    template = json.loads((tmp_path / "realtime-resources.json").read_text())

    def sids(role: str) -> list[str]:
        (policy,) = template["Resources"][role]["Properties"]["Policies"]
        return [s["Sid"] for s in policy["PolicyDocument"]["Statement"]]

    assert result.returncode == 0, result.stderr
    assert "close_room: CONNECTIONS_TABLE, WEBSOCKET_ENDPOINT, role CloseRoomRole" in result.stdout
    assert sids("CloseRoomRole") == [*sids("ShipOrderRole"), "TopicSubscribers"]
    (policy,) = template["Resources"]["CloseRoomRole"]["Properties"]["Policies"]
    topics = policy["PolicyDocument"]["Statement"][-1]
    assert topics["Resource"] == {"Fn::GetAtt": ["TopicsTable", "Arn"]}
    assert topics["Action"] == ["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    variables = template["Resources"]["CloseRoom"]["Properties"]["Environment"]["Variables"]
    assert variables["TOPICS_TABLE"] == {"Ref": "TopicsTable"}


def test_infra_removes_a_statement_an_earlier_core_wrote_under_another_name() -> None:
    from chalice_realtime.cli.infra import core_template, merge_template

    earlier = core_template()
    (policy,) = earlier["Resources"]["FanoutWorkerRole"]["Properties"]["Policies"]
    statements = policy["PolicyDocument"]["Statement"]
    renamed = next(s for s in statements if s["Sid"] == "HandOnTheRest")
    statements.append({**renamed, "Sid": "HandOnTheRestOfAUser"})  # what an earlier core wrote

    merged = merge_template(earlier)

    assert merged == core_template()  # the old statement gone, nothing else changed


def test_the_stage_can_be_read_from_its_cloudformation_stack(tmp_path: Path, stage: dict[str, str]) -> None:
    assert cli(stage, "infra", "--app-dir", str(tmp_path)).returncode == 0
    core = json.loads((tmp_path / "realtime-resources.json").read_text())
    template = {
        "Parameters": {"FirebaseProjectId": core["Parameters"]["FirebaseProjectId"]},
        "Resources": {"ConnectionsTable": core["Resources"]["ConnectionsTable"]},
        "Outputs": {
            "ConnectionsTableName": core["Outputs"]["ConnectionsTableName"],
            "WebsocketManagementEndpoint": {"Value": stage["WEBSOCKET_ENDPOINT"]},
        },
    }
    cloudformation = client("cloudformation", stage["AWS_ENDPOINT_URL"])
    cloudformation.create_stack(
        StackName="shop-dev",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "FirebaseProjectId", "ParameterValue": "shop-firebase"}],
    )
    (table,) = client("dynamodb", stage["AWS_ENDPOINT_URL"]).list_tables()["TableNames"]
    add_connections(client("dynamodb", stage["AWS_ENDPOINT_URL"]), table, "uid-1", "conn-s=")
    env = {
        name: value
        for name, value in stage.items()
        if name not in ("CONNECTIONS_TABLE", "WEBSOCKET_ENDPOINT")
    }

    listed = cli(env, "connections", "--stack", "shop-dev", "--user", "uid-1")
    notified = cli(env, "notify", "--stack", "shop-dev", "--user", "uid-1", "--event", "orders-updated")
    unknown = cli(env, "connections", "--stack", "no-such-stack", "--user", "uid-1")

    assert table != TABLE  # named by CloudFormation, known only from the stack
    assert listed.stdout.splitlines()[-1] == "1 live connection of uid-1", listed.stderr
    assert notified.stdout == "delivered=1 gone=0 failed=0\n"
    assert frames_posted("conn-s=") == b'{"event":"orders-updated"}'
    assert unknown.returncode == 2 and "--stack no-such-stack" in unknown.stderr
