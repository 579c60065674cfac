"""Console: previews — every channel × language exactly as it will go out, before release.

A preview runs the real stages without their effects: ingest's checks (`prepare`, no
store), the planner's inputs (predicted coverage, earlier versions, healthy devices),
`plan_alert` and the `Renderer`, with the relay code a messenger task will carry. Limit
failures (SMS segments, screen pages, speech seconds, app length) are shown per unit
before release instead of being found after. Nothing is stored, queued or counted in
the live metrics. Also: predicted coverage per unit and in total, units without a
healthy loudspeaker and what each fallback channel of the escalation ladder would add,
alerts of the same hazard over an overlapping area in the last 24 hours (duplicates),
and a drill that references a live warning (which ingest refuses).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.auth import Agency
from gateway.callbacks import relay_code
from gateway.codes import Tier
from gateway.config import Config
from gateway.console.approval import needs_approval, units_of
from gateway.coverage import DEFINITION
from gateway.directory import Channel
from gateway.errors import LimitExceeded, RenderError
from gateway.escalation import predict_unit
from gateway.ingest import Ingestor
from gateway.models import AlertRecord, AlertState, MsgType, Status
from gateway.plan import Kind, Plan, plan_alert
from gateway.planner import Planner
from gateway.render import Context, Rendered, Renderer, layout_lines
from gateway.store import Store

__all__ = ["DUPLICATE_HOURS", "Previewer"]

DUPLICATE_HOURS = 24
CHANNEL_ORDER = (Channel.SMS, Channel.APP, Channel.LOUDSPEAKER, Channel.DISPLAY, Channel.MESSENGER)


@dataclass(frozen=True)
class _Key:
    channel: Channel
    unit: str
    language: str
    kind: Kind


class Previewer:
    def __init__(
        self, config: Config, store: Store, renderer: Renderer, ingestor: Ingestor, planner: Planner
    ) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.ingestor = ingestor
        self.planner = planner

    async def preview(
        self,
        agency: Agency,
        body: bytes,
        content_type: str | None,
        *,
        unit: str | None = None,
        drafted_by: str | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """The preview of an alert as `agency` would post it; raises the problem ingest
        would answer."""
        when = now or datetime.now(UTC)
        prepared = await asyncio.to_thread(self.ingestor.prepare, agency, body, content_type, when)
        record = prepared.record.model_copy(update={"supersedes": prepared.refs})
        refs = await self.store.get_alerts(prepared.refs)
        predictions, reached, previous, healthy = await self.planner.preview_inputs(record, when)
        plan = plan_alert(
            record,
            self.config.directory,
            self.config.policy,
            agency,
            now=when,
            geocode_names=self.config.settings.ingest.geocode_names,
            reached=reached,
        )
        units = sorted({g.unit for g in plan.push} | {e.endpoint.unit for e in plan.endpoints})
        shown = unit if unit in units else (units[0] if units else None)
        rendered, failures = await asyncio.to_thread(
            self._render, record, plan, agency, previous, shown
        )
        held = needs_approval(self.config, record) and not (
            drafted_by is None and agency.auto_release
        )
        return {
            "id": record.id,
            "alert": record.alert.to_cap_dict(),
            "msgType": record.alert.msgType.value,
            "status": record.alert.status.value,
            "exercise": record.exercise,
            "level": record.level.value,
            "hazards": record.hazards,
            "expires": record.expires.isoformat(),
            "on_submit": AlertState.PENDING.value if held else AlertState.ACTIVE.value,
            "approval": self._approval(record, held),
            "unit": shown,
            "units": units,
            "messages": rendered,
            "failures": failures,
            "deliveries": dict(Counter(g.channel.value for g in plan.push for _ in g.rows))
            | dict(Counter(e.channel.value for e in plan.endpoints)),
            "coverage": self._coverage(record, plan, predictions, healthy, when),
            "duplicates": await self._duplicates(record, prepared.refs, when),
            "warnings": self._warnings(record, refs),
            "outside": plan.outside,
            "unresolved": plan.unresolved,
        }

    def _approval(self, record: AlertRecord, held: bool) -> dict[str, Any]:
        windows = [
            self.config.policy.for_unit(u).approval.emergency_release_minutes
            for u in units_of(self.config, record)
        ]
        return {"required": held, "emergency_release_minutes": min(windows, default=0)}

    # -- messages --------------------------------------------------------------------

    def _render(
        self,
        record: AlertRecord,
        plan: Plan,
        agency: Agency,
        previous: AlertRecord | None,
        shown: str | None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every message of the plan rendered once (as the planner does); the shown
        unit's in full, and every failure of any unit."""
        wanted: Counter[_Key] = Counter()
        for g in plan.push:
            wanted[_Key(g.channel, g.unit, g.language, g.kind)] += len(g)
        for e in plan.endpoints:
            for lang in e.endpoint.languages:
                wanted[_Key(e.channel, e.endpoint.unit, lang, e.kind)] += 1
        secret = self.config.settings.secret.get_secret_value()
        messages: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        by_message: Counter[tuple[str, str, str]] = Counter()
        for key, n in wanted.items():
            by_message[(key.channel.value, key.language, key.kind.value)] += n
        order = {c: i for i, c in enumerate(CHANNEL_ORDER)}
        for key in sorted(wanted, key=lambda k: (order[k.channel], k.unit, k.language, k.kind)):
            prev_level = previous.level if previous else None
            if key.kind is Kind.CANCEL and prev_level is None:
                prev_level = record.level
            code = (
                relay_code(secret, record.id, key.unit)
                if key.channel is Channel.MESSENGER
                else None
            )
            tz = self.config.policy.for_unit(key.unit).tz()
            ctx = Context(record, key.kind, key.unit, agency, prev_level, tz, relay_code=code)
            try:
                r = self.renderer.render(key.channel, key.language, ctx)
            except RenderError as exc:
                failures.append(_failure(key, exc))
                continue
            if key.unit == shown:
                row = _message(r, key, wanted[key])
                row["all_units"] = by_message[(key.channel.value, key.language, key.kind.value)]
                if key.channel is Channel.DISPLAY:
                    row["screens"] = self._screens(r.text, key.unit)
                messages.append(row)
        return messages, failures

    def _screens(self, text: str, unit: str) -> list[dict[str, Any]]:
        """The text page by page on every screen geometry of the unit."""
        out = []
        geometries = sorted(
            {
                (e.display.chars_per_line, e.display.lines)
                for e in self.config.directory.endpoints_by_unit.get(unit, [])
                if e.display is not None
            }
        )
        pages_max = self.config.settings.render.display_max_pages
        for chars, lines in geometries:
            try:
                laid = layout_lines(text, chars, lines * pages_max)
            except LimitExceeded as exc:
                out.append(
                    {"chars_per_line": chars, "lines": lines, "error": str(exc), "pages": []}
                )
                continue
            pages = [laid[i : i + lines] for i in range(0, len(laid), lines)]
            out.append({"chars_per_line": chars, "lines": lines, "pages": pages})
        return out

    # -- coverage --------------------------------------------------------------------

    def _coverage(
        self,
        record: AlertRecord,
        plan: Plan,
        predictions: dict[str, Any],
        healthy: set[str],
        when: datetime,
    ) -> dict[str, Any]:
        directory, policy = self.config.directory, self.config.policy
        size = self.config.settings.dispatch.household_size
        rows: list[dict[str, Any]] = []
        for target in plan.units:
            unit = target.code
            div = directory.divisions[unit]
            rules = policy.for_unit(unit)
            speakers = [
                e
                for e in directory.endpoints_by_unit.get(unit, [])
                if e.kind.value == "loudspeaker"
            ]
            pred = predictions.get(unit)
            planned = set(target.channels)
            fallback = {}
            for step in rules.escalation:
                if step in {c.value for c in Channel} and Channel(step) not in planned:
                    extra = predict_unit(directory, unit, [Channel(step)], healthy, size)
                    fallback[step] = round(extra.reach.get(step, 0.0), 4)
            rows.append(
                {
                    "unit": unit,
                    "name": div.label("zh"),
                    "names": div.name,
                    "county": next(
                        (a for a in directory.ancestors(unit) if _tier(a) is Tier.COUNTY), None
                    ),
                    "population": target.population,
                    "channels": [c.value for c in target.channels],
                    "predicted": round(pred.estimate, 4) if pred else None,
                    "reach": {k: round(v, 4) for k, v in (pred.reach if pred else {}).items()},
                    "target": rules.targets.binding,
                    "loudspeakers": len(speakers),
                    "healthy_loudspeakers": sum(1 for e in speakers if e.id in healthy),
                    "no_healthy_loudspeaker": not any(e.id in healthy for e in speakers),
                    "fallback": fallback,
                }
            )
        population = sum(r["population"] for r in rows)
        predicted = [r for r in rows if r["predicted"] is not None]
        total = (
            sum(r["predicted"] * r["population"] for r in predicted) / population
            if population and predicted
            else None
        )
        return {
            "definition": DEFINITION,
            "population": population,
            "predicted": round(total, 4) if total is not None else None,
            "target": max((r["target"] for r in rows), default=None),
            "units": rows,
        }

    # -- duplicates and warnings --------------------------------------------------------

    async def _duplicates(
        self, record: AlertRecord, refs: list[str], when: datetime
    ) -> list[dict[str, Any]]:
        """Alerts of the same hazard, status world and overlapping area accepted in the
        last 24 hours that are not what this one updates or cancels."""
        if record.alert.msgType is not MsgType.ALERT:
            return []
        mine = set(units_of(self.config, record))
        since = when - timedelta(hours=DUPLICATE_HOURS)
        out = []
        for other in await self.store.alerts_between(since, when + timedelta(seconds=1)):
            if other.id == record.id or other.id in refs:
                continue
            if other.state in (AlertState.REJECTED, AlertState.CANCELLED):
                continue
            if other.alert.status is not record.alert.status:
                continue
            if other.alert.msgType is MsgType.CANCEL or not set(other.hazards) & set(
                record.hazards
            ):
                continue
            overlap = mine & set(units_of(self.config, other))
            if overlap:
                out.append(
                    {
                        "id": other.id,
                        "state": other.state.value,
                        "level": other.level.value,
                        "hazards": other.hazards,
                        "received": other.received.isoformat(),
                        "headline": other.alert.info[0].headline or other.alert.info[0].event,
                        "overlap": len(overlap),
                    }
                )
        return out

    def _warnings(self, record: AlertRecord, refs: list[AlertRecord]) -> list[dict[str, str]]:
        out = []
        if record.exercise:
            live = [r.id for r in refs if r.alert.status is Status.ACTUAL]
            if live:
                out.append(
                    {
                        "code": "drill-references-live",
                        "message": "a drill references a live warning: the gateway refuses it"
                        f" (status-mismatch): {', '.join(live)}",
                    }
                )
        for r in refs:
            if r.state in (AlertState.PENDING, AlertState.REJECTED):
                out.append(
                    {
                        "code": "reference-not-released",
                        "message": f"{r.id} was never sent ({r.state.value})",
                    }
                )
        return out


def _tier(code: str) -> Tier:
    from gateway import codes

    return codes.tier(code)


def _message(r: Rendered, key: _Key, recipients: int) -> dict[str, Any]:
    return {
        "channel": key.channel.value,
        "unit": key.unit,
        "requested": key.language,
        "language": r.language,
        "kind": key.kind.value,
        "text": r.text,
        "title": r.title,
        "direction": r.direction,
        "variant": r.variant,
        "encoding": r.encoding,
        "segments": r.segments,
        "seconds": r.seconds,
        "template": r.template,
        "recipients": recipients,
    }


def _failure(key: _Key, exc: RenderError) -> dict[str, Any]:
    row: dict[str, Any] = {
        "channel": key.channel.value,
        "unit": key.unit,
        "language": key.language,
        "kind": key.kind.value,
        "code": exc.code,
        "error": str(exc),
    }
    if isinstance(exc, LimitExceeded):
        row.update({"limit": exc.limit, "measured": exc.measured, "allowed": exc.allowed})
    return row
