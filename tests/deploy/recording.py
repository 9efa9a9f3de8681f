"""Record the AWS calls each Lambda function's code makes, as IAM (action, resource ARN) pairs.

A botocore `before-parameter-build` hook sees every API call of every client
created while it is installed (moto installs its own hook the same way). The
flows say which function is running; the recorder files each call under it.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import botocore.handlers

REGION = "us-east-1"
ACCOUNT = "123456789012"

# How each Management API operation appears in an execute-api:ManageConnections resource ARN.
_CONNECTION_METHODS = {"PostToConnection": "POST", "DeleteConnection": "DELETE", "GetConnection": "GET"}
# Transactions are authorized per item, as the item's own action (there is no TransactWriteItems action).
_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class Call:
    """One IAM authorization a call needs: `dynamodb:Query` on a table's index ARN, ..."""

    action: str
    resource: str


@dataclass
class CallRecorder:
    """Files each AWS call under `function` (a template logical id); None records nothing."""

    websocket_endpoint: str = ""
    function: str | None = None
    calls: dict[str, set[Call]] = field(default_factory=lambda: defaultdict(set))
    operations: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))

    @contextlib.contextmanager
    def running(self, function: str) -> Iterator[None]:
        """Record the calls made inside the block as `function`'s."""
        previous, self.function = self.function, function
        try:
            yield
        finally:
            self.function = previous

    def on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is None:
            return
        service = model.service_model.service_name
        self.operations[self.function].add((service, model.name))
        self.calls[self.function] |= set(self.iam_calls(service, model.name, params))

    def iam_calls(self, service: str, operation: str, params: dict[str, Any]) -> Iterator[Call]:
        """The (IAM action, resource ARN) pairs one API call is authorized against."""
        if service == "dynamodb":
            yield from _dynamodb_calls(operation, params)
        elif service == "apigatewaymanagementapi":
            endpoint = urlparse(self.websocket_endpoint)
            api_id = endpoint.hostname.split(".")[0] if endpoint.hostname else "?"
            stage = endpoint.path.strip("/")
            method = _CONNECTION_METHODS[operation]
            yield Call(
                "execute-api:ManageConnections",
                f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{api_id}/{stage}/{method}/@connections/"
                + params["ConnectionId"],
            )
        elif service == "sns":
            yield Call(f"sns:{operation}", params.get("TopicArn") or params.get("TargetArn", "*"))
        elif service == "sqs":
            # SendMessageBatch is authorized as sqs:SendMessage; the queue's ARN is in its URL's path.
            action = {"SendMessageBatch": "SendMessage"}.get(operation, operation)
            _, account, name = urlparse(params["QueueUrl"]).path.split("/")
            yield Call(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{account}:{name}")
        elif service == "ssm":
            name = params["Name"]
            yield Call(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name.lstrip('/')}")
        else:
            raise AssertionError(f"no IAM mapping for {service}.{operation}: teach tests/deploy/recording.py")


def _table_arn(table: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    return f"{arn}/index/{index}" if index else arn


def _dynamodb_calls(operation: str, params: dict[str, Any]) -> Iterator[Call]:
    if operation in ("TransactWriteItems", "TransactGetItems"):
        for item in params["TransactItems"]:
            ((kind, request),) = item.items()
            yield Call(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", _table_arn(request["TableName"]))
    elif operation in ("BatchWriteItem", "BatchGetItem"):
        for table in params["RequestItems"]:
            yield Call(f"dynamodb:{operation}", _table_arn(table))
    else:
        yield Call(f"dynamodb:{operation}", _table_arn(params["TableName"], params.get("IndexName")))


@contextlib.contextmanager
def recording(recorder: CallRecorder) -> Iterator[CallRecorder]:
    """Install `recorder` on every botocore client created inside the block."""
    handler = ("before-parameter-build", recorder.on_call)
    botocore.handlers.BUILTIN_HANDLERS.append(handler)
    try:
        yield recorder
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(handler)
