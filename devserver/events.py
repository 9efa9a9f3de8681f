"""The local stand-in for Lambda's event sources: SNS deliveries, SQS queues and schedules.

    python -m devserver.events --port 8003

SNS: the supervisor subscribes `POST /sns/{topic}` of this server to each topic
the app listens to (in moto's server, which delivers to HTTP subscriptions).
A delivery is answered at once and the app's `@app.on_sns_message` handlers run
in a worker thread with a Lambda-shaped SNS event, as an asynchronous Lambda
invocation does; a handler that raises is retried twice, as Lambda retries
asynchronous invocations (after 1 s and 2 s here rather than minutes).

SQS: each `@app.on_sqs_message` handler gets its queue's messages (in moto) in batches of
its `batch_size`, at most its reserved concurrency at once, as Lambda's event source mapping
polls: a batch whose handler returns is deleted; one whose handler raises stays on the queue,
visible again after the queue's visibility timeout, and after the redrive policy's receives
moves to the dead-letter queue (moto applies the policy).

Schedules: each `@app.schedule(Rate(...))` handler runs once per period with a
CloudWatch scheduled event. Cron expressions are listed but not run locally.

Only programs reach it (`devserver.local_only`): a web page cannot inject a
delivery. Its body may be `text/plain`, because SNS (and moto) post deliveries so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devserver.config import FAKE_ACCOUNT_ID, PROJECT_ROOT, REGION, configure_logging
from devserver.lambdas import LambdaFunction, QueueConsumer, Schedule
from devserver.local_only import JSON, LocalOnly, origin_of

logger = logging.getLogger("devserver.events")

ASYNC_RETRY_DELAYS = (1.0, 2.0)  # Lambda retries a failed asynchronous invocation twice
# What SNS sends an HTTP subscriber: `text/plain` (a JSON document in it), as on AWS.
SNS_BODY_TYPES = (*JSON, "text/plain")


def lambda_sns_event(delivery: dict[str, Any], subscription_arn: str) -> dict[str, Any]:
    """The event Lambda gets for an SNS message, from the JSON SNS POSTs to an HTTP subscriber.

    >>> event = lambda_sns_event({"Type": "Notification", "Message": "hi", "TopicArn": "arn:t"}, "arn:t:1")
    >>> event["Records"][0]["Sns"]["Message"]
    'hi'
    """
    attributes = delivery.get("MessageAttributes") or {}
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": subscription_arn,
                "Sns": {
                    "Type": delivery.get("Type", "Notification"),
                    "MessageId": delivery.get("MessageId") or str(uuid.uuid4()),
                    "TopicArn": delivery.get("TopicArn", ""),
                    "Subject": delivery.get("Subject"),
                    "Message": delivery.get("Message", ""),
                    "Timestamp": delivery.get("Timestamp") or _iso_now(),
                    "SignatureVersion": delivery.get("SignatureVersion", "1"),
                    "Signature": delivery.get("Signature", ""),
                    "SigningCertUrl": delivery.get("SigningCertURL", ""),
                    "UnsubscribeUrl": delivery.get("UnsubscribeURL", ""),
                    "MessageAttributes": {
                        name: {"Type": value.get("Type", "String"), "Value": value.get("Value")}
                        for name, value in attributes.items()
                    },
                },
            }
        ]
    }


def lambda_sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda gets for a batch of SQS messages, from ReceiveMessage's answer.

    >>> event = lambda_sqs_event([{"MessageId": "m", "ReceiptHandle": "r", "Body": "hi"}], "arn:q")
    >>> event["Records"][0]["body"]
    'hi'
    """
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


