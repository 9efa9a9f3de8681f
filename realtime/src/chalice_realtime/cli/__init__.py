"""`chalice-realtime`: the operator's command line for an app that runs the core.

    chalice-realtime infra --notifying-function handle_orders   # template, config and policy for the app
    chalice-realtime check --stage dev                          # is the stage ready for traffic?
    chalice-realtime connections --user uid-1                   # a user's live connections
    chalice-realtime notify --user uid-1 --event orders-updated # send one frame, print the report
    chalice-realtime notify --topic room:42 --event room-messages-updated   # to a topic's subscribers
    chalice-realtime members --topic room:42                    # who is subscribed to a topic now
    chalice-realtime disconnect --user uid-1                    # close every socket of a user

The stage's settings are the core's variables (docs: configuration) as `.chalice/config.json` gives
them for `--stage`, then the outputs of the CloudFormation stack `--stack` names, then the process
environment over both; AWS credentials, region and endpoints are
boto3's own (`AWS_PROFILE`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`). Exit status: 0 when all went
well, 1 when a check or an operation failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from ..identifiers import validate_event_key, validate_topic
from ..metrics import log_notify
from ..runtime import Realtime
from ..settings import ConfigurationError, RealtimeSettings
from . import infra
from .check import StageCheck

if TYPE_CHECKING:
    from types_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient

PROG = "chalice-realtime"


class UsageError(Exception):
    """What the operator asked for cannot be done as asked (exit status 2)."""


# What a stack deployed with `infra`'s template says about the stage, and the variable each gives.
STACK_OUTPUTS = {
    "ConnectionsTableName": "CONNECTIONS_TABLE",
    "WebsocketManagementEndpoint": "WEBSOCKET_ENDPOINT",
}
# Outputs of later versions of the template, read when the stack has them.
OPTIONAL_STACK_OUTPUTS = {"TopicsTableName": "TOPICS_TABLE", "FanoutQueueUrl": "FANOUT_QUEUE_URL"}
STACK_PARAMETERS = {"FirebaseProjectId": "FIREBASE_PROJECT_ID"}


def stage_environment(
    app_dir: Path, stage: str | None, environ: Mapping[str, str], stack: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The stage's variables: `.chalice/config.json`'s (global, then the stage's), then the `stack`'s
    (`stack_environment`), then `environ`'s."""
    variables: dict[str, str] = {}
    config_file = app_dir / ".chalice" / "config.json"
    if stage is not None:
        if not config_file.is_file():
            raise UsageError(
                f"--stage {stage}: {config_file} does not exist (use --app-dir, or set the variables)"
            )
        config = _read_json(config_file)
        if stage not in config.get("stages", {}):
            raise UsageError(f"--stage {stage}: no such stage in {config_file}")
        variables.update(config.get("environment_variables", {}))
        variables.update(config["stages"][stage].get("environment_variables", {}))
    variables.update(stack or {})
    variables.update(environ)
    return variables


