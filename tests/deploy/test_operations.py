"""What an operator runs the packaged stack with: access logs, traces, a dashboard, alarms, the job
runner's on-failure queue, the stages' limits, the authorizer's header check, and checkov.

The dashboard, alarms and metric filters are held against what the code writes: the notify metrics
`NotifyMetrics` emits (its EMF blob, captured) and the log lines `$connect` and the transports write
(captured from the code, then matched with the filters' own patterns).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from chalice_realtime import DeliveryReport
from chalice_realtime.metrics import NAMESPACE, SERVICE, NotifyMetrics
from chalice_realtime.testing.events import websocket_event
from chalice_realtime.testing.firebase import TokenFactory

from infra import checkov
from tests.deploy.conftest import ROOT, STAGES
from tests.deploy.stack import FakeStack

OBSERVABILITY_DOC = (ROOT / "docs" / "observability.md").read_text()
# Never in an access log: the query string (`?token=` carries a token), headers (Authorization,
# Sec-WebSocket-Protocol), the request body.
NEVER_LOGGED = ("querystring", "header", "authorization", "token", "protocol.", "$input", "$request", "body")
XRAY_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
# API Gateway's account-level limit on new WebSocket connections per second.
ACCOUNT_NEW_CONNECTIONS_PER_SECOND = 500


@pytest.fixture(scope="module")
def stacks(templates: dict[str, dict[str, Any]]) -> dict[str, FakeStack]:
    return {stage: FakeStack(template, stage) for stage, template in templates.items()}


def props(stack: FakeStack, logical_id: str) -> dict[str, Any]:
    return dict(stack.resources[logical_id]["Properties"])


# ---------------------------------------------------------------- access and execution logs


def access_log_formats(stack: FakeStack) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """stage name -> (its log setting, the format's fields)."""
    rest = props(stack, "RestAPI")["AccessLogSetting"]
    websocket = props(stack, "WebsocketAPIStage")["AccessLogSettings"]
    return {
        name: (setting, json.loads(setting["Format"]))
        for name, setting in [("rest", rest), ("ws", websocket)]
    }


@pytest.mark.parametrize("stage", STAGES)
def test_both_stages_write_json_access_logs_without_tokens_or_query_strings(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    for name, (setting, fields) in access_log_formats(stack).items():
        (group,) = {setting["DestinationArn"]["Fn::GetAtt"][0]}
        assert stack.resources[group]["Type"] == "AWS::Logs::LogGroup", name
        assert stack.resources[group]["Properties"]["RetentionInDays"] > 0, name
        assert {"requestId", "ip", "requestTime", "status"} <= set(fields), name
        for field, variable in fields.items():
            assert re.fullmatch(r"\$context\.[A-Za-z.]+", variable), (name, field, variable)
            assert not any(word in variable.lower() for word in NEVER_LOGGED), (name, field, variable)
            assert f"`{field}`" in OBSERVABILITY_DOC, f"document the {name} access log field {field}"


@pytest.mark.parametrize("stage", STAGES)
def test_execution_logs_are_errors_only_and_never_carry_request_data(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    (method,) = props(stack, "RestAPI")["MethodSettings"]
    routes = props(stack, "WebsocketAPIStage")["DefaultRouteSettings"]
    for settings in (method, routes):
        assert settings["LoggingLevel"] == "ERROR" and settings["DataTraceEnabled"] is False
    # A stage with logs cannot be created before the region has API Gateway's logging role.
    for logical_id in ("RestAPI", "WebsocketAPIStage"):
        assert stack.resources[logical_id]["DependsOn"] == ["ApiGatewayLoggingReady"]
    ready = stack.resources["ApiGatewayLoggingReady"]["Metadata"]["Account"]
    assert ready == {"Fn::If": ["CreateApiGatewayLogRole", {"Ref": "ApiGatewayAccount"}, ""]}


# ---------------------------------------------------------------- tracing


@pytest.mark.parametrize("stage", STAGES)
def test_the_rest_stage_and_every_function_are_traced(stacks: dict[str, FakeStack], stage: str) -> None:
    stack = stacks[stage]
    assert props(stack, "RestAPI")["TracingEnabled"] is True
    for function, properties in stack.functions.items():
        assert properties["Tracing"] == "Active", function
        tracing = [
            {**s, "Action": sorted(s["Action"])}
            for s in stack.statements_of(function)
            if s.get("Sid") == "Tracing"
        ]
        assert tracing == [{"Sid": "Tracing", "Effect": "Allow", "Action": XRAY_ACTIONS, "Resource": "*"}]


# ---------------------------------------------------------------- the job runner's failures


@pytest.mark.parametrize("stage", STAGES)
def test_the_job_runner_sends_what_fails_every_attempt_to_its_own_queue(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    runner = stack.function_for("run_job")
    destination = stack.functions[runner]["DeadLetterQueue"]
    assert destination == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}}
    queue = stack.resources["JobsDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue" and queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600  # SQS's longest
    # Its notifies also hand shards to the fan-out queue (test_template.py checks that statement by use).
    sends = [
        s
        for s in stack.statements_of(runner)
        if "sqs:SendMessage" in s["Action"] and s.get("Sid") != "HandOnToFanoutWorkers"
    ]
    assert sends == [
        {
            "Sid": "OnFailureDestination",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": stack.attrs["JobsDeadLetterQueue.Arn"],
        }
    ]
    for function in set(stack.functions) - {runner}:
        assert not [s for s in stack.statements_of(function) if s.get("Sid") == "OnFailureDestination"]


# ---------------------------------------------------------------- the dashboard


def emitted_notify_metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, list[list[str]]]:
    """metric name -> its dimension sets, as NotifyMetrics writes them (its EMF blob on stdout)."""
    NotifyMetrics(stage="dev")("jobs-updated", 1, DeliveryReport(delivered=2, gone=1, failed=1), 12.5)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert blobs, "NotifyMetrics wrote no EMF blob"
    emitted: dict[str, list[list[str]]] = {}
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == NAMESPACE
            for metric in directive["Metrics"]:
                emitted[metric["Name"]] = directive["Dimensions"]
    return emitted


def dashboard_metrics(stack: FakeStack) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, name, dimensions, options) of every metric the rendered dashboard shows."""
    body = json.loads(stack.render(props(stack, "Dashboard")["DashboardBody"]))
    shown = []
    for widget in body["widgets"]:
        for metric in widget["properties"]["metrics"]:
            options = metric[-1] if isinstance(metric[-1], dict) else {}
            parts = [str(part) for part in (metric[:-1] if options else metric)]
            namespace, name, *dimensions = parts
            stat = options.get("stat", widget["properties"]["stat"])
            shown.append(
                (namespace, name, dict(zip(dimensions[::2], dimensions[1::2], strict=True)), {"stat": stat})
            )
    return shown


def log_metrics(stack: FakeStack) -> dict[str, list[str]]:
    """metric name -> the filter patterns producing it, from the template's metric filters."""
    produced: dict[str, list[str]] = {}
    for filter_ in stack.of_type("AWS::Logs::MetricFilter").values():
        for transformation in filter_["Properties"]["MetricTransformations"]:
            assert (
                stack.render(transformation["MetricNamespace"])
                == f"{NAMESPACE}/{stack.refs['AWS::StackName']}"
            )
            produced.setdefault(transformation["MetricName"], []).append(
                filter_["Properties"]["FilterPattern"]
            )
    return produced


@pytest.mark.parametrize("stage", STAGES)
def test_the_dashboard_shows_what_the_code_emits(
    stacks: dict[str, FakeStack], stage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stacks[stage]
    emitted = emitted_notify_metrics(capsys)
    produced = log_metrics(stack)
    shown = dashboard_metrics(stack)
    stack_name = stack.refs["AWS::StackName"]
    for namespace, name, dimensions, _ in shown:
        if namespace == NAMESPACE:
            assert name in emitted, f"the code emits no notify metric {name!r}"
            assert list(dimensions) in emitted[name] and dimensions == {"service": SERVICE, "stage": stage}
        elif namespace == f"{NAMESPACE}/{stack_name}":
            assert name in produced, f"no metric filter produces {name!r}"
        elif namespace == "AWS/ApiGateway":
            assert dimensions == {"ApiName": stack.render(props(stack, "RestAPI")["Name"]), "Stage": "api"}
        elif namespace == "AWS/Lambda":
            assert dimensions == {"FunctionName": stack.refs[stack.function_for("run_job")]}
    wanted = {
        ("ConnectionsOpened", "Sum"),
        ("ConnectionsRefused", "Sum"),
        ("delivered", "Sum"),
        ("gone", "Sum"),
        ("failed", "Sum"),
        ("duration", "p50"),
        ("duration", "p99"),
        ("ManagementApiThrottled", "Sum"),
        ("4XXError", "Sum"),
        ("5XXError", "Sum"),
        ("Errors", "Sum"),
        ("AsyncEventAge", "Maximum"),  # how long the oldest job delivery waited for a runner
        ("ApproximateNumberOfMessagesVisible", "Maximum"),
    }
    assert wanted - {(name, options["stat"]) for _, name, _, options in shown} == set()


def matches(pattern: str, line: str) -> bool:
    """The two CloudWatch Logs filter pattern forms the template uses, as CloudWatch reads them: `{ $.message
    = "..." }` on a JSON line, or quoted terms that must all appear in it."""
    selector = re.fullmatch(r'\{ \$\.message = "([^"]*)" \}', pattern)
    if selector:
        return bool(json.loads(line).get("message") == selector[1])
    terms = re.findall(r'"([^"]+)"', pattern)
    assert terms and re.fullmatch(r'(\s*"[^"]+")+\s*', pattern), f"an unknown pattern form: {pattern}"
    return all(term in line for term in terms)


def formatted(records: list[logging.LogRecord]) -> list[str]:
    from chalice_realtime.observability import JsonFormatter

    return [JsonFormatter().format(record) for record in records]


def test_the_connection_metric_filters_match_what_connect_writes(
    stacks: dict[str, FakeStack], client: Any, tokens: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    patterns = log_metrics(stacks["dev"])
    with caplog.at_level(logging.INFO):
        admitted = websocket_event(
            "$connect", "c-1", headers={"Sec-WebSocket-Protocol": f"bearer, {tokens.mint('a')}"}
        )
        assert client.lambda_.invoke("ws_connect", admitted).payload["statusCode"] == 200
    opened = formatted(caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        refused = websocket_event("$connect", "c-2", headers={"Sec-WebSocket-Protocol": "bearer, forged"})
        assert client.lambda_.invoke("ws_connect", refused).payload["statusCode"] == 401
    refusals = formatted(caplog.records)
    for metric, lines, others in [
        ("ConnectionsOpened", opened, refusals),
        ("ConnectionsRefused", refusals, opened),
    ]:
        (pattern,) = patterns[metric]
        assert sum(matches(pattern, line) for line in lines) == 1, (metric, lines)
        assert not any(matches(pattern, line) for line in others), metric


@pytest.mark.parametrize("kind", ["curl", "boto3"])
def test_the_throttling_metric_filter_matches_what_the_transports_write_after_429s(
    stacks: dict[str, FakeStack], kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalice_realtime.testing.management_api import FaultRule, serving
    from chalice_realtime.transports.base import Outcome, RetryPolicy
    from chalice_realtime.transports.boto3 import Boto3ThreadPoolTransport
    from chalice_realtime.transports.curl import CurlTransport

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    (pattern, *same) = set(log_metrics(stacks["dev"])["ManagementApiThrottled"])
    assert not same, "one pattern for every log group"
    with serving() as stand_in:
        if kind == "curl":
            transport: Any = CurlTransport(
                stand_in.url, retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, deadline=2.0)
            )
        else:
            transport = Boto3ThreadPoolTransport(stand_in.url, retry=RetryPolicy(deadline=2.0))
        try:
            stand_in.fail(FaultRule(status=429))
            with caplog.at_level(logging.INFO):
                assert transport.post_to_connections(["c1"], b"{}") == [Outcome.FAILED]
            throttled = formatted(caplog.records)
            caplog.clear()
            stand_in.fail(FaultRule(status=500))
            with caplog.at_level(logging.INFO):
                assert transport.post_to_connections(["c1"], b"{}") == [Outcome.FAILED]
            failing = formatted(caplog.records)
        finally:
            close = getattr(transport, "close", None)
            if close:
                close()
    assert any(matches(pattern, line) for line in throttled), throttled
    assert not any(matches(pattern, line) for line in failing), failing


# ---------------------------------------------------------------- alarms


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_watch_5xx_lost_frames_the_runner_and_its_dead_letters(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    assert stack.resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    alarms = {k: stack.render(r["Properties"]) for k, r in stack.of_type("AWS::CloudWatch::Alarm").items()}
    topic = stack.refs["AlarmTopic"]
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic], name
        assert alarm["TreatMissingData"] == "notBreaching", name

    def single(namespace: str, metric: str) -> dict[str, Any]:
        (alarm,) = [
            a for a in alarms.values() if (a.get("Namespace"), a.get("MetricName")) == (namespace, metric)
        ]
        return alarm

    lost = single(NAMESPACE, "failed")  # frames still failing after retries
    assert {d["Name"]: d["Value"] for d in lost["Dimensions"]} == {"service": SERVICE, "stage": stage}
    assert (lost["ComparisonOperator"], lost["Threshold"]) == ("GreaterThanThreshold", 0)
    errors = single("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [
        {"Name": "FunctionName", "Value": stack.refs[stack.function_for("run_job")]}
    ]
    dead = single("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dead["Dimensions"] == [
        {"Name": "QueueName", "Value": stack.attrs["JobsDeadLetterQueue.QueueName"]}
    ]
    assert (dead["ComparisonOperator"], dead["Threshold"]) == ("GreaterThanThreshold", 0)
    (rate,) = [a for a in alarms.values() if "Metrics" in a]
    queries = {m["Id"]: m for m in rate["Metrics"]}
    api = [
        {"Name": "ApiName", "Value": stack.render(props(stack, "RestAPI")["Name"])},
        {"Name": "Stage", "Value": "api"},
    ]
    assert queries["errors"]["MetricStat"]["Metric"] == {
        "Namespace": "AWS/ApiGateway",
        "MetricName": "5XXError",
        "Dimensions": api,
    }
    assert queries["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert queries["rate"]["ReturnData"] is True and "errors / requests" in queries["rate"]["Expression"]
    # The metrics' `stage` dimension is the template's Stage parameter: it must admit every packaged stage.
    assert stage in stack.template["Parameters"]["Stage"]["AllowedValues"]


# ---------------------------------------------------------------- what one client can take


@pytest.mark.parametrize("stage", STAGES)
def test_the_websocket_stage_is_throttled(stacks: dict[str, FakeStack], stage: str) -> None:
    """Every client frame costs a Lambda call and `$connect` runs one even without a token: the stage caps
    both, under the account's 500 new connections per second, which REST and `@connections` share."""
    routes = props(stacks[stage], "WebsocketAPIStage")["DefaultRouteSettings"]
    rate, burst = routes["ThrottlingRateLimit"], routes["ThrottlingBurstLimit"]
    assert 0 < rate <= burst <= ACCOUNT_NEW_CONNECTIONS_PER_SECOND


@pytest.mark.parametrize("stage", STAGES)
def test_each_rest_client_ip_is_limited_by_a_waf_rule_in_front_of_the_authorizer(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    stack = stacks[stage]
    acl = props(stack, "RestApiWebAcl")
    assert acl["Scope"] == "REGIONAL" and acl["DefaultAction"] == {"Allow": {}}
    (per_ip,) = [rule for rule in acl["Rules"] if "RateBasedStatement" in rule["Statement"]]
    statement = per_ip["Statement"]["RateBasedStatement"]
    assert statement["AggregateKeyType"] == "IP" and statement["EvaluationWindowSec"] == 60
    assert statement["Limit"] == {"Ref": "RestRequestsPerIpPerMinute"}
    assert int(stack.refs["RestRequestsPerIpPerMinute"]) >= 100  # a page refetching on every event
    assert per_ip["Action"] == {"Block": {"CustomResponse": {"ResponseCode": 429}}}
    association = props(stack, "RestApiWebAclAssociation")
    assert association["WebACLArn"] == {"Fn::GetAtt": ["RestApiWebAcl", "Arn"]}
    assert association["ResourceArn"]["Fn::Sub"][1] == {
        "Api": {"Ref": "RestAPI"},
        "Stage": {"Ref": "RestAPI.Stage"},
    }


# ---------------------------------------------------------------- the authorizer


@pytest.mark.parametrize("stage", STAGES)
def test_the_authorizer_checks_the_header_shape_and_caches_an_answer_for_a_minute(
    stacks: dict[str, FakeStack], stage: str, tokens: TokenFactory, issuer_key: Any
) -> None:
    """API Gateway refuses (401) a header not of the shape without invoking the authorizer; the shape must
    admit every real token: Firebase's and an OpenID Connect issuer's."""
    from chalice_realtime.testing.oidc import OidcTokens

    definition = props(stacks[stage], "RestAPI")["DefinitionBody"]["securityDefinitions"]["realtime_auth"]
    authorizer = definition["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "token" and definition["name"] == "Authorization"
    assert 0 < authorizer["authorizerResultTtlInSeconds"] <= 60  # how long a revoked token may still pass
    shape = re.compile(authorizer["identityValidationExpression"])
    oidc = OidcTokens("https://issuer.example/pool", issuer_key)
    for token in (tokens.mint("alice"), oidc.id_token("alice"), oidc.access_token("alice")):
        assert shape.fullmatch(f"Bearer {token}"), token
    for header in ("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer a\nb", "Token abc"):
        assert not shape.fullmatch(header), header


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_verifying_oidc_tokens_needs_no_firebase_project(
    stacks: dict[str, FakeStack], stage: str
) -> None:
    parameter = stacks[stage].template["Parameters"]["FirebaseProjectId"]
    assert parameter["Default"] == ""
    for value in ("", "my-project-1234"):
        assert re.fullmatch(parameter["AllowedPattern"], value), value
    assert not re.fullmatch(parameter["AllowedPattern"], "Not A Project")


# ---------------------------------------------------------------- as CloudFormation expands it


def expanded(template: dict[str, Any]) -> dict[str, Any]:
    """The packaged template after the SAM transform CloudFormation runs on deploy (code locations made
    S3 URIs, as `aws cloudformation package` makes them)."""
    from samtranslator.translator.transform import transform

    template = json.loads(json.dumps(template))
    for resource in template["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://artifact-bucket/code.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    return dict(transform(template, {"Stage": "dev"}, NoManagedPolicies()))


@pytest.mark.parametrize("stage", STAGES)
def test_the_expanded_template_keeps_the_settings_and_passes_cfn_lint(
    templates: dict[str, dict[str, Any]], stage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What SAM generates from `RestAPI` and the functions carries the logs, tracing, throttles, the
    authorizer's check and the dead-letter queue; the WAF is bound to the generated stage."""
    import subprocess
    import sys

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    out = expanded(templates[stage])
    resources = out["Resources"]
    (rest_stage,) = [k for k, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    settings = resources[rest_stage]["Properties"]
    assert settings["TracingEnabled"] is True and "AccessLogSetting" in settings
    assert settings["MethodSettings"][0]["LoggingLevel"] == "ERROR"
    assert resources["RestAPI"]["DependsOn"] == ["ApiGatewayLoggingReady"]
    arn = resources["RestApiWebAclAssociation"]["Properties"]["ResourceArn"]["Fn::Sub"][1]
    assert arn == {"Api": {"Ref": "RestAPI"}, "Stage": {"Ref": rest_stage}}
    authorizer = resources["RestAPI"]["Properties"]["Body"]["securityDefinitions"]["realtime_auth"]
    assert authorizer["x-amazon-apigateway-authorizer"]["authorizerResultTtlInSeconds"] == 60
    assert resources["RunJob"]["Properties"]["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    }
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions and all(f["TracingConfig"] == {"Mode": "Active"} for f in functions)
    path = tmp_path / "expanded.json"
    path.write_text(json.dumps(out))
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- checkov


@pytest.mark.parametrize("stage", STAGES)
def test_checkov_finds_nothing_the_allowlist_does_not_accept(packaged: dict[str, Path], stage: str) -> None:
    if not checkov.CHECKOV.exists():
        reason = f"checkov is not installed ({checkov.CHECKOV}): run `make install`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    found = checkov.failures(packaged[stage] / "sam.json")
    assert checkov.problems(found, checkov.allowlist()) == []


def test_the_allowlist_check_refuses_an_unaccepted_failure_a_stale_entry_and_a_missing_reason() -> None:
    failure = checkov.Failure("CKV_AWS_117", "AWS::Serverless::Function.RunJob", "in a VPC")
    accepted = {"check": "CKV_AWS_117", "resources": ["*"], "reason": "x" * checkov.MIN_REASON_CHARS}
    assert checkov.problems([failure], [accepted]) == []
    assert checkov.problems([failure], []) == [f"not accepted: {failure}"]
    stale = {"check": "CKV_AWS_1", "resources": ["AWS::SNS::Topic.JobsTopic"], "reason": "y" * 60}
    assert checkov.problems([failure], [accepted, stale]) == [
        "accepted but no longer failing (remove it): CKV_AWS_1 ['AWS::SNS::Topic.JobsTopic']"
    ]
    unexplained = {**accepted, "reason": "because"}
    assert checkov.problems([failure], [unexplained]) == [
        "accepted without a reason that says why: CKV_AWS_117 ['*']"
    ]
