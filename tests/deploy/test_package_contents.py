"""What `chalice package` ships: pycurl's and cryptography's shared objects, built for the Lambda runtime.

Chalice takes the runtime from the interpreter that runs it and accepts a wheel only if its glibc
tag fits that runtime (2.34 on Amazon Linux 2023, python3.12 and later). pycurl publishes
manylinux_2_28 wheels only, so under python3.11 (Amazon Linux 2, glibc 2.26) the notifier's
transport would be missing from the package: this checks that it is there and loadable there.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import STAGES

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
SITE_PACKAGES = f"{'python/lib/' + RUNTIME}/site-packages/"
ABI = f"cp{sys.version_info.major}{sys.version_info.minor}"
# Amazon Linux 2023, the OS of the python3.12 and later runtimes.
LAMBDA_GLIBC = (2, 34)

pytestmark = pytest.mark.timeout(900)


def shipped(packaged: dict[str, Path], stage: str) -> dict[str, bytes]:
    """Every file in the stage's deployment and layer zips, by path inside the zip."""
    files: dict[str, bytes] = {}
    for archive in sorted(packaged[stage].glob("*.zip")):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                files[name] = zipped.read(name) if name.endswith((".so", "WHEEL")) or ".so." in name else b""
    return files


def functions_and_layers(template: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    resources = template["Resources"].values()
    functions = [r["Properties"] for r in resources if r["Type"] == "AWS::Serverless::Function"]
    layers = [r["Properties"] for r in resources if r["Type"] == "AWS::Serverless::LayerVersion"]
    return functions, layers


@pytest.mark.parametrize("stage", STAGES)
def test_every_function_and_the_layer_are_for_python_3_13(
    templates: dict[str, dict[str, Any]], stage: str
) -> None:
    functions, layers = functions_and_layers(templates[stage])
    assert RUNTIME == "python3.13", "package with the project's Python (make package)"
    assert {f["Runtime"] for f in functions} == {RUNTIME}
    assert [layer.get("CompatibleRuntimes") for layer in layers] == [[RUNTIME]]


@pytest.mark.parametrize("stage", STAGES)
def test_the_package_carries_pycurl_and_libcurl_built_for_the_lambda_runtime(
    packaged: dict[str, Path], stage: str
) -> None:
    files = shipped(packaged, stage)
    extension = f"{SITE_PACKAGES}pycurl/_pycurl.{ABI.replace('cp', 'cpython-')}-x86_64-linux-gnu.so"
    assert extension in files, f"pycurl's extension module is missing from the package for {RUNTIME}"
    libcurl = [
        name for name in files if re.fullmatch(rf"{SITE_PACKAGES}pycurl\.libs/libcurl-\w+\.so[.\d]*", name)
    ]
    assert len(libcurl) == 1, "the libcurl that pycurl's wheel bundles is missing"
    for name in (extension, *libcurl):
        assert_runs_on_lambda(name, files[name])
    (wheel,) = [
        name for name in files if re.fullmatch(rf"{SITE_PACKAGES}pycurl-[\d.]+\.dist-info/WHEEL", name)
    ]
    tags = re.findall(r"^Tag: (\S+)$", files[wheel].decode(), re.MULTILINE)
    assert tags and all(tag.startswith(f"{ABI}-{ABI}-manylinux") for tag in tags), tags
    for tag in tags:
        major, minor = map(int, re.findall(r"manylinux_(\d+)_(\d+)", tag)[0])
        assert (major, minor) <= LAMBDA_GLIBC


@pytest.mark.parametrize("stage", STAGES)
def test_the_package_carries_pyjwt_and_cryptography_built_for_the_lambda_runtime(
    packaged: dict[str, Path], stage: str
) -> None:
    # AUTH_PROVIDER=oidc verifies RS256/ES256 signatures with PyJWT on cryptography's Rust extension:
    # an abi3 wheel, so one built for any CPython >= 3.7 runs on python3.13.
    files = shipped(packaged, stage)
    assert f"{SITE_PACKAGES}jwt/jwks_client.py" in files
    extension = f"{SITE_PACKAGES}cryptography/hazmat/bindings/_rust.abi3.so"
    assert extension in files, f"cryptography's extension module is missing from the package for {RUNTIME}"
    assert_runs_on_lambda(extension, files[extension])
    (wheel,) = [
        name for name in files if re.fullmatch(rf"{SITE_PACKAGES}cryptography-[\d.]+\.dist-info/WHEEL", name)
    ]
    tags = re.findall(r"^Tag: (\S+)$", files[wheel].decode(), re.MULTILINE)
    assert tags and all(re.fullmatch(r"cp3\d+-abi3-manylinux_\d+_\d+_x86_64", tag) for tag in tags), tags


def assert_runs_on_lambda(name: str, data: bytes) -> None:
    """`data` (the file `name`) is an x86-64 ELF object needing no newer glibc than Lambda's."""
    assert data[:4] == b"\x7fELF" and data[18:20] == b"\x3e\x00", f"{name} is not an x86-64 ELF object"
    needed = {tuple(map(int, v)) for v in re.findall(rb"GLIBC_(\d+)\.(\d+)", data)}
    assert needed and max(needed) <= LAMBDA_GLIBC, f"{name} needs glibc {max(needed)}"


@pytest.mark.parametrize("stage", STAGES)
def test_the_core_is_shipped_once_from_its_wheel(packaged: dict[str, Path], stage: str) -> None:
    files = shipped(packaged, stage)
    inits = [name for name in files if name.endswith("chalice_realtime/__init__.py")]
    assert inits == [f"{SITE_PACKAGES}chalice_realtime/__init__.py"], inits
    assert any(
        re.fullmatch(rf"{SITE_PACKAGES}chalice_realtime-[\d.]+\.dist-info/RECORD", name) for name in files
    )
    assert not [name for name in files if name.split("/")[:2] == ["chalicelib", "realtime"]]  # no copy
