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
    rows_csv,
)
from gateway.reports.period import (
    PERIODS,
    calendar_period,
    format_period,
    period_report,
    period_rows,
    totals_csv,
    write_period,
)

__all__ = [
    "PERIODS",
    "AlertTarget",
    "alert_report",
    "alert_target",
    "broadcast_report",
    "calendar_period",
    "format_period",
    "format_report",
    "pct",
    "period_report",
    "period_rows",
    "rows_csv",
    "totals_csv",
    "write_period",
]
