"""Coverage: the live monitor — coverage gauges for duty operators, and escalation at the
deadline of each unit.

Every `coverage.interval_s` seconds, for each live alert: its coverage now (definition
v1), the target and whether its deadline has passed go to Prometheus (exercise and test
alerts under their own metric, never mixed with live ones); each unit whose deadline
has passed is checked once: below its binding target, it gets the next step of its
escalation ladder, recorded in the audit stream and the coverage report. Broadcast
coverage and offline loudspeakers per county are refreshed too. Any number of
processes may run the monitor: the once-per-unit check is claimed in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

from gateway.codes import Tier
from gateway.config import Config
from gateway.coverage import alert_coverage, broadcast_coverage, rollup_broadcast
from gateway.escalation import next_step
from gateway.metrics import Metrics
from gateway.models import AlertRecord, Channel, MsgType
from gateway.planner import Planner
from gateway.store import Store, now_ms

__all__ = ["Monitor"]

log = logging.getLogger("warngate.monitor")


class Monitor:
    def __init__(self, config: Config, store: Store, planner: Planner, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.planner = planner
        self.metrics = metrics
        self._shown: set[tuple[str, ...]] = set()

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("coverage monitor failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def tick(self, now: int | None = None) -> list[dict[str, object]]:
        """One round: gauges refreshed, due escalations taken; returns the escalations."""
        now = now or now_ms()
        taken: list[dict[str, object]] = []
        shown: set[tuple[str, ...]] = set()
        records = await self.store.get_alerts(await self.store.live_ids())
        for record in records:
            if record.alert.msgType is MsgType.CANCEL:
                continue
            taken += await self._alert(record, now, shown)
        for labels in self._shown - shown:
            self._remove(labels)
        self._shown = shown
        await self._broadcast(now)
        return taken

    async def _alert(
        self, record: AlertRecord, now: int, shown: set[tuple[str, ...]]
    ) -> list[dict[str, object]]:
        summary = await self.store.plan_summary(record.id)
        if summary is None:
            return []
        aggregates = await self.store.aggregates(record.id)
        cov = alert_coverage(summary, aggregates, self.config.directory, self.config.policy)
        accepted = int(record.received.timestamp() * 1000)
        policies = {u.unit: self.config.policy.for_unit(u.unit) for u in cov.units}
        deadlines = {
            u: accepted + p.targets.deadline_minutes[record.level] * 60_000
            for u, p in policies.items()
        }
        target = max((p.targets.binding for p in policies.values()), default=0.0)
        first_deadline = min(deadlines.values(), default=accepted)
        labels = (record.id, record.level.value)
        if record.exercise:
            self.metrics.exercise_coverage.labels(*labels).set(cov.estimate)
            shown.add(("exercise", *labels))
        else:
            self.metrics.alert_coverage.labels(*labels).set(cov.estimate)
            self.metrics.alert_target.labels(record.id).set(target)
            self.metrics.alert_past_deadline.labels(record.id).set(int(now >= first_deadline))
            below = sum(1 for u in cov.units if u.estimate < u.target)
            self.metrics.units_below_target.labels(record.id).set(below)
            shown.add(("live", *labels))
        taken = []
        steps_before = summary.get("steps", {})
        for unit in cov.units:
            if now < deadlines[unit.unit]:
                continue
            done = list(steps_before.get(unit.unit, []))
            step = None
            if unit.estimate < unit.target:
                planned = [Channel(c) for c in summary["units"][unit.unit].get("channels", [])]
                step = next_step(policies[unit.unit].escalation, done, planned)
            note = {
                "unit": unit.unit,
                "checked_at": datetime.fromtimestamp(now / 1000, UTC).isoformat(),
                "coverage": round(unit.estimate, 4),
                "target": unit.target,
                "step": step,
            }
            keep = self.store.keep_s(int(record.expires.timestamp() * 1000), report=True)
            if not await self.store.claim_escalation(record.id, unit.unit, note, keep):
                continue  # checked before, here or in another process: once only
            if step is None:
                continue
            added = await self.planner.escalate(record, unit.unit, step)
            await self.store.audit_event(
                {
                    "event": "escalated",
                    "id": record.id,
                    "unit": unit.unit,
                    "step": step,
                    "coverage": f"{unit.estimate:.4f}",
                    "target": f"{unit.target:.2f}",
                    "deliveries": str(added),
                    "at": str(now),
                }
            )
            self.metrics.escalations.labels(step).inc()
            log.warning(
                "escalated %s in %s: coverage %.1f%% < %.0f%% at the deadline; step %s (%d)",
                record.id, unit.unit, unit.estimate * 100, unit.target * 100, step, added,
            )  # fmt: skip
            taken.append({**note, "alert": record.id, "deliveries": added})
        return taken

    def _remove(self, labels: tuple[str, ...]) -> None:
        kind, alert, level = labels
        with contextlib.suppress(KeyError):
            if kind == "exercise":
                self.metrics.exercise_coverage.remove(alert, level)
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
        for row in rollup_broadcast(self.config.directory, per_unit, Tier.COUNTY):
            self.metrics.broadcast_coverage.labels(row["code"]).set(row["coverage"])
            self.metrics.endpoints_offline.labels(row["code"]).set(
                row["loudspeakers"] - row["healthy"]
            )
            self.metrics.endpoints_total.labels(row["code"]).set(row["loudspeakers"])
        log.debug("broadcast coverage refreshed in %.3f s", time.perf_counter() - started)
