"""`AUTH_PROVIDER=oidc` over real sockets: the local stack verifying a local issuer's tokens.

The stack runs with the OIDC variables in its environment (as `AUTH_PROVIDER=oidc ... make dev`
would) and fetches the issuer's discovery document and JWKS over HTTP; a `websockets` client
holds the issuer's token, REST calls go over HTTP, and the frame arrives on the socket.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
import websockets
from chalice_realtime.testing.oidc import IssuerKey, LocalIssuer, OidcTokens

from testsupport.localstack import LocalStack

pytestmark = pytest.mark.integration


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def stored_users(stack: LocalStack) -> list[str]:
    table = stack.environment["CONNECTIONS_TABLE"]
    return sorted(
        item["user_id"]["S"]
        for item in stack.aws_client("dynamodb").scan(TableName=table)["Items"]
        if "user_id" in item  # fan-out shard records share the table
    )


def test_an_oidc_token_connects_calls_rest_and_hears_the_event_and_a_forged_one_is_refused(
    oidc_stack: LocalStack, oidc_issuer: LocalIssuer
) -> None:
    tokens = OidcTokens(oidc_issuer.issuer, oidc_issuer.keys[0])
    alice, bob = tokens.id_token("alice-oidc"), tokens.id_token("bob-oidc")
    forged = tokens.id_token("alice-oidc", key=IssuerKey.rsa("forger"), kid=oidc_issuer.keys[0].kid)

    async def scenario() -> None:
        async with websockets.connect(
            oidc_stack.ws_url, subprotocols=["bearer", alice], open_timeout=10
        ) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "bearer"
            me = requests.get(oidc_stack.rest_url + "/me", headers=auth(bob), timeout=10)
            assert (me.status_code, me.json()) == (200, {"user_id": "bob-oidc"})
            sent = requests.post(
                oidc_stack.rest_url + "/messages",
                json={"to": "alice-oidc", "text": "hello over OIDC"},
                headers=auth(bob),
                timeout=10,
            )
            assert sent.status_code == 201, sent.text
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"event": "chat-messages-updated"}
            assert stored_users(oidc_stack) == ["alice-oidc"]
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(
                oidc_stack.ws_url, subprotocols=["bearer", forged], open_timeout=10
            ):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 401

    asyncio.run(scenario())
    refused_rest = requests.get(oidc_stack.rest_url + "/me", headers=auth(forged), timeout=10)
    assert refused_rest.status_code in (401, 403)
    assert "alice" not in refused_rest.text
    conversation = requests.get(
        oidc_stack.rest_url + "/messages", params={"with": "bob-oidc"}, headers=auth(alice), timeout=10
    )
    assert [m["text"] for m in conversation.json()["messages"]] == ["hello over OIDC"]
    # Both processes that verify tokens (REST and the gateway's handlers) fetched the keys over HTTP.
    assert oidc_issuer.requests[oidc_issuer.jwks_path] >= 1
