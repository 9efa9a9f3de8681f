"""`python -m devserver --app-dir`: which app the local stack serves, and what it refuses to serve."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import app as project_app
from devserver.config import PROJECT_ROOT, StackConfig
from devserver.lambdas import AppNotFound, load_app


def test_the_project_is_served_unless_another_app_is_named(tmp_path: Path) -> None:
    assert StackConfig.from_args([], {}).app_dir == str(PROJECT_ROOT)
    assert StackConfig.from_args([], {"DEV_APP_DIR": str(tmp_path)}).app_dir == str(tmp_path)
    assert StackConfig.from_args([f"--app-dir={tmp_path}"], {"DEV_APP_DIR": "/elsewhere"}).app_dir == str(
        tmp_path
    )


@pytest.fixture(autouse=True)
def own_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """`load_app` puts the app's folder first on `sys.path`; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_a_folder_without_app_py_is_refused_with_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(AppNotFound, match=r"has no app\.py: --app-dir names a Chalice app's folder"):
        load_app(tmp_path)


def test_an_app_whose_module_comes_from_elsewhere_is_refused(tmp_path: Path) -> None:
    """This process imported the project's `app` already: serving it as the other app's would lie."""
    (tmp_path / "app.py").write_text("from chalice import Chalice\napp = Chalice(app_name='other')\n")
    with pytest.raises(AppNotFound, match=r"`app` was imported from .*app\.py, not from the app's folder"):
        load_app(tmp_path)
    assert load_app(PROJECT_ROOT) is project_app.app
