"""boto3 clients, created once per process and reused across warm invocations.

Endpoints come from boto3 itself (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_DYNAMODB`,
...), so the same code talks to AWS, to moto's server locally and in tests.
Retries of throttling and 5xx errors come from botocore's `standard` mode.
"""

from __future__ import annotations

import functools
from typing import Any

from botocore.config import Config

RETRIES = {"mode": "standard", "max_attempts": 4}


@functools.cache
def client(service: str, max_pool_connections: int = 10) -> Any:
    """The process-wide boto3 client for `service` (`"dynamodb"`, `"sns"`, ...)."""
    import boto3

    return boto3.session.Session().client(
        service,
        config=Config(
            retries=RETRIES,
            max_pool_connections=max_pool_connections,
            connect_timeout=3,
            read_timeout=10,
        ),
    )
