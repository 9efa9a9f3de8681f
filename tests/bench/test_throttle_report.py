"""bench.throttle's verdicts and its generated section, on results made up for the purpose (no timing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.throttle import SECTION_END, SECTION_START, summary, targets, with_section

ROOT = Path(__file__).resolve().parents[2]


def result(
    kind: str, n: int, *, span: float, cpu_per_frame: float, delivered: int | None = None, throttled: int = 0
) -> dict[str, Any]:
    delivered = n if delivered is None else delivered
    return {
        "kind": kind,
        "n": n,
        "wall": span + 0.1,
        "cpu": cpu_per_frame * delivered,
        "delivered": delivered,
        "failed": n - delivered,
        "posts": delivered + throttled,
        "throttled": throttled,
        "span": span,
        "final_rate": 5_000.0 if kind == "ours" else None,
        "in_flight_limit": 150 if kind == "ours" else None,
    }


def runs(
    *,
    delivered: int = 30_000,
    span: float = 6.0,
    throttled: int = 300,
    free_span: float = 1.2,
    cpu: float = 0.00004,
) -> tuple[dict[str, Any], dict[str, Any]]:
    throttled_runs = {
        "ours": result(
            "ours", 30_000, span=span, cpu_per_frame=cpu, delivered=delivered, throttled=throttled
        ),
        "boto3-standard": result("boto3-standard", 30_000, span=30.0, cpu_per_frame=0.0007),
    }
    free = {
        "ours": result("ours", 10_000, span=free_span, cpu_per_frame=cpu),
        "plain": result("plain", 10_000, span=5.0, cpu_per_frame=0.0002),
    }
    return throttled_runs, free


def verdicts(rows: list[list[str]]) -> list[str]:
    return [row[-1] for row in rows]


def test_a_run_within_every_target_is_met() -> None:
    rows = targets(*runs())
    assert verdicts(rows) == ["met"] * 5
    assert rows[1][1] == "6.00 s, 1.09x"  # against (30,000 - 2,500) / 5,000 = 5.5 s
    assert rows[2][1] == "0.01"
    assert all(row[4] == "python -m bench.throttle" for row in rows)


@pytest.mark.parametrize(
    ("changed", "missed"),
    [
        ({"delivered": 29_999}, 0),  # one frame lost
        ({"span": 6.7}, 1),  # 1.22x the ideal
        ({"throttled": 9_001}, 2),  # over 0.3 429s per frame
        ({"free_span": 1.6}, 3),
        ({"cpu": 0.00006}, 4),  # 0.3x the plain client's
    ],
)
def test_a_target_missed_is_reported_not_met(changed: dict[str, Any], missed: int) -> None:
    found = verdicts(targets(*runs(**changed)))
    assert found[missed] == "NOT met"
    assert found.count("met") == 4


def test_the_section_replaces_only_what_is_between_the_markers() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    assert SECTION_START in page and SECTION_END in page
    section = summary(*runs(), "load average 1.0", False)
    written = with_section(page, section)
    assert section.strip() in written
    before, after = page.split(SECTION_START)[0], page.split(SECTION_END)[1]
    assert written.startswith(before) and written.endswith(after)
