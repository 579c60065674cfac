"""Console: scheduled tests (monthly drills, canaries) — Test alerts to designated
receivers, their receipts checked end to end.

`canaries.yaml` (configuration directory) lists schedules per county: when (daily,
weekly or monthly, at a local time), as which agency, and the canary receivers — a
loudspeaker, a screen, phones, an app, a messenger — each marked `exercise` in the
directory, so that a Test alert to their villages reaches them (and other exercise
receivers there) and nobody else. A run posts the alert through the same ingest path
as any agency (status Test or Exercise: never a live warning, never in live figures),
then waits up to `timeout_minutes` for every canary's confirmed receipt. Its result and
the end-to-end latency per channel are kept (the last 50 runs per schedule), shown on
the console's tests page and exported as `warngate_canary_…` metrics, which every
process reads back from Redis so that all instances agree; the alert rule
`WarngateCanaryFailed` fires on a failed run, `WarngateCanaryOverdue` on a missed one.

A run is claimed once per scheduled slot across all processes (the store's claim is
atomic), so a county never gets its monthly test twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import codes
from gateway.aio import LoopHealth, sleep_or_stop
from gateway.config import Config
from gateway.console.approval import Person
from gateway.directory import Channel
from gateway.errors import ConfigError, ConfigIssue, Forbidden, NotFound, ProblemError
from gateway.ingest import Ingestor
from gateway.metrics import Metrics
from gateway.models import Level, Status, format_cap_time
from gateway.receipts import CONFIRMED
from gateway.settings import read_yaml
from gateway.store import Store

__all__ = ["CANARIES_FILE", "Canaries", "Schedule", "load_schedules"]

log = logging.getLogger("warngate.canary")
CANARIES_FILE = "canaries.yaml"
CONFIRMED_STATES = {s.value for s in CONFIRMED}
# A slot missed by more than this (the gateway was down) is skipped, not run late.
LATE_LIMIT = timedelta(hours=6)


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")
    title: dict[str, str] = {}
    agency: str
    status: Literal["Test", "Exercise"] = "Test"
    hazard: str
    level: Level = Level.BLUE
    every: Literal["daily", "weekly", "monthly"] = "monthly"
    # monthly: day of the month (1-28); weekly: day of the week (1 Monday … 7 Sunday).
    day: int = Field(default=1, ge=1, le=28)
    at: time = time(10, 0)
    receivers: list[str] = Field(min_length=1)
    timeout_minutes: int = Field(default=10, ge=1, le=240)
    headline: dict[str, str] = {}


@dataclass(frozen=True)
class Receiver:
    id: str
    channel: Channel
    unit: str


def load_schedules(path: Path, config: Config) -> list[Schedule]:
    """The schedules of canaries.yaml (none if it does not exist); raise ConfigError
    listing every problem (unknown agency, a receiver not in the directory or not
    marked for exercises …)."""
    if not path.exists():
        return []
    data = read_yaml(path) or {}
    rows = data.get("canaries", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError([ConfigIssue(path.name, "canaries", "expected a list of schedules")])
    issues: list[ConfigIssue] = []
    out = []
    found = receivers_of(config)

    def issue(key: str, reason: str) -> None:
        issues.append(ConfigIssue(path.name, key, reason))

    for i, row in enumerate(rows):
        key = f"canaries[{row.get('id', i) if isinstance(row, dict) else i}]"
        try:
            schedule = Schedule.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                issues.append(ConfigIssue(path.name, f"{key}.{loc}", str(err["msg"])))
            continue
        agency = config.registry.agencies.get(schedule.agency)
        if agency is None:
            issues.append(
                ConfigIssue(path.name, f"{key}.agency", f"unknown agency {schedule.agency!r}")
            )
        elif Status(schedule.status) not in agency.statuses:
            issues.append(
                ConfigIssue(
                    path.name, f"{key}.status", f"agency {agency.id} may not post {schedule.status}"
                )
            )
        if schedule.hazard not in config.hazards:
            issues.append(
                ConfigIssue(path.name, f"{key}.hazard", f"unknown hazard {schedule.hazard!r}")
            )
        if schedule.every == "weekly" and schedule.day > 7:
            issue(f"{key}.day", "weekly: 1 (Monday) to 7 (Sunday)")
        for rid in schedule.receivers:
            got = found.get(rid)
            if got is None:
                issues.append(
                    ConfigIssue(path.name, f"{key}.receivers", f"{rid} is not in the directory")
                )
            elif not got[1]:
                issue(
                    f"{key}.receivers", f"{rid} is not marked `exercise`: a Test never reaches it"
                )
            elif got[0].channel not in config.policy.for_unit(got[0].unit).channels.get(
                schedule.level, []
            ):
                issue(
                    f"{key}.receivers",
                    f"{rid}: the policy sends {schedule.level.value} alerts of its unit by no"
                    f" {got[0].channel.value} (choose another level)",
                )
            elif agency is not None and not agency.covers(got[0].unit):
                issues.append(
                    ConfigIssue(
                        path.name,
                        f"{key}.receivers",
                        f"{rid} is outside agency {agency.id}'s jurisdiction",
                    )
                )
        out.append(schedule)
    if issues:
        raise ConfigError(issues)
    return out


def receivers_of(config: Config) -> dict[str, tuple[Receiver, bool]]:
    """Every endpoint and recipient of the directory: (receiver, marked for exercises)."""
    d = config.directory
    out: dict[str, tuple[Receiver, bool]] = {}
    for e in d.endpoints.values():
        out[e.id] = (Receiver(e.id, Channel(e.kind.value), e.unit), e.exercise)
    for (unit, channel), cols in d.recipients.items():
        for i, rid in enumerate(cols.ids):
            out[rid] = (Receiver(rid, channel, unit), cols.exercise[i])
    return out


def slot_before(schedule: Schedule, now: datetime, tz: timezone) -> datetime:
    """The latest scheduled moment at or before `now`."""
    local = now.astimezone(tz)
    day = local.date()
    for back in range(0, 400):
        candidate_day = day - timedelta(days=back)
        if _matches(schedule, candidate_day):
            moment = datetime.combine(candidate_day, schedule.at, tz)
            if moment <= now:
                return moment
    raise AssertionError("a schedule matches at least once a month")


def slot_after(schedule: Schedule, now: datetime, tz: timezone) -> datetime:
    local = now.astimezone(tz)
    for ahead in range(0, 400):
        candidate_day = local.date() + timedelta(days=ahead)
        if _matches(schedule, candidate_day):
            moment = datetime.combine(candidate_day, schedule.at, tz)
            if moment > now:
                return moment
    raise AssertionError("a schedule matches at least once a month")


def _matches(schedule: Schedule, day: date) -> bool:
    if schedule.every == "daily":
        return True
    if schedule.every == "weekly":
        return day.isoweekday() == schedule.day
    return day.day == schedule.day


class Canaries:
    """The scheduled tests of a gateway: due runs started, running ones checked."""

    def __init__(
        self,
        config: Config,
        store: Store,
        ingestor: Ingestor,
        metrics: Metrics,
        schedules: list[Schedule],
    ) -> None:
        self.config = config
        self.store = store
        self.ingestor = ingestor
        self.metrics = metrics
        self.schedules = {s.id: s for s in schedules}
        self._receivers = receivers_of(config)

    def receivers(self, schedule: Schedule) -> list[Receiver]:
        return [self._receivers[r][0] for r in schedule.receivers if r in self._receivers]

    def units(self, schedule: Schedule) -> list[str]:
        return sorted({r.unit for r in self.receivers(schedule)})

    def tz(self, schedule: Schedule) -> timezone:
        units = self.units(schedule)
        return self.config.policy.for_unit(units[0] if units else "000000").tz()

    # -- the loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, every_s: float, health: LoopHealth) -> None:
        while not stop.is_set():
            try:
                await self.tick()
                health.ok()
            except Exception as exc:
                health.failed(exc)
                log.exception("scheduled tests: a round failed; trying again")
            await sleep_or_stop(stop, every_s)

    async def tick(self, now: datetime | None = None) -> list[str]:
        """Start the runs that are due, finish those done or timed out, refresh the
        gauges; the ids of the alerts of runs started."""
        when = now or datetime.now(UTC)
        started = []
        for schedule in self.schedules.values():
            slot = slot_before(schedule, when, self.tz(schedule))
            if when - slot <= LATE_LIMIT and await self.store.claim_canary_slot(
                schedule.id, int(slot.timestamp() * 1000)
            ):
                started.append(await self._start(schedule, when, by="schedule"))
            await self._check(schedule, when)
            await self._gauges(schedule, when)
        return started

    async def run_now(self, schedule_id: str, person: Person) -> str:
        """A run outside the schedule (by a person, audited)."""
        schedule = self.schedules.get(schedule_id)
        if schedule is None:
            raise NotFound(f"no scheduled test {schedule_id!r}", code="schedule-not-found")
        if not any(person.covers(u) for u in self.units(schedule)):
            raise Forbidden("this test is outside your jurisdiction", code="outside-jurisdiction")
        if "viewer" in person.roles and len(person.roles) == 1:
            raise Forbidden(
                "this needs the drafter or approver role",
                code="role-required",
                extra={"role": "drafter"},
            )
        when = datetime.now(UTC)
        running = await self.store.canary_running(schedule.id)
        if running is not None:
            raise ProblemError(
                "a run of this test is still waiting for its receipts",
                code="test-running",
                status=409,
                title="Test running",
                extra={"alert": running.get("alert")},
            )
        alert = await self._start(schedule, when, by=person.id)
        return alert

    async def _start(self, schedule: Schedule, when: datetime, *, by: str) -> str:
        agency = self.config.registry.agencies[schedule.agency]
        stamp = when.astimezone(UTC)
        identifier = f"WG-CANARY-{schedule.id}-{stamp:%Y%m%dT%H%M%S}"
        hazard = self.config.hazards.get(schedule.hazard)
        expires = when + timedelta(minutes=schedule.timeout_minutes + 5)
        units = self.units(schedule)
        info: dict[str, Any] = {
            "language": "zh-CN",
            "category": [hazard.category if hazard else "Other"],
            "event": hazard.name("zh") if hazard else schedule.hazard,
            "urgency": "Expected",
            "severity": "Minor",
            "certainty": "Likely",
            "eventCode": [{"valueName": "hazard", "value": schedule.hazard}],
            "expires": format_cap_time(expires),
            "headline": schedule.headline.get("zh") or f"{schedule.title.get('zh', schedule.id)}",
            "parameter": [{"valueName": "level", "value": schedule.level.value}],
            "area": [
                {
                    "areaDesc": "canary",
                    "geocode": [{"valueName": "CPEAS Geographic Code", "value": u} for u in units],
                }
            ],
        }
        data = {
            "identifier": identifier,
            "sender": agency.senders[0],
            "sent": format_cap_time(when),
            "status": schedule.status,
            "msgType": "Alert",
            "scope": "Public",
            "note": f"scheduled test {schedule.id}",
            "info": [info],
        }
        result = await self.ingestor.ingest(
            agency, orjson.dumps(data), "application/json", remote="canary", now=when
        )
        alert = str(result.body["id"])
        run = {
            "schedule": schedule.id,
            "alert": alert,
            "started_ms": int(when.timestamp() * 1000),
            "by": by,
            "result": "running",
        }
        await self.store.start_canary(schedule.id, run)
        await self.store.audit_event(
            {
                "event": "canary-started",
                "id": alert,
                "schedule": schedule.id,
                "by": by,
                "at": str(run["started_ms"]),
            }
        )
        log.info("scheduled test %s started: %s", schedule.id, alert)
        return alert

    async def _check(self, schedule: Schedule, when: datetime) -> None:
        run = await self.store.canary_running(schedule.id)
        if run is None:
            return
        alert, started = str(run["alert"]), int(run["started_ms"])
        channels: dict[str, dict[str, Any]] = {}
        for receiver in self.receivers(schedule):
            row = channels.setdefault(
                receiver.channel.value,
                {"receivers": 0, "confirmed": 0, "latency_s": None, "missing": []},
            )
            row["receivers"] += 1
            got = await self.store.receipt_times(alert, receiver.channel.value, [receiver.id])
            state_ms = got[0]
            if state_ms is not None and state_ms[0] in CONFIRMED_STATES:
                row["confirmed"] += 1
                latency = round(max(0, state_ms[1] - started) / 1000, 1)
                row["latency_s"] = max(row["latency_s"] or 0.0, latency)
            else:
                row["missing"].append(receiver.id)
        for row in channels.values():
            row["ok"] = row["confirmed"] == row["receivers"]
        complete = all(r["ok"] for r in channels.values())
        timed_out = when.timestamp() * 1000 - started >= schedule.timeout_minutes * 60_000
        if not (complete or timed_out):
            return
        result = "ok" if complete else "failed"
        done = {
            **run,
            "result": result,
            "finished_ms": int(when.timestamp() * 1000),
            "channels": channels,
        }
        if await self.store.finish_canary(schedule.id, alert, done):
            self.metrics.canary_runs.labels(schedule.id, result).inc()
            await self.store.audit_event(
                {
                    "event": f"canary-{result}",
                    "id": alert,
                    "schedule": schedule.id,
                    "at": str(done["finished_ms"]),
                }
            )
            level = logging.INFO if complete else logging.WARNING
            log.log(level, "scheduled test %s: %s (%s)", schedule.id, result, alert)

    async def _gauges(self, schedule: Schedule, when: datetime) -> None:
        runs = await self.store.canary_runs(schedule.id, 1)
        m = self.metrics
        tz = self.tz(schedule)
        m.canary_next_run.labels(schedule.id).set(slot_after(schedule, when, tz).timestamp())
        m.canary_slot.labels(schedule.id).set(slot_before(schedule, when, tz).timestamp())
        running = await self.store.canary_running(schedule.id)
        latest = running or (runs[0] if runs else None)
        if latest is not None:
            m.canary_last_run.labels(schedule.id).set(int(latest["started_ms"]) / 1000)
        if runs:
            last = runs[0]
            m.canary_success.labels(schedule.id).set(1 if last["result"] == "ok" else 0)
            for channel, row in last.get("channels", {}).items():
                m.canary_channel_ok.labels(schedule.id, channel).set(1 if row.get("ok") else 0)
                if row.get("latency_s") is not None:
                    m.canary_latency.labels(schedule.id, channel).set(float(row["latency_s"]))

    async def overview(self, person: Person) -> list[dict[str, Any]]:
        """The schedules of the person's jurisdiction with their recent runs."""
        out = []
        now = datetime.now(UTC)
        for schedule in self.schedules.values():
            units = self.units(schedule)
            if not any(
                person.covers(u) or any(codes.covers(u, j) for j in person.jurisdiction)
                for u in units
            ):
                continue
            runs = await self.store.canary_runs(schedule.id, 12)
            running = await self.store.canary_running(schedule.id)
            if running is not None:
                runs = [{**running, "channels": {}}, *runs]
            out.append(
                {
                    "id": schedule.id,
                    "title": schedule.title,
                    "area": units,
                    "every": f"{schedule.every} {schedule.day} {schedule.at:%H:%M}",
                    "status": schedule.status,
                    "receivers": schedule.receivers,
                    "next_run": slot_after(schedule, now, self.tz(schedule)).isoformat(),
                    "runs": runs,
                }
            )
        return out
