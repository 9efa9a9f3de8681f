"""Create the app's tables and topics in moto's server and subscribe the local SNS receiver.

Tables come from `infra/resources.json` through `infra/tables.py`, the same
definition the deployment uses.
"""

from __future__ import annotations

from typing import Any, Literal

from devserver.config import REGION, StackConfig
from infra.tables import create_tables, create_topic


def aws_client(config: StackConfig, service: Literal["dynamodb", "sns"]) -> Any:
    """A boto3 client for `service` in the stack's moto server, with its fake credentials."""
    import boto3

    return boto3.session.Session().client(
        service,
        endpoint_url=config.aws_url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 (moto's fake credentials)
    )


def create_tables_and_topic(config: StackConfig) -> None:
    """The app's DynamoDB tables (named as the app's environment says) and its jobs topic."""
    env = config.app_environment()
    create_tables(
        aws_client(config, "dynamodb"),
        {name: value for name, value in env.items() if name.endswith("_TABLE")},
    )
    create_topic(aws_client(config, "sns"), env["JOBS_TOPIC_ARN"].rsplit(":", 1)[-1])


def subscribe_event_receiver(config: StackConfig, topics: list[str]) -> dict[str, str]:
    """Subscribe `POST {events_url}/sns/{topic}` to each topic (created if missing); topic -> ARN."""
    sns = aws_client(config, "sns")
    arns = {}
    for topic in topics:
        arn = create_topic(sns, topic)
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=f"{config.events_url}/sns/{topic}")
        arns[topic] = arn
    return arns
