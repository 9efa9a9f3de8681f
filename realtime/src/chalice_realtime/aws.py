"""The core's boto3 clients, created once per process and reused across warm invocations, and their errors.

Endpoints come from boto3 itself (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`,
...), so the same code talks to AWS, to moto's server locally and in tests.
Retries of throttling and 5xx errors come from botocore's `standard` mode.
Clients are typed with the `types-boto3` stubs (a dev dependency), so mypy checks every call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from botocore.config import _RetryDict
    from types_boto3_dynamodb.client import DynamoDBClient
    from types_boto3_sqs.client import SQSClient

RETRIES: _RetryDict = {"mode": "standard", "max_attempts": 4}


@overload
def client(service: Literal["dynamodb"], max_pool_connections: int = 10) -> DynamoDBClient: ...
@overload
def client(service: Literal["sqs"], max_pool_connections: int = 10) -> SQSClient: ...
def client(service: str, max_pool_connections: int = 10) -> Any:
    """The process-wide boto3 client for `service`.

    aws.client("dynamodb", max_pool_connections=32).query(TableName=..., ...)
    """
    return _cached_client(service, max_pool_connections)


def clear_clients() -> None:
    """Forget the clients built so far (tests that point `AWS_ENDPOINT_URL` elsewhere)."""
    _cached_client.cache_clear()


@functools.cache
def _cached_client(service: str, max_pool_connections: int) -> Any:
    import boto3

    # One call for every service `client` names; its overloads give each caller the typed client.
    new_client: Callable[..., Any] = boto3.session.Session().client
    return new_client(service, config=client_config(max_pool_connections=max_pool_connections))


def client_config(
    *, max_pool_connections: int, connect_timeout: float = 3, read_timeout: float = 10
) -> Config:
    """botocore's configuration of the core's clients: standard retries, bounded timeouts."""
    return Config(
        retries=RETRIES,
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )


def error_code(exc: ClientError) -> str:
    """The AWS error code of a failed call (`"ConditionalCheckFailedException"`, ...), or ''.

    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise
    """
    return str(exc.response.get("Error", {}).get("Code", ""))
