"""AWS calls per operation, counted, so a change that adds a round trip shows up.

    python -m bench.calls

DynamoDB and SNS calls are counted with botocore's own event hook (`before-call`) on the
app's clients; Management API calls (which the app's transport makes outside botocore)
by the stand-in's request log; certificate downloads by `responses`. The app runs in this
process as a Lambda would run it (handlers called with API-Gateway-shaped events, REST
routes through `chalice.test.Client`), against moto's server and the Management API
stand-in in other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from bench.harness import AWS_ENV, CertificateServer, machine, management_api_standin, moto_server, table

ENV = {
    **AWS_ENV,
    "APP_STAGE": "dev",
    "FIREBASE_PROJECT_ID": "bench-project",
    "CONNECTIONS_TABLE": "bench-calls-connections",
    "JOBS_TABLE": "bench-calls-jobs",
    "MESSAGES_TABLE": "bench-calls-messages",
    "PAYMENTS_TABLE": "bench-calls-payments",
    "RATE_LIMITS_TABLE": "bench-calls-rate-limits",
    "TOPICS_TABLE": "bench-calls-topics",
    "ROOMS_TABLE": "bench-calls-rooms",
    "JOBS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench-calls-jobs",
    "MAX_CONNECTIONS_PER_USER": "3",
    "LOG_LEVEL": "WARNING",  # the tables, not the app's per-call log lines
}


class CallLog:
    """Counts AWS calls from botocore hooks, the stand-in's log and `responses`."""

    def __init__(self, standin_url: str, certs: CertificateServer) -> None:
        self.standin_url = standin_url
        self.certs = certs
        self.aws: Counter[str] = Counter()

    def watch(self, client: Any) -> None:
        service = client.meta.service_model.service_name
        client.meta.events.register(
            "before-call.*.*", lambda model, **_: self.aws.update([f"{service} {model.name}"])
        )

    def management_api(self) -> Counter[str]:
        with urllib.request.urlopen(self.standin_url + "/_stats") as response:  # noqa: S310 - loopback
            stats = json.load(response)
        return Counter({f"@connections {m}": stats.get(m, 0) for m in ("POST", "DELETE") if stats.get(m)})

    def measure(self, operation: Callable[[], Any]) -> tuple[Any, Counter[str]]:
        before_aws, before_mgmt, before_certs = (
            Counter(self.aws),
            self.management_api(),
            self.certs.requests,
        )
        result = operation()
        counts = (self.aws - before_aws) + (self.management_api() - before_mgmt)
        certs = self.certs.requests - before_certs
        if certs:
            counts["Firebase certificates GET"] = certs
        return result, counts


def describe(counts: Counter[str]) -> str:
    return ", ".join(f"{n} x {name}" for name, n in sorted(counts.items())) or "none"


@contextlib.contextmanager
def local_aws(env: dict[str, str]) -> Iterator[tuple[CertificateServer, Any]]:
    """The app's AWS in this process's environment: moto's server (tables, topic), the Management API
    stand-in, and Firebase certificates from a local server. Yields (certificate server, token factory).

        with local_aws(ENV) as (certs, tokens): ...   # import app, call its handlers
    """
    import boto3
    from chalice_realtime.testing.firebase import SigningKey, TokenFactory

    from infra.tables import create_tables

    with management_api_standin(0.0) as standin, moto_server() as moto:
        os.environ.update({**env, "AWS_ENDPOINT_URL": moto, "WEBSOCKET_ENDPOINT": standin})
        os.environ.pop("FIREBASE_AUTH_EMULATOR_HOST", None)
        create_tables(boto3.client("dynamodb"), {k: v for k, v in env.items() if k.endswith("_TABLE")})
        boto3.client("sns").create_topic(Name=env["JOBS_TOPIC_ARN"].rsplit(":", 1)[1])
        key = SigningKey.generate("bench-kid")
        with CertificateServer(key) as certs:
            yield certs, TokenFactory(env["FIREBASE_PROJECT_ID"], key)


def operations(certs: CertificateServer, tokens: Any) -> list[list[str]]:
    from chalice.test import Client
    from chalice_realtime.connections import Connection
    from chalice_realtime.testing.events import websocket_event

    import app as app_module
    from chalicelib import services

    current = services.current()
    log = CallLog(current.settings.realtime.websocket_endpoint, certs)
    log.watch(current.dynamodb)
    log.watch(current.sns)
    rows: list[list[str]] = []

    def record(operation: str, work: Callable[[], Any], note: str = "") -> Any:
        result, counts = log.measure(work)
        rows.append([operation, describe(counts), note])
        return result

    def connect(connection_id: str, uid: str) -> None:
        event = websocket_event(
            "$connect", connection_id, headers={"Sec-WebSocket-Protocol": f"bearer, {tokens.mint(uid)}"}
        )
        assert app_module.app.handler_map["ws_connect"](event, None)["statusCode"] == 200

    record(
        "$connect (first in the process)", lambda: connect("c-first", "carol"), "certificates cached after"
    )
    record("$connect", lambda: connect("c-second", "carol"))
    record("$connect beyond the cap (3)", lambda: [connect("c-3", "carol"), connect("c-4", "carol")][-1])
    rows[-1][0] = "2 x $connect, the 2nd beyond the cap (3)"
    record(
        "$disconnect",
        lambda: app_module.app.handler_map["ws_disconnect"](websocket_event("$disconnect", "c-4"), None),
    )
    record(
        "ping message",
        lambda: app_module.app.handler_map["ws_message"](
            websocket_event("MESSAGE", "c-3", body='{"action":"ping"}'), None
        ),
    )

    store = current.realtime.connections
    for k in (1, 3, 10):
        user = f"user-{k}"
        for n in range(k):
            store.add(Connection(f"{user}-{n}", user, 1_700_000_000_000 + n))
        record(
            f"notify, {k} connection{'s' * (k > 1)}",
            lambda user=user: current.notifier.notify(user, "jobs-updated"),
        )
    for n in range(3):
        store.add(Connection(f"gone-user-{n}-gone", "gone-user", 1_700_000_000_000 + n))
    store.add(Connection("gone-user-live", "gone-user", 1_700_000_000_100))
    record(
        "notify, 4 connections of which 3 gone (410)",
        lambda: current.notifier.notify("gone-user", "jobs-updated"),
        "gone rows deleted in 1 BatchWriteItem (25 per call)",
    )
    record(
        "notify_users, 3 users x 1-10 connections",
        lambda: current.notifier.notify_users(["user-1", "user-3", "user-10"], "jobs-updated"),
        "1 Query per user",
    )

    with Client(app_module.app) as client:
        headers = {"Authorization": f"Bearer {tokens.mint('user-3')}", "Content-Type": "application/json"}
        body = json.dumps({"kind": "report", "params": {"seconds": 1}})
        response = record(
            "POST /jobs (submit)", lambda: client.http.post("/jobs", headers=headers, body=body)
        )
        assert response.status_code == 202, response.body
        message = json.dumps({"to": "user-1", "text": "hello"})
        response = record(
            "POST /messages", lambda: client.http.post("/messages", headers=headers, body=message)
        )
        assert response.status_code == 201, response.body
    return rows


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    print(f"machine: {machine()}\n")
    with local_aws(ENV) as (certs, tokens):
        rows = operations(certs, tokens)
    print("### AWS calls per operation\n")
    print(table(["operation", "calls", "note"], rows))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