def stack_environment(stack_name: str, cloudformation: Any) -> dict[str, str]:
    """`CONNECTIONS_TABLE`, `WEBSOCKET_ENDPOINT`, `FIREBASE_PROJECT_ID`, and `TOPICS_TABLE` and
    `FANOUT_QUEUE_URL` if it has them, from a deployed stack's outputs and parameters (a `chalice
    package` deployment names its tables, queue and API only there)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise UsageError(f"--stack {stack_name}: {exc}") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = [name for name in STACK_OUTPUTS if name not in outputs]
    if missing:
        raise UsageError(
            f"--stack {stack_name} has no output {', '.join(missing)}: was it deployed with the template "
            "`chalice-realtime infra` writes?"
        )
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    return {
        **{variable: parameters[name] for name, variable in STACK_PARAMETERS.items() if parameters.get(name)},
        **{variable: outputs[name] for name, variable in STACK_OUTPUTS.items()},
        **{variable: outputs[name] for name, variable in OPTIONAL_STACK_OUTPUTS.items() if name in outputs},
    }


def settings_for(args: argparse.Namespace, environ: Mapping[str, str]) -> RealtimeSettings:
    stack = None
    if args.stack:
        import boto3

        stack = stack_environment(args.stack, boto3.session.Session().client("cloudformation"))
    try:
        return RealtimeSettings.from_env(stage_environment(args.app_dir, args.stage, environ, stack))
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc


def management_client(endpoint: str) -> ApiGatewayManagementApiClient:
    import boto3

    from ..aws import client_config

    return boto3.session.Session().client(
        "apigatewaymanagementapi", endpoint_url=endpoint, config=client_config(max_pool_connections=2)
    )


# ------------------------------------------------------------------ commands


def run_infra(args: argparse.Namespace, out: TextIO) -> int:
    app_dir: Path = args.app_dir
    config_file = app_dir / ".chalice" / "config.json"
    existing_config = _read_json(config_file)
    config, changes = infra.merge_config(existing_config, app_dir.resolve().name, args.stage)
    template_file = app_dir / args.template
    existing = _read_json(template_file)
    api_stage = infra.api_stage_of(config, args.stage)
    template = infra.merge_template(
        existing, args.notifying_function, api_stage, args.topic_notifying_function
    )
    # A file already as it should be is left alone (and keeps its formatting).
    if template != existing:
        _write_json(template_file, template)
        out.write(f"wrote {template_file} (merge it: chalice package --merge-template {args.template} ...)\n")
    else:
        out.write(f"{template_file} is up to date\n")
    for name in infra.functions_covered(args.notifying_function, args.topic_notifying_function):
        out.write(f"  {name}: CONNECTIONS_TABLE, WEBSOCKET_ENDPOINT, role {infra.role_id(name)}\n")
    if changes:
        config_file.parent.mkdir(parents=True, exist_ok=True)
        _write_json(config_file, config)
        out.write(f"updated {config_file}:\n" + "".join(f"  {change}\n" for change in changes))
    else:
        out.write(f"{config_file} is up to date\n")
    policy_file = app_dir / ".chalice" / f"policy-{args.stage}.json"
    if not policy_file.exists():
        _write_json(policy_file, infra.LOGS_ONLY_POLICY)
        out.write(f"wrote {policy_file} (logs only: for functions the template does not cover)\n")
    return 0


def run_check(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    import boto3

    from ..aws import client

    settings = settings_for(args, environ)
    findings = StageCheck(
        settings,
        dynamodb=client("dynamodb"),
        management=management_client(settings.websocket_endpoint) if settings.websocket_endpoint else None,
        iam=boto3.session.Session().client("iam") if args.role_arn else None,
        role_arn=args.role_arn or "",
    ).run()
    for finding in findings:
        out.write(f"{'ok  ' if finding.ok else 'FAIL'} {finding.message}\n")
    problems = sum(not finding.ok for finding in findings)
    if problems:
        out.write(f"{problems} problem{'s' if problems > 1 else ''}: the stage is not ready for traffic\n")
        return 1
    out.write(
        f"all {len(findings)} checks passed: table {settings.connections_table}, "
        f"endpoint {settings.websocket_endpoint}\n"
    )
    return 0


def run_connections(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    realtime = Realtime(settings_for(args, environ))
    connections = list(realtime.connections.connections_of(args.user))
    for connection in connections:
        out.write(f"{connection.connection_id}\tconnected_at={connection.connected_at}\n")
    out.write(f"{_counted(connections, 'live connection')} of {args.user}\n")
    return 0


def run_notify(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    settings = settings_for(args, environ)
    _require_endpoint(settings)
    realtime = Realtime(settings, observer=log_notify)
    try:
        if args.topic:
            try:
                report = realtime.topics.notify_topic(args.topic, args.event)
            except ValueError as exc:  # a key only the core may send (`subscribed`, ...)
                raise UsageError(str(exc)) from exc
        else:
            report = realtime.notifier.notify(args.user, args.event)
    finally:
        realtime.close()
    line = f"delivered={report.delivered} gone={report.gone} failed={report.failed}"
    if report.deferred or report.deferred_users or report.deferred_topics:
        line += (
            f" handed to the fan-out workers: deferred={report.deferred} "
            f"deferred_users={report.deferred_users} deferred_topics={report.deferred_topics}"
        )
    out.write(line + "\n")
    return 1 if report.failed else 0


def run_members(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    realtime = Realtime(settings_for(args, environ))
    members = realtime.topics.members(args.topic)
    for user_id in members:
        out.write(f"{user_id}\n")
    out.write(f"{_counted(members, 'member')} of {args.topic}\n")
    return 0


def run_disconnect(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    from ..transports import Outcome

    settings = settings_for(args, environ)
    _require_endpoint(settings)
    realtime = Realtime(settings)
    failed = []
    closed = []
    try:
        for connection in realtime.connections.connections_of(args.user):
            outcome = realtime.transport.delete_connection(connection.connection_id)
            if outcome is Outcome.FAILED:
                failed.append(connection.connection_id)
            else:  # closed now, or gone already: either way its row can go
                closed.append(connection.connection_id)
                done = "closed" if outcome is Outcome.DELIVERED else "was gone already"
                out.write(f"{connection.connection_id} {done}\n")
        realtime.connections.remove_many(closed)
    finally:
        realtime.close()
    for connection_id in failed:
        out.write(f"FAIL could not close {connection_id}; its row is kept\n")
    out.write(f"disconnected {_counted(closed, 'connection')} of {args.user}\n")
    return 1 if failed else 0


def _counted(items: Sequence[object], noun: str) -> str:
    """`2 members`, `1 member`."""
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _require_endpoint(settings: RealtimeSettings) -> None:
    if not settings.websocket_endpoint:
        raise UsageError("WEBSOCKET_ENDPOINT is not set (the stage's Management API URL, stage included)")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UsageError(f"{path} is not a JSON object")
    return document


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


# ------------------------------------------------------------------ arguments


def _user(value: str) -> str:
    # Any subject the verifier accepts (OIDC ones such as `auth0|64f1c2` included): not only Firebase uids.
    if not value.strip():
        raise argparse.ArgumentTypeError("a user id is the token's subject, not empty")
    return value


def _function_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a Chalice function name (the handler's name)")
    return value


def _event(value: str) -> str:
    try:
        return validate_event_key(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _topic(value: str) -> str:
    try:
        return validate_topic(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--app-dir", type=Path, default=Path.cwd(), help="the Chalice app's folder (default: here)"
        )
        return sub

    infra_command = command("infra", "write the core's CloudFormation, config and policy into a Chalice app")
    infra_command.add_argument(
        "--stage", default="dev", help="the stage whose policy file to write (default: dev)"
    )
    infra_command.add_argument(
        "--notifying-function",
        action="append",
        default=[],
        type=_function_name,
        metavar="NAME",
        help="a Chalice function that calls notify (an SNS handler, a schedule), repeatable; "
        f"the REST routes' {infra.REST_FUNCTION} is always included",
    )
    infra_command.add_argument(
        "--topic-notifying-function",
        action="append",
        default=[],
        type=_function_name,
        metavar="NAME",
        help="a function that also calls notify_topic, unsubscribe_user or topic_members, repeatable: "
        "gets what --notifying-function gives and the topics table",
    )
    infra_command.add_argument(
        "--template",
        default="realtime-resources.json",
        help="the merge template, in --app-dir (created or updated)",
    )

    for name, help in (
        ("check", "verify a stage before traffic: table, index, TTL, Management API permission, issuer keys"),
        ("connections", "list a user's live connections"),
        ("notify", "send one event key to a user's connections or a topic's, and print the delivery report"),
        ("members", "list the users subscribed to a topic now (presence)"),
        ("disconnect", "close every connection of a user (DeleteConnection), then delete their rows"),
    ):
        sub = command(name, help)
        sub.add_argument("--stage", help="read the stage's variables from .chalice/config.json")
        sub.add_argument(
            "--stack", help="read the table, endpoint and Firebase project from this CloudFormation stack"
        )
        if name == "check":
            sub.add_argument(
                "--role-arn", help="check this function role's permission with IAM's policy simulator"
            )
        elif name == "notify":
            audience = sub.add_mutually_exclusive_group(required=True)
            audience.add_argument("--user", type=_user, help="the user id (the token's subject)")
            audience.add_argument("--topic", type=_topic, help="a topic, e.g. room:42: its subscribers")
            sub.add_argument("--event", required=True, type=_event, help="the event key, e.g. orders-updated")
        elif name == "members":
            sub.add_argument("--topic", required=True, type=_topic, help="the topic, e.g. room:42")
        else:
            sub.add_argument("--user", required=True, type=_user, help="the user id (the token's subject)")
    return top


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, out: TextIO | None = None
) -> int:
    """Run one command; its exit status.

    main(["check", "--stage", "dev"])  # 0 when the stage is ready
    """
    args = parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    logging.basicConfig(level=logging.WARNING, format=f"{PROG}: %(message)s")
    try:
        if args.command == "infra":
            return run_infra(args, out)
        run = {
            "check": run_check,
            "connections": run_connections,
            "notify": run_notify,
            "members": run_members,
            "disconnect": run_disconnect,
        }[args.command]
        return run(args, environ, out)
    except UsageError as exc:
        sys.stderr.write(f"{PROG} {args.command}: {exc}\n")
        return 2
    except (ClientError, BotoCoreError) as exc:  # AWS refused or could not be reached: say which call
        sys.stderr.write(f"{PROG} {args.command}: {exc}\n")
        return 1
