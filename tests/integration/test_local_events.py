"""The local Lambda stand-in for SNS: moto's server delivers over HTTP, handlers get Lambda's event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devserver.events import EventRunner, lambda_sns_event, serve
from devserver.lambdas import LambdaFunction, rate_seconds
from testsupport.localstack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def moto_sns() -> Iterator[Any]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield boto3.client(
        "sns",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    server.stop()


class Recorder:
    def __init__(self, failures: int = 0) -> None:
        self.events: list[dict[str, Any]] = []
        self.failures = failures
        self.calls = 0

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("failing on purpose")
        self.events.append(event)

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events


def run_receiver(runner: EventRunner) -> tuple[str, Any]:
    port = free_port()
    server = serve(runner, "127.0.0.1", port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


def test_an_sns_publish_runs_the_subscribed_handler_with_a_lambda_sns_event(moto_sns: Any) -> None:
    recorder = Recorder()
    runner = EventRunner({"jobs": [LambdaFunction("run_job", recorder, "test-app")]}, [])
    url, server = run_receiver(runner)
    try:
        topic = moto_sns.create_topic(Name="jobs")["TopicArn"]
        moto_sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"{url}/sns/jobs")
        published = moto_sns.publish(
            TopicArn=topic,
            Message='{"job_id": "j1"}',
            Subject="job",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "report"}},
        )
        (event,) = recorder.wait()
    finally:
        server.shutdown()
        runner.stop()
    (record,) = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["EventSubscriptionArn"].startswith(topic + ":")
    sns = record["Sns"]
    assert sns["Message"] == '{"job_id": "j1"}'
    assert sns["MessageId"] == published["MessageId"]
    assert sns["TopicArn"] == topic
    assert sns["Subject"] == "job"
    assert sns["Timestamp"]
    # moto's HTTP delivery leaves message attributes out (real SNS sends them); the event still has the key.
    assert sns["MessageAttributes"] in ({}, {"kind": {"Type": "String", "Value": "report"}})


def test_message_attributes_of_a_delivery_reach_the_lambda_event() -> None:
    delivery = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:jobs",
        "Message": "hello",
        "MessageAttributes": {"kind": {"Type": "String", "Value": "report"}},
    }
    sns = lambda_sns_event(delivery, "arn:aws:sns:us-east-1:123456789012:jobs:sub-1")["Records"][0]["Sns"]
    assert sns["MessageAttributes"] == {"kind": {"Type": "String", "Value": "report"}}
    assert (sns["MessageId"], sns["Message"], sns["Subject"]) == ("m-1", "hello", None)


def test_a_failing_handler_is_retried_like_an_asynchronous_lambda_invocation() -> None:
    recorder = Recorder(failures=2)
    runner = EventRunner({"jobs": [LambdaFunction("run_job", recorder, "t")]}, [], retry_delays=(0.01, 0.01))
    try:
        assert runner.deliver("jobs", {"Type": "Notification", "Message": "m", "TopicArn": "arn:jobs"})
        assert len(recorder.wait()) == 1
    finally:
        runner.stop()
    assert recorder.calls == 3  # the first run and Lambda's two retries


def test_a_delivery_for_a_topic_nobody_listens_to_is_refused() -> None:
    runner = EventRunner({}, [])
    try:
        assert runner.deliver("unknown", {"Message": "m"}) is False
    finally:
        runner.stop()


def test_rate_expressions_become_periods_and_cron_is_not_run() -> None:
    assert rate_seconds("rate(1 minute)") == 60.0
    assert rate_seconds("rate(2 hours)") == 7200.0
    assert rate_seconds("cron(0 12 * * ? *)") is None
