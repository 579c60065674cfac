"""Metrics: the Prometheus registry and every metric, owned by one app (none at import).

Label values are bounded: agencies and providers come from configuration, levels,
channels and states from enums, reasons from the stable error codes.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "WeightedHistogram"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)


class WeightedHistogram(Collector):
    """A histogram that takes one observation for many events at once.

    A batch of 500 recipients sent together has one latency; observing it 500 times
    through prometheus_client would cost a call per recipient on the hot path.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = [*sorted(buckets), float("inf")]
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def observe(self, labels: Sequence[str], value: float, count: int = 1) -> None:
        if count <= 0:
            return
        key = tuple(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * len(self.bounds), [0.0]))
            counts[bisect.bisect_left(self.bounds, value)] += count
            total[0] += value * count

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            for key, (counts, total) in sorted(self._series.items()):
                cumulative, buckets = 0, []
                for bound, n in zip(self.bounds, counts, strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
                family.add_metric(list(key), buckets, total[0])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


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

        # -- dispatch ------------------------------------------------------------------
        self.plans = Counter(
            "warngate_plans_total",
            "Alert versions planned, by outcome (planned, skipped, failed).",
            ["outcome"],
            registry=r,
        )
        self.plan_seconds = Histogram(
            "warngate_plan_seconds",
            "Time to plan, render and enqueue one alert version.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.deliveries = Counter(
            "warngate_deliveries_total",
            "Delivery state changes, by channel, provider ('-' for pull channels) and state.",
            ["channel", "provider", "state"],
            registry=r,
        )
        self.send_attempts = Counter(
            "warngate_send_attempts_total",
            "Provider calls, by channel, provider and outcome (ok, retryable, uncertain,"
            " permanent).",
            ["channel", "provider", "outcome"],
            registry=r,
        )
        self.uncertain = Counter(
            "warngate_deliveries_uncertain_total",
            "Deliveries the provider may have taken without saying so (no answer after the"
            " request went out, an unreadable answer): counted as sent, not sent again.",
            ["channel", "provider", "code"],
            registry=r,
        )
        self.credentials_errors = Counter(
            "warngate_provider_credentials_errors_total",
            "Provider calls refused for warngate's credentials (HTTP 401/403).",
            ["provider"],
            registry=r,
        )
        self.send_retries = Counter(
            "warngate_send_retries_total",
            "Provider calls that were retried after a wait.",
            ["channel"],
            registry=r,
        )
        self.dead_letters = Counter(
            "warngate_dead_letters_total",
            "Batches that exhausted their attempts or their alert's lifetime.",
            ["channel", "code"],
            registry=r,
        )
        self.suppressed = Counter(
            "warngate_deliveries_suppressed_total",
            "Deliveries not sent on purpose, by channel and reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.render_fallbacks = Counter(
            "warngate_render_fallbacks_total",
            "Messages rendered in another language than the one asked for.",
            ["channel", "requested", "used"],
            registry=r,
        )
        self.render_failures = Counter(
            "warngate_render_failures_total",
            "Messages that could not be rendered (missing template, over a limit).",
            ["channel", "code"],
            registry=r,
        )
        self.latency = WeightedHistogram(
            "warngate_delivery_latency_seconds",
            "Time from acceptance of the alert to a delivery reaching a state.",
            ["channel", "state"],
            DELIVERY_BUCKETS,
            r,
        )
        self.queue_depth = Gauge(
            "warngate_queue_depth",
            "Stream entries waiting (lag) or taken but not acknowledged (pending).",
            ["queue", "kind"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "warngate_circuit_state",
            "Provider circuit breaker: 0 closed, 1 open, 2 half-open.",
            ["provider"],
            registry=r,
        )
        self.failovers = Counter(
            "warngate_failovers_total",
            "Batches sent through a secondary provider because the primary's circuit was open.",
            ["channel", "primary", "secondary"],
            registry=r,
        )
        self.receipts = Counter(
            "warngate_receipts_total",
            "Receipts received, by channel and source (provider, endpoint, relay).",
            ["channel", "source"],
            registry=r,
        )
        self.receipts_refused = Counter(
            "warngate_receipts_refused_total",
            "Provider receipts refused: the delivery was not sent through that provider"
            " (reason other-provider, or not-sent when no send of it is recorded).",
            ["channel", "provider", "reason"],
            registry=r,
        )
        self.endpoints_connected = Gauge(
            "warngate_endpoints_connected",
            "Devices holding a long-poll or event stream open on this process.",
            registry=r,
        )
        # -- village endpoints: signatures and MQTT (gateway/endpoints/) ---------------
        self.mqtt_connected = Gauge(
            "warngate_mqtt_connected",
            "1 while this process is connected to the MQTT broker (endpoints.mqtt.url).",
            registry=r,
        )
        self.mqtt_published = Counter(
            "warngate_mqtt_published_total",
            "Unit views published as retained MQTT messages (by the leading process).",
            registry=r,
        )
        self.mqtt_reports = Counter(
            "warngate_mqtt_reports_total",
            "Receipts and heartbeats devices published over MQTT, by outcome.",
            ["topic", "outcome"],
            registry=r,
        )
        self.endpoint_refusals = Counter(
            "warngate_endpoint_refusals_total",
            "Messages devices refused (bad signature, expired, replayed ...), as they report.",
            ["reason", "transport"],
            registry=r,
        )

        # -- coverage -------------------------------------------------------------------
        self.alert_coverage = Gauge(
            "warngate_alert_coverage",
            "Coverage of a live alert on confirmed receipts: D, delivery coverage, under"
            " definition v2; the v1 figure where the directory has no households.",
            ["alert", "level"],
            registry=r,
        )
        # Definition v2 (docs/coverage.md), per live alert and per county/prefecture of it
        # (`area`; "" for the whole alert).
        self.delivered = Gauge(
            "warngate_alert_delivered",
            "D: share of the targeted residents in households inside a confirmed footprint.",
            ["alert", "level", "area"],
            registry=r,
        )
        self.delivered_estimate = Gauge(
            "warngate_alert_delivered_estimate",
            "D with sends lacking a receipt counted at their measured P(delivered | no"
            " receipt): an estimate.",
            ["alert", "level", "area"],
            registry=r,
        )
        self.informed = Gauge(
            "warngate_alert_informed",
            "C: persons informed, median and the ends of its 90 % interval (quantile).",
            ["alert", "level", "area", "quantile"],
            registry=r,
        )
        self.time_to_target = Gauge(
            "warngate_alert_time_to_target_minutes",
            "Minutes from acceptance until D or C (median) reached the binding or expected"
            " target; absent while not reached.",
            ["alert", "figure", "target"],
            registry=r,
        )
        self.alert_target = Gauge(
            "warngate_alert_coverage_target",
            "Binding coverage target of a live alert (the strictest of its units).",
            ["alert"],
            registry=r,
        )
        self.alert_past_deadline = Gauge(
            "warngate_alert_past_deadline",
            "1 once a live alert's first unit deadline has passed.",
            ["alert"],
            registry=r,
        )
        self.units_below_target = Gauge(
            "warngate_units_below_target",
            "Units of a live alert whose coverage is below their binding target.",
            ["alert"],
            registry=r,
        )
        self.exercise_coverage = Gauge(
            "warngate_exercise_alert_coverage",
            "Coverage of a live exercise or test alert (never counted as live coverage).",
            ["alert", "level"],
            registry=r,
        )
        self.escalations = Counter(
            "warngate_escalations_total",
            "Escalation steps taken for units below target (checked before and at their deadline).",
            ["step"],
            registry=r,
        )
        self.broadcast_coverage = Gauge(
            "warngate_broadcast_coverage",
            "Share of a county's population within reach of healthy loudspeakers.",
            ["county"],
            registry=r,
        )
        self.endpoints_offline = Gauge(
            "warngate_endpoints_offline",
            "Loudspeakers of a county without a heartbeat within the health window.",
            ["county"],
            registry=r,
        )
        self.endpoints_total = Gauge(
            "warngate_endpoints_total",
            "Loudspeakers configured in a county.",
            ["county"],
            registry=r,
        )
        # -- scheduled tests (canaries.yaml; gateway/console/canary.py) ------------------
        # Each process shows the runs as stored in Redis, so every instance agrees.
        self.canary_runs = Counter(
            "warngate_canary_runs_total",
            "Scheduled test runs finished by this process, by schedule and result (ok, failed).",
            ["schedule", "result"],
            registry=r,
        )
        self.canary_success = Gauge(
            "warngate_canary_last_success",
            "1 when the last finished run of a scheduled test reached every canary receiver.",
            ["schedule"],
            registry=r,
        )
        self.canary_channel_ok = Gauge(
            "warngate_canary_channel_ok",
            "1 when every canary receiver of the channel confirmed in the last run, else 0.",
            ["schedule", "channel"],
            registry=r,
        )
        self.canary_latency = Gauge(
            "warngate_canary_latency_seconds",
            "End-to-end latency of the last run per channel: acceptance to the slowest"
            " canary's confirmation.",
            ["schedule", "channel"],
            registry=r,
        )
        self.canary_last_run = Gauge(
            "warngate_canary_last_run_timestamp_seconds",
            "When the last run of a scheduled test started (Unix time).",
            ["schedule"],
            registry=r,
        )
        self.canary_slot = Gauge(
            "warngate_canary_slot_timestamp_seconds",
            "When the latest scheduled run of a test was due (Unix time): later than its last"
            " run by more than a few minutes, that run was missed.",
            ["schedule"],
            registry=r,
        )
        self.canary_next_run = Gauge(
            "warngate_canary_next_run_timestamp_seconds",
            "When the next run of a scheduled test is due (Unix time).",
            ["schedule"],
            registry=r,
        )
        # The process's background loops (gateway/aio.py: LoopHealth).
        self.loop_failing = Gauge(
            "warngate_loop_failing",
            "1 while a background loop's last round failed (it is restarted), else 0.",
            ["loop"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
