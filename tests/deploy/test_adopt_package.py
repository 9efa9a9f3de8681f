"""`chalice package` of a brand-new app that adopted the core as docs/adopt.md says (`chalice new-project`,
the wheel in requirements.txt with extras, `chalice-realtime infra` naming an SNS handler and a schedule).

The app's dependency layer is built once per wheel (about a minute on a clean clone) and kept in this
project's `.chalice/deployments/` beside the project's own, named by the wheel's digest and Chalice's
own cache name (the hash of the app's requirements.txt), so later runs with the same core reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.adopter import create_adopting_app

ROOT = Path(__file__).resolve().parents[2]
CHALICE = Path(sys.executable).with_name("chalice")
CFN_LINT = Path(sys.executable).with_name("cfn-lint")
LAYER_CACHE = ROOT / ".chalice" / "deployments"
RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
CORE_FUNCTIONS = {
    "WebsocketConnect": "chalice_realtime.blueprint.ws_connect",
    "WebsocketMessage": "chalice_realtime.blueprint.ws_message",
    "WebsocketDisconnect": "chalice_realtime.blueprint.ws_disconnect",
    "RealtimeAuth": "chalice_realtime.blueprint.realtime_auth",
    "FanoutWorker": "chalice_realtime.blueprint.fanout_worker",
    "APIHandler": "app.app",
}
# The doc's SNS handler and schedule: they call notify, so `chalice-realtime infra` covered them.
NOTIFYING = {"ShipOrder": "app.ship_order", "ExpireOffers": "app.expire_offers"}

pytestmark = pytest.mark.timeout(900)


def _layer_name(app_dir: Path) -> str:
    """The cache name Chalice gives the app's dependency layer (chalice.deploy.packager)."""
    digest = hashlib.md5((app_dir / "requirements.txt").read_bytes(), usedforsecurity=False).hexdigest()
    return f"managed-layer-{digest}-{RUNTIME}.zip"


