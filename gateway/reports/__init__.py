"""Coverage: reports — gather what an alert's figures need from the store, apply the
coverage definitions, and say met / not met / in progress against the targets.

Used by the API (`/api/v1/alerts/{id}/coverage`), `warngate report`, the live metrics
and escalation, so that every one of them shows the same figure for the same moment.
"""

from gateway.reports.alert import (
    AlertTarget,
    alert_report,
    alert_target,
    broadcast_report,
    format_report,
    pct,
    period_rows,
    rows_csv,
)

__all__ = [
    "AlertTarget",
    "alert_report",
    "alert_target",
    "broadcast_report",
    "format_report",
    "pct",
    "period_rows",
    "rows_csv",
]
