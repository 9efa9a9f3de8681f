"""docs/adopt.md's "Testing your app" example, run as an adopter would run it: its test file beside an app
with the route it calls, in a fresh pytest process that finds the kit through the package's entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.adopter import doc_block

APP = """
from chalice import Chalice

from chalice_realtime import caller_id, notify, realtime, realtime_auth

app = Chalice(app_name="my-app")
app.experimental_feature_flags.update(["WEBSOCKETS"])
app.register_blueprint(realtime)


@app.route("/orders", methods=["POST"], authorizer=realtime_auth)
def create_order() -> dict[str, bool]:
    {notify}
    return {{"created": True}}
"""


def run_the_docs_test(root: Path, *, notifies: bool) -> subprocess.CompletedProcess[str]:
    call = 'notify(caller_id(), "orders-updated")' if notifies else "pass  # forgot to notify"
    (root / "app.py").write_text(APP.format(notify=call))
    (root / "test_orders.py").write_text(doc_block("testing-your-app") + "\n")
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {name: value for name, value in os.environ.items() if name in keep}
    env.update({"FIREBASE_PROJECT_ID": "my-app-test", "CONNECTIONS_TABLE": "my-app-connections"})
    env.update({"AWS_DEFAULT_REGION": "eu-west-1", "PYTHONDONTWRITEBYTECODE": "1"})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root), str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.parametrize("notifies", [True, False], ids=["route-notifies", "route-forgets"])
def test_the_docs_example_passes_when_the_route_notifies_and_fails_when_it_forgets(
    tmp_path: Path, notifies: bool
) -> None:
    result = run_the_docs_test(tmp_path, notifies=notifies)
    if notifies:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 passed" in result.stdout
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "assert [] == ['orders-updated']" in result.stdout
