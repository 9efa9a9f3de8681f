"""Testing kit for apps that adopt chalice-realtime: see what `notify` sent, without AWS.

Installed with the package; its pytest plugin (`chalice_realtime.testing.plugin`) registers itself
through the `pytest11` entry point, so an app's tests just ask for its fixtures:

    def test_an_order_notifies_its_owner(client, realtime_frames, realtime_tokens):
        realtime_frames.connect("uid-1")
        client.http.post("/orders", headers=realtime_tokens.headers("uid-1"))
        assert realtime_frames.for_user("uid-1") == ["orders-updated"]

Modules: `frames` (a recording transport), `store` (the connections table in moto), `events`
(API-Gateway-shaped WebSocket events), `firebase` and `oidc` (signed test tokens; need the
`[firebase]` / `[oidc]` extra; `firebase.serving_certificates` serves a key's certificate where
firebase-admin fetches Google's).

Stand-ins for the core's collaborators, the ones the package's own tests use:
- `management_api`: the Management API (`@connections`): `serving()`, an HTTP server on loopback that
  records each request, and `faulty_backend()`, moto's backend (behind `serving_moto()`) answering
  410/429/5xx as told; `received()` reads what a connection was sent. moto only for the latter.
- `faults`: their one fault language, `FaultRule` and `FaultPlan` (also what the local stack's gateway
  takes at `PUT /_faults`), `ERROR_TYPES`, and `AccountThrottle`, API Gateway's account throttle.
- `clock`: `FakeClock`, a `Clock` whose `sleep` advances time instead of waiting.
- `dynamodb`: `CountingDynamoDB`, a real client that records each operation and the index it named.
- `logs`: `capture_logs()`, the JSON log lines as CloudWatch gets them, redacted and not; `emf_blobs()`.

`fixtures` is a second pytest plugin, opted into from a conftest with
`pytest_plugins = ["chalice_realtime.testing.fixtures"]`: signing keys, `firebase_certs`, a local OIDC
issuer and `management_api_url` (moto's server).

Each module says what it needs beyond the package; `faults`, `clock`, `dynamodb` and `logs` need only
the standard library. Nothing here is imported by the core at run time.
"""
