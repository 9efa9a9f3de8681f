"""REST calls to the app through chalice's test client, as a given user with a freshly minted token."""

from __future__ import annotations

import json
from typing import Any

from chalice.test import Client
from chalice_realtime.testing.firebase import TokenFactory


class RestApi:
    """What a browser does over REST, as `uid`: `Authorization: Bearer <RS256 token>` on every call.

    api = RestApi(client, tokens)
    api.get("alice", "/jobs").status_code            # 200
    api.call("alice", "POST", "/messages", {...})    # (201, {"message_id": ...})

    Feature tests subclass it as their `Api`, adding their routes' calls (`submit`, `send`).
    """

    def __init__(self, client: Client, tokens: TokenFactory) -> None:
        self.client = client
        self.tokens = tokens

    def headers(self, uid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint(uid)}", "Content-Type": "application/json"}

    def get(self, uid: str, path: str) -> Any:
        return self.client.http.get(path, headers=self.headers(uid))

    def post(self, uid: str, path: str, body: str) -> Any:
        return self.client.http.post(path, headers=self.headers(uid), body=body)

    def call(self, uid: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None) of one call; `body` is sent as JSON."""
        raw = json.dumps(body).encode() if body is not None else None
        response = self.client.http.request(method, path, headers=self.headers(uid), body=raw)
        return response.status_code, json.loads(response.body) if response.body else None

    def ok(self, uid: str, path: str) -> dict[str, Any]:
        """The JSON body of a GET that must answer 200."""
        response = self.get(uid, path)
        assert response.status_code == 200, response.body
        return dict(json.loads(response.body))
