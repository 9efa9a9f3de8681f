"""Create the app's tables and topics in moto's server and subscribe the local SNS receiver.

Tables come from `infra/resources.json` through `infra/tables.py`, the same
definition the deployment uses.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from devserver.config import FANOUT_QUEUE_NAME, REGION, StackConfig
from infra.tables import create_tables, create_topic


def aws_client(config: StackConfig, service: Literal["dynamodb", "sns", "sqs"]) -> Any:
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
    create_fanout_queue(config)


def create_fanout_queue(config: StackConfig) -> str:
    """The fan-out workers' queue and its dead-letter queue, as the template declares them; its URL."""
    from infra.tables import template

    sqs = aws_client(config, "sqs")
    resources = template()["Resources"]
    queue = resources["FanoutQueue"]["Properties"]
    redrive = queue["RedrivePolicy"]
    retention = resources["FanoutDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    dead_letters = sqs.create_queue(
        QueueName=f"{FANOUT_QUEUE_NAME}-dead-letters", Attributes={"MessageRetentionPeriod": str(retention)}
    )["QueueUrl"]
    dead_letters_arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = {"deadLetterTargetArn": dead_letters_arn, "maxReceiveCount": redrive["maxReceiveCount"]}
    attributes = {
        # As deployed: the local stack does not stop a handler at its timeout, so a shorter visibility
        # would hand a slow shard to a second worker while the first still runs.
        "VisibilityTimeout": str(queue["VisibilityTimeout"]),
        "RedrivePolicy": json.dumps(policy),
    }
    return str(sqs.create_queue(QueueName=FANOUT_QUEUE_NAME, Attributes=attributes)["QueueUrl"])


def subscribe_event_receiver(config: StackConfig, topics: list[str]) -> dict[str, str]:
    """Subscribe `POST {events_url}/sns/{topic}` to each topic (created if missing); topic -> ARN."""
    sns = aws_client(config, "sns")
    arns = {}
    for topic in topics:
        arn = create_topic(sns, topic)
        sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=f"{config.events_url}/sns/{topic}")
        arns[topic] = arn
    return arns
