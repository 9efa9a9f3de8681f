"""What became of one notify: the report the notifier returns and its observers receive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryReport:
    """What became of one notify: frames delivered, connections found gone (and
    deleted), and frames that still failed after retries."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.delivered + other.delivered, self.gone + other.gone, self.failed + other.failed
        )

    @property
    def connections(self) -> int:
        return self.delivered + self.gone + self.failed
