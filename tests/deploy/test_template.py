"""The packaged, merged template of each stage against what the code needs.

What the code needs is not copied here: each Lambda function's flows run
against moto with the template's own table definitions and environment, and
every AWS call is recorded (`flows.py`, `recording.py`). The template must then
grant each function exactly those calls, name those tables and indexes, and
give every function every setting `chalicelib/settings.py` reads.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from chalice_realtime.settings import OIDC_VARIABLES
from chalice_realtime.testing.firebase import CERTS_URL, SigningKey, TokenFactory
from chalice_realtime.testing.management_api import faulty_backend, restore_backend

from infra.cfn import references
from tests.deploy.conftest import ROOT, STAGES
from tests.deploy.flows import FLOWS, Deployment
from tests.deploy.recording import Call, CallRecorder, recording
from tests.deploy.stack import FakeStack

# The first test builds the dependency layer (pip, about a minute on a clean clone) for both stages.
pytestmark = pytest.mark.timeout(900)

# Settings that must NOT reach an AWS stage: the emulator makes firebase-admin accept unsigned tokens,
# and the Stripe secret is read from SSM there (STRIPE_WEBHOOK_SECRET_PARAM), never put in the template.
LOCAL_ONLY_SETTINGS = {"FIREBASE_AUTH_EMULATOR_HOST", "STRIPE_WEBHOOK_SECRET"}
# Set only where AUTH_PROVIDER=oidc (docs/adopt.md); the shipped stages use Firebase, which refuses them.
OIDC_ONLY_SETTINGS = set(OIDC_VARIABLES)
# What the Lambda runtime writes to CloudWatch Logs; granted on the function's own log group only.
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# What Lambda's SQS event source mapping does with the function's role (the code never calls them).
EVENT_SOURCE_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
# What the Lambda service does with the role, not the code: send traces (X-Ray has no resource-level
# permissions for these, hence `*`), and the job runner's failed events to its dead-letter queue. Each is
# held to exactly that by its own test (test_operations.py).
SERVICE_STATEMENTS = {"Tracing", "OnFailureDestination"}
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# Tables kept when the stack is deleted or a table replaced; the connections table (rows of two hours at
# most) may go. Messages and payments can also be restored to any second of the last 35 days.
USER_DATA_TABLES = ("JobsTable", "MessagesTable", "PaymentsTable", "RoomsTable")
RECOVERABLE_TABLES = ("MessagesTable", "PaymentsTable", "RoomsTable")
# Tables that may go with the stack: connections and their topic subscriptions (rows of two hours at
# most), request counters (a window).
DISPOSABLE_TABLES = ("ConnectionsTable", "RateLimitsTable", "TopicsTable")


@pytest.fixture(scope="module")
def stacks(templates: dict[str, dict[str, Any]]) -> dict[str, FakeStack]:
    return {stage: FakeStack(template, stage) for stage, template in templates.items()}


@pytest.fixture(scope="module")
def deployment(
    stacks: dict[str, FakeStack], signing_key: SigningKey, tokens: TokenFactory
) -> Iterator[Deployment]:
    """Every function's flows, run once against moto set up as the dev stack, their AWS calls recorded."""
    import responses
    from chalice.test import Client
    from moto import mock_aws

    from app import app

    stack = stacks["dev"]
    with (
        mock_aws(),
        responses.RequestsMock(assert_all_requests_are_fired=False) as certs,
        recording(CallRecorder()) as recorder,
        Client(app, stage_name="dev", project_dir=str(ROOT)) as client,
    ):
        certs.add(
            responses.GET,
            CERTS_URL,
            json={signing_key.kid: signing_key.certificate_pem()},
            headers={"Cache-Control": "public, max-age=3600", "Date": formatdate(usegmt=True)},
        )
        management_api = faulty_backend()
        try:
            deployed = Deployment(stack, recorder, tokens, management_api, client)
            deployed.prepare()
            for function in sorted(stack.functions, key=lambda f: f != "APIHandler"):
                for path in FLOWS.get(stack.handler_of(function), []):
                    path(deployed)
            yield deployed
        finally:
            restore_backend(management_api)


