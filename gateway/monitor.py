"""Coverage: the live monitor — coverage gauges for duty operators, escalation checked
before and at each unit's deadline, and the figures kept for periodic statistics.

Every `coverage.interval_s` seconds, for each live alert: its figures now — D and C
(definition v2) where the directory has households, the v1 figure elsewhere — the
target and whether its deadline has passed go to Prometheus (exercise and test alerts
under their own metric, never mixed with live ones). Each unit is checked once at each
checkpoint (`coverage.checkpoints`, shares of its deadline: by default at half of it
and at it). At an early checkpoint a unit is short when its trajectory — D with the
unconfirmed sends at their measured probability, or D extrapolated from its last two
minutes, whichever is higher — does not reach the target by the deadline; at the
deadline, when D itself has not. A short unit gets the next step of its escalation
ladder, recorded in the audit stream and the coverage report. Under v1 only the
deadline is checked. Any number of processes may run the monitor: each check is
claimed in Redis.

The alert's figures (not per-recipient data: aggregates, for `warngate report
--period` long after receipts expire) are written at most once a minute while it is
live, and once more when it leaves the live set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.codes import Tier
from gateway.config import Config
from gateway.coverage import alert_coverage, broadcast_coverage, rollup_broadcast
from gateway.escalation import next_step
from gateway.metrics import Metrics
from gateway.models import AlertRecord, Channel, MsgType
from gateway.planner import Planner
from gateway.policy import UnitPolicy
from gateway.reports import alert_report, write_period
from gateway.reports.figures import figures_of
from gateway.reports.v2 import applies, inputs, measured
from gateway.store import Store, now_ms

__all__ = ["Monitor", "checkpoint_key"]

log = logging.getLogger("warngate.monitor")
FIGURES_EVERY_S = 60.0
PERIODIC_EVERY_S = 600.0
BROADCAST_EVERY_S = 3600.0


def checkpoint_key(unit: str, share: float) -> str:
    """The escalation record of a unit at one checkpoint (`652301001001@0.5`)."""
    return f"{unit}@{share:g}"


class Monitor:
    def __init__(self, config: Config, store: Store, planner: Planner, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.planner = planner
        self.metrics = metrics
        self._shown: set[tuple[str, ...]] = set()
        self._live: set[str] = set()
        self._figures_at: dict[str, float] = {}
        self._periodic_at = -1e18
        self._broadcast_at = -1e18

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.tick()
                await self.periodic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("coverage monitor failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def tick(self, now: int | None = None) -> list[dict[str, object]]:
        """One round: gauges refreshed, due checks made; returns the escalations taken."""
        now = now or now_ms()
        taken: list[dict[str, object]] = []
        shown: set[tuple[str, ...]] = set()
        live = await self.store.live_ids()
        records = await self.store.get_alerts(live)
        for record in records:
            if record.alert.msgType is MsgType.CANCEL:
                continue
            taken += await self._alert(record, now, shown)
        for labels in self._shown - shown:
            self._remove(labels)
        self._shown = shown
        ended = self._live - set(live)
        for record in await self.store.get_alerts(sorted(ended)):
            await self._keep_figures(record, now, force=True)
        for alert in ended:
            self._figures_at.pop(alert, None)
        self._live = set(live)
        await self._broadcast(now)
        return taken

    async def periodic(self, now: datetime | None = None) -> list[str]:
        """Statistics of each completed calendar period into `coverage.reports_dir`, if
        set (looked at once every ten minutes; a period's files are written once)."""
        settings = self.config.settings.coverage
        if settings.reports_dir is None:
            return []
        if time.monotonic() - self._periodic_at < PERIODIC_EVERY_S and now is None:
            return []
        self._periodic_at = time.monotonic()
        at = now or datetime.now(UTC)
        units = self.config.directory.units
        tz = (self.config.policy.for_unit(units[0]) if units else UnitPolicy()).tz()
        written = []
        for period in settings.reports_periods:
            path = await write_period(self.config, self.store, period, at, settings.reports_dir, tz)
            if path is not None:
                log.info("wrote %s statistics to %s", period, path)
                written.append(str(path))
        return written

    async def _keep_figures(self, record: AlertRecord, now: int, *, force: bool = False) -> None:
        """The alert's figures for periodic statistics (aggregates that outlive
        per-recipient data), at most once a minute unless `force`."""
        last = self._figures_at.get(record.id, -1e18)
        if not force and time.monotonic() - last < FIGURES_EVERY_S:
            return
        self._figures_at[record.id] = time.monotonic()
        report = await alert_report(self.config, self.store, record, now=now)
        if not report.get("planned"):
            return
        reached = report.get("time_to_target") or {}
        for figure in ("delivered", "informed"):
            for target in ("binding", "expected"):
                minutes = (reached.get(figure) or {}).get(target)
                gauge = self.metrics.time_to_target
                if minutes is not None and not record.exercise and not force:
                    gauge.labels(record.id, figure, target).set(minutes)
                else:
                    with contextlib.suppress(KeyError):
                        gauge.remove(record.id, figure, target)
        keep = self.store.keep_s(int(record.expires.timestamp() * 1000), report=True)
        await self.store.save_coverage_summary(record.id, figures_of(record, report), keep)

    async def _alert(
        self, record: AlertRecord, now: int, shown: set[tuple[str, ...]]
    ) -> list[dict[str, object]]:
        summary = await self.store.plan_summary(record.id)
        if summary is None:
            return []
        accepted = int(record.received.timestamp() * 1000)
        minute = max(0.0, (now - accepted) / 60_000)
        units = sorted(summary.get("units", {}))
        policies = {u: self.config.policy.for_unit(u) for u in units}
        deadline_min = {u: p.targets.deadline_minutes[record.level] for u, p in policies.items()}
        targets = {u: p.targets.binding for u, p in policies.items()}
        v2 = applies(self.config, summary)
        labels = (record.id, record.level.value)
        # unit → (figure now, and per checkpoint: (is short, the record's figures))
        checks: dict[str, dict[float, tuple[bool, dict[str, Any]]]] = {}
        if v2:
            inp = await inputs(self.config, self.store, record, summary)
            # The arithmetic in a worker thread: the event loop serves devices meanwhile.
            current = await asyncio.to_thread(measured, inp, self.config, record, minute)
            figure = current.delivered
            per_unit = {u.unit: u.delivered for u in current.units}
            if not record.exercise:
                self._v2_gauges(labels, current)
                shown.add(("v2", *labels))
            for share in self.config.settings.coverage.checkpoints:
                for u in units:
                    at = share * deadline_min[u]
                    if minute >= at:
                        checks.setdefault(u, {})[share] = self._v2_check(
                            inp, u, at, deadline_min[u], targets[u], share
                        )
        else:
            aggregates = await self.store.aggregates(record.id)
            cov = alert_coverage(summary, aggregates, self.config.directory, self.config.policy)
            figure = cov.estimate
            per_unit = {u.unit: u.estimate for u in cov.units}
            for u in units:
                if minute >= deadline_min[u]:
                    value = per_unit.get(u, 0.0)
                    checks.setdefault(u, {})[1.0] = (
                        value < targets[u],
                        {"coverage": round(value, 4)},
                    )
        first_deadline = min(deadline_min.values(), default=0)
        if record.exercise:
            self.metrics.exercise_coverage.labels(*labels).set(figure)
            shown.add(("exercise", *labels))
        else:
            self.metrics.alert_coverage.labels(*labels).set(figure)
            self.metrics.alert_target.labels(record.id).set(max(targets.values(), default=0.0))
            self.metrics.alert_past_deadline.labels(record.id).set(int(minute >= first_deadline))
            below = sum(1 for u, v in per_unit.items() if v < targets.get(u, 0.0))
            self.metrics.units_below_target.labels(record.id).set(below)
            shown.add(("live", *labels))
        taken = await self._escalate(record, summary, policies, checks, now)
        await self._keep_figures(record, now)
        return taken

    def _v2_check(
        self, inp: Any, unit: str, at: float, deadline: int, target: float, share: float
    ) -> tuple[bool, dict[str, Any]]:
        """Is the unit short at this checkpoint? At the deadline: D itself; before it: its
        trajectory (D with unconfirmed sends, or D's last two minutes extrapolated)."""
        k = inp.targets.units.index(unit)
        got = inp.prepared.at(at)
        d = float(got.delivered[k])
        facts: dict[str, Any] = {"coverage": round(d, 4), "minute": round(at, 1)}
        if share >= 1.0:
            return d < target, facts
        earlier = float(inp.prepared.at(max(0.0, at - 2)).delivered[k])
        slope = max(0.0, (d - earlier) / min(2.0, at)) if at > 0 else 0.0
        projected = min(1.0, max(float(got.delivered_estimate[k]), d + slope * (deadline - at)))
        facts["projected"] = round(projected, 4)
        return projected < target, facts

    async def _escalate(
        self,
        record: AlertRecord,
        summary: dict[str, Any],
        policies: Mapping[str, Any],
        checks: Mapping[str, Mapping[float, tuple[bool, dict[str, Any]]]],
        now: int,
    ) -> list[dict[str, object]]:
        if not checks:
            return []
        earlier = await self.store.escalations(record.id)
        taken: list[dict[str, object]] = []
        for unit, by_share in sorted(checks.items()):
            for share, (short, facts) in sorted(by_share.items()):
                key = checkpoint_key(unit, share)
                if key in earlier:
                    continue
                done = list(summary.get("steps", {}).get(unit, []))
                done += [
                    str(e["step"])
                    for k, e in earlier.items()
                    if k.split("@")[0] == unit and e.get("step")
                ]
                step = None
                if short:
                    planned = [Channel(c) for c in summary["units"][unit].get("channels", [])]
                    step = next_step(policies[unit].escalation, done, planned)
                note = {
                    "unit": unit,
                    "checkpoint": share,
                    "checked_at": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
                    **facts,
                    "target": policies[unit].targets.binding,
                    "short": short,
                    "step": step,
                }
                keep = self.store.keep_s(int(record.expires.timestamp() * 1000), report=True)
                if not await self.store.claim_escalation(record.id, key, note, keep):
                    continue  # checked before, here or in another process: once only
                earlier[key] = note
                if step is None:
                    continue
                added = await self.planner.escalate(record, unit, step)
                await self.store.audit_event(
                    {
                        "event": "escalated",
                        "id": record.id,
                        "unit": unit,
                        "checkpoint": f"{share:g}",
                        "step": step,
                        "coverage": f"{facts['coverage']:.4f}",
                        "target": f"{note['target']:.2f}",
                        "deliveries": str(added),
                        "at": str(now),
                    }
                )
                self.metrics.escalations.labels(step).inc()
                log.warning(
                    "escalated %s in %s at %g of its deadline: coverage %.1f%% (projected"
                    " %s) < %.0f%%; step %s (%d)", record.id, unit, share,
                    facts["coverage"] * 100, facts.get("projected", "-"),
                    note["target"] * 100, step, added,
                )  # fmt: skip
                taken.append({**note, "alert": record.id, "deliveries": added})
        return taken

    def _v2_gauges(self, labels: tuple[str, str], current: Any) -> None:
        alert, level = labels
        areas = [("", current.delivered, current.delivered_estimate,
                  (current.informed_low, current.informed, current.informed_high))]  # fmt: skip
        for tier in (Tier.COUNTY, Tier.PREFECTURE):
            for row in current.rollup(self.config.directory, tier):
                low, high = row["informed_interval"]
                areas.append((row["code"], row["delivered"], row["delivered_estimate"],
                              (low, row["informed"], high)))  # fmt: skip
        for area, d, d_est, (low, mid, high) in areas:
            self.metrics.delivered.labels(alert, level, area).set(d)
            self.metrics.delivered_estimate.labels(alert, level, area).set(d_est)
            for q, value in (("0.05", low), ("0.5", mid), ("0.95", high)):
                self.metrics.informed.labels(alert, level, area, q).set(value)
        self._areas[alert] = [a for a, *_ in areas]

    @property
    def _areas(self) -> dict[str, list[str]]:
        if not hasattr(self, "_area_labels"):
            self._area_labels: dict[str, list[str]] = {}
        return self._area_labels

    def _remove(self, labels: tuple[str, ...]) -> None:
        kind, alert, level = labels
        with contextlib.suppress(KeyError):
            if kind == "exercise":
                self.metrics.exercise_coverage.remove(alert, level)
                return
            if kind == "v2":
                for area in self._areas.pop(alert, []):
                    self.metrics.delivered.remove(alert, level, area)
                    self.metrics.delivered_estimate.remove(alert, level, area)
                    for q in ("0.05", "0.5", "0.95"):
                        self.metrics.informed.remove(alert, level, area, q)
                return
            self.metrics.alert_coverage.remove(alert, level)
            self.metrics.alert_target.remove(alert)
            self.metrics.alert_past_deadline.remove(alert)
            self.metrics.units_below_target.remove(alert)

    async def _broadcast(self, now: int) -> None:
        started = time.perf_counter()
        beats = await self.store.heartbeats()
        window = int(self.config.settings.endpoints.healthy_within_s * 1000)
        per_unit = broadcast_coverage(
            self.config.directory, beats, now_ms=now, healthy_within_ms=window
        )
        rows = rollup_broadcast(self.config.directory, per_unit, Tier.COUNTY)
        if time.monotonic() - self._broadcast_at >= BROADCAST_EVERY_S:
            # Hourly snapshots: the period statistics average them.
            self._broadcast_at = time.monotonic()
            await self.store.record_broadcast(
                datetime.fromtimestamp(now / 1000, UTC),
                {row["code"]: row["coverage"] for row in rows},
                self.store.retention.report_ms // 1000,
            )
        for row in rows:
            self.metrics.broadcast_coverage.labels(row["code"]).set(row["coverage"])
            self.metrics.endpoints_offline.labels(row["code"]).set(
                row["loudspeakers"] - row["healthy"]
            )
            self.metrics.endpoints_total.labels(row["code"]).set(row["loudspeakers"])
        log.debug("broadcast coverage refreshed in %.3f s", time.perf_counter() - started)