class QueuePoller:
    """Runs one queue's handler on its messages, as Lambda's SQS event source mapping does.

    QueuePoller(consumer, sqs_client, stop_event).start()
    """

    def __init__(self, consumer: QueueConsumer, sqs: Any, stop: threading.Event) -> None:
        self.consumer = consumer
        self._sqs = sqs
        self._stop = stop
        self._slots = threading.BoundedSemaphore(consumer.concurrency)
        self._pool = ThreadPoolExecutor(
            consumer.concurrency, thread_name_prefix=f"sqs-{consumer.function.name}"
        )

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"poll-{self.consumer.queue}", daemon=True).start()

    def _run(self) -> None:
        url, arn = self._queue()
        if not url:
            return
        batch = max(1, min(10, self.consumer.batch_size))
        while not self._stop.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            try:
                answer = self._sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=batch, WaitTimeSeconds=1, AttributeNames=["All"]
                )
            except Exception:
                logger.exception("receiving from %s failed", self.consumer.queue)
                self._slots.release()
                self._stop.wait(1.0)
                continue
            messages = answer.get("Messages", [])
            if not messages:
                self._slots.release()
                continue
            self._pool.submit(self._invoke, url, arn, messages)

    def _queue(self) -> tuple[str, str]:
        """The queue's URL and ARN, once it exists (the supervisor creates it after moto starts)."""
        while not self._stop.is_set():
            try:
                url = self._sqs.get_queue_url(QueueName=self.consumer.queue)["QueueUrl"]
                attributes = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                return str(url), str(attributes["Attributes"]["QueueArn"])
            except Exception:
                self._stop.wait(0.5)
        return "", ""

    def _invoke(self, url: str, arn: str, messages: list[dict[str, Any]]) -> None:
        try:
            self.consumer.function.invoke(lambda_sqs_event(messages, arn))
        except Exception:
            # Left on the queue: received again once its visibility timeout passes, as on AWS.
            logger.exception(
                "%s raised; its batch stays on %s", self.consumer.function.name, self.consumer.queue
            )
            return
        finally:
            self._slots.release()
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        try:
            self._sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        except Exception:
            logger.exception("could not delete a handled batch from %s", self.consumer.queue)


def scheduled_event(function: LambdaFunction) -> dict[str, Any]:
    """The EventBridge event a scheduled Lambda gets."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": FAKE_ACCOUNT_ID,
        "time": _iso_now(timespec="seconds"),
        "region": REGION,
        "resources": [
            f"arn:aws:events:{REGION}:{FAKE_ACCOUNT_ID}:rule/{function.app_name}-local-{function.name}"
        ],
        "detail": {},
    }


class EventRunner:
    """Runs the app's SNS and scheduled handlers in worker threads, as Lambda would.

    runner = EventRunner(sns_functions(app), schedules(app))
    runner.deliver("chalice-realtime-jobs", delivery_json)  # returns at once
    """

    def __init__(
        self,
        topics: dict[str, list[LambdaFunction]],
        schedule_list: list[Schedule],
        *,
        workers: int = 16,
        retry_delays: tuple[float, ...] = ASYNC_RETRY_DELAYS,
        queues: dict[str, QueueConsumer] | None = None,
    ) -> None:
        self.topics = topics
        self.queues = queues or {}
        self.schedules = schedule_list
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self._retry_delays = retry_delays
        self._stop = threading.Event()

    def deliver(self, topic: str, delivery: dict[str, Any]) -> bool:
        """Queue the topic's handlers for this delivery; False when no handler listens to `topic`."""
        functions = self.topics.get(topic)
        if not functions:
            return False
        arn = delivery.get("TopicArn") or f"arn:aws:sns:{REGION}:{FAKE_ACCOUNT_ID}:{topic}"
        for function in functions:
            event = lambda_sns_event(delivery, f"{arn}:{uuid.uuid4()}")
            self._pool.submit(self._invoke_with_retries, function, event)
        return True

    def start_schedules(self) -> None:
        """Start one timer thread per rate schedule; the first run is one period from now, as on AWS."""
        for schedule in self.schedules:
            if schedule.every_seconds is None:
                logger.warning("%s: %s is not run locally", schedule.function.name, schedule.expression)
                continue
            thread = threading.Thread(
                target=self._tick, args=(schedule,), name=f"schedule-{schedule.function.name}", daemon=True
            )
            thread.start()

    def start_pollers(self, sqs: Any) -> None:
        """Poll each queue a handler listens to (moto's SQS, through `sqs`), as Lambda would."""
        for consumer in self.queues.values():
            QueuePoller(consumer, sqs, self._stop).start()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _tick(self, schedule: Schedule) -> None:
        assert schedule.every_seconds is not None
        while not self._stop.wait(schedule.every_seconds):
            self._pool.submit(
                self._invoke_with_retries, schedule.function, scheduled_event(schedule.function)
            )

    def _invoke_with_retries(self, function: LambdaFunction, event: dict[str, Any]) -> None:
        for attempt, delay in enumerate((*self._retry_delays, None)):
            try:
                function.invoke(event)
                return
            except Exception:
                logger.exception("%s raised (attempt %d)", function.name, attempt + 1)
            if delay is None or self._stop.wait(delay):
                return