# ---------------------------------------------------------------- the template is valid


@pytest.mark.parametrize("stage", STAGES)
def test_cfn_lint_passes_on_the_merged_template(packaged: dict[str, Path], stage: str) -> None:
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(lint), str(packaged[stage] / "sam.json")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", STAGES)
def test_the_stage_is_the_one_packaged(stacks: dict[str, FakeStack], stage: str) -> None:
    from chalicelib.settings import Settings

    for function in stacks[stage].functions:
        assert Settings.from_env(stacks[stage].environment(function)).realtime.stage == stage


# ---------------------------------------------------------------- every function is exercised


def test_every_function_in_the_template_has_a_flow(stacks: dict[str, FakeStack]) -> None:
    handlers = {stacks["dev"].handler_of(f) for f in stacks["dev"].functions}
    assert handlers - set(FLOWS) == set(), "add a flow in tests/deploy/flows.py for each new function"


def test_every_rest_route_is_exercised(deployment: Deployment) -> None:
    from app import app

    routes = {(path, method) for path, entry in app.routes.items() for method in entry}
    assert routes - deployment.routes_called == set(), "add these routes to the REST flows in flows.py"


# ---------------------------------------------------------------- tables


def test_every_table_and_index_the_code_uses_exists_with_that_name(deployment: Deployment) -> None:
    stack = deployment.stack
    tables = stack.of_type("AWS::DynamoDB::Table")
    names = {stack.refs[logical_id]: logical_id for logical_id in tables}
    used = {
        c.resource
        for calls in deployment.recorder.calls.values()
        for c in calls
        if ":dynamodb:" in c.resource
    }
    assert used, "the flows touched no table"
    for arn in used:
        match = re.fullmatch(r".*:table/([^/]+)(?:/index/(.+))?", arn)
        assert match, arn
        table, index = match.groups()
        assert table in names, f"{arn}: no such table in the template"
        props = tables[names[table]]["Properties"]
        if index:
            indexes = props.get("GlobalSecondaryIndexes", []) + props.get("LocalSecondaryIndexes", [])
            assert index in {i["IndexName"] for i in indexes}, f"{names[table]} has no index {index}"


def test_ttl_is_enabled_on_the_epoch_seconds_attribute_the_code_writes(deployment: Deployment) -> None:
    import boto3
    from chalice_realtime.connections import TTL_ATTRIBUTE

    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    now = time.time()
    for logical_id, resource in deployment.stack.of_type("AWS::DynamoDB::Table").items():
        items = dynamodb.scan(TableName=deployment.stack.refs[logical_id])["Items"]
        expiring = [item[TTL_ATTRIBUTE] for item in items if TTL_ATTRIBUTE in item]
        ttl = resource["Properties"].get("TimeToLiveSpecification", {})
        if expiring:
            assert ttl == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}, (
                f"{logical_id}: rows never expire"
            )
            for value in expiring:  # seconds, not milliseconds: DynamoDB ignores values far in the future
                assert now < int(value["N"]) < now + 10 * 365 * 86400 + 4 * 3600, (logical_id, value)
        elif ttl:
            assert ttl.get("AttributeName") == TTL_ATTRIBUTE, (
                f"{logical_id}: TTL on an attribute never written"
            )


# ---------------------------------------------------------------- user data survives


