"""The browser library installs as the docs say while it is not on npm: `npm install <clone>/client`, or
the tarball `npm pack` writes, into a project of its own; Node then imports both entry points.
`client/package.json` says where the project lives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
HOME = "https://github.com/chalice-realtime/chalice-realtime"
# What an app sees after installing: the functions it calls, by entry point.
IMPORT_BOTH = """
const core = await import('chalice-realtime-client');
const react = await import('chalice-realtime-client/react').catch((error) => ({ error: error.code }));
console.log(JSON.stringify({ createRealtime: typeof core.createRealtime, react: Object.keys(react).sort() }));
"""


def npm(*args: str, cwd: Path) -> str:
    npm_path = shutil.which("npm")
    if npm_path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm is missing", pytrace=False)
        pytest.skip("npm is missing")
    result = subprocess.run(
        [npm_path, *args, "--no-audit", "--no-fund", "--offline", "--loglevel=error"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"npm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def new_project(path: Path) -> Path:
    path.mkdir()
    (path / "package.json").write_text(json.dumps({"name": "my-app", "private": True, "type": "module"}))
    return path


def imported(project: Path) -> dict[str, object]:
    result = subprocess.run(
        ["node", "--input-type=module", "-e", IMPORT_BOTH],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_npm_install_of_the_client_folder_works(tmp_path: Path) -> None:
    project = new_project(tmp_path / "my-app")
    npm("install", str(CLIENT), cwd=project)

    installed = json.loads((project / "package.json").read_text())["dependencies"]
    assert list(installed) == ["chalice-realtime-client"]
    assert imported(project)["createRealtime"] == "function"


def test_npm_install_of_the_packed_tarball_works(tmp_path: Path) -> None:
    project = new_project(tmp_path / "my-app")
    version = json.loads((CLIENT / "package.json").read_text())["version"]
    npm("pack", str(CLIENT), "--pack-destination", str(tmp_path), cwd=project)
    tarball = tmp_path / f"chalice-realtime-client-{version}.tgz"
    assert tarball.exists()

    npm("install", str(tarball), cwd=project)

    assert (project / "node_modules" / "chalice-realtime-client" / "realtime.js").is_file()
    # React is the app's own optional peer: without it only the React entry point fails to load.
    assert imported(project) == {"createRealtime": "function", "react": ["error"]}


def test_the_package_names_the_projects_home() -> None:
    manifest = json.loads((CLIENT / "package.json").read_text())
    assert manifest["repository"] == {
        "type": "git",
        "url": f"git+{HOME}.git",
        "directory": "client",
    }
    assert manifest["homepage"].startswith(HOME + "/")
    assert manifest["bugs"] == {"url": f"{HOME}/issues"}
