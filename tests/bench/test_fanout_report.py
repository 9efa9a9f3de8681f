"""bench.fanout's verdicts and its generated section, on results made up for the purpose (no timing)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fanout import BASELINE, OURS, SECTION_END, SECTION_START, targets, with_section


def result(kind: str, n: int, fanout: float, cpu_per_frame: float) -> dict[str, Any]:
    delivered = n - n // 20
    return {
        "kind": kind,
        "n": n,
        "fanout": fanout,
        "cpu": cpu_per_frame * delivered,
        "delivered": delivered,
        "gone": n // 20,
        "failed": 0,
    }


def run(ours_1000: float, ours_10000: float, cpu_ratio: float) -> dict[str, Any]:
    base_cpu = 0.0008
    return {
        "fanout": [
            result(OURS, 1000, ours_1000, base_cpu * cpu_ratio),
            result(OURS, 10000, ours_10000, base_cpu * cpu_ratio),
            result(BASELINE, 1000, 3.0, base_cpu),
            result(BASELINE, 10000, 30.0, base_cpu),
            result("boto3-sequential", 1000, 20.0, 0.003),
        ],
        "round_trip": 0.021,
    }


def verdicts(rows: list[list[str]]) -> dict[str, str]:
    return {row[0]: row[-1] for row in rows}


def test_every_target_is_met_by_a_fast_cheap_run() -> None:
    fast = run(ours_1000=0.4, ours_10000=4.0, cpu_ratio=0.2)
    rows = targets(fast, fast, 0.02)
    assert set(verdicts(rows).values()) == {"met"}
    cpu = next(row for row in rows if row[0].startswith("CPU per delivered frame, N = 1,000"))
    assert cpu[1:4] == ["0.160 ms", "0.800 ms", "0.20x"]
    assert all(row[5] == "python -m bench.fanout" for row in rows)


@pytest.mark.parametrize(
    ("ours_1000", "ours_10000", "cpu_ratio", "failing"),
    [
        (0.4, 4.0, 0.3, "CPU per delivered frame, N = 10,000, one core"),
        (0.4, 5.2, 0.2, "10,000 connections from one core, fan-out time"),
        (0.5, 4.0, 0.2, "1,000 connections from one core, vs ideal N x 20 ms / 64"),
    ],
)
def test_a_target_missed_is_reported_not_met(
    ours_1000: float, ours_10000: float, cpu_ratio: float, failing: str
) -> None:
    slow = run(ours_1000, ours_10000, cpu_ratio)
    assert verdicts(targets(slow, slow, 0.02))[failing] == "NOT met"


def test_the_generated_section_is_replaced_and_the_rest_of_the_page_kept() -> None:
    page = f"# Performance\n\nprose\n\n{SECTION_START}\n\nold table\n\n{SECTION_END}\n\nmore prose\n"
    updated = with_section(page, "new table")
    assert (
        updated == f"# Performance\n\nprose\n\n{SECTION_START}\n\nnew table\n\n{SECTION_END}\n\nmore prose\n"
    )
    assert with_section(updated, "new table") == updated


def test_a_page_without_the_markers_is_refused() -> None:
    with pytest.raises(RuntimeError, match="no section"):
        with_section("# Performance\n", "table")
