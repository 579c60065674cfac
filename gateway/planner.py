"""Dispatch: the planning stage — plan, render, publish to units, enqueue batches.

For each accepted alert version (read from the planning streams, red/orange first) the
planner works out the deliveries (`plan`), renders each message once per channel ×
unit × language × kind (`render`), publishes the loudspeaker and screen messages as
the units' active state, and cuts push recipients into provider-sized batches on the
send streams. Planning is idempotent: a `done` mark stops a second run, and a run
interrupted before the mark enqueues batches that the send stage de-duplicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.callbacks import relay_code
from gateway.config import Config
from gateway.errors import RenderError
from gateway.escalation import Prediction, predict_unit, steps_for_prediction
from gateway.metrics import Metrics
from gateway.models import UNRELEASED, AlertRecord, AlertState, Channel, Level, MsgType
from gateway.plan import PULL_CHANNELS, PUSH_CHANNELS, Kind, Plan, plan_alert, target_units
from gateway.render import Context, Rendered, Renderer
from gateway.store import Batch, Publish, ReceiptUpdate, Store

__all__ = ["Planner", "lane_of", "message_field"]

log = logging.getLogger("warngate.planner")


EXPIRY = "expiry"  # message kind: a warning lifted because it reached its expiry


def lane_of(level: Level | str) -> str:
    return "hi" if Level(level).high_priority else "lo"


def message_field(channel: Channel | str, unit: str, lang: str, kind: Kind | str) -> str:
    return f"{channel}|{unit}|{lang}|{kind}"


def rendered_json(r: Rendered) -> str:
    return orjson.dumps(
        {
            "text": r.text,
            "title": r.title,
            "language": r.language,
            "requested": r.requested,
            "direction": r.direction,
            "variant": r.variant,
            "encoding": r.encoding,
            "segments": r.segments,
            "seconds": r.seconds,
            "template": r.template,
        }
    ).decode()


@dataclass
class _Renders:
    messages: dict[str, str] = field(default_factory=dict)
    by_key: dict[str, Rendered] = field(default_factory=dict)
    failures: dict[str, RenderError] = field(default_factory=dict)
    relay_codes: dict[str, str] = field(default_factory=dict)


class Planner:
    def __init__(
        self,
        config: Config,
        store: Store,
        renderer: Renderer,
        metrics: Metrics,
        batch_sizes: Mapping[Channel, int],
    ) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.metrics = metrics
        self.batch_sizes = dict(batch_sizes)

    async def plan(self, alert: str, *, now: datetime | None = None) -> Plan | None:
        """Plan one alert version; None when there is nothing (more) to do for it."""
        started = time.perf_counter()
        record = await self.store.get_alert(alert)
        if record is None or await self.store.plan_done(alert):
            return None
        if (
            record.state in UNRELEASED
        ):  # never queued while so; not marked done (it may be released)
            log.error("not planning %s: it is %s", alert, record.state.value)
            return None
        ttl = self._ttl(record)
        if record.alert.msgType is not MsgType.CANCEL and record.state is not AlertState.ACTIVE:
            # Superseded, cancelled or expired before it was planned: nothing goes out.
            log.info("not planning %s: it is %s", alert, record.state.value)
            await self.store.mark_plan_done(alert, ttl)
            self.metrics.plans.labels("skipped").inc()
            return None
        agency = self.config.registry.agencies.get(record.agency)
        if agency is None:
            log.error("not planning %s: agency %s is no longer configured", alert, record.agency)
            await self.store.mark_plan_done(alert, ttl)
            self.metrics.plans.labels("failed").inc()
            return None
        when = now or datetime.now(UTC)
        reached, previous = await self._earlier_versions(record)
        predictions: dict[str, Prediction] = {}
        steps: dict[str, list[str]] = {}
        if record.alert.msgType is not MsgType.CANCEL:
            predictions, steps = await self._predicted_steps(record, agency, when)
        plan = plan_alert(
            record,
            self.config.directory,
            self.config.policy,
            agency,
            now=when,
            geocode_names=self.config.settings.ingest.geocode_names,
            reached=reached,
            extra_steps=steps,
        )
        renders = self._render_all(record, plan, agency, previous)
        accepted_ms = int(record.received.timestamp() * 1000)
        summary = self._summary(record, plan, renders)
        for unit, pred in predictions.items():
            if unit in summary["units"]:
                summary["units"][unit]["predicted"] = round(pred.estimate, 4)
        await self.store.save_plan(alert, summary, renders.messages, {}, accepted_ms, ttl)
        if renders.relay_codes:
            await self.store.save_relay_codes(renders.relay_codes, self._ttl(record, report=False))
        await self._publish_units(record, plan, renders, previous, phase="plan")
        await self._enqueue(record, plan, renders, accepted_ms, phase="plan")
        await self.store.mark_plan_done(alert, ttl)
        self.metrics.plans.labels("planned").inc()
        self.metrics.plan_seconds.observe(time.perf_counter() - started)
        log.info(
            "planned %s (%s %s): %d units, %d push recipients, %d endpoints",
            alert,
            record.alert.msgType.value,
            record.level.value,
            len(plan.units),
            sum(len(g) for g in plan.push),
            len(plan.endpoints),
        )
        return plan

    async def escalate(
        self, record: AlertRecord, unit: str, step: str, *, now: datetime | None = None
    ) -> int:
        """Take one escalation step for one unit of a planned alert; deliveries added."""
        agency = self.config.registry.agencies.get(record.agency)
        if agency is None:
            return 0
        if step == "loudspeaker_repeat":
            return await self._repeat(record, unit)
        channels = {Channel.SMS} if step == "sms_officials" else {Channel(step)}
        plan = plan_alert(
            record,
            self.config.directory,
            self.config.policy,
            agency,
            now=now or datetime.now(UTC),
            geocode_names=self.config.settings.ingest.geocode_names,
            extra_steps={unit: [step]},
            only_units={unit},
            only_channels=channels,
        )
        renders = self._render_all(record, plan, agency, None)
        ttl = self._ttl(record)
        if renders.messages:
            await self.store.save_messages(record.id, renders.messages, ttl)
        if renders.relay_codes:
            await self.store.save_relay_codes(renders.relay_codes, self._ttl(record, report=False))
        phase = f"esc|{unit}|{step}"
        if plan.endpoints:
            await self._publish_units(record, plan, renders, None, merge=True, phase=phase)
        accepted_ms = int(record.received.timestamp() * 1000)
        await self._enqueue(record, plan, renders, accepted_ms, phase=phase)
        return plan.count()

    async def expire(self, alert: str) -> int:
        """An alert reached its expiry: its loudspeakers and screens are told, with the
        lifting message rendered in advance (a new seq, so devices up to date see it)."""
        summary = await self.store.plan_summary(alert) or {}
        units = {u for us in summary.get("pull_units", {}).values() for u in us}
        done = 0
        for unit in sorted(units):
            for entry in await self.store.unit_entries(unit):
                if entry.alert != alert or entry.data.get("action") != "play":
                    continue
                data = {
                    **entry.data,
                    "action": "cancel",
                    "reason": "expired",
                    "messages": entry.data.get("cancel_messages", {}),
                }
                if await self.store.publish(unit, alert, data, require_active=False):
                    done += 1
        return done

    async def _repeat(self, record: AlertRecord, unit: str) -> int:
        """Loudspeakers of the unit play the current entry once more (a new seq)."""
        for entry in await self.store.unit_entries(unit):
            if entry.alert == record.id and entry.data.get("action") == "play":
                data = {**entry.data, "repeat": int(entry.data.get("repeat", 0)) + 1}
                await self.store.publish(unit, record.id, data)
                return sum(
                    1
                    for e in self.config.directory.endpoints_by_unit.get(unit, [])
                    if e.kind.value == Channel.LOUDSPEAKER.value
                )
        return 0

    async def preview_inputs(
        self, record: AlertRecord, when: datetime
    ) -> tuple[dict[str, Prediction], dict[Channel, frozenset[str]], AlertRecord | None, set[str]]:
        """What planning `record` would start from, without planning it (the console's
        previews): predicted coverage per unit, who had earlier versions, the latest of
        those, and the endpoints counted as healthy."""
        agency = self.config.registry.agencies.get(record.agency)
        predictions: dict[str, Prediction] = {}
        if agency is not None and record.alert.msgType is not MsgType.CANCEL:
            predictions, _ = await self._predicted_steps(record, agency, when)
        reached, previous = await self._earlier_versions(record)
        return predictions, reached, previous, await self._healthy()

    async def _predicted_steps(
        self, record: AlertRecord, agency: Any, when: datetime
    ) -> tuple[dict[str, Prediction], dict[str, list[str]]]:
        """Predicted coverage per unit; ladder steps from the start where it is short."""
        directory, policy = self.config.directory, self.config.policy
        units, _ = target_units(record, directory, self.config.settings.ingest.geocode_names)
        healthy = await self._healthy()
        size = self.config.settings.dispatch.household_size
        predictions, steps = {}, {}
        for unit in units:
            if not agency.covers(unit):
                continue
            rules = policy.for_unit(unit)
            channels = rules.channels_for(record.level, when)
            pred = predict_unit(directory, unit, channels, healthy, size)
            predictions[unit] = pred
            more = steps_for_prediction(pred, rules.targets.binding, rules.escalation, channels)
            if more:
                steps[unit] = more
        return predictions, steps

    async def _healthy(self) -> set[str]:
        """Endpoints counted as working: a recent heartbeat, or (by default) none ever —
        a device never heard from is assumed to work rather than to have failed."""
        beats = await self.store.heartbeats()
        window = self.config.settings.endpoints.healthy_within_s * 1000
        now = time.time() * 1000
        unknown_ok = self.config.settings.endpoints.unknown_is_healthy
        return {
            e
            for e in self.config.directory.endpoints
            if (e in beats and now - beats[e] <= window) or (e not in beats and unknown_ok)
        }

    # -- inputs ------------------------------------------------------------------------

    async def _earlier_versions(
        self, record: AlertRecord
    ) -> tuple[dict[Channel, frozenset[str]], AlertRecord | None]:
        """Who may have had any version this one updates or cancels, and the latest of
        those it references.

        The whole chain counts, not only the versions referenced: someone an earlier
        Update never reached (its batch closed unsent when a later version came) still
        has the original, and must hear that it ended."""
        if not record.supersedes:
            return {}, None
        reached: dict[Channel, set[str]] = {c: set() for c in Channel}
        chain = await self._chain(record)
        for ref in chain:
            for channel in PUSH_CHANNELS:
                reached[channel] |= await self.store.may_have(ref.id, channel)
            summary = await self.store.plan_summary(ref.id) or {}
            for channel in PULL_CHANNELS:
                reached[channel] |= set(summary.get("pull_units", {}).get(channel.value, []))
        direct = [r for r in chain if r.id in record.supersedes]
        latest = max(direct, key=lambda r: r.received) if direct else None
        return {c: frozenset(ids) for c, ids in reached.items() if ids}, latest

    async def _chain(self, record: AlertRecord, limit: int = 200) -> list[AlertRecord]:
        """Every earlier version this one supersedes, directly or through others."""
        seen: dict[str, AlertRecord] = {}
        frontier = list(record.supersedes)
        while frontier and len(seen) < limit:
            found = await self.store.get_alerts([a for a in frontier if a not in seen])
            frontier = []
            for r in found:
                if r.id not in seen and r.id != record.id:
                    seen[r.id] = r
                    frontier.extend(r.supersedes)
        return list(seen.values())

    # -- rendering ---------------------------------------------------------------------

    def _render_all(
        self, record: AlertRecord, plan: Plan, agency: Any, previous: AlertRecord | None
    ) -> _Renders:
        # (channel, unit, language, kind); kind EXPIRY is the lifting message rendered in
        # advance for loudspeakers and screens, said when the warning reaches its expiry.
        wanted: set[tuple[Channel, str, str, str]] = set()
        for g in plan.push:
            wanted.add((g.channel, g.unit, g.language, g.kind.value))
        for e in plan.endpoints:
            for lang in e.endpoint.languages:
                wanted.add((e.channel, e.endpoint.unit, lang, e.kind.value))
                if e.kind is not Kind.CANCEL:
                    wanted.add((e.channel, e.endpoint.unit, lang, EXPIRY))
        out = _Renders()
        policy = self.config.policy
        secret = self.config.settings.secret.get_secret_value()
        for channel, unit, lang, kind_s in sorted(wanted):
            kind = Kind.CANCEL if kind_s == EXPIRY else Kind(kind_s)
            prev_level = previous.level if previous else None
            if kind is Kind.CANCEL and prev_level is None:
                prev_level = record.level
            code = relay_code(secret, record.id, unit) if channel is Channel.MESSENGER else None
            if code is not None:
                out.relay_codes[code] = f"{record.id}|{unit}"
            tz = policy.for_unit(unit).tz()
            at = record.expires if kind_s == EXPIRY else None
            ctx = Context(record, kind, unit, agency, prev_level, tz, relay_code=code, at=at)
            key = message_field(channel, unit, lang, kind_s)
            try:
                rendered = self.renderer.render(channel, lang, ctx)
            except RenderError as exc:
                out.failures[key] = exc
                code = getattr(exc, "code", "render-failed")
                self.metrics.render_failures.labels(channel.value, code).inc()
                log.warning("cannot render %s for %s: %s", key, record.id, exc)
                continue
            if rendered.fallback:
                self.metrics.render_fallbacks.labels(
                    channel.value, rendered.requested, rendered.language
                ).inc()
                log.info("fallback %s→%s for %s", rendered.requested, rendered.language, key)
            out.by_key[key] = rendered
            out.messages[key] = rendered_json(rendered)
        return out

    # -- outputs -------------------------------------------------------------------------

    def _summary(self, record: AlertRecord, plan: Plan, renders: _Renders) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for g in plan.push:
            counts[g.channel.value] = counts.get(g.channel.value, 0) + len(g)
        for e in plan.endpoints:
            counts[e.channel.value] = counts.get(e.channel.value, 0) + 1
        pull_units: dict[str, list[str]] = {}
        for e in plan.endpoints:
            units = pull_units.setdefault(e.channel.value, [])
            if e.endpoint.unit not in units:
                units.append(e.endpoint.unit)
        return {
            "alert": record.id,
            "msgType": record.alert.msgType.value,
            "steps": {u.code: list(u.steps) for u in plan.units if u.steps},
            "level": record.level.value,
            "exercise": record.exercise,
            "accepted_ms": int(record.received.timestamp() * 1000),
            "planned_ms": int(time.time() * 1000),
            "units": {
                u.code: {
                    "population": u.population,
                    "channels": [c.value for c in u.channels],
                    "languages": list(u.languages),
                }
                for u in plan.units
            },
            "targeted": {f"{u}|{c.value}": n for (u, c), n in plan.targeted().items()},
            "counts": counts,
            "pull_units": pull_units,
            "outside": plan.outside,
            "unresolved": plan.unresolved,
            "groups": plan.groups,
            "render_failures": [
                {"message": key, "code": getattr(exc, "code", "render-failed"), "error": str(exc)}
                for key, exc in sorted(renders.failures.items())
            ],
        }

    async def _publish_units(
        self,
        record: AlertRecord,
        plan: Plan,
        renders: _Renders,
        previous: AlertRecord | None,
        *,
        phase: str,
        merge: bool = False,
    ) -> None:
        """Loudspeakers and screens: one entry per unit, all their languages in it.
        Publishing is idempotent (a unit's entry is replaced); counting is once per
        `phase`."""
        by_unit: dict[str, dict[str, Any]] = {}
        views: set[tuple[str, Channel, Kind, tuple[str, ...]]] = set()
        for e in plan.endpoints:
            unit = e.endpoint.unit
            view = (unit, e.channel, e.kind, tuple(e.endpoint.languages))
            if view in views:  # the same messages as a device already seen
                continue
            views.add(view)
            entry = by_unit.setdefault(unit, {"kind": e.kind.value, "messages": {}, "expiry": {}})
            for lang in e.endpoint.languages:
                for kind, target in ((e.kind.value, "messages"), (EXPIRY, "expiry")):
                    key = message_field(e.channel, unit, lang, kind)
                    r = renders.by_key.get(key)
                    if r is not None:
                        entry[target].setdefault(e.channel.value, {})[lang] = _pull_message(r)
        counts: dict[Channel, int] = {}
        for e in plan.endpoints:
            counts[e.channel] = counts.get(e.channel, 0) + 1
        # Counted before publishing: devices fetch at once, and a `sent` receipt must
        # never find its delivery not yet counted as queued.
        await self.store.count_queued(
            record.id,
            {c.value: n for c, n in counts.items()},
            marker=f"{phase}|pull",
            ttl_s=self._ttl(record),
        )
        is_cancel = record.alert.msgType is MsgType.CANCEL
        chain = sorted(set(record.supersedes) | set(previous.supersedes if previous else []))
        items: list[Publish] = []
        for unit, parts in sorted(by_unit.items()):
            rules = self.config.policy.for_unit(unit)
            cancel_here = is_cancel or parts["kind"] == Kind.CANCEL.value
            reason = None
            if cancel_here:
                reason = "cancelled" if is_cancel else "area-changed"
            entry = {
                "id": record.id,
                "action": "cancel" if cancel_here else "play",
                "reason": reason,
                "kind": parts["kind"],
                "level": record.level.value,
                "hazard": record.hazards[0],
                "status": record.alert.status.value,
                "exercise_only": record.exercise and rules.exercise_only_marked,
                "groups": plan.groups,
                "expires": int(record.expires.timestamp() * 1000),
                "supersedes": chain,
                "messages": parts["messages"],
                "cancel_messages": parts["expiry"],
                "repeat": plan.repeats.get(unit, 0),
            }
            if merge:  # an escalation adds a channel to the entry the unit already has
                for old in await self.store.unit_entries(unit):
                    if old.alert == record.id:
                        for key in ("messages", "cancel_messages"):
                            entry[key] = {**old.data.get(key, {}), **entry[key]}
                        entry["repeat"] = old.data.get("repeat", 0)
            items.append(Publish(unit, record.id, entry, chain, not cancel_here))
        await self.store.publish_many(items)

    async def _enqueue(
        self, record: AlertRecord, plan: Plan, renders: _Renders, accepted_ms: int, *, phase: str
    ) -> None:
        """Push recipients in provider-sized batches on the send streams, each batch
        queued (and counted) once per `phase` however often planning runs."""
        lane = lane_of(record.level)
        ttl = self._ttl(record, report=False)  # batch ids name recipients
        by_stream: dict[tuple[str, str], list[Batch]] = {}
        failed: dict[Channel, list[ReceiptUpdate]] = {}
        failed_counts: dict[str, int] = {}
        for g in plan.push:
            key = message_field(g.channel, g.unit, g.language, g.kind)
            cols = g.columns
            if key in renders.failures:
                failed_counts[g.channel.value] = failed_counts.get(g.channel.value, 0) + len(g)
                failed.setdefault(g.channel, []).extend(
                    ReceiptUpdate(
                        cols.ids[i],
                        "failed",
                        g.unit,
                        str(cols.persons[i]),
                        g.language,
                        cols.groups[i],
                    )
                    for i in g.rows
                )
                continue
            size = self.batch_sizes.get(g.channel, self.config.settings.dispatch.batch_size)
            stream = self.store.keys.send_queue(g.channel.value, lane)
            ids, addresses, groups = cols.ids, cols.addresses, cols.groups
            # Messengers stand for nobody until they report the households they told.
            persons = ["0"] * len(cols) if g.channel is Channel.MESSENGER else cols.persons
            for start in range(0, len(g.rows), size):
                rows = g.rows[start : start + size]
                # Written straight into the stream's packed form: no object per person.
                packed = "\n".join(
                    f"{ids[i]}\t{addresses[i]}\t{persons[i]}\t{groups[i]}" for i in rows
                )
                by_stream.setdefault((g.channel.value, stream), []).append(
                    Batch(
                        alert=record.id,
                        channel=g.channel.value,
                        unit=g.unit,
                        language=g.language,
                        kind=g.kind.value,
                        message=key,
                        level=record.level.value,
                        accepted_ms=accepted_ms,
                        packed=packed,
                    )
                )
        # Deliveries that cannot be rendered count as queued, then fail: once.
        if await self.store.count_queued(
            record.id, failed_counts, marker=f"{phase}|unrendered", ttl_s=ttl
        ):
            for channel, updates in failed.items():
                await self.store.record(record.id, channel.value, updates, accepted_ms=accepted_ms)
                self.metrics.deliveries.labels(channel.value, "-", "failed").inc(len(updates))
        for (channel_name, stream), batches in by_stream.items():
            await self.store.enqueue(
                record.id, channel_name, stream, batches, phase=phase, ttl_s=ttl
            )

    def _ttl(self, record: AlertRecord, *, report: bool = True) -> int:
        """How long an alert's planning data is kept (retention settings): what
        reports need, or (`report=False`) what names recipients."""
        return self.store.keep_s(int(record.expires.timestamp() * 1000), report=report)


def _pull_message(r: Rendered) -> dict[str, Any]:
    return {
        "text": r.text,
        "language": r.language,
        "direction": r.direction,
        "seconds": r.seconds,
    }