@pytest.mark.parametrize("stage", STAGES)
def test_user_data_survives_a_stack_delete_or_a_table_replacement(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    tables = stacks[stage].of_type("AWS::DynamoDB::Table")
    assert set(USER_DATA_TABLES) | set(DISPOSABLE_TABLES) == set(tables), "which tables hold user data?"
    for logical_id in USER_DATA_TABLES:
        assert tables[logical_id].get("DeletionPolicy") == "Retain", logical_id
        assert tables[logical_id].get("UpdateReplacePolicy") == "Retain", logical_id
    for logical_id in RECOVERABLE_TABLES:
        recovery = tables[logical_id]["Properties"].get("PointInTimeRecoverySpecification")
        assert recovery == {"PointInTimeRecoveryEnabled": True}, logical_id


# ---------------------------------------------------------------- environment


class RecordingEnviron(Mapping[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return default

    def __contains__(self, name: object) -> bool:
        self.asked.add(str(name))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_variables() -> set[str]:
    from chalicelib.settings import Settings

    environ = RecordingEnviron()
    Settings.from_env(environ)
    return environ.asked


def test_the_settings_module_reads_the_variables_this_test_expects() -> None:
    # Guards the recording itself: a settings module read some other way would leave this empty.
    assert {"APP_STAGE", "CONNECTIONS_TABLE", "WEBSOCKET_ENDPOINT", "JOBS_TOPIC_ARN"} <= settings_variables()


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_gets_every_setting_and_no_local_only_one(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    required = settings_variables() - LOCAL_ONLY_SETTINGS - OIDC_ONLY_SETTINGS
    for function in stacks[stage].functions:
        env = stacks[stage].environment(function)
        assert required - set(env) == set(), f"{function} lacks settings"
        assert LOCAL_ONLY_SETTINGS & set(env) == set(), f"{function} has local-only settings"
        assert env["AUTH_PROVIDER"] == "firebase", f"{function}: the shipped stages verify Firebase tokens"
        assert OIDC_ONLY_SETTINGS & set(env) == set(), f"{function}: OIDC settings, not oidc"
        assert all(env[name] for name in required), f"{function}: empty settings"


@pytest.mark.parametrize("stage", STAGES)
def test_names_come_from_this_stack(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    api = stack.refs["WebsocketAPI"]
    for function, props in stack.functions.items():
        env = stack.environment(function)
        for logical_id in stack.of_type("AWS::DynamoDB::Table"):
            assert props["Environment"]["Variables"][_env_name(logical_id)] == {"Ref": logical_id}, function
        assert env["JOBS_TOPIC_ARN"] == stack.refs["JobsTopic"], function
        assert env["FANOUT_QUEUE_URL"] == stack.refs["FanoutQueue"], function
        assert env["WEBSOCKET_ENDPOINT"] == f"https://{api}.execute-api.us-east-1.amazonaws.com/api", function
        assert env["STRIPE_WEBHOOK_SECRET_PARAM"] == f"/chalice-realtime-{stage}/stripe-webhook-secret"


def _env_name(logical_id: str) -> str:
    from infra.tables import env_var_for

    return env_var_for(logical_id)


# ---------------------------------------------------------------- IAM


def test_each_policy_grants_exactly_the_calls_its_function_makes(deployment: Deployment) -> None:
    stack = deployment.stack
    problems: list[str] = []
    for function in stack.functions:
        calls = deployment.recorder.calls.get(function, set())
        statements = [
            s
            for s in stack.statements_of(function)
            if not set(_list(s["Action"])) <= LOG_ACTIONS
            and s.get("Sid") not in SERVICE_STATEMENTS
            and not set(_list(s["Action"])) <= EVENT_SOURCE_ACTIONS  # test_the_fanout_worker_reads_its_queue
        ]
        for call in sorted(calls, key=lambda c: (c.action, c.resource)):
            if not any(_allows(s, call) for s in statements):
                problems.append(f"{function}: not allowed: {call.action} on {call.resource}")
        for statement in statements:
            for action in _list(statement["Action"]):
                if not any(c.action == action and _allows(statement, c) for c in calls):
                    problems.append(f"{function}: {action} on {statement['Resource']} is never used")
            for resource in _list(statement["Resource"]):
                if not any(_allows({**statement, "Resource": resource}, c) for c in calls):
                    problems.append(f"{function}: {resource} is never used ({statement['Action']})")
    recorded = {f: sorted((c.action, c.resource) for c in cs) for f, cs in deployment.recorder.calls.items()}
    assert problems == [], "\n".join(problems) + "\n\nrecorded calls:\n" + json.dumps(recorded, indent=1)


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_writes_only_to_its_own_log_group(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    for function, props in stack.functions.items():
        logs = [s for s in stack.statements_of(function) if set(_list(s["Action"])) & LOG_ACTIONS]
        assert len(logs) == 1 and set(_list(logs[0]["Action"])) == LOG_ACTIONS, function
        group = f"/aws/lambda/{stack.render(props['FunctionName'])}"
        assert _list(logs[0]["Resource"]) == [f"arn:aws:logs:us-east-1:123456789012:log-group:{group}:*"]


@pytest.mark.parametrize("stage", STAGES)
def test_no_policy_has_a_wildcard_action_or_resource(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    for logical_id, role in stack.of_type("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            for statement in stack.render(policy["PolicyDocument"])["Statement"]:
                assert statement["Effect"] == "Allow" and "NotAction" not in statement, logical_id
                if statement.get("Sid") == "Tracing" and set(statement["Action"]) == XRAY_ACTIONS:
                    continue  # the one `*`: X-Ray's trace actions take no resource
                for action in _list(statement["Action"]):
                    assert "*" not in action, f"{logical_id}: {action}"
                for resource in _list(statement["Resource"]):
                    service_part, _, path = resource.partition(":123456789012:")
                    assert resource != "*" and "*" not in service_part, f"{logical_id}: {resource}"
                    assert path and not path.startswith("*"), f"{logical_id}: {resource}"


def _list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _allows(statement: dict[str, Any], call: Call) -> bool:
    return call.action in _list(statement["Action"]) and any(
        fnmatch.fnmatchcase(call.resource, pattern) for pattern in _list(statement["Resource"])
    )


# ---------------------------------------------------------------- wiring


@pytest.mark.parametrize("stage", STAGES)
def test_websocket_routes_exist_and_reach_their_handlers(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in stack.of_type("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    handlers = {"$connect": "ws_connect", "$disconnect": "ws_disconnect", "$default": "ws_message"}
    integrations = stack.of_type("AWS::ApiGatewayV2::Integration")
    for key, handler in handlers.items():
        integration = routes[key]["Target"]["Fn::Join"][1][1]["Ref"]
        uri = integrations[integration]["Properties"]["IntegrationUri"]
        assert stack.function_for(handler) in json.dumps(uri), key


# Run as Lambda runs a function: import the module its `Handler` names, then call the attribute.
LOAD_HANDLERS = """
import importlib, json, sys
from chalice_realtime.testing.events import websocket_event
answers = {}
for handler in sys.argv[1:]:
    module, _, name = handler.rpartition(".")
    function = getattr(importlib.import_module(module), name)
    if name == "ws_message":
        answers[handler] = function(websocket_event("MESSAGE", "c-1", body="not json"), None)
    answers[handler + " imported app.py"] = "app" in sys.modules
print(json.dumps(answers))
"""


@pytest.mark.parametrize("stage", STAGES)
def test_the_core_handlers_run_without_app_py_as_lambda_loads_them(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    # Deployed, the blueprint's functions name `chalice_realtime.blueprint.<handler>`: Lambda imports
    # that module only, so it must work (settings, logging, the event wrapper) without `app.py`.
    stack = stacks[stage]
    core = sorted(
        {str(p["Handler"]) for p in stack.functions.values() if not str(p["Handler"]).startswith("app.")}
    )
    assert core == [
        "chalice_realtime.blueprint.fanout_worker",
        "chalice_realtime.blueprint.realtime_auth",
        "chalice_realtime.blueprint.ws_connect",
        "chalice_realtime.blueprint.ws_disconnect",
        "chalice_realtime.blueprint.ws_message",
    ]
    env = {
        **stack.environment(stack.function_for("ws_message")),
        "PATH": "/usr/bin:/bin",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", LOAD_HANDLERS, *core],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.splitlines()[-1])
    assert answers["chalice_realtime.blueprint.ws_message"] == {"statusCode": 200}
    assert not any(v for k, v in answers.items() if k.endswith("imported app.py")), answers


@pytest.mark.parametrize("stage", STAGES)
def test_the_job_function_is_subscribed_to_the_topic_this_template_creates(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    runner = stack.functions[stack.function_for("run_job")]
    subscriptions = [e["Properties"] for e in runner.get("Events", {}).values() if e["Type"] == "SNS"]
    assert len(subscriptions) == 1, subscriptions
    # The merge replaces the `Fn::Sub` Chalice wrote (dicts merge key by key); `${JobsTopic}` is the ARN.
    assert references(subscriptions[0]["Topic"]) == {"JobsTopic"}
    assert stack.render(subscriptions[0]["Topic"]) == stack.refs["JobsTopic"]
    assert stack.resources["JobsTopic"]["Type"] == "AWS::SNS::Topic"


@pytest.mark.parametrize("stage", STAGES)
def test_timeouts_fit_each_function(stacks: dict[str, FakeStack], stage: str) -> None:
    from chalicelib.jobs import RUNNER_TIMEOUT_SECONDS

    stack = stacks[stage]
    for function, props in stack.functions.items():
        if stack.handler_of(function) == "run_job":
            assert props["Timeout"] == RUNNER_TIMEOUT_SECONDS  # the jobs' deadline and stale rule assume it
        elif stack.handler_of(function) == "sweep_stale_jobs":
            assert props["Timeout"] < 60  # done before the next run, one minute later
        else:
            # API Gateway gives up after 29 s; a socket handler holds up the client's handshake or frame.
            assert props["Timeout"] <= 30, function


@pytest.mark.parametrize("stage", STAGES)
def test_outputs_give_the_user_every_url_and_name(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    outputs = {name: stack.render(o["Value"]) for name, o in stack.template["Outputs"].items()}
    api, ws = stack.refs["RestAPI"], stack.refs["WebsocketAPI"]
    assert outputs["EndpointURL"] == f"https://{api}.execute-api.us-east-1.amazonaws.com/api/"
    assert outputs["WebsocketConnectEndpointURL"] == f"wss://{ws}.execute-api.us-east-1.amazonaws.com/api/"
    assert outputs["WebsocketManagementEndpoint"] == f"https://{ws}.execute-api.us-east-1.amazonaws.com/api"
    assert outputs["JobsTopicArn"] == stack.refs["JobsTopic"]
    for logical_id in stack.of_type("AWS::DynamoDB::Table"):
        assert outputs[f"{logical_id}Name"] == stack.refs[logical_id]
    assert outputs["DashboardURL"].endswith(f"#dashboards:name=chalice-realtime-{stage}")
    assert outputs["AlarmTopicArn"] == stack.refs["AlarmTopic"]
    assert outputs["JobsDeadLetterQueueUrl"] == stack.refs["JobsDeadLetterQueue"]


# ---------------------------------------------------------------- what a flood can take


@pytest.mark.parametrize("stage", STAGES)
def test_the_rest_api_stage_is_throttled(stacks: dict[str, FakeStack], stage: str) -> None:
    """A stage-wide ceiling under the account's 10,000 rps, so a flood on REST cannot take the account's
    Lambda concurrency from `$connect` and the other routes (per-user rates are the app's own)."""
    api = stacks[stage].template["Resources"]["RestAPI"]
    assert api["Type"] == "AWS::Serverless::Api"
    (setting,) = api["Properties"]["MethodSettings"]
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")  # every route of the stage
    assert 0 < setting["ThrottlingRateLimit"] <= setting["ThrottlingBurstLimit"] <= 1000


@pytest.mark.parametrize("stage", STAGES)
def test_the_job_runner_and_the_socket_functions_have_reserved_concurrency(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    """Jobs hold a Lambda for up to 15 minutes: the runner gets its own reserved share, which also caps it.
    `$connect` and `$default` (every client frame) get theirs too: a flood of sockets cannot take the
    account's concurrency from REST, nor REST from them. One sweep at a time."""
    stack = stacks[stage]
    reserved = {
        stack.handler_of(function): props.get("ReservedConcurrentExecutions")
        for function, props in stack.functions.items()
    }
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    names = {"run_job": "run_job", "ws_connect": "websocket_connect", "ws_message": "websocket_message"}
    names["sweep_stale_jobs"] = "sweep_stale_jobs"
    names["fanout_worker"] = "fanout_worker"  # test_the_fanout_worker_reads_its_queue_...
    for handler, name in names.items():
        assert reserved[handler] == config["lambda_functions"][name]["reserved_concurrency"], handler
        assert 0 < reserved[handler] <= 100, handler
    assert {handler for handler, value in reserved.items() if value is not None} == set(names)
    assert reserved["sweep_stale_jobs"] == 1
    # The stage's job limit is the runner's slots: an admitted job finds a runner (docs/reliability.md).
    environment = config["environment_variables"]
    assert int(environment["MAX_ACTIVE_JOBS"]) <= reserved["run_job"]


# ---------------------------------------------------------------- fan-out workers


@pytest.mark.parametrize("stage", STAGES)
def test_the_fanout_worker_reads_its_queue_one_shard_at_a_time_with_its_own_reserved_share(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    """Shards wait in SQS while the workers' reserved share is busy, instead of taking the account's
    concurrency from the REST and WebSocket functions; each shard is one invocation, so a raise for its
    failed frames redelivers that shard only."""
    stack = stacks[stage]
    function = stack.function_for("fanout_worker")
    worker = stack.functions[function]
    (source,) = [e["Properties"] for e in worker["Events"].values() if e["Type"] == "SQS"]
    assert references(source["Queue"]) == {"FanoutQueue"}
    assert stack.render(source["Queue"]) == stack.attrs["FanoutQueue.Arn"]
    assert source["BatchSize"] == 1
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert (
        worker["ReservedConcurrentExecutions"]
        == config["lambda_functions"]["fanout_worker"]["reserved_concurrency"]
    )
    assert 0 < worker["ReservedConcurrentExecutions"] <= 50
    polling = [s for s in stack.statements_of(function) if set(_list(s["Action"])) & EVENT_SOURCE_ACTIONS]
    assert [(set(_list(s["Action"])), _list(s["Resource"])) for s in polling] == [
        (EVENT_SOURCE_ACTIONS, [stack.attrs["FanoutQueue.Arn"]])
    ]
    for other in set(stack.functions) - {function}:
        assert not any(set(_list(s["Action"])) & EVENT_SOURCE_ACTIONS for s in stack.statements_of(other))


@pytest.mark.parametrize("stage", STAGES)
def test_an_undeliverable_shard_ends_in_a_dead_letter_queue_after_five_receives(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    queue = stack.resources["FanoutQueue"]["Properties"]
    dead_letters = stack.resources["FanoutDeadLetterQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    assert stack.render(redrive["deadLetterTargetArn"]) == stack.attrs["FanoutDeadLetterQueue.Arn"]
    assert redrive["maxReceiveCount"] == 5
    assert stack.attrs["FanoutDeadLetterQueue.QueueName"] == f"chalice-realtime-{stage}-fanout-dead-letters"
    worker_timeout = stack.functions[stack.function_for("fanout_worker")]["Timeout"]
    # AWS: at least six times the function's timeout, so a shard is not received again while running.
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    # A standard queue's message expires by its first enqueue time, in the dead-letter queue too.
    assert dead_letters["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    outputs = {name: stack.render(o["Value"]) for name, o in stack.template["Outputs"].items()}
    assert outputs["FanoutDeadLetterQueueName"] == stack.attrs["FanoutDeadLetterQueue.QueueName"]
    assert outputs["FanoutQueueUrl"] == stack.refs["FanoutQueue"]
