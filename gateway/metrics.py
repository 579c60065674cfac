"""Metrics: the Prometheus registry and every metric, owned by one app (none at import).

Label values are bounded: agencies and providers come from configuration, levels,
channels and states from enums, reasons from the stable error codes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.alerts_received = Counter(
            "warngate_alerts_received_total",
            "Alert posts received, by authenticated agency ('unknown' before authentication).",
            ["agency"],
            registry=r,
        )
        self.alerts_accepted = Counter(
            "warngate_alerts_accepted_total",
            "Alerts accepted and queued, by agency, level and message type.",
            ["agency", "level", "msg_type"],
            registry=r,
        )
        self.alerts_duplicate = Counter(
            "warngate_alerts_duplicate_total",
            "Posts of an alert already stored (answered 200 with the same id).",
            ["agency"],
            registry=r,
        )
        self.alerts_rejected = Counter(
            "warngate_alerts_rejected_total",
            "Alert posts refused, by agency and reason (the problem code).",
            ["agency", "reason"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "warngate_ingest_seconds",
            "Time from request to answer for alert posts.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts_expired = Counter(
            "warngate_alerts_expired_total",
            "Alerts moved to the expired state by the sweeper.",
            registry=r,
        )
        self.live_alerts = Gauge(
            "warngate_live_alerts",
            "Alerts in the active state, as last counted.",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
