"""Create the app's DynamoDB tables and SNS topic from `infra/resources.json`.

The deployment merges that template into Chalice's; the local stack
(`devserver/provision.py`), the tests and the benchmarks call `create_tables` and
`create_topic` with it, so tables and indexes have one definition.

    create_tables(dynamodb_client, {"CONNECTIONS_TABLE": "local-connections", "JOBS_TABLE": ...})
    topic_arn = create_topic(sns_client, "chalice-realtime-jobs")
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TEMPLATE_PATH = Path(__file__).with_name("resources.json")


def template() -> dict[str, Any]:
    return dict(json.loads(TEMPLATE_PATH.read_text()))


def table_resources() -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every DynamoDB table in the template."""
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template()["Resources"].items()
        # Entries without a Type are overrides of Chalice's own resources (functions, roles).
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


def env_var_for(logical_id: str) -> str:
    """`ConnectionsTable` -> `CONNECTIONS_TABLE`: the setting that names that table."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical_id).upper()


def create_tables(
    dynamodb: Any, names: dict[str, str], tables: dict[str, dict[str, Any]] | None = None
) -> None:
    """Create each table under `names[ENV_VAR]` (existing ones are left alone).

    `tables` (logical id -> Properties) defaults to this directory's template; the
    deployment tests pass a packaged template's tables instead.

        create_tables(dynamodb_client, {"CONNECTIONS_TABLE": "dev-connections", ...})
    """
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for logical_id, props in (table_resources() if tables is None else tables).items():
        name = names[env_var_for(logical_id)]
        if name in existing:
            continue
        args: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("LocalSecondaryIndexes"):
            args["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
        dynamodb.create_table(**args)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )


def create_topic(sns: Any, name: str) -> str:
    """Create (or find) the jobs topic and return its ARN."""
    return str(sns.create_topic(Name=name)["TopicArn"])
