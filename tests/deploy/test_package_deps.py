"""What this app's deployment package leaves out: the transport it does not use (aiohttp: its default is
curl), Chalice's command line and its dependencies (Chalice's packager ships only `chalice/app.py`), the
local stack's stand-ins and the test tools. Sizes per extra set: `python -m bench.package_size`."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import STAGES

NEVER_SHIPPED = {
    "aiohttp",  # REALTIME_TRANSPORT=curl: the app installs the core's [fast], not [aiohttp]
    "chalice",  # its runtime module comes with the packager; the distribution brings the CLI's deps
    "click",
    "inquirer",
    "pip",
    "setuptools",
    "pyyaml",
    "moto",
    "werkzeug",
    "pytest",
    "websockets",
    "playwright",
}

pytestmark = pytest.mark.timeout(900)


def distributions(packaged: Path) -> set[str]:
    """The normalized name of every distribution in the stage's zips (from each `.dist-info/METADATA`)."""
    names = set()
    for archive in packaged.glob("*.zip"):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if name.endswith(".dist-info/METADATA"):
                    found = re.search(
                        r"^Name: (.+)$", zipped.read(name).decode(errors="replace"), re.MULTILINE
                    )
                    assert found, name
                    names.add(re.sub(r"[-_.]+", "-", found.group(1).strip()).lower())
    return names


@pytest.mark.parametrize("stage", STAGES)
def test_the_package_ships_the_core_and_its_transport_but_nothing_the_app_does_not_run(
    packaged: dict[str, Path], stage: str
) -> None:
    shipped = distributions(packaged[stage])
    assert {"chalice-realtime", "pycurl", "boto3", "firebase-admin"} <= shipped
    assert shipped & NEVER_SHIPPED == set()
    with zipfile.ZipFile(packaged[stage] / "deployment.zip") as zipped:
        assert "chalice/app.py" in zipped.namelist()  # Chalice's runtime, from the packager itself