class _SNSReceiver(BaseHTTPRequestHandler):
    runner: EventRunner  # set on the subclass made by `serve`
    local_only: LocalOnly
    protocol_version = "HTTP/1.1"

    def _refused(self) -> bool:
        refusal = self.local_only.refusal(
            self.command,
            origin=self.headers.get("Origin"),
            fetch_site=self.headers.get("Sec-Fetch-Site"),
            content_type=self.headers.get("Content-Type"),
            has_body=int(self.headers.get("Content-Length") or 0) > 0,
        )
        if refusal is None:
            return False
        logger.warning("refused %s %s: %s", self.command, self.path, refusal.message)
        self.close_connection = True  # the body, if any, is left unread
        self._answer(HTTPStatus(refusal.status), {"message": refusal.message})
        return True

    def do_GET(self) -> None:
        if self._refused():
            return
        if self.path == "/_health":
            topics = sorted(self.runner.topics)
            queues = sorted(self.runner.queues)
            self._answer(
                HTTPStatus.OK, {"status": "ok", "pid": os.getpid(), "topics": topics, "queues": queues}
            )
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"message": "not found"})

    def do_POST(self) -> None:
        if self._refused():
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        topic = self.path.removeprefix("/sns/").split("?", 1)[0]
        try:
            delivery = json.loads(raw)
        except ValueError:
            self._answer(HTTPStatus.BAD_REQUEST, {"message": "the body is not JSON"})
            return
        if delivery.get("Type") == "SubscriptionConfirmation":
            # moto confirms HTTP subscriptions itself; a real SNS would wait for this URL to be visited.
            logger.info("subscription to %s confirmed", delivery.get("TopicArn"))
            self._answer(HTTPStatus.OK, {"confirmed": True})
            return
        if not self.runner.deliver(topic, delivery):
            self._answer(HTTPStatus.NOT_FOUND, {"message": f"no handler for topic {topic!r}"})
            return
        self._answer(HTTPStatus.OK, {"queued": True})

    def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


def serve(
    runner: EventRunner, host: str, port: int, page_origins: frozenset[str] = frozenset()
) -> ThreadingHTTPServer:
    """An HTTP server receiving SNS deliveries at `/sns/{topic}` for `runner` (not yet serving).

    A request from a web page is refused unless its origin is among `page_origins`.
    """
    local_only = LocalOnly(page_origins, body_types=SNS_BODY_TYPES)
    handler = type("SNSReceiver", (_SNSReceiver,), {"runner": runner, "local_only": local_only})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def _iso_now(timespec: str = "milliseconds") -> str:
    return datetime.now(tz=UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> None:
    """Receive SNS deliveries and run schedules for the app until the process is terminated."""
    import boto3

    from devserver.lambdas import load_app, schedules, sns_functions, sqs_consumers

    parser = argparse.ArgumentParser(prog="python -m devserver.events")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--page-origin", default="http://127.0.0.1:8080", help="the demo page's origin")
    parser.add_argument("--app-dir", type=Path, default=PROJECT_ROOT, help="the Chalice app's folder")
    args = parser.parse_args(argv)
    configure_logging()
    app = load_app(args.app_dir)
    runner = EventRunner(
        sns_functions(app, args.app_dir),
        schedules(app, args.app_dir),
        queues=sqs_consumers(app, args.app_dir),
    )
    runner.start_schedules()
    # The endpoint and fake credentials come from the app's environment (AWS_ENDPOINT_URL: moto).
    runner.start_pollers(boto3.session.Session().client("sqs"))
    server = serve(
        runner, args.host, args.port, frozenset({args.page_origin, origin_of(args.host, args.port)})
    )
    started = time.monotonic()
    logger.info(
        "SNS topics %s, SQS queues %s, schedules %s",
        sorted(runner.topics),
        sorted(runner.queues),
        [s.expression for s in runner.schedules],
    )
    try:
        server.serve_forever()
    finally:
        runner.stop()
        logger.debug("served for %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
