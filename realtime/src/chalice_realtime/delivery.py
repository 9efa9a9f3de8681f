"""What became of one notify: the report the notifier returns and its observers receive."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeliveryReport:
    """What became of one notify: frames delivered, connections found gone (and
    deleted), frames that still failed after retries, and what was handed to the
    fan-out workers (docs/architecture.md): `deferred` frames to connections already
    read, `deferred_users` users whose connections (or the rest of them) a worker reads,
    `deferred_topics` topics whose subscribers (the rest of them, a number not known
    until read) a worker reads.
    """

    delivered: int = 0
    gone: int = 0
    failed: int = 0
    deferred: int = 0
    deferred_users: int = 0
    deferred_topics: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.delivered + other.delivered,
            self.gone + other.gone,
            self.failed + other.failed,
            self.deferred + other.deferred,
            self.deferred_users + other.deferred_users,
            self.deferred_topics + other.deferred_topics,
        )

    @property
    def connections(self) -> int:
        return self.delivered + self.gone + self.failed + self.deferred
