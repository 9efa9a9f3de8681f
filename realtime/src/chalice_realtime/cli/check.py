"""`chalice-realtime check`: is a stage ready for traffic? One finding per thing the core relies on.

findings = StageCheck(settings, dynamodb=dynamodb_client, management=management_client).run()
[f.message for f in findings if not f.ok]  # [] when the stage is ready
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from ..aws import error_code
from ..connections import TTL_ATTRIBUTE, USER_INDEX
from ..oidc import DISCOVERY_PATH, fetch
from ..settings import RealtimeSettings

if TYPE_CHECKING:
    from types_boto3_apigatewaymanagementapi.client import ApiGatewayManagementApiClient
    from types_boto3_dynamodb.client import DynamoDBClient

# Where Google publishes the certificates that sign Firebase ID tokens (what firebase-admin fetches).
FIREBASE_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
)
_ENDPOINT = re.compile(
    r"https://(?P<api>[a-z0-9]+)\.execute-api\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<stage>[^/]+)"
)
_ROLE = re.compile(r"arn:(?P<partition>[^:]+):iam::(?P<account>\d{12}):role/.+")
KEYS_TIMEOUT = 10.0


@dataclass(frozen=True)
class Finding:
    """One verified thing: `ok`, and a sentence saying what was found (and, if not ok, what to do)."""

    ok: bool
    message: str


class StageCheck:
    """Checks one stage's connections table, Management API permission and token issuer keys.

    `iam` and `role_arn` together check the function's role with IAM's policy simulator; without
    them a dry PostToConnection on a made-up connection (410 expected, not 403) checks the caller.
    """

    def __init__(
        self,
        settings: RealtimeSettings,
        *,
        dynamodb: DynamoDBClient,
        management: ApiGatewayManagementApiClient | None,
        iam: Any = None,
        role_arn: str = "",
        fetch_url: Callable[[str, float], bytes] = fetch,
    ) -> None:
        self._settings = settings
        self._dynamodb = dynamodb
        self._management = management
        self._iam = iam
        self._role_arn = role_arn
        self._fetch = fetch_url

    def run(self) -> list[Finding]:
        return [*self.table(), self.manage_connections(), self.issuer_keys()]

    def table(self) -> list[Finding]:
        name = self._settings.connections_table
        try:
            table = self._dynamodb.describe_table(TableName=name)["Table"]
            ttl = self._dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return [Finding(False, f"connections table {name!r} does not exist (CONNECTIONS_TABLE)")]
            return [Finding(False, f"connections table {name!r} cannot be read: {exc}")]
        except BotoCoreError as exc:
            return [Finding(False, f"DynamoDB cannot be reached: {exc}")]
        findings = []
        wanted = [
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": "connected_at", "KeyType": "RANGE"},
        ]
        index = next(
            (i for i in table.get("GlobalSecondaryIndexes", []) if i["IndexName"] == USER_INDEX), None
        )
        if index is None:
            findings.append(
                Finding(False, f"connections table {name!r} has no {USER_INDEX!r} index (notify queries it)")
            )
        elif index["KeySchema"] != wanted:
            findings.append(
                Finding(False, f"index {USER_INDEX!r} of {name!r} is not keyed by user_id, connected_at")
            )
        else:
            findings.append(Finding(True, f"connections table {name!r} has its {USER_INDEX!r} index"))
        status, attribute = ttl.get("TimeToLiveStatus", "DISABLED"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING") and attribute == TTL_ATTRIBUTE:
            findings.append(Finding(True, f"TTL is on for {name!r} ({TTL_ATTRIBUTE})"))
        else:
            findings.append(
                Finding(
                    False,
                    f"TTL is not on for {TTL_ATTRIBUTE!r} of {name!r} (status {status}): rows of connections "
                    "whose $disconnect never came would stay forever",
                )
            )
        return findings

    def manage_connections(self) -> Finding:
        endpoint = self._settings.websocket_endpoint
        if not endpoint:
            return Finding(False, "WEBSOCKET_ENDPOINT is not set: notify cannot reach the Management API")
        if self._role_arn:
            return self._simulate(endpoint)
        if self._management is None:
            return Finding(False, "no Management API client")
        # Shaped as API Gateway's (16 characters, `=` last) and owned by no one; nothing to escape in a path.
        connection_id = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15)) + "="
        try:
            self._management.post_to_connection(ConnectionId=connection_id, Data=b"{}")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 410 or error_code(exc) == "GoneException":
                return Finding(
                    True,
                    f"the Management API at {endpoint} accepts this caller's posts "
                    "(410 for a made-up connection)",
                )
            if status == 403 or error_code(exc) in ("AccessDeniedException", "ForbiddenException"):
                return Finding(
                    False,
                    f"403 from {endpoint}: these credentials may not execute-api:ManageConnections on the "
                    "WebSocket API (or WEBSOCKET_ENDPOINT names another API or stage)",
                )
            code = error_code(exc)
            answer = f"{status} {code}" if code and code != str(status) else str(status)
            return Finding(
                False, f"the Management API at {endpoint} answered {answer} (is WEBSOCKET_ENDPOINT its URL?)"
            )
        except BotoCoreError as exc:
            return Finding(False, f"the Management API at {endpoint} cannot be reached: {exc}")
        return Finding(True, f"the Management API at {endpoint} accepts this caller's posts")

    def _simulate(self, endpoint: str) -> Finding:
        where, role = _ENDPOINT.match(endpoint), _ROLE.fullmatch(self._role_arn)
        if where is None:
            return Finding(False, f"WEBSOCKET_ENDPOINT {endpoint!r} is not an execute-api URL")
        if role is None:
            return Finding(False, f"--role-arn {self._role_arn!r} is not an IAM role ARN")
        resource = (
            f"arn:{role['partition']}:execute-api:{where['region']}:{role['account']}:"
            f"{where['api']}/{where['stage']}/POST/@connections/*"
        )
        try:
            answer = self._iam.simulate_principal_policy(
                PolicySourceArn=self._role_arn,
                ActionNames=["execute-api:ManageConnections"],
                ResourceArns=[resource],
            )
        except (ClientError, BotoCoreError) as exc:
            return Finding(False, f"IAM's policy simulator cannot check {self._role_arn}: {exc}")
        decisions = {result["EvalDecision"] for result in answer["EvaluationResults"]}
        if decisions == {"allowed"}:
            return Finding(True, f"role {self._role_arn} may execute-api:ManageConnections on {resource}")
        return Finding(
            False,
            f"role {self._role_arn} may not execute-api:ManageConnections on {resource} "
            f"({', '.join(sorted(decisions))}): give it the PostFrames statement (chalice-realtime infra)",
        )

    def issuer_keys(self) -> Finding:
        settings = self._settings
        if settings.auth_provider == "oidc":
            return self._oidc_keys()
        if not settings.firebase_project_id or settings.firebase_project_id.startswith("SET-ME"):
            return Finding(False, "FIREBASE_PROJECT_ID is not set: no Firebase ID token can be verified")
        if settings.auth_emulator_host:
            return Finding(
                True, f"tokens come from the Auth Emulator at {settings.auth_emulator_host} (local)"
            )
        return self._keys_at(FIREBASE_CERTS_URL, "Firebase's signing certificates", lambda doc: doc)

    def _oidc_keys(self) -> Finding:
        issuer = self._settings.oidc_issuer
        jwks_url = self._settings.oidc_jwks_url
        if not jwks_url:
            url = issuer.rstrip("/") + DISCOVERY_PATH
            try:
                document = json.loads(self._fetch(url, KEYS_TIMEOUT))
            except (OSError, ValueError) as exc:
                return Finding(
                    False, f"the discovery document of {issuer} cannot be fetched from {url}: {exc}"
                )
            found = document.get("jwks_uri") if isinstance(document, dict) else None
            if not isinstance(found, str):
                return Finding(False, f"the discovery document at {url} has no jwks_uri")
            jwks_url = found
        return self._keys_at(jwks_url, f"the signing keys of {issuer}", lambda doc: doc.get("keys"))

    def _keys_at(self, url: str, what: str, keys_of: Callable[[dict[str, Any]], Any]) -> Finding:
        try:
            document = json.loads(self._fetch(url, KEYS_TIMEOUT))
        except (OSError, ValueError) as exc:
            return Finding(False, f"{what} cannot be fetched from {url}: {exc}")
        keys = keys_of(document) if isinstance(document, dict) else None
        if not keys:
            return Finding(False, f"{url} publishes no keys: {what} are missing")
        return Finding(True, f"{what} can be fetched ({len(keys)} keys at {url})")
