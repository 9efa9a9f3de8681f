"""What docs/adopt.md hands an adopting app is cut from this project's own sources, and stays so.

The page's generated blocks are what `python -m infra.adopt docs` writes today; the core's
requirements are the project's pins and cover every library the core imports; the merge
template carries every statement the project gives the core's functions and nothing of its features.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from infra import adopt
from infra.cfn import references
from infra.tables import template

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "chalicelib" / "realtime"


def pins(path: Path) -> dict[str, str]:
    """Distribution name (normalised) -> pinned version of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.\[\]-]+)==([^\s#]+)", line)
        if match:
            found[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return found


def test_the_generated_blocks_of_docs_adopt_md_are_up_to_date() -> None:
    text = adopt.ADOPT_DOC.read_text()
    blocks = adopt.doc_blocks()
    assert set(adopt.generated_names(text)) == set(blocks)
    assert adopt.render_doc(text, blocks) == text, "run `python -m infra.adopt docs`"


def test_the_core_requirements_are_pinned_as_the_project_pins_them() -> None:
    core, project = pins(CORE / "requirements.txt"), pins(ROOT / "requirements.txt")
    assert core, "chalicelib/realtime/requirements.txt pins nothing"
    assert {name: project.get(name) for name in core} == core


def test_every_library_the_core_imports_is_in_its_requirements() -> None:
    imported = set()
    for source in CORE.glob("*.py"):
        tree = ast.parse(source.read_text())
        # Imports for the type checker only (stubs such as types-boto3) never run.
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "__future__"}
    listed = set(pins(CORE / "requirements.txt"))
    # Imported modules that come with something else: the app itself brings Chalice.
    brought_by = {"chalice": "", "botocore": "boto3", "yarl": "aiohttp", "google": "firebase-admin"}
    distributions = importlib.metadata.packages_distributions()
    for name in sorted(third_party):
        if name in brought_by:
            assert not brought_by[name] or brought_by[name] in listed, name
            continue
        provided_by = {dist.lower().replace("_", "-") for dist in distributions.get(name, [name])}
        assert provided_by & listed, f"the core imports {name} ({provided_by}), not in its requirements.txt"


def test_the_core_functions_keep_every_statement_the_project_gives_them() -> None:
    project = template()["Resources"]
    merged = adopt.adopter_template()["Resources"]
    for function in ("RealtimeAuth", "WebsocketConnect", "WebsocketMessage", "WebsocketDisconnect"):
        role = f"{function}Role"
        assert merged[role] == {"Properties": project[role]["Properties"]}, role
        assert merged[f"{function}Logs"] == project[f"{function}Logs"]
    statements = merged["ApiHandlerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Sid"] for s in statements] == [
        "OwnLogGroup",
        "Tracing",
        "FindConnectionsOfUser",
        "DeleteGoneConnections",
        "PostFrames",
    ]


def test_the_merge_template_refers_only_to_what_it_or_chalice_defines() -> None:
    merged = adopt.adopter_template()
    defined = set(merged["Resources"]) | set(merged["Parameters"]) | {"WebsocketAPI", "RestAPI"}
    used = {ref for ref in references(merged) if not ref.startswith("AWS::")}
    assert used <= defined, used - defined
    assert not {"JobsTable", "MessagesTable", "PaymentsTable", "JobsTopic"} & used


def test_the_functions_get_the_core_variables_only() -> None:
    core_variables = set(adopt.core_environment_variables())
    for name, resource in adopt.adopter_template()["Resources"].items():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables")
        if variables is not None:
            assert set(variables) == {"FIREBASE_PROJECT_ID", "CONNECTIONS_TABLE", "WEBSOCKET_ENDPOINT"}, name
            assert set(variables) <= core_variables


def test_the_core_settings_read_the_variables_the_page_lists() -> None:
    listed = re.findall(r"^\| `([A-Z0-9_]+)` \|", adopt.environment_table(), re.MULTILINE)
    assert listed == adopt.core_environment_variables()
    assert {"CONNECTIONS_TABLE", "WEBSOCKET_ENDPOINT", "FIREBASE_PROJECT_ID", "APP_STAGE"} <= set(listed)


def test_reading_the_core_functions_leaves_the_process_blueprint_alone() -> None:
    """Generating the page in a process that serves the app (tests, the local stack) changes nothing."""
    from chalice_realtime import realtime

    import app as project_app

    before = realtime.current_app
    assert before is project_app.app
    assert adopt.core_functions() == [
        "realtime_auth",
        "websocket_connect",
        "websocket_disconnect",
        "websocket_message",
    ]
    assert realtime.current_app is before
