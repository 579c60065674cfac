"""Coverage: periodic statistics — what plans ask for each day, week, month, quarter
and year, per tier, from the figures each alert keeps (never from per-recipient data,
which expires long before an annual report is due).

For the alerts accepted in the period, separately for live alerts and for exercises
and tests: how many, by level and by hazard; D and C (mean, and the share of alerts
meeting their binding target by the deadline); the median time to target; per county
and prefecture the same over the alerts that reached them; and the loudspeakers'
broadcast coverage averaged over the period's hourly snapshots. An alert with no kept
figures is measured from what is still stored, or listed as `no figures kept`.

`warngate report --period P` prints it (table, JSON or CSV); `warngate serve` writes it
for each completed calendar period into `coverage.reports_dir` when that is set.
"""

from __future__ import annotations

import asyncio
import csv
import io
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from gateway.config import Config
from gateway.models import AlertRecord
from gateway.reports.alert import alert_report
from gateway.reports.figures import figures_of
from gateway.store import Store

__all__ = [
    "PERIODS",
    "calendar_period",
    "format_period",
    "period_report",
    "period_rows",
    "totals_csv",
    "write_period",
]

PERIODS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "annual": 366}


def calendar_period(period: str, now: datetime, tz: timezone) -> tuple[datetime, datetime]:
    """The last completed calendar period before `now` in local time: yesterday, last
    week (Monday to Monday), last month, last quarter, last year."""
    local = now.astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        end = day
        start = end - timedelta(days=1)
    elif period == "weekly":
        end = day - timedelta(days=day.weekday())
        start = end - timedelta(days=7)
    elif period == "monthly":
        end = day.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
    elif period == "quarterly":
        end = day.replace(day=1, month=(day.month - 1) // 3 * 3 + 1)
        start = (end - timedelta(days=1)).replace(day=1)
        start = start.replace(month=(start.month - 1) // 3 * 3 + 1)
    elif period == "annual":
        end = day.replace(month=1, day=1)
        start = end.replace(year=end.year - 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return start, end


async def _figures(config: Config, store: Store, records: Sequence[AlertRecord]
                   ) -> list[dict[str, Any]]:  # fmt: skip
    kept = await store.coverage_summaries([r.id for r in records])
    out = []
    for record, figures in zip(records, kept, strict=True):
        if figures is None:
            report = await alert_report(config, store, record)
            if report.get("planned"):
                figures = figures_of(record, report)
                keep = store.keep_s(int(record.expires.timestamp() * 1000), report=True)
                await store.save_coverage_summary(record.id, figures, keep)
            else:
                figures = {**figures_of(record, {}), "definition": None, "note": "no figures kept"}
        out.append(figures)
    return out


async def period_rows(
    config: Config, store: Store, period: str, *, end: datetime | None = None
) -> list[dict[str, Any]]:
    """One row per alert accepted in the `period` days before `end` (default now)."""
    until = end or datetime.now(UTC)
    since = until - timedelta(days=PERIODS[period])
    return [
        _row(f) for f in await _figures(config, store, await store.alerts_between(since, until))
    ]


def _row(f: dict[str, Any]) -> dict[str, Any]:
    ttt = f.get("time_to_target") or {}
    return {
        "alert": f["alert"],
        "identifier": f["identifier"],
        "agency": f["agency"],
        "accepted": f["accepted"],
        "msgType": f["msgType"],
        "status": f["status"],
        "live": f["live"],
        "level": f["level"],
        "hazards": " ".join(f.get("hazards", [])),
        "definition": f.get("definition") or "",
        "units": f.get("units", 0),
        "population": f.get("population", 0),
        "delivered": f.get("delivered", 0.0),
        "delivered_at_deadline": f.get("delivered_at_deadline") or 0.0,
        "informed": f.get("informed") if f.get("informed") is not None else "",
        "informed_at_deadline": f.get("informed_at_deadline") or "",
        "target": f.get("target") if f.get("target") is not None else "",
        "verdict": f.get("verdict") or "not planned",
        "minutes_to_target": ((ttt.get("delivered") or {}).get("binding")) or "",
        "surveyed_households": f.get("surveyed_households", 0),
    }


def _stats(figures: list[dict[str, Any]], area: str | None) -> dict[str, Any]:
    """Totals of a set of alerts, over the whole alert (`area` None) or one area."""
    levels: dict[str, int] = {}
    hazards: dict[str, int] = {}
    delivered, informed, met, minutes = [], [], 0, []
    for f in figures:
        levels[f["level"]] = levels.get(f["level"], 0) + 1
        for h in f.get("hazards", []):
            hazards[h] = hazards.get(h, 0) + 1
        if area is None:
            d, c = f.get("delivered_at_deadline"), f.get("informed_at_deadline")
            ok = f.get("verdict") == "met"
        else:
            row = next(a for a in f.get("areas", []) if a["code"] == area)
            d, c = row.get("delivered"), row.get("informed")
            ok = d is not None and f.get("target") is not None and d >= f["target"]
        if d is not None:
            delivered.append(float(d))
        if c is not None:
            informed.append(float(c))
        met += bool(ok)
        m = ((f.get("time_to_target") or {}).get("delivered") or {}).get("binding")
        if m is not None:
            minutes.append(int(m))
    n = len(figures)
    return {
        "alerts": n,
        "by_level": dict(sorted(levels.items())),
        "by_hazard": dict(sorted(hazards.items())),
        "delivered_mean": round(statistics.fmean(delivered), 4) if delivered else None,
        "informed_mean": round(statistics.fmean(informed), 4) if informed else None,
        "share_meeting_target": round(met / n, 4) if n else None,
        "median_minutes_to_target": statistics.median(minutes) if minutes else None,
        "alerts_reaching_target": len(minutes),
    }


async def period_report(
    config: Config,
    store: Store,
    period: str,
    *,
    end: datetime | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The period's statistics per tier (see the module docstring)."""
    until = end or datetime.now(UTC)
    start = since or until - timedelta(days=PERIODS[period])
    records = await store.alerts_between(start, until)
    figures = await _figures(config, store, records)
    totals = []
    for live in (True, False):
        mine = [f for f in figures if f.get("live") == live and f.get("definition")]
        if not mine:
            continue
        totals.append({"tier": "all", "code": "", "live": live, **_stats(mine, None)})
        for tier in ("county", "prefecture"):
            codes = sorted({a["code"] for f in mine for a in f.get("areas", [])
                            if a["tier"] == tier})  # fmt: skip
            for code in codes:
                touched = [f for f in mine
                           if any(a["code"] == code for a in f.get("areas", []))]  # fmt: skip
                totals.append({"tier": tier, "code": code, "live": live,
                               **_stats(touched, code)})  # fmt: skip
    broadcast = await store.broadcast_means(start, until)
    return {
        "period": period,
        "from": start.isoformat(),
        "to": until.isoformat(),
        "alerts": len(figures),
        "definitions": {
            d: sum(1 for f in figures if f.get("definition") == d)
            for d in sorted({str(f.get("definition")) for f in figures})
        },
        "totals": totals,
        "broadcast_coverage": broadcast,
        "rows": [_row(f) for f in figures],
    }


def format_period(report: dict[str, Any], *, alerts: bool = False) -> str:
    """The period's totals as a table (and its alerts, one line each, if asked)."""

    def pct(x: float | None) -> str:
        return f"{x * 100:5.1f}%" if x is not None else "    -"

    lines = [
        f"{report['period']} statistics {report['from'][:16]} – {report['to'][:16]}:"
        f" {report['alerts']} alerts"
        + "".join(f", {n} {d}" for d, n in report["definitions"].items()),
        f"{'':<5}{'tier':<12}{'code':<8}{'alerts':>7}{'D':>8}{'C':>8}{'met':>8}"
        f"{'median to target':>18}",
    ]
    for row in report["totals"]:
        kind = "live" if row["live"] else "exer"
        median = row["median_minutes_to_target"]
        lines.append(
            f"{kind:<5}{row['tier']:<12}{row['code']:<8}{row['alerts']:>7}"
            f"{pct(row['delivered_mean']):>8}{pct(row['informed_mean']):>8}"
            f"{pct(row['share_meeting_target']):>8}"
            f"{(f'{median:g} min' if median is not None else '-'):>18}"
        )
    if report["broadcast_coverage"]:
        lines.append("broadcast coverage (mean of hourly snapshots): " + ", ".join(
            f"{c} {v * 100:.1f}%" for c, v in report["broadcast_coverage"].items()
        ))  # fmt: skip
    if alerts:
        lines.append("")
        for r in report["rows"]:
            lines.append(
                f"{r['accepted'][:16]}  {r['alert']}  {r['msgType']:<6} {r['level']:<6}"
                f" {pct(r['delivered'])}  {r['verdict']}"
                f"{'' if r['live'] else '  (exercise/test)'}"
            )
    return "\n".join(lines)


def totals_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    fields = ["tier", "code", "live", "alerts", "delivered_mean", "informed_mean",
              "share_meeting_target", "median_minutes_to_target", "alerts_reaching_target",
              "by_level", "by_hazard"]  # fmt: skip
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in report["totals"]:
        writer.writerow(
            {**row, "by_level": " ".join(f"{k}={v}" for k, v in row["by_level"].items()),
             "by_hazard": " ".join(f"{k}={v}" for k, v in row["by_hazard"].items())}
        )  # fmt: skip
    return out.getvalue()


async def write_period(
    config: Config, store: Store, period: str, now: datetime, directory: Path, tz: timezone
) -> Path | None:
    """The last completed calendar `period`'s statistics as JSON and CSV files in
    `directory`, once (None when they are there already)."""
    start, end = calendar_period(period, now, tz)
    stem = directory / f"{period}-{start.date().isoformat()}"
    if await asyncio.to_thread(stem.with_suffix(".json").exists):
        return None
    report = await period_report(config, store, period, end=end, since=start)
    files = {
        stem.with_suffix(".csv"): totals_csv(report).encode(),
        stem.with_suffix(".json"): orjson.dumps(report, option=orjson.OPT_INDENT_2),
    }
    await asyncio.to_thread(_write, directory, files)
    return stem.with_suffix(".json")


def _write(directory: Path, files: dict[Path, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():  # the JSON last: its presence says "done"
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file
