"""What the core's and the app's loggers write, read the way CloudWatch would get it.

    with capture_logs() as logs:
        client.http.get("/me", headers=headers)
    assert {line["correlation_id"] for line in logs.lines()} == {request_id}
    assert "secret" not in logs.text   # redacted and unredacted output alike

Records are formatted by the core's `JsonFormatter` and captured at DEBUG from the loggers
`chalice_realtime.observability.APP_LOGGERS` names, twice: as shipped (secret-shaped values redacted)
and by a formatter that redacts nothing, so a test can tell that no code logs a secret, not merely
that the safety net caught it. `emf_blobs()` reads the metrics (Embedded Metric Format) a notify
printed. Standard library only.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

from .. import observability
from ..observability import JsonFormatter


class CapturedLogs:
    """The log output of a `capture_logs()` block: `stream` as CloudWatch gets it, `raw_stream` unredacted."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.raw_stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        """Every line written so far (redacted), parsed."""
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def since(self, mark: int) -> list[dict[str, Any]]:
        """The lines after the first `mark` (a `len(logs.lines())` taken earlier)."""
        return self.lines()[mark:]

    @property
    def text(self) -> str:
        """Both outputs as text: what a check for a leaked value reads."""
        return self.stream.getvalue() + self.raw_stream.getvalue()


@contextlib.contextmanager
def capture_logs() -> Iterator[CapturedLogs]:
    """Capture the app's loggers at DEBUG until the block ends; their levels are restored after it."""
    captured = CapturedLogs()
    handlers = [logging.StreamHandler(captured.stream), logging.StreamHandler(captured.raw_stream)]
    handlers[0].setFormatter(JsonFormatter())
    handlers[1].setFormatter(JsonFormatter(redact=False))
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in observability.APP_LOGGERS}
    for handler in handlers:
        root.addHandler(handler)
    for name in observability.APP_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield captured
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def emf_blobs(stdout: str) -> list[dict[str, Any]]:
    """The Embedded Metric Format objects printed to `stdout` (e.g. pytest's `capsys.readouterr().out`)."""
    blobs = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [blob for blob in blobs if "_aws" in blob]
