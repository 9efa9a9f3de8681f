"""`docs/openapi.yaml` documents exactly the REST routes `app.py` registers, with their auth.

A route added to `app.py` without its document fails here (and so never escapes the fuzzer in
`tests/integration/test_fuzz.py`, which reads the same document).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from app import app

OPENAPI_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def load_document() -> dict[str, Any]:
    """The OpenAPI document of the REST API, parsed."""
    return dict(yaml.safe_load(OPENAPI_PATH.read_text()))


def documented_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> the operation object, for every operation of the document."""
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def app_routes() -> dict[tuple[str, str], Any]:
    """(METHOD, path) -> Chalice's RouteEntry, for every REST route the app registers."""
    return {
        (method, path): entry for path, methods in app.routes.items() for method, entry in methods.items()
    }


def needs_token(document: dict[str, Any], operation: dict[str, Any]) -> bool:
    security = operation.get("security", document.get("security", []))
    return any("firebase" in requirement for requirement in security)


def test_the_document_is_valid_openapi_3() -> None:
    from openapi_spec_validator import validate

    validate(load_document())


def test_every_route_of_the_app_is_documented_and_nothing_else() -> None:
    documented = set(documented_operations(load_document()))
    registered = set(app_routes())
    assert registered - documented == set(), "routes in app.py missing from docs/openapi.yaml"
    assert documented - registered == set(), "operations in docs/openapi.yaml that app.py does not serve"


@pytest.mark.parametrize("route", sorted(app_routes()), ids=" ".join)
def test_each_route_is_documented_with_its_view_name_and_its_auth(route: tuple[str, str]) -> None:
    document = load_document()
    operation = documented_operations(document)[route]
    entry = app_routes()[route]
    assert operation["operationId"] == entry.view_name
    assert needs_token(document, operation) == (entry.authorizer is not None)
    statuses = set(operation["responses"])
    if entry.authorizer is not None:
        assert {"401", "403"} <= statuses, "a protected route documents the token refusals"
    for status, response in operation["responses"].items():
        if status.startswith(("4", "5")):
            assert "application/json" in (response.get("content") or {}) or "$ref" in response


def test_error_bodies_are_chalices_code_and_message() -> None:
    schemas = load_document()["components"]["schemas"]
    assert schemas["Error"]["required"] == ["Code", "Message"]
