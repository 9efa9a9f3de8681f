"""Jobs as an adopting app's tests see them, through the core's testing kit: who hears which key."""

from __future__ import annotations

import json
from typing import Any

from chalice.test import Client
from chalice_realtime.testing.firebase import TokenFactory

from app import app


def bearer(tokens: TokenFactory, uid: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(uid)}", "Content-Type": "application/json"}


def test_cancelling_a_queued_job_is_heard_by_its_owner_only(recorded: Any, tokens: TokenFactory) -> None:
    recorded.connect("alice")
    recorded.connect("bob")
    with Client(app) as client:
        submitted = client.http.post(
            "/jobs",
            headers=bearer(tokens, "alice"),
            body=json.dumps({"kind": "report", "params": {"seconds": 5}}),
        )
        assert submitted.status_code == 202, submitted.body
        job_id = json.loads(submitted.body)["job_id"]
        cancelled = client.http.post(f"/jobs/{job_id}/cancel", headers=bearer(tokens, "alice"))
    assert cancelled.status_code == 202, cancelled.body
    assert recorded.for_user("alice") == ["jobs-updated"]
    assert recorded.for_user("bob") == []
