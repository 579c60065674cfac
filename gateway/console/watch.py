"""Console: what the watch pages show — one alert live, and the jurisdiction's overview.

The coverage figures are the coverage API's (`gateway.reports.alert_report`, what `GET
/api/v1/alerts/{id}/coverage` answers), read by a few names only (`definition`,
`coverage`, `target`, `units[].unit/coverage/target`, `escalations`), so that a new
coverage definition shows here as soon as the report carries it. Drills and tests are
shown as such and never in the live figures of the overview.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.codes import Tier
from gateway.config import Config
from gateway.console.approval import Person, units_of
from gateway.console.geo import coverage_colour
from gateway.console.ui import local_time
from gateway.models import AlertRecord, AlertState
from gateway.reports import alert_report, broadcast_report
from gateway.store import Store, now_ms

__all__ = ["broadcast", "offline_endpoints", "snapshot", "visible"]


def visible(config: Config, record: AlertRecord, person: Person) -> bool:
    """A person sees the alerts of agencies whose jurisdiction overlaps theirs."""
    agency = config.registry.agencies.get(record.agency)
    if agency is None:
        return False
    from gateway import codes

    return any(
        codes.covers(mine, theirs) or codes.covers(theirs, mine)
        for mine in person.jurisdiction
        for theirs in agency.jurisdiction
    )


async def offline_endpoints(
    config: Config, store: Store, units: list[str], *, now: int | None = None
) -> list[dict[str, Any]]:
    """Loudspeakers and screens of `units` without a heartbeat within the health window,
    with how long (None: never heard from)."""
    when = now or now_ms()
    beats = await store.heartbeats()
    window = config.settings.endpoints.healthy_within_s * 1000
    out = []
    for unit in units:
        for e in config.directory.endpoints_by_unit.get(unit, []):
            last = beats.get(e.id)
            if last is not None and when - last <= window:
                continue
            out.append(
                {
                    "id": e.id,
                    "kind": e.kind.value,
                    "unit": unit,
                    "last_seen": last,
                    "offline_s": (when - last) // 1000 if last is not None else None,
                }
            )
    return out


def _num(row: dict[str, Any], *names: str) -> float | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, int | float):
            return float(value)
    return None


async def snapshot(config: Config, store: Store, record: AlertRecord) -> dict[str, Any]:
    """One alert as the watch page shows it at this moment (JSON, pushed over SSE)."""
    report = await alert_report(config, store, record)
    counts: dict[str, dict[str, int]] = {}
    for key, n in (await store.aggregates(record.id)).items():
        kind, _, rest = key.partition("|")
        if kind == "n" and n:
            channel, _, state = rest.partition("|")
            counts.setdefault(channel, {})[state] = n
    summary = await store.plan_summary(record.id) or {}
    target = report.get("target") or {}
    units = []
    fill = {}
    for row in report.get("units", []):
        unit = str(row.get("unit", ""))
        cov = _num(row, "coverage", "estimate", "delivery")
        goal = _num(row, "target")
        division = config.directory.divisions.get(unit)
        names = division.name if division is not None else {}
        units.append(
            {
                "unit": unit,
                "name": names,  # by language: the page picks its own
                "coverage": cov,
                "target": goal,
                "population": row.get("population"),
            }
        )
        fill[unit] = coverage_colour(cov, goal)
    reached_at = None
    binding = _num(target, "binding")
    for point in report.get("series", []):
        value = _num(point, "coverage")
        if binding is not None and point.get("reached") and value is not None and value >= binding:
            reached_at = point.get("minutes")
            break
    targeted = [u["unit"] for u in units] or units_of(config, record)
    return {
        "id": record.id,
        "state": record.state.value,
        "level": record.level.value,
        "exercise": record.exercise,
        "planned": bool(report.get("planned")),
        "definition": report.get("definition"),
        "coverage": report.get("coverage"),
        "target": binding,
        "deadline": target.get("deadline"),
        "deadline_text": local_time(target.get("deadline")),
        "verdict": target.get("verdict"),
        "minutes": report.get("minutes_since_acceptance"),
        "target_reached_minutes": reached_at,
        "counts": counts,
        "planned_counts": summary.get("counts", {}),
        "units": units,
        "fill": fill,
        "escalations": report.get("escalations", []),
        "offline": await offline_endpoints(config, store, targeted),
        "render_failures": summary.get("render_failures", []),
        "at": datetime.now(UTC).isoformat(),
    }


async def broadcast(config: Config, store: Store, person: Person) -> list[dict[str, Any]]:
    """Broadcast coverage (应急广播覆盖率) per county of the person's jurisdiction, with
    its offline loudspeakers and how long they have been offline."""
    rows: list[dict[str, Any]] = []
    for area in person.jurisdiction:
        report = await broadcast_report(config, store, area)
        for county in report.get("rollups", {}).get("county", []):
            code = county.get("code")
            units = [u for u in config.directory.units_under(code)] if code else []
            offline = [
                e
                for e in await offline_endpoints(config, store, units)
                if e["kind"] == "loudspeaker"
            ]
            rows.append({**county, "offline": offline})
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.get("code") not in seen:
            seen.add(str(row.get("code")))
            out.append(row)
    return out


def county_of(config: Config, unit: str) -> str | None:
    for code in config.directory.ancestors(unit):
        from gateway import codes

        if codes.tier(code) is Tier.COUNTY:
            return code
    return None


LIVE_STATES = (AlertState.ACTIVE,)
