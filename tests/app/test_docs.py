"""Docs that cannot drift from the code: the README is a short entry point whose Documentation table
lists every page of `docs/` once, no relative link is broken, the README's dependency list is
`requirements.txt` and the core's extras, and figures the tests prove are the tests' own.

Links are read from the Markdown outside fenced code blocks; a link to a Markdown heading must
name an existing heading by GitHub's anchor rules.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests import figures

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    kept: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            kept.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(kept)


def links(markdown: str) -> list[str]:
    return LINK.findall(prose(markdown))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = anchor(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved.read_text("utf-8")):
            broken.append(f"{target}: no heading with anchor #{fragment}")
    return broken


PAGES = sorted([README, *DOCS.glob("*.md")])


def test_readme_is_an_entry_point_of_at_most_200_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to a docs/ page"


def test_readme_links_every_docs_page() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README.read_text("utf-8"))}
    unlinked = [page.name for page in DOCS.glob("*.md") if page.resolve() not in linked]
    assert unlinked == [], f"docs pages the README does not link: {unlinked}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_no_relative_link_is_broken(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Checked in CI, without an AWS account\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#checked-in-ci-without-an-aws-account) [ok](https://example.com/x)\n"
        "`[not a link](missing-in-code.md)`\n"
        "```\n[not a link](missing-in-fence.md)\n```\n"
        "[gone](missing.md) [no heading](other.md#nowhere) ![img](missing.png)\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading with anchor #nowhere",
        "missing.png: no such file",
    ]


def test_the_root_license_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text


# ---------------------------------------------------------------- the Documentation table


def section(markdown: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of the same level."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match is not None, f"no section '## {heading}'"
    return match.group(1)


def test_the_documentation_table_lists_every_docs_page_exactly_once() -> None:
    table = "\n".join(
        line
        for line in section(README.read_text("utf-8"), "Documentation").splitlines()
        if line.startswith("|")
    )
    listed = [target.partition("#")[0] for target in links(table)]
    pages = sorted(f"docs/{page.name}" for page in DOCS.glob("*.md"))
    assert sorted(target for target in listed if target.endswith(".md")) == pages
    assert len(listed) == len(set(listed)), (
        f"listed more than once: {sorted(t for t in listed if listed.count(t) > 1)}"
    )


# ---------------------------------------------------------------- the dependency list


def normalized(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(path: Path) -> set[str]:
    """The distributions a requirements file installs itself (`-r` includes not followed)."""
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        wheel = re.match(r".*/([A-Za-z0-9_.]+)-[^-/]+-[^/]*\.whl", line)
        names.add(normalized(wheel.group(1) if wheel else re.split(r"[\[=<>~!; ]", line, maxsplit=1)[0]))
    return names


def listed_items(markdown: str, pattern: str) -> dict[str, str]:
    """The Markdown list items that start with a code span matching `pattern`: its text -> the rest."""
    return {
        m.group(1): m.group(2) for m in re.finditer(rf"^- `({pattern})`:? ?(.*)$", markdown, re.MULTILINE)
    }


def core_extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "realtime" / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def test_the_readme_lists_exactly_the_runtime_requirements() -> None:
    listed = listed_items(section(README.read_text("utf-8"), "Dependencies"), r"[A-Za-z][A-Za-z0-9_.-]*")
    assert {normalized(name) for name in listed} == requirement_names(ROOT / "requirements.txt")


def test_the_readme_lists_the_cores_extras_and_what_each_installs() -> None:
    listed = listed_items(section(README.read_text("utf-8"), "Dependencies"), r"\[[a-z]+\]")
    extras = core_extras()
    assert {name.strip("[]") for name in listed} == set(extras)
    for extra, requirements in extras.items():
        text = normalized(listed[f"[{extra}]"])
        for requirement in requirements:
            name = normalized(re.split(r"[\[=<>~! ]", requirement, maxsplit=1)[0])
            if name != "chalice-realtime":  # `[all]` names the other extras
                assert name in text, f"the README's [{extra}] does not name {name}"


def test_the_readme_names_the_extras_the_app_installs() -> None:
    wheel_line = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if ".whl" in line)
    installed = re.search(r"\.whl(\[[a-z,]+\])", wheel_line)
    assert installed is not None
    listed = listed_items(section(README.read_text("utf-8"), "Dependencies"), "chalice-realtime")
    assert listed["chalice-realtime"].endswith(f"with `{installed[1]}`")


def test_the_requirement_names_are_read_from_pins_extras_and_wheels(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "# a comment\n-r other.txt\n./realtime/dist/chalice_realtime-0.1.0-py3-none-any.whl[fast]\n"
        "PyJWT[crypto]==2.15.1   # why\naws_lambda.powertools==3.0\n"
    )
    assert requirement_names(requirements) == {"chalice-realtime", "pyjwt", "aws-lambda-powertools"}


# ---------------------------------------------------------------- figures the tests prove


@pytest.mark.parametrize("page", figures.pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_the_figures_are_what_python_m_tests_figures_writes(page: Path) -> None:
    text = page.read_text()
    assert figures.render(text, figures.current()) == text, "run `python -m tests.figures`"


def test_every_figure_is_on_a_page() -> None:
    used = {name for page in figures.pages() for name in figures.marked(page.read_text())}
    assert used == set(figures.FIGURES)


def test_a_stale_figure_is_rewritten_and_the_rest_left_alone() -> None:
    page = "**<!-- figure: management-api-faults -->45<!-- /figure --> faults**, 45 elsewhere"
    assert figures.render(page, {"management-api-faults": "46"}) == (
        "**<!-- figure: management-api-faults -->46<!-- /figure --> faults**, 45 elsewhere"
    )
    assert figures.interleavings(4, 3) == 35 and figures.interleavings(6, 3) == 84
