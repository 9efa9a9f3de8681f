"""The local stack runs the core's fan-out worker on the queue the app's FANOUT_QUEUE_URL names."""

from __future__ import annotations

from chalice_realtime.settings import fanout_queue_name

from devserver.config import StackConfig
from devserver.events import lambda_sqs_event
from devserver.lambdas import load_app, sqs_consumers


def test_the_stack_polls_the_queue_the_app_sends_shards_to_with_the_workers_settings() -> None:
    environment = StackConfig().app_environment()
    queue = fanout_queue_name(environment)
    consumers = sqs_consumers(load_app())
    assert set(consumers) == {queue}
    worker = consumers[queue]
    assert (worker.function.name, worker.batch_size, worker.concurrency) == ("fanout_worker", 1, 10)
    assert worker.function.timeout_seconds == 30


def test_the_worker_gets_the_event_lambdas_sqs_poller_sends() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": "{}",
        "Attributes": {"ApproximateReceiveCount": "2"},
    }
    (record,) = lambda_sqs_event([message], "arn:aws:sqs:us-east-1:123456789012:realtime-fanout")["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert (record["messageId"], record["receiptHandle"], record["body"]) == ("m-1", "r-1", "{}")
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
