"""What an app deploys to run the core: its CloudFormation, its part of `.chalice/config.json`.

This module is the single source of the core's infrastructure. `chalice-realtime infra` merges it
into an app's merge template and config; this repository's own `infra/resources.json` is checked
to be what that merge leaves unchanged (tests/deploy/test_core_infra.py).

    template = merge_template({}, notifying=["api_handler", "handle_orders"])
    template["Resources"]["HandleOrdersRole"]  # Query on the by_user index, POST @connections
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..connections import TTL_ATTRIBUTE, USER_INDEX
from ..settings import (
    DEFAULT_MAX_CONNECTIONS_PER_USER,
    DEFAULT_MAX_POSTS_PER_SECOND,
    DEFAULT_MAX_TOPICS_PER_CONNECTION,
)
from ..subscriptions import CONNECTION_INDEX

# Chalice's function names for what the Blueprint registers (chalice.deploy.appgraph names WebSocket
# handlers by route, whatever the Python function is called).
AUTHORIZER = "realtime_auth"
CONNECT = "websocket_connect"
MESSAGE = "websocket_message"
DISCONNECT = "websocket_disconnect"
FANOUT_WORKER = "fanout_worker"  # the Blueprint's `@on_sqs_message` handler (chalice_realtime.fanout)
CORE_FUNCTIONS = (AUTHORIZER, CONNECT, DISCONNECT, MESSAGE, FANOUT_WORKER)
# The function serving the app's REST routes: its routes call `notify`.
REST_FUNCTION = "api_handler"
TABLE = "ConnectionsTable"
TOPICS_TABLE = "TopicsTable"  # topic subscriptions, presence slots, subscribe counters
QUEUE = "FanoutQueue"
DEAD_LETTER_QUEUE = "FanoutDeadLetterQueue"
WEBSOCKET_API = "WebsocketAPI"  # Chalice's logical id of the WebSocket API
LOG_RETENTION_DAYS = 30
DEFAULT_API_STAGE = "api"  # Chalice's default `api_gateway_stage`

# The core's variables an app sets once for every function (`.chalice/config.json`); the per-function
# ones (table, endpoint, project) come from the template, which knows the stack's names.
GLOBAL_VARIABLES = {
    "AUTH_PROVIDER": "firebase",
    "FIREBASE_CHECK_REVOKED": "false",
    "LOG_LEVEL": "INFO",
    "MAX_CONNECTIONS_PER_USER": str(DEFAULT_MAX_CONNECTIONS_PER_USER),
    "MAX_TOPICS_PER_CONNECTION": str(DEFAULT_MAX_TOPICS_PER_CONNECTION),
    "SUBSCRIBE_RATE_LIMIT": "60/60",
    "REALTIME_TRANSPORT": "curl",
    # Posts per second this app's notifies may take of the account's API Gateway budget.
    "REALTIME_MAX_POSTS_PER_SECOND": str(DEFAULT_MAX_POSTS_PER_SECOND),
    "REALTIME_NOTIFY_BUDGET_SECONDS": "0.5",
}
# Timeouts and memory of the core's functions: verifying a token (firebase-admin's import) needs 512 MB
# to start fast; the others touch one row. Reserved concurrency caps what a flood of connects or pings
# can take from the account's other functions.
FUNCTION_CONFIG = {
    AUTHORIZER: {"lambda_timeout": 10, "lambda_memory_size": 512},
    CONNECT: {"lambda_timeout": 10, "lambda_memory_size": 512, "reserved_concurrency": 25},
    DISCONNECT: {"lambda_timeout": 10, "lambda_memory_size": 256},
    MESSAGE: {"lambda_timeout": 10, "lambda_memory_size": 256, "reserved_concurrency": 10},
    # One shard per invocation; its reserved share caps how many post at once (docs/performance.md).
    FANOUT_WORKER: {"lambda_timeout": 30, "lambda_memory_size": 512, "reserved_concurrency": 10},
}
# The fan-out queue: a shard comes back after six times the worker's timeout (AWS's advice for SQS event
# sources), is kept past the 2-hour life of a connection, and after 5 receives goes to the dead-letter
# queue, kept SQS's longest (a standard queue's message expires by its first enqueue time there too).
QUEUE_VISIBILITY_SECONDS = 6 * 30
QUEUE_RETENTION_SECONDS = 4 * 3600
QUEUE_MAX_RECEIVES = 5
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
# `.chalice/policy-<stage>.json`: Chalice reads it for every function when `autogen_policy` is false,
# even for those whose role the template replaces; functions the template does not cover get only this.
LOGS_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "arn:*:logs:*:*:*",
        }
    ],
}
FIREBASE_PROJECT_PARAMETER = {
    "FirebaseProjectId": {
        "Type": "String",
        "Description": "The Firebase project whose ID tokens the app accepts (Firebase console > Project "
        "settings > Project ID); empty for a stage whose AUTH_PROVIDER is oidc.",
        "AllowedPattern": "^([a-z0-9][a-z0-9-]{3,29})?$",
        "ConstraintDescription": "a Firebase project id: 4-30 lowercase letters, digits and hyphens "
        "(or empty with AUTH_PROVIDER=oidc)",
    }
}


TRACING = {
    "Sid": "Tracing",
    "Effect": "Allow",
    "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
    "Resource": "*",  # X-Ray's write actions take no resource
}


def connections_table() -> dict[str, Any]:
    """The connections table: key `connection_id`, the `by_user` index notify queries, TTL on `expires_at`."""
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "connection_id", "AttributeType": "S"},
                {"AttributeName": "user_id", "AttributeType": "S"},
                {"AttributeName": "connected_at", "AttributeType": "N"},
            ],
            "KeySchema": [{"AttributeName": "connection_id", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": USER_INDEX,
                    "KeySchema": [
                        {"AttributeName": "user_id", "KeyType": "HASH"},
                        {"AttributeName": "connected_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    }


def topics_table() -> dict[str, Any]:
    """The topics table: string `pk` / `sk`, the `by_connection` index a disconnect queries, TTL."""
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
                {"AttributeName": "connection_id", "AttributeType": "S"},
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": CONNECTION_INDEX,
                    "KeySchema": [
                        {"AttributeName": "connection_id", "KeyType": "HASH"},
                        {"AttributeName": "pk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
        },
    }


def fanout_queues() -> dict[str, Any]:
    """The fan-out workers' queue and its dead-letter queue, named after the stack."""
    return {
        QUEUE: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": "${AWS::StackName}-fanout"},
                "VisibilityTimeout": QUEUE_VISIBILITY_SECONDS,
                "MessageRetentionPeriod": QUEUE_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]},
                    "maxReceiveCount": QUEUE_MAX_RECEIVES,
                },
            },
        },
        DEAD_LETTER_QUEUE: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": {"Fn::Sub": "${AWS::StackName}-fanout-dead-letters"},
                "MessageRetentionPeriod": DEAD_LETTER_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
    }


