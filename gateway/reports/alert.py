"""Coverage: the report of one alert — definition v2 where every unit it targeted has
households (gateway.reports.v2), v1 otherwise — with its series, targets and verdicts,
and the broadcast coverage and period statistics."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway import codes
from gateway.codes import Tier
from gateway.config import Config
from gateway.coverage import (
    DEFINITION,
    DEFINITION_V2,
    SERIES_MINUTES,
    AlertCoverage,
    alert_coverage,
    broadcast_coverage,
    rollup_broadcast,
    verdict,
)
from gateway.models import AlertRecord, Level
from gateway.policy import UnitPolicy
from gateway.reports.v2 import applies, report_v2
from gateway.store import Store, now_ms

__all__ = [
    "AlertTarget",
    "alert_report",
    "broadcast_report",
    "format_report",
    "rows_csv",
]

TIERS = {"township": Tier.TOWNSHIP, "county": Tier.COUNTY, "prefecture": Tier.PREFECTURE}


@dataclass(frozen=True)
class AlertTarget:
    binding: float
    expected: float
    deadline_minutes: int


def alert_target(
    config: Config, units: list[str], level: Level, named: Sequence[str] = ()
) -> AlertTarget:
    """The strictest target and the shortest deadline among the alert's units.

    An alert that reached no known unit (every geocode unknown to the directory) is
    held to the targets of the areas it named, else to the defaults: it reached nobody,
    and says so against a real target instead of failing."""
    areas = units or [c for c in named if codes.is_division_code(c)]
    if not areas:
        targets = UnitPolicy().targets
        return AlertTarget(targets.binding, targets.expected, targets.deadline_minutes[level])
    policies = [config.policy.for_unit(u) for u in areas]
    return AlertTarget(
        max(p.targets.binding for p in policies),
        max(p.targets.expected for p in policies),
        min(p.targets.deadline_minutes[level] for p in policies),
    )


async def load_coverage(
    config: Config, store: Store, record: AlertRecord, minutes: int | None
) -> tuple[dict[str, Any] | None, AlertCoverage | None]:
    summary = await store.plan_summary(record.id)
    if summary is None:
        return None, None
    aggregates = await store.aggregates(record.id)
    cov = alert_coverage(summary, aggregates, config.directory, config.policy, minutes=minutes)
    return summary, cov


async def alert_report(
    config: Config,
    store: Store,
    record: AlertRecord,
    *,
    at: int | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The coverage of one alert version, with its time series and target verdict."""
    now = now or now_ms()
    accepted_ms = int(record.received.timestamp() * 1000)
    elapsed = max(0, (now - accepted_ms) // 60_000)
    summary = await store.plan_summary(record.id)
    base: dict[str, Any] = {
        "alert": record.id,
        "definition": DEFINITION,
        "level": record.level.value,
        "msgType": record.alert.msgType.value,
        "exercise": record.exercise,
        "live": not record.exercise,
        "state": record.state.value,
        "accepted": record.received.isoformat(),
        "minutes_since_acceptance": elapsed,
    }
    if summary is None:
        return {**base, "planned": False}
    aggregates = await store.aggregates(record.id)

    def cov(minutes: int | None) -> AlertCoverage:
        return alert_coverage(summary, aggregates, config.directory, config.policy, minutes=minutes)

    current = cov(at)
    unresolved = [str(c) for c in summary.get("unresolved", [])]
    target = alert_target(config, sorted(summary.get("units", {})), record.level, unresolved)
    common = {
        "by_language": current.by_language,
        "by_group": current.by_group,
        "outside": summary.get("outside", []),
        "unresolved": unresolved,
        # Checks (before and at each unit's deadline) that took a step, or found the
        # unit short with its ladder used up.
        "escalations": [
            {
                "unit": key.split("@")[0],
                **e,
                **({} if e.get("step") else {"note": "escalation ladder used up"}),
            }
            for key, e in sorted((await store.escalations(record.id)).items())
            if e.get("step") or e.get("short", e.get("coverage", 1.0) < e.get("target", 0.0))
        ],
    }
    if applies(config, summary):
        v2 = await report_v2(
            config, store, record, summary, at=at, now=now,
            deadline_minutes=target.deadline_minutes, binding=target.binding,
            expected=target.expected,
        )  # fmt: skip
        return {**base, **v2, **common}
    at_deadline = cov(target.deadline_minutes)
    deadline = record.received + timedelta(minutes=target.deadline_minutes)
    passed = now >= int(deadline.timestamp() * 1000)
    series = []
    for m in SERIES_MINUTES:
        point = cov(m)
        series.append(
            {
                "minutes": m,
                "coverage": round(point.estimate, 4),
                "lower": round(point.lower, 4),
                "upper": round(point.upper, 4),
                "reached": m <= elapsed,
            }
        )
    without = [u for u in sorted(summary.get("units", {}))
               if not config.directory.has_households(u)]  # fmt: skip
    return {
        **base,
        "planned": True,
        # Definition v1: channels summed per unit, capped, combined as independent;
        # `lower`/`upper` are what it would read if they reached the same or different
        # people, not bounds on the truth (docs/coverage.md).
        "note": (
            "definition v1: the directory has no households for "
            + (
                ", ".join(without[:10]) + (" …" if len(without) > 10 else "")
                if without
                else "this alert's units"
            )
        ),
        "at_minutes": at,
        "population": current.population,
        "coverage": round(current.estimate, 4),
        "lower": round(current.lower, 4),
        "upper": round(current.upper, 4),
        "sent_coverage": round(current.sent_estimate, 4),
        "target": {
            "binding": target.binding,
            "expected": target.expected,
            "deadline_minutes": target.deadline_minutes,
            "deadline": deadline.isoformat(),
            "coverage_at_deadline": round(at_deadline.estimate, 4),
            "verdict": verdict(at_deadline.estimate, target.binding, deadline_passed=passed),
            "expected_verdict": verdict(
                at_deadline.estimate, target.expected, deadline_passed=passed
            ),
        },
        "series": series,
        "units": [u.as_dict() for u in current.units],
        "units_below_target": sum(1 for u in current.units if u.estimate < u.target),
        "rollups": {name: current.rollup(config.directory, tier) for name, tier in TIERS.items()},
        **common,
    }


async def broadcast_report(
    config: Config, store: Store, under: str | None, *, now: int | None = None
) -> dict[str, Any]:
    heartbeats = await store.heartbeats()
    window = int(config.settings.endpoints.healthy_within_s * 1000)
    per_unit = broadcast_coverage(
        config.directory, heartbeats, now_ms=now or now_ms(), healthy_within_ms=window,
        under=under,
    )  # fmt: skip
    return {
        "definition": DEFINITION,
        "healthy_within_s": config.settings.endpoints.healthy_within_s,
        "under": under,
        "units": [{"unit": u, **row} for u, row in sorted(per_unit.items())],
        "rollups": {
            name: rollup_broadcast(config.directory, per_unit, tier) for name, tier in TIERS.items()
        },
    }


def format_report(report: dict[str, Any], directory: Any) -> str:
    """A human-readable table: the verdict, the series, then one line per unit."""
    if not report.get("planned"):
        return f"alert {report['alert']}: not planned yet"
    if report.get("definition") == DEFINITION_V2:
        return _format_v2(report, directory)
    t = report["target"]
    lines = [
        f"alert {report['alert']}  {report['msgType']} {report['level']}"
        f"{'  (EXERCISE/TEST: not live coverage)' if report['exercise'] else ''}",
        f"accepted {report['accepted']}   definition {report['definition']}",
        f"coverage {pct(report['coverage'])} (lower {pct(report['lower'])}, upper"
        f" {pct(report['upper'])}; sent {pct(report['sent_coverage'])})"
        f" of {report['population']} people in {len(report['units'])} units",
        f"target {pct(t['binding'])} within {t['deadline_minutes']} min: {t['verdict']}"
        f" (at the deadline {pct(t['coverage_at_deadline'])}; expected {pct(t['expected'])}:"
        f" {t['expected_verdict']})",
        "over time: "
        + "  ".join(f"T+{p['minutes']}m {pct(p['coverage'])}" for p in report["series"]),
        "",
    ]
    if not report["units"] and report.get("unresolved"):
        lines.append("no area of this alert is a unit of the directory: "
                     + " ".join(report["unresolved"]))  # fmt: skip
    channels = ["sms", "app", "loudspeaker", "display", "messenger"]
    header = f"{'unit':<13}{'people':>8} " + "".join(f"{c[:11]:>12}" for c in channels)
    lines.append(header + f"{'coverage':>10}{'target':>8}  verdict  name")
    for u in report["units"]:
        reach = "".join(f"{pct(u['reach'][c]) if c in u['reach'] else '-':>12}" for c in channels)
        verdict_word = "below" if u["below_target"] else "ok"
        div = directory.divisions.get(u["unit"])
        name = div.label("zh") if div else ""
        lines.append(
            f"{u['unit']:<13}{u['population']:>8} {reach}{pct(u['coverage']):>10}"
            f"{pct(u['target']):>8}  {verdict_word:<7}  {name}"
        )
    if report.get("escalations"):
        lines.append("")
        lines += [f"escalated {e['unit']}: {e['step']} at {e['checked_at']}"
                  for e in report["escalations"]]  # fmt: skip
    return "\n".join(lines)


def _minute(m: int | None) -> str:
    return f"T+{m} min" if m is not None else "not reached"


def _format_v2(report: dict[str, Any], directory: Any) -> str:
    t = report["target"]
    lo, hi = report["informed_interval"]
    ttt = report["time_to_target"]
    lines = [
        f"alert {report['alert']}  {report['msgType']} {report['level']}"
        f"{'  (EXERCISE/TEST: not live coverage)' if report['exercise'] else ''}",
        f"accepted {report['accepted']}   definition {report['definition']}"
        f"   {report['population']} residents in {len(report['units'])} units",
        f"delivered (D, confirmed)  {pct(report['delivered'])}"
        f"   with unconfirmed sends {pct(report['delivered_estimate'])} (estimate)",
        f"persons informed (C)      {pct(report['informed'])}"
        f"   90 % interval {pct(lo)} – {pct(hi)}",
        f"target {pct(t['binding'])} within {t['deadline_minutes']} min: D {t['verdict']}"
        f" (at the deadline {pct(t['delivered_at_deadline'])}), C {t['informed_verdict']}"
        f" (at the deadline {pct(t['informed_at_deadline'])},"
        f" {pct(t['informed_interval_at_deadline'][0])} – "
        f"{pct(t['informed_interval_at_deadline'][1])})",
        f"time to target {pct(t['binding'])} (binding) / {pct(t['expected'])} (expected):"
        f" D {_minute(ttt['delivered']['binding'])} / {_minute(ttt['delivered']['expected'])},"
        f" C {_minute(ttt['informed']['binding'])} / {_minute(ttt['informed']['expected'])}",
        "over time (D / C): "
        + "  ".join(
            f"T+{p['minutes']}m {pct(p['delivered'])}/{pct(p['informed'])}"
            for p in report["series"]
        ),
    ]
    s = report.get("surveys") or {}
    if s.get("households"):
        a, b = s["informed_interval_without"]
        lines.append(
            f"surveys: {s['households']} households; C's interval {pct(a)} – {pct(b)} without"
            f" them, narrowed by {s['narrowed_by_pp']} points"
        )
        for f in s.get("flags", []):
            lines.append(f"  registry suspect in {f['unit']}: {f['detail']} ({f['kind']})")
    lines.append("")
    lines.append(f"{'unit':<13}{'people':>8}{'D':>8}{'D est':>8}{'C':>8}  {'C 90 %':<15}"
                 f"{'target':>7}  D by     name")  # fmt: skip
    for u in report["units"]:
        a, b = u["informed_interval"]
        div = directory.divisions.get(u["unit"])
        by = (u.get("time_to_target") or {}).get("delivered", {}).get("binding")
        lines.append(
            f"{u['unit']:<13}{u['population']:>8}{pct(u['delivered']):>8}"
            f"{pct(u['delivered_estimate']):>8}{pct(u['informed']):>8}  "
            f"{pct(a) + '–' + pct(b):<15}{pct(u['target']):>7}  "
            f"{_minute(by) if by is not None else ('below' if u['below_target'] else '-'):<8} "
            f"{div.label('zh') if div else ''}"
        )
    if report.get("escalations"):
        lines.append("")
        lines += [
            f"escalated {e['unit']} at {e.get('checkpoint', 1):g} of its deadline: "
            f"{e['step'] or e.get('note', '')} ({e['checked_at']})"
            for e in report["escalations"]
        ]
    return "\n".join(lines)


def pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def rows_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