@pytest.fixture(scope="module")
def packaged_adopter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adopting app's `chalice package` output directory (`sam.json`, the zips)."""
    app_dir = create_adopting_app(tmp_path_factory.mktemp("adopter"))
    layer = _layer_name(app_dir)
    # Chalice names the layer by requirements.txt alone; the wheel it names changes with the core's code,
    # so the copy kept here is named by the wheel's digest too and never serves a stale core.
    (wheel,) = (app_dir / "wheels").glob("*.whl")
    kept = LAYER_CACHE / f"{hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]}-{layer}"
    deployments = app_dir / ".chalice" / "deployments"
    deployments.mkdir()
    if kept.exists():
        shutil.copy(kept, deployments / layer)
    result = subprocess.run(
        [str(CHALICE), "package", "--stage", "dev", "--merge-template", "realtime-resources.json", "out"],
        cwd=app_dir,
        env={**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"chalice package:\n{result.stdout}\n{result.stderr}"
    if not kept.exists() and (deployments / layer).exists():
        LAYER_CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copy(deployments / layer, kept)
    return app_dir / "out"


@pytest.fixture(scope="module")
def template(packaged_adopter: Path) -> dict[str, Any]:
    return dict(json.loads((packaged_adopter / "sam.json").read_text()))


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def statements_of(template: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    policies = template["Resources"][role]["Properties"]["Policies"]
    return {s["Sid"]: s for p in policies for s in p["PolicyDocument"]["Statement"]}


def test_the_package_has_the_websocket_api_its_routes_and_every_function(template: dict[str, Any]) -> None:
    (api,) = of_type(template, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    routes = {r["Properties"]["RouteKey"] for r in of_type(template, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"$connect", "$disconnect", "$default"}
    functions = of_type(template, "AWS::Serverless::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == CORE_FUNCTIONS | NOTIFYING
    assert {f["Properties"]["Runtime"] for f in functions.values()} == {RUNTIME}
    swagger = of_type(template, "AWS::Serverless::Api")["RestAPI"]["Properties"]["DefinitionBody"]
    assert swagger["paths"]["/orders"]["post"]["security"] == [{"realtime_auth": []}]


def test_every_function_that_notifies_gets_the_table_the_endpoint_and_the_permissions(
    template: dict[str, Any],
) -> None:
    assert of_type(template, "AWS::DynamoDB::Table").keys() == {"ConnectionsTable", "TopicsTable"}
    for name in [*CORE_FUNCTIONS, *NOTIFYING]:
        variables = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert variables["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}, name
        assert variables["FANOUT_QUEUE_URL"] == {"Ref": "FanoutQueue"}, name
        assert variables["TOPICS_TABLE"] == {"Ref": "TopicsTable"}, name
        assert variables["WEBSOCKET_ENDPOINT"] == {
            "Fn::Sub": "https://${WebsocketAPI}.execute-api.${AWS::Region}.${AWS::URLSuffix}/api"
        }, name
        assert variables["APP_STAGE"] == "dev", name  # from the merged config.json
        assert variables["REALTIME_TRANSPORT"] == "curl", name
    for name in ["APIHandler", *NOTIFYING]:
        role = "ApiHandlerRole" if name == "APIHandler" else f"{name}Role"
        role_id = template["Resources"][name]["Properties"]["Role"]["Fn::GetAtt"][0]
        assert role_id == role
        statements = statements_of(template, role)
        assert statements["FindConnectionsOfUser"]["Action"] == ["dynamodb:Query"]
        assert statements["FindConnectionsOfUser"]["Resource"] == {
            "Fn::Sub": "${ConnectionsTable.Arn}/index/by_user"
        }
        assert statements["PostFrames"]["Action"] == ["execute-api:ManageConnections"]
        assert statements["PostFrames"]["Resource"]["Fn::Sub"].endswith(
            "${WebsocketAPI}/api/POST/@connections/*"
        )
        assert statements["OwnLogGroup"]["Resource"] == {"Fn::GetAtt": [f"{name}Logs", "Arn"]}
        assert statements["HandOnToFanoutWorkers"]["Resource"] == {"Fn::GetAtt": ["FanoutQueue", "Arn"]}
        # The REST function also reads and settles topics (notify_topic, topic_members, unsubscribe_user).
        topics = {"TopicSubscribers"} if name == "APIHandler" else set()
        assert set(statements) == {
            "OwnLogGroup",
            "Tracing",
            "FindConnectionsOfUser",
            "DeleteGoneConnections",
            "PostFrames",
            *topics,
            "HandOnToFanoutWorkers",
        }
    ttl = template["Resources"]["ConnectionsTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}


def core_files(zips: list[Path]) -> dict[str, list[str]]:
    """zip name -> its paths that belong to the chalice_realtime package or its dist-info."""
    found: dict[str, list[str]] = {}
    for archive in zips:
        with zipfile.ZipFile(archive) as zipped:
            found[archive.name] = [
                name for name in zipped.namelist() if re.search(r"(^|/)chalice_realtime[-/]", name)
            ]
    return found


def test_the_core_is_shipped_once_from_the_wheel(packaged_adopter: Path) -> None:
    found = core_files(sorted(packaged_adopter.glob("*.zip")))
    inits = [
        name for names in found.values() for name in names if name.endswith("chalice_realtime/__init__.py")
    ]
    assert inits == [f"python/lib/{RUNTIME}/site-packages/chalice_realtime/__init__.py"]
    layer = found["layer-deployment.zip"]
    assert any(
        re.search(r"site-packages/chalice_realtime-0\.1\.0\.dist-info/RECORD$", name) for name in layer
    )
    assert f"python/lib/{RUNTIME}/site-packages/chalice_realtime/cli/infra.py" in layer
    with zipfile.ZipFile(packaged_adopter / "deployment.zip") as app_zip:
        names = app_zip.namelist()
    assert "app.py" in names
    assert not [name for name in names if "realtime" in name and name != "app.py"]


def test_the_layer_carries_the_extras_the_requirements_name(packaged_adopter: Path) -> None:
    with zipfile.ZipFile(packaged_adopter / "layer-deployment.zip") as layer:
        packages = {name.split("/")[4] for name in layer.namelist() if name.count("/") > 4}
    assert {"chalice_realtime", "firebase_admin", "pycurl", "boto3"} <= packages
    # The [aiohttp] and [metrics] extras the app did not ask for (PyJWT comes with firebase-admin).
    assert not {"aiohttp", "aws_lambda_powertools"} & packages


def test_the_packaged_template_passes_cfn_lint(packaged_adopter: Path) -> None:
    result = subprocess.run(
        [str(CFN_LINT), str(packaged_adopter / "sam.json")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
