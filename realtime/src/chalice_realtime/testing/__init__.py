"""Testing kit for apps that adopt chalice-realtime: see what `notify` sent, without AWS.

Installed with the package; its pytest plugin (`chalice_realtime.testing.plugin`) registers itself
through the `pytest11` entry point, so an app's tests just ask for its fixtures:

    def test_an_order_notifies_its_owner(client, realtime_frames, realtime_tokens):
        realtime_frames.connect("uid-1")
        client.http.post("/orders", headers=realtime_tokens.headers("uid-1"))
        assert realtime_frames.for_user("uid-1") == ["orders-updated"]

Modules: `frames` (a recording transport), `store` (the connections table in moto), `events`
(API-Gateway-shaped WebSocket events), `firebase` and `oidc` (signed test tokens; need the
`[firebase]` / `[oidc]` extra). Nothing here is imported by the core at run time.
"""
