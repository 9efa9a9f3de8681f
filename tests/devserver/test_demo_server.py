"""The demo page's server hands the browser the Firebase JS SDK from node_modules, and nothing else there.

The page's import map (`web/index.html`) must point each bare specifier at the file the package's
own `exports` give a browser, every module reachable from the page's imports must be mapped or
relative, and the server must answer each of those files and refuse everything else under
`/node_modules/`, traversal included.
"""

from __future__ import annotations

import json
import posixpath
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devserver.web import BROWSER_PACKAGES, NODE_MODULES, WEB_ROOT, serve

# What a browser resolves: Chromium's conditions for an ES module import.
BROWSER_CONDITIONS = ("browser", "import", "module", "default")
# Static `import ... from '...'`, `export ... from '...'`, side-effect `import '...'` and `import('...')`.
IMPORT = re.compile(
    r"""(?:^|[;\s}])(?:import|export)\s*(?:[\w*${}\s,]+?\s*from\s*)?["']([^"']+)["']"""
    r"""|\bimport\(\s*["']([^"']+)["']\s*\)""",
    re.MULTILINE,
)


def import_map() -> dict[str, str]:
    assert (NODE_MODULES / "firebase" / "package.json").exists(), "node_modules is missing: `make install`"
    html = (WEB_ROOT / "index.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="importmap">(.*?)</script>', html, re.DOTALL)
    assert match, "web/index.html has no import map"
    imports: dict[str, str] = json.loads(match.group(1))["imports"]
    return imports


def package_of(specifier: str) -> tuple[str, str]:
    """`@firebase/auth` -> ("@firebase/auth", "."), `firebase/app` -> ("firebase", "./app")."""
    parts = specifier.split("/")
    size = 2 if specifier.startswith("@") else 1
    return "/".join(parts[:size]), "./" + "/".join(parts[size:]) if parts[size:] else "."


def browser_target(entry: Any) -> str | None:
    """The file an `exports` entry gives under the browser's conditions."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for condition in BROWSER_CONDITIONS:
            if condition in entry:
                found = browser_target(entry[condition])
                if found:
                    return found
    return None


def resolve_for_browser(specifier: str) -> str:
    """The URL path under /node_modules/ that a browser build of `specifier` lives at."""
    package, subpath = package_of(specifier)
    manifest = json.loads((NODE_MODULES / package / "package.json").read_text(encoding="utf-8"))
    exports = manifest.get("exports")
    if isinstance(exports, dict) and any(key.startswith(".") for key in exports):
        target = browser_target(exports[subpath])
    elif subpath == ".":
        target = browser_target(exports) or manifest.get("module") or manifest["main"]
    else:
        target = subpath
    assert target, f"{specifier}: no browser entry in its package.json"
    return posixpath.normpath(f"/node_modules/{package}/{target}")


@pytest.fixture(scope="module")
def demo_server() -> Iterator[str]:
    server = serve({"restUrl": "http://127.0.0.1:1"}, "whsec_unused", "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_import_map_points_each_package_at_its_browser_es_module() -> None:
    imports = import_map()
    for specifier, url in imports.items():
        if specifier == "chalice-realtime-client":
            assert url == "/client/realtime.js"
            continue
        assert package_of(specifier)[0] in BROWSER_PACKAGES, f"{specifier} is mapped but not served"
        assert url == resolve_for_browser(specifier), specifier


def test_every_module_the_page_reaches_is_mapped_and_served(demo_server: str) -> None:
    imports = import_map()
    pending = [("/demo.js", (WEB_ROOT / "demo.js").read_text(encoding="utf-8"))]
    fetched: set[str] = {"/demo.js"}
    while pending:
        url, source = pending.pop()
        for match in IMPORT.finditer(source):
            specifier = match.group(1) or match.group(2)
            if specifier.startswith(("./", "../", "/")):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(url), specifier))
            else:
                assert specifier in imports, f"{url} imports {specifier!r}, which the import map does not map"
                target = imports[specifier]
            if target in fetched:
                continue
            fetched.add(target)
            response = requests.get(demo_server + target, timeout=5)
            assert response.status_code == 200, f"{target} (from {url}): HTTP {response.status_code}"
            assert response.headers["Content-Type"].startswith("text/javascript"), target
            pending.append((target, response.text))
    assert {"/node_modules/firebase/auth/dist/esm/index.esm.js", "/client/realtime.js"} <= fetched


@pytest.mark.parametrize(
    "path",
    [
        "/node_modules/firebase/package.json",  # not a module
        "/node_modules/firebase-tools/lib/index.js",  # not a package the page uses
        "/node_modules/react/index.js",
        "/node_modules/firebase/../firebase-tools/lib/index.js",
        "/node_modules/%2e%2e/package.json",
        "/node_modules/firebase/%2e%2e/%2e%2e/README.md",
        "/node_modules/@firebase/auth/dist/esm/no-such-file.js",
        "/node_modules/",
        "/node_modules/firebase/",
    ],
)
def test_anything_else_under_node_modules_is_refused(demo_server: str, path: str) -> None:
    for method in ("GET", "HEAD"):
        response = requests.request(method, demo_server + path, timeout=5, allow_redirects=False)
        assert response.status_code == 404, f"{method} {path}: HTTP {response.status_code}"


def test_browser_packages_are_the_ones_the_import_map_uses() -> None:
    used = {package_of(specifier)[0] for specifier in import_map() if specifier != "chalice-realtime-client"}
    assert used == BROWSER_PACKAGES


def test_the_served_sdk_is_the_installed_one(demo_server: str) -> None:
    url = import_map()["firebase/auth"]
    served = requests.get(demo_server + url, timeout=5).content
    assert served == Path(NODE_MODULES / url.removeprefix("/node_modules/")).read_bytes()
