"""`chalice package` of a brand-new app that adopted the core as docs/adopt.md says, with its merge template.

The app's dependency layer is built once (about a minute on a clean clone) and kept in this
project's `.chalice/deployments/` beside the project's own, under Chalice's own cache name
(the hash of the app's requirements.txt), so later runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from infra.adopt import adopter_template
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
    "APIHandler": "app.app",
}


def _layer_name(app_dir: Path) -> str:
    """The cache name Chalice gives the app's dependency layer (chalice.deploy.packager)."""
    digest = hashlib.md5((app_dir / "requirements.txt").read_bytes(), usedforsecurity=False).hexdigest()
    return f"managed-layer-{digest}-{RUNTIME}.zip"


@pytest.fixture(scope="module")
def packaged_adopter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The adopting app's `chalice package` output directory (`sam.json`, the zips)."""
    app_dir = create_adopting_app(tmp_path_factory.mktemp("adopter") / "my-app")
    layer = _layer_name(app_dir)
    deployments = app_dir / ".chalice" / "deployments"
    deployments.mkdir()
    if (LAYER_CACHE / layer).exists():
        shutil.copy(LAYER_CACHE / layer, deployments / layer)
    result = subprocess.run(
        [str(CHALICE), "package", "--stage", "dev", "--merge-template", "realtime-resources.json", "out"],
        cwd=app_dir,
        env={**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"chalice package:\n{result.stdout}\n{result.stderr}"
    if not (LAYER_CACHE / layer).exists() and (deployments / layer).exists():
        LAYER_CACHE.mkdir(parents=True, exist_ok=True)
        shutil.copy(deployments / layer, LAYER_CACHE / layer)
    return app_dir / "out"


@pytest.fixture(scope="module")
def adopter_template_packaged(packaged_adopter: Path) -> dict[str, Any]:
    return dict(json.loads((packaged_adopter / "sam.json").read_text()))


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def test_the_package_has_the_websocket_api_its_three_routes_and_the_core_functions(
    adopter_template_packaged: dict[str, Any],
) -> None:
    template = adopter_template_packaged
    (api,) = of_type(template, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    routes = {r["Properties"]["RouteKey"] for r in of_type(template, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"$connect", "$disconnect", "$default"}
    functions = of_type(template, "AWS::Serverless::Function")
    assert {name: f["Properties"]["Handler"] for name, f in functions.items()} == CORE_FUNCTIONS
    assert {f["Properties"]["Runtime"] for f in functions.values()} == {RUNTIME}
    # The REST route the adopting app declared, behind the core's authorizer.
    swagger = of_type(template, "AWS::Serverless::Api")["RestAPI"]["Properties"]["DefinitionBody"]
    assert swagger["paths"]["/orders"]["post"]["security"] == [{"realtime_auth": []}]


def test_the_merge_template_gives_the_table_the_settings_and_the_roles(
    adopter_template_packaged: dict[str, Any],
) -> None:
    template = adopter_template_packaged
    assert of_type(template, "AWS::DynamoDB::Table").keys() == {"ConnectionsTable"}
    for name in CORE_FUNCTIONS:
        variables = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert variables["CONNECTIONS_TABLE"] == {"Ref": "ConnectionsTable"}
        assert variables["FIREBASE_PROJECT_ID"] == {"Ref": "FirebaseProjectId"}
        assert "${WebsocketAPI}" in variables["WEBSOCKET_ENDPOINT"]["Fn::Sub"]
        assert variables["APP_STAGE"] == "dev"  # from the doc's config.json
    merged = adopter_template()["Resources"]
    for role in ("WebsocketConnectRole", "WebsocketMessageRole", "WebsocketDisconnectRole", "ApiHandlerRole"):
        assert template["Resources"][role]["Type"] == "AWS::IAM::Role"
        assert template["Resources"][role]["Properties"]["Policies"] == merged[role]["Properties"]["Policies"]


def test_the_layer_carries_the_core_requirements_and_the_app_zip_the_core(packaged_adopter: Path) -> None:
    with zipfile.ZipFile(packaged_adopter / "layer-deployment.zip") as layer:
        packages = {name.split("/")[4] for name in layer.namelist() if name.count("/") > 4}
    assert {"firebase_admin", "pycurl.libs", "aiohttp", "aws_lambda_powertools"} <= packages
    with zipfile.ZipFile(packaged_adopter / "deployment.zip") as app_zip:
        names = set(app_zip.namelist())
    assert {"app.py", "chalicelib/realtime/blueprint.py", "chalicelib/realtime/runtime.py"} <= names
    assert not any(name.startswith(("chalicelib/jobs", "chalicelib/services")) for name in names)


def test_the_packaged_template_passes_cfn_lint(packaged_adopter: Path) -> None:
    result = subprocess.run(
        [str(CFN_LINT), str(packaged_adopter / "sam.json")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
