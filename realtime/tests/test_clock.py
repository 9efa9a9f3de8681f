"""The one clock and the one timestamp format the API and the logs show."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
from chalice_realtime.clock import SYSTEM_CLOCK, epoch_ms, iso_utc

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize(
    ("millis", "shown"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1_714_564_800_123, "2024-05-01T12:00:00.123Z"),
        (1_714_564_800_999, "2024-05-01T12:00:00.999Z"),  # never rounded up into the next second
        (1_714_564_801_000, "2024-05-01T12:00:01.000Z"),
    ],
)
def test_timestamps_are_iso_8601_utc_with_milliseconds(millis: int, shown: str) -> None:
    assert iso_utc(millis) == shown
    assert datetime.fromisoformat(shown).timestamp() * 1000 == pytest.approx(millis)


def test_epoch_ms_truncates_to_whole_milliseconds() -> None:
    assert epoch_ms(1_700_000_000.1239) == 1_700_000_000_123
    assert ISO_UTC.fullmatch(iso_utc(epoch_ms(SYSTEM_CLOCK.now())))


def test_the_system_clock_is_wall_clock_time_and_really_sleeps() -> None:
    before = time.time()
    SYSTEM_CLOCK.sleep(0.02)
    now = SYSTEM_CLOCK.now()
    assert before + 0.02 <= now <= time.time()


def test_log_lines_carry_the_same_timestamp_format_to_the_millisecond() -> None:
    import logging

    from chalice_realtime.observability import JsonFormatter

    record = logging.LogRecord("chalicelib.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created, record.msecs = 1_714_564_800.999, 999.0  # never rounded into the next second
    line = json.loads(JsonFormatter().format(record))
    assert line["timestamp"] == "2024-05-01T12:00:00.999Z"