def _queue_statement(sid: str, actions: list[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": {"Fn::GetAtt": [QUEUE, "Arn"]}}


def _table_statement(sid: str, actions: list[str], table: str = TABLE) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": {"Fn::GetAtt": [table, "Arn"]}}


def _subscriptions_of_connection() -> dict[str, Any]:
    return {
        "Sid": "SubscriptionsOfConnection",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": {"Fn::Sub": f"${{{TOPICS_TABLE}.Arn}}/index/{CONNECTION_INDEX}"},
    }


def _index_query() -> dict[str, Any]:
    return {
        "Sid": "FindConnectionsOfUser",
        "Effect": "Allow",
        "Action": ["dynamodb:Query"],
        "Resource": {"Fn::Sub": f"${{{TABLE}.Arn}}/index/{USER_INDEX}"},
    }


def _connections(sid: str, method: str, api_stage: str) -> dict[str, Any]:
    arn = f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{WEBSOCKET_API}}}"
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["execute-api:ManageConnections"],
        "Resource": {"Fn::Sub": f"{arn}/{api_stage}/{method}/@connections/*"},
    }


def statements(
    function_name: str, api_stage: str = DEFAULT_API_STAGE, *, topics: bool = False
) -> list[dict[str, Any]]:
    """The least-privilege statements `function_name` needs for the core (its log group aside).

    The core's own functions get what their handler calls; any other function is one that notifies,
    and with `topics` one that also calls `notify_topic`, `unsubscribe_user` or `topic_members`.

        [s["Sid"] for s in statements("handle_orders")]
        # ['FindConnectionsOfUser', 'DeleteGoneConnections', 'PostFrames', 'HandOnToFanoutWorkers']
    """
    if function_name == AUTHORIZER:
        return []
    if function_name == CONNECT:
        return [
            _table_statement(
                "StoreConnections", ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem"]
            ),
            _index_query(),
            _connections("CloseOldestConnections", "DELETE", api_stage),
        ]
    gone = _table_statement("DeleteGoneConnections", ["dynamodb:BatchWriteItem"])
    hand_on = _queue_statement("HandOnToFanoutWorkers", ["sqs:SendMessage"])
    if function_name == DISCONNECT:
        # Its subscriptions go too, and the presence frame that follows may meet other dead sockets (and,
        # for a topic larger than the notify budget, go on to the fan-out workers).
        return [
            _table_statement("ForgetConnection", ["dynamodb:DeleteItem"]),
            gone,
            _table_statement(
                "ForgetSubscriptions",
                ["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                TOPICS_TABLE,
            ),
            _subscriptions_of_connection(),
            _connections("PostPresenceFrames", "POST", api_stage),
            hand_on,
        ]
    if function_name == MESSAGE:
        # Pings, and subscribes: the connection's user, the subscription, presence frames, their 410s and
        # (a topic larger than the notify budget) the fan-out workers.
        return [
            _connections("AnswerPing", "POST", api_stage),
            _table_statement("ReadConnection", ["dynamodb:GetItem"]),
            gone,
            _table_statement(
                "Subscriptions",
                ["dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                TOPICS_TABLE,
            ),
            _subscriptions_of_connection(),
            hand_on,
        ]
    if function_name == FANOUT_WORKER:
        return [
            # What Lambda's event source mapping does with the worker's role.
            _queue_statement(
                "ReceiveShards", ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
            ),
            _queue_statement("HandOnTheRest", ["sqs:SendMessage"]),
            _table_statement(
                "ShardRecordsAndGoneConnections", ["dynamodb:BatchWriteItem", "dynamodb:UpdateItem"]
            ),
            _index_query(),
            # A topic shard: its subscribers' pages, their 410s, and the presence frame that follows.
            _table_statement(
                "TopicSubscribers",
                ["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                TOPICS_TABLE,
            ),
            _connections("PostFrames", "POST", api_stage),
        ]
    notifying = [
        _index_query(),
        gone,
        _connections("PostFrames", "POST", api_stage),
        hand_on,
    ]
    if function_name == REST_FUNCTION or topics:
        # The REST routes call notify_topic, topic_members and unsubscribe_user too.
        notifying.append(
            _table_statement(
                "TopicSubscribers",
                ["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                TOPICS_TABLE,
            )
        )
    return notifying


def logical_id(function_name: str) -> str:
    """Chalice's CloudFormation name of a function: `websocket_connect` -> `WebsocketConnect`.

    As `chalice.utils.to_cfn_resource_name` (Chalice is not a dependency of this package), with the
    REST function's special name.
    """
    if function_name == REST_FUNCTION:
        return "APIHandler"
    name = function_name
    for separator in ("-", "_"):
        name = "".join(part[0].upper() + part[1:] for part in name.split(separator) if part)
    return re.sub(r"[^A-Za-z0-9]+", "", name)


def role_id(function_name: str) -> str:
    """The logical id of the function's own role (`autogen_policy: false`): `ApiHandlerRole`, ..."""
    if function_name == REST_FUNCTION:
        return "ApiHandlerRole"
    return f"{logical_id(function_name)}Role"


def function_variables(api_stage: str = DEFAULT_API_STAGE) -> dict[str, Any]:
    """What the template sets on each function it covers: the stack's table, endpoint and Firebase project."""
    return {
        "FIREBASE_PROJECT_ID": {"Ref": "FirebaseProjectId"},
        "CONNECTIONS_TABLE": {"Ref": TABLE},
        "FANOUT_QUEUE_URL": {"Ref": QUEUE},
        "TOPICS_TABLE": {"Ref": TOPICS_TABLE},
        "WEBSOCKET_ENDPOINT": {"Fn::Sub": websocket_endpoint(api_stage)},
    }


def websocket_endpoint(api_stage: str = DEFAULT_API_STAGE) -> str:
    return f"https://${{{WEBSOCKET_API}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{api_stage}"


def core_template(
    notifying: Iterable[str] = (), api_stage: str = DEFAULT_API_STAGE, topic_notifying: Iterable[str] = ()
) -> dict[str, Any]:
    """The core's resources for an app whose functions `notifying` call `notify` (the REST function always)
    and whose functions `topic_notifying` also call `notify_topic` (or `unsubscribe_user`, `topic_members`).

    Each function the template covers gets its name, its own log group, the core's variables and a role
    with its log group's statement and `statements(function)`.
    """
    resources: dict[str, Any] = {TABLE: connections_table(), TOPICS_TABLE: topics_table(), **fanout_queues()}
    with_topics = set(topic_notifying)
    for name in functions_covered(notifying, topic_notifying):
        function = logical_id(name)
        resources[function] = {
            "Properties": {
                "FunctionName": {"Fn::Sub": f"${{AWS::StackName}}-{function}"},
                "Tracing": "Active",  # X-Ray: a notify's DynamoDB and Management API calls as one trace
                "Environment": {"Variables": function_variables(api_stage)},
            }
        }
        if name == FANOUT_WORKER:
            # Chalice subscribed it to the queue FANOUT_QUEUE_URL named when packaging: this stack's instead.
            source = {"Properties": {"Queue": {"Fn::Sub": f"${{{QUEUE}.Arn}}"}}}
            resources[function]["Properties"]["Events"] = {f"{function}SqsEventSource": source}
        resources[f"{function}Logs"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": {"Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{function}"},
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
        own_logs = {
            "Sid": "OwnLogGroup",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": {"Fn::GetAtt": [f"{function}Logs", "Arn"]},
        }
        resources[role_id(name)] = {
            "Properties": {
                "Policies": [
                    {
                        "PolicyName": f"{function}Access",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                own_logs,
                                TRACING,
                                *statements(name, api_stage, topics=name in with_topics),
                            ],
                        },
                    }
                ]
            }
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "The chalice-realtime core's connections table, fan-out queues and its functions' "
        "settings and least-privilege roles (chalice-realtime infra). "
        "Merge with: chalice package --merge-template",
        "Parameters": copy.deepcopy(FIREBASE_PROJECT_PARAMETER),
        "Resources": resources,
        "Outputs": {
            "WebsocketManagementEndpoint": {
                "Description": "WEBSOCKET_ENDPOINT of this stack: the Management API base URL",
                "Value": {"Fn::Sub": websocket_endpoint(api_stage)},
            },
            "ConnectionsTableName": {"Description": "CONNECTIONS_TABLE", "Value": {"Ref": TABLE}},
            "TopicsTableName": {"Description": "TOPICS_TABLE", "Value": {"Ref": TOPICS_TABLE}},
            "FanoutQueueUrl": {
                "Description": "FANOUT_QUEUE_URL: the fan-out workers' SQS queue",
                "Value": {"Ref": QUEUE},
            },
            "FanoutDeadLetterQueueName": {
                "Description": "Shards the fan-out workers failed 5 times: "
                "alarm on its ApproximateNumberOfMessagesVisible",
                "Value": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "QueueName"]},
            },
        },
    }


def functions_covered(notifying: Iterable[str], topic_notifying: Iterable[str] = ()) -> list[str]:
    """The core's functions, the REST function, then each notifying one, once each."""
    names = [*CORE_FUNCTIONS, REST_FUNCTION, *notifying, *topic_notifying]
    return list(dict.fromkeys(names))


# `Sid`s of statements earlier versions of the core wrote and this one no longer does: removed on merge.
RETIRED_STATEMENTS = frozenset({"HandOnTheRestOfAUser"})  # now `HandOnTheRest` (users' and topics' rest)


def merge_template(
    existing: Mapping[str, Any],
    notifying: Iterable[str] = (),
    api_stage: str = DEFAULT_API_STAGE,
    topic_notifying: Iterable[str] = (),
) -> dict[str, Any]:
    """`existing` (an app's merge template) with the core's part put in, everything else kept.

    Resources, parameters and outputs of the core replace those of the same name; a function's
    variables are updated in place; in a role, each of the core's statements replaces the one with
    its `Sid` wherever it is, the missing ones join the role's first policy, and statements an
    earlier version of the core wrote under another name (`RETIRED_STATEMENTS`) go. Merging twice
    changes nothing.
    """
    merged = copy.deepcopy(dict(existing))
    core = core_template(notifying, api_stage, topic_notifying)
    merged.setdefault("AWSTemplateFormatVersion", core["AWSTemplateFormatVersion"])
    merged.setdefault("Description", core["Description"])
    for section in ("Parameters", "Resources", "Outputs"):
        target = merged.setdefault(section, {})
        for name, value in core[section].items():
            if section == "Resources" and name in target and name.endswith("Role"):
                _merge_role(target[name], value)
            elif section == "Resources" and name in target and "Type" not in value:  # a Chalice function's
                _merge_function(target[name], value)
            else:  # kept: what the app added beside the core's Type and Properties (DeletionPolicy, ...)
                target[name] = {**target.get(name, {}), **value}
    return merged


def _merge_function(target: dict[str, Any], core: Mapping[str, Any]) -> None:
    properties = target.setdefault("Properties", {})
    properties["FunctionName"] = core["Properties"]["FunctionName"]
    properties["Tracing"] = core["Properties"]["Tracing"]
    variables = properties.setdefault("Environment", {}).setdefault("Variables", {})
    variables.update(core["Properties"]["Environment"]["Variables"])
    if "Events" in core["Properties"]:
        properties.setdefault("Events", {}).update(core["Properties"]["Events"])


def _merge_role(target: dict[str, Any], core: Mapping[str, Any]) -> None:
    policies = target.setdefault("Properties", {}).setdefault("Policies", [])
    (core_policy,) = core["Properties"]["Policies"]
    if not policies:
        policies.append(core_policy)
        return
    placed = {}
    for policy in policies:
        document = policy["PolicyDocument"]
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") not in RETIRED_STATEMENTS]
        for statement in document["Statement"]:
            placed[statement.get("Sid")] = statement
    first = policies[0]["PolicyDocument"]["Statement"]
    for statement in core_policy["PolicyDocument"]["Statement"]:
        if statement["Sid"] in placed:
            placed[statement["Sid"]].clear()
            placed[statement["Sid"]].update(statement)
        else:
            first.append(statement)


def api_stage_of(config: Mapping[str, Any], stage: str) -> str:
    """The API Gateway stage of Chalice's `stage` (`api_gateway_stage`, the stage's own first)."""
    stage_config = config.get("stages", {}).get(stage, {})
    return str(stage_config.get("api_gateway_stage", config.get("api_gateway_stage", DEFAULT_API_STAGE)))


def merge_config(existing: Mapping[str, Any], app_name: str, stage: str) -> tuple[dict[str, Any], list[str]]:
    """`existing` (`.chalice/config.json`) with the core's settings added where missing; what changed.

    `autogen_policy` is set to false: each function then has a role of its own, which the template
    fills; the core's variables and its functions' timeouts are added where the app has none.
    """
    config = copy.deepcopy(dict(existing))
    changes = []
    defaults = {"version": "2.0", "app_name": app_name, "automatic_layer": True}
    for key, value in defaults.items():
        if key not in config:
            config[key] = value
            changes.append(f"{key}: {value!r}")
    if config.get("autogen_policy") is not False:
        config["autogen_policy"] = False
        changes.append("autogen_policy: false (one role per function, which the template fills)")
    variables = config.setdefault("environment_variables", {})
    for name, value in GLOBAL_VARIABLES.items():
        if name not in variables:
            variables[name] = value
            changes.append(f"environment_variables.{name}: {value!r}")
    functions = config.setdefault("lambda_functions", {})
    for name, settings in FUNCTION_CONFIG.items():
        if name not in functions:
            functions[name] = dict(settings)
            changes.append(f"lambda_functions.{name}")
    stage_config = config.setdefault("stages", {}).setdefault(stage, {})
    if "api_gateway_stage" not in config and "api_gateway_stage" not in stage_config:
        config["api_gateway_stage"] = DEFAULT_API_STAGE  # the stage WEBSOCKET_ENDPOINT ends with
        changes.append(f"api_gateway_stage: {DEFAULT_API_STAGE!r}")
    stage_variables = stage_config.setdefault("environment_variables", {})
    if stage in ("dev", "prod") and "APP_STAGE" not in stage_variables:
        stage_variables["APP_STAGE"] = stage
        changes.append(f"stages.{stage}.environment_variables.APP_STAGE: {stage!r}")
    return config, changes
