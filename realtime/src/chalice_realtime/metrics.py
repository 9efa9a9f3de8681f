"""Each notify's log line and CloudWatch metrics, told by the notifier after every notify.

One "notified" log line with its own `notify_id`, linked to the current correlation id, and
(with `NotifyMetrics`) one CloudWatch Embedded Metric Format blob (Powertools Metrics) with
delivered, gone, failed and duration. Powertools (about 20 ms to import) is loaded on the
first notify only.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .delivery import DeliveryReport
from .observability import correlation_id, new_id

logger = logging.getLogger(__name__)

NAMESPACE = "ChaliceRealtime"
SERVICE = "chalice-realtime"


class NotifyObserver(Protocol):
    """Told of every notify, after it: its key, how many users, the report, how long it took."""

    def __call__(self, event_key: str, users: int, report: DeliveryReport, duration_ms: float) -> object: ...


def log_notify(event_key: str, users: int, report: DeliveryReport, duration_ms: float) -> str:
    """Log one notify's report with a new `notify_id` (returned), linked to the current correlation id.

    notify_id = log_notify("jobs-updated", 1, DeliveryReport(delivered=2), 12.5)
    """
    notify_id = new_id()
    logger.info(
        "notified",
        extra={
            "notify_id": notify_id,
            "event_key": event_key,
            "users": users,
            "delivered": report.delivered,
            "gone": report.gone,
            "failed": report.failed,
            "deferred": report.deferred,
            "deferred_users": report.deferred_users,
            "deferred_topics": report.deferred_topics,
            "duration_ms": round(duration_ms, 3),
        },
    )
    return notify_id


class NotifyMetrics:
    """Observer of each notify: the "notified" log line plus one EMF blob on stdout.

    notifier = Notifier(store, transport, observer=NotifyMetrics(stage="prod"))

    Metrics (namespace `ChaliceRealtime`): `delivered`, `gone`, `failed`, `deferred` (Count) and `duration`
    (Milliseconds), per dimension sets [service, stage] and [service, stage, event_key]; the
    blob also carries `notify_id` and `correlation_id` for Logs Insights. Powertools' own
    `POWERTOOLS_METRICS_DISABLED=true` silences them.
    """

    def __init__(self, stage: str, *, namespace: str = NAMESPACE, service: str = SERVICE) -> None:
        self._stage = stage
        self._namespace = namespace
        self._service = service

    def __call__(self, event_key: str, users: int, report: DeliveryReport, duration_ms: float) -> None:
        notify_id = log_notify(event_key, users, report, duration_ms)
        try:
            self._emit(event_key, report, duration_ms, notify_id)
        except Exception:
            # A metric lost must never cost the caller its notify.
            logger.exception("could not emit notify metrics", extra={"notify_id": notify_id})

    def _emit(self, event_key: str, report: DeliveryReport, duration_ms: float, notify_id: str) -> None:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=self._namespace, service=self._service)
        metrics.add_dimension("service", self._service)
        metrics.add_dimension("stage", self._stage)
        metrics.add_dimensions(service=self._service, stage=self._stage, event_key=event_key)
        metrics.add_metric("delivered", MetricUnit.Count, report.delivered)
        metrics.add_metric("gone", MetricUnit.Count, report.gone)
        metrics.add_metric("failed", MetricUnit.Count, report.failed)
        metrics.add_metric("deferred", MetricUnit.Count, report.deferred)
        metrics.add_metric("duration", MetricUnit.Milliseconds, round(duration_ms, 3))
        metrics.add_metadata("notify_id", notify_id)
        metrics.add_metadata("correlation_id", correlation_id())
        metrics.flush_metrics(raise_on_empty_metrics=True)
