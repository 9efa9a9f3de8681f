"""`python -m bench.package_size`'s accounting and report, on zips built here (no `chalice package`)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from bench.package_size import (
    SECTION_END,
    SECTION_START,
    Package,
    Venvs,
    measure_zips,
    render,
    with_section,
)

SITE = "python/lib/python3.13/site-packages/"


def dist_info(
    archive: zipfile.ZipFile, name: str, version: str, files: dict[str, bytes], site: str = ""
) -> None:
    """A distribution as pip installs it: its files, METADATA and a RECORD listing them all."""
    folder = f"{name.replace('-', '_')}-{version}.dist-info"
    for path, data in files.items():
        archive.writestr(site + path, data)
    archive.writestr(f"{site}{folder}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    record = [*files, f"{folder}/METADATA", f"{folder}/RECORD"]
    archive.writestr(f"{site}{folder}/RECORD", "".join(f"{path},,\n" for path in record))


def test_each_file_is_credited_to_the_distribution_whose_record_lists_it(tmp_path: Path) -> None:
    layer, function = tmp_path / "layer.zip", tmp_path / "deployment.zip"
    with zipfile.ZipFile(layer, "w") as archive:
        dist_info(
            archive,
            "pycurl",
            "7.49.0",
            {"pycurl/_pycurl.so": b"x" * 4000, "pycurl.libs/libcurl.so": b"y" * 6000},
            SITE,
        )
        dist_info(
            archive, "aws-lambda-powertools", "3.0", {"aws_lambda_powertools/__init__.py": b"z" * 500}, SITE
        )
    with zipfile.ZipFile(function, "w") as archive:
        archive.writestr("app.py", b"a" * 100)
        archive.writestr("chalice/app.py", b"c" * 300)

    package = measure_zips("an app", [layer, function])

    assert package.by_distribution["pycurl"] >= 10_000
    assert package.by_distribution["aws-lambda-powertools"] >= 500
    assert package.by_distribution["the app's code and Chalice's runtime"] == 400
    assert package.unzipped == sum(package.by_distribution.values())
    assert package.zipped == layer.stat().st_size + function.stat().st_size
    assert package.largest(1) == [("pycurl", package.by_distribution["pycurl"])]


def app(**sizes_mb: float) -> dict[str, int]:
    return {name.replace("_", "-"): int(size * 1_000_000) for name, size in sizes_mb.items()}


def test_the_report_compares_with_before_and_names_what_left_the_package() -> None:
    adopter = Package("adopting app, [fast]", 41_800_000, 24_000_000, app(botocore=21.5, pycurl=17.7))
    now = Package("this app", 109_300_000, 44_600_000, app(botocore=21.5, stripe=13.4))
    before = Package("before", 137_800_000, 52_700_000, app(botocore=21.5, stripe=13.4, aiohttp=7.1, pip=5.7))
    venvs = Venvs(378_100_000, 869_900_000, 426_400_000, 527_000_000, 19.4)

    report = render([adopter], now, before, venvs, "a test machine")

    cells = re.sub(r" +", " ", report)
    assert "| adopting app, [fast] | 41.8 | 24.0 |" in cells
    assert "109.3 MB unzipped against 137.8 MB" in report
    assert "(-28.5 MB;" in report
    assert "Gone from it: aiohttp, pip." in report
    assert "ready in 19 s" in report
    assert "| `make dev` | 378.1 | 426.4 |" in cells


def test_the_report_says_so_when_before_could_not_be_measured() -> None:
    now = Package("this app", 1_000_000, 500_000, app(boto3=1.0))
    report = render([], now, None, None, "a test machine")
    assert "was not measured" in report
    assert "make dev" not in report


def test_only_the_generated_section_is_replaced() -> None:
    page = f"# Deps\n\nkept\n\n{SECTION_START}\n\nold figures\n\n{SECTION_END}\n\nkept too\n"
    assert with_section(page, "new figures") == (
        f"# Deps\n\nkept\n\n{SECTION_START}\n\nnew figures\n\n{SECTION_END}\n\nkept too\n"
    )
    with pytest.raises(RuntimeError):
        with_section("# no markers", "new")
