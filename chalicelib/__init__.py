"""The app's logic. Its realtime core is the `chalice_realtime` package; `notify` is re-exported here.

from chalicelib import notify
report = notify("uid-1", "jobs-updated")  # DeliveryReport(delivered=2, gone=0, failed=0)
"""

from __future__ import annotations

from chalice_realtime import DeliveryReport, notify, notify_users

__all__ = ["DeliveryReport", "notify", "notify_users"]
