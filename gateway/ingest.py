"""Ingest: authenticate → parse → validate → authorize → save and enqueue, in that order.

Authentication comes first (before parsing) so that an anonymous caller learns nothing
about the body and costs the gateway nothing more than a hash. Nothing is fanned out
here: the alert is persisted and queued atomically, and the answer names its id.

The work of one request is bounded: the body's size, then its parts (`ingest.limits`)
before validation, then the number of errors in the answer. Parsing, validation and
the geometry of bodies over `ingest.thread_above_bytes` run in a worker thread, so the
event loop keeps answering everyone else meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from gateway import codes
from gateway.auth import Agency, Principal
from gateway.cap import CapNote, capped, decode, to_alert
from gateway.config import Config
from gateway.console.approval import intake
from gateway.directory import circle_geometry, polygon_geometry
from gateway.errors import Conflict, FieldError, Forbidden, Unprocessable
from gateway.models import (
    Alert,
    AlertRecord,
    AlertState,
    Area,
    Info,
    Level,
    MsgType,
    Severity,
    Status,
    clip,
    format_cap_time,
    parse_circle,
    parse_polygon,
)
from gateway.plan import groups_of
from gateway.store import AcceptOutcome, Store, alert_id

__all__ = ["Accepted", "Ingestor", "alert_level", "area_codes", "content_hash"]

LEVEL_PARAMETERS = ("level", "warningLevel", "预警级别")
_LEVEL_WORDS = {
    Level.RED: {"red", "红", "红色", "i", "Ⅰ", "1"},
    Level.ORANGE: {"orange", "橙", "橙色", "ii", "Ⅱ", "2"},
    Level.YELLOW: {"yellow", "黄", "黄色", "iii", "Ⅲ", "3"},
    Level.BLUE: {"blue", "蓝", "蓝色", "iv", "Ⅳ", "4"},
}
_SEVERITY_LEVEL = {
    Severity.EXTREME: Level.RED,
    Severity.SEVERE: Level.ORANGE,
    Severity.MODERATE: Level.YELLOW,
    Severity.MINOR: Level.BLUE,
}
DISSEMINATED_STATUSES = (Status.ACTUAL, Status.EXERCISE, Status.TEST)
DISSEMINATED_TYPES = (MsgType.ALERT, MsgType.UPDATE, MsgType.CANCEL)


def content_hash(alert: Alert) -> str:
    """Hash of the alert's meaning: the same alert as XML or JSON hashes alike."""
    return hashlib.sha256(
        orjson.dumps(alert.to_cap_dict(), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


def info_level(info: Info) -> Level | None:
    """The level parameter if given (red/红色/Ⅰ …), else the one implied by severity."""
    for name in LEVEL_PARAMETERS:
        for value in info.parameters(name):
            key = value.strip().casefold().removesuffix("预警")
            for level, words in _LEVEL_WORDS.items():
                if key in {w.casefold() for w in words}:
                    return level
            raise ValueError(f"unknown warning level {value!r} (use red, orange, yellow or blue)")
    return _SEVERITY_LEVEL.get(info.severity)


def alert_level(alert: Alert) -> Level:
    """The most severe level over all info blocks; raises ValueError if none can be told."""
    levels = []
    for info in alert.info:
        level = info_level(info)
        if level is None:
            raise ValueError("no level parameter and severity Unknown")
        levels.append(level)
    return min(levels, key=lambda lv: lv.rank)


def area_codes(info: Info, geocode_names: set[str]) -> list[list[str]]:
    """Division codes per area of an info block (geocodes with a division valueName)."""
    out = []
    for area in info.area:
        found = []
        for g in area.geocode:
            if g.valueName.casefold() in geocode_names:
                found.append(codes.normalize(g.value))
        out.append(found)
    return out


@dataclass(frozen=True)
class Accepted:
    """The answer to an accepted (or repeated) alert."""

    status: int
    body: dict[str, Any]
    record: AlertRecord | None = None
    outcome: AcceptOutcome | None = None


@dataclass(frozen=True)
class Checked:
    level: Level
    hazards: list[str]


@dataclass(frozen=True)
class Prepared:
    """An alert read, checked and authorized: what is left is the store's atomic step."""

    record: AlertRecord
    refs: list[str]
    notes: list[CapNote]
    format: str
    # True when the alert's own areas reach no known unit (an Update that only its
    # references' recipients would hear of).
    needs_known_reference: bool


class Ingestor:
    def __init__(self, config: Config, store: Store | None) -> None:
        self.config = config
        self.store = store
        self._geocode_names = {n.casefold() for n in config.settings.ingest.geocode_names}
        self._large = asyncio.Semaphore(1)

    def authenticate(self, authorization: str | None) -> Principal:
        return self.config.registry.authenticate(authorization)

    async def ingest(
        self,
        principal: Principal,
        body: bytes,
        content_type: str | None,
        *,
        remote: str = "",
        now: datetime | None = None,
        drafted_by: str | None = None,
        check: Callable[[AlertRecord], None] | None = None,
    ) -> Accepted:
        """`drafted_by`: the console account that wrote it for `principal` (the agency
        of the account), None for the agency's own API post; `check` raises a problem
        for what that person may not post (their jurisdiction), before anything is stored."""
        if not isinstance(principal, Agency):
            raise Forbidden("duty operators may read but not post alerts", code="not-an-agency")
        received = now or datetime.now(UTC)
        if len(body) > self.config.settings.ingest.thread_above_bytes:
            # One large body at a time: each thread more takes GIL turns from the loop.
            async with self._large:
                prepared = await asyncio.to_thread(
                    self.prepare, principal, body, content_type, received
                )
        else:
            prepared = self.prepare(principal, body, content_type, received)
        if check is not None:
            check(prepared.record)
        # Nothing is planned before approval where the policy asks for it.
        record = intake(self.config, prepared.record, principal, drafted_by)
        alert = record.alert
        audit = {
            "event": "posted",
            "id": record.id,
            "agency": principal.id,
            "sender": alert.sender,
            "identifier": alert.identifier,
            "sent": alert.sent.isoformat(),
            "msgType": alert.msgType.value,
            "status": alert.status.value,
            "level": record.level.value,
            "format": prepared.format,
            "remote": remote,
            "at": int(received.timestamp() * 1000),
            "by": drafted_by or principal.id,
            "state": record.state.value,
        }
        if record.approval and record.approval.get("decision") == "auto-release":
            audit["approval"] = "auto-release"
        assert self.store is not None, "an Ingestor without a store can only check"
        outcome = await self.store.accept(
            record, prepared.refs, audit, needs_known_reference=prepared.needs_known_reference
        )
        return self._answer(record, outcome, prepared.notes)

    def prepare(
        self, agency: Agency, body: bytes, content_type: str | None, received: datetime
    ) -> Prepared:
        """Everything before the store, without I/O (so it may run in a thread)."""
        limits = self.config.settings.ingest.limits
        decoded = decode(body, content_type, limits)
        alert = to_alert(decoded.data, limits)
        checked = self.check(alert, received)
        reaches = self._authorize(agency, alert, checked)
        if not reaches and alert.msgType is MsgType.ALERT:
            raise _unknown_area()
        return Prepared(
            self._record(agency, alert, checked, received),
            [alert_id(r.sender, r.identifier) for r in alert.references],
            decoded.notes,
            decoded.format,
            needs_known_reference=not reaches and alert.msgType is MsgType.UPDATE,
        )

    # -- checks ----------------------------------------------------------------------

    def check(self, alert: Alert, received: datetime, *, expiry: bool = True) -> Checked:
        """The gateway's acceptance rules beyond CAP: raise `Unprocessable` naming fields.

        `expiry=False` (`warngate validate` of files) leaves out the rules that depend on
        the present: expiry and how far `sent` may lie from the gateway's clock."""
        errors: list[FieldError] = []
        errors += self._times(alert, received if expiry else None)
        if alert.status not in DISSEMINATED_STATUSES:
            errors.append(
                FieldError("status", f"{alert.status.value} messages are not disseminated")
            )
        if alert.msgType not in DISSEMINATED_TYPES:
            errors.append(
                FieldError("msgType", f"{alert.msgType.value} messages are not disseminated")
            )
        own = alert_id(alert.sender, alert.identifier)
        for i, ref in enumerate(alert.references):
            if alert_id(ref.sender, ref.identifier) == own:
                errors.append(FieldError(f"references[{i}]", "an alert cannot reference itself"))
        hazards: list[str] = []
        levels: list[Level] = []
        for i, info in enumerate(alert.info):
            hazard = self.config.hazards.resolve(info)
            if hazard is None:
                known = ", ".join(sorted(self.config.hazards.by_id))
                errors.append(
                    FieldError(
                        f"info[{i}].event",
                        f"unknown hazard {clip(info.event)!r}; name one of [{known}] in an"
                        " eventCode 'hazard' or in the event text",
                    )
                )
            elif hazard not in hazards:
                hazards.append(hazard)
            try:
                level = info_level(info)
            except ValueError as exc:
                errors.append(FieldError(f"info[{i}].parameter", str(exc)))
            else:
                if level is None:
                    errors.append(
                        FieldError(
                            f"info[{i}].severity",
                            "severity Unknown needs a 'level' parameter (red/orange/yellow/blue)",
                        )
                    )
                else:
                    levels.append(level)
            for j, area in enumerate(info.area):
                errors += self._circles(area, f"info[{i}].area[{j}]")
                usable = bool(area.polygon or area.circle)
                for k, g in enumerate(area.geocode):
                    if g.valueName.casefold() not in self._geocode_names:
                        continue
                    try:
                        codes.normalize(g.value)
                        usable = True
                    except ValueError:
                        errors.append(
                            FieldError(
                                f"info[{i}].area[{j}].geocode[{k}]",
                                f"not a division code: {clip(g.value)!r} (expected 6, 9, 12 or"
                                " 15 digits)",
                            )
                        )
                if not usable:
                    errors.append(
                        FieldError(
                            f"info[{i}].area[{j}]",
                            "no polygon, circle or division geocode to target (geocode valueNames"
                            " accepted: "
                            + ", ".join(self.config.settings.ingest.geocode_names)
                            + ")",
                        )
                    )
        known_groups = self.config.directory.groups
        for name in groups_of(alert):
            if known_groups and name not in known_groups:
                errors.append(
                    FieldError(
                        "info.parameter",
                        f"unknown population group {clip(name)!r} (groups.yaml has: "
                        + ", ".join(sorted(known_groups))
                        + ")",
                    )
                )
        if expiry and not errors and self._expires(alert) <= received:
            errors.append(FieldError("info.expires", "the alert has already expired"))
        if errors:
            shown, extra = capped(errors, self.config.settings.ingest.limits.errors)
            raise Unprocessable(
                "; ".join(f"{e.loc}: {e.msg}" for e in shown[:3]),
                code="unacceptable-alert",
                errors=shown,
                title="Invalid alert",
                extra=extra,
            )
        return Checked(min(levels, key=lambda lv: lv.rank), hazards)

    def _times(self, alert: Alert, now: datetime | None) -> list[FieldError]:
        """`sent` at most `ingest.max_future_s` ahead of the gateway's clock (when `now`
        is given). Times outside 1970–2999 never get here: the CAP model refuses them."""
        ahead = self.config.settings.ingest.max_future_s
        if now is not None and alert.sent > now + timedelta(seconds=ahead):
            return [
                FieldError(
                    "sent",
                    f"{format_cap_time(alert.sent)} is more than {ahead} s ahead of the"
                    " gateway's clock (ingest.max_future_s)",
                )
            ]
        return []

    def _circles(self, area: Area, loc: str) -> list[FieldError]:
        limit = self.config.settings.ingest.max_circle_km
        errors = []
        for k, text in enumerate(area.circle):
            radius = parse_circle(text)[2]
            if radius > limit:
                errors.append(
                    FieldError(
                        f"{loc}.circle[{k}]",
                        f"radius {radius:g} km is over the gateway's limit of {limit:g} km"
                        " (ingest.max_circle_km); a circle is refused, never clipped",
                    )
                )
        return errors

    def _authorize(self, agency: Agency, alert: Alert, checked: Checked) -> bool:
        """Refuse what the agency may not post; True when the alert's areas reach at
        least one known unit of its jurisdiction (or the directory has no units)."""
        if alert.sender not in agency.senders:
            raise Forbidden(
                f"sender {alert.sender!r} is not one of agency {agency.id}'s senders",
                code="sender-not-allowed",
                errors=[FieldError("sender", "not a sender of this agency")],
            )
        if alert.status not in agency.statuses:
            raise Forbidden(
                f"agency {agency.id} may not post status {alert.status.value}",
                code="status-not-allowed",
                errors=[FieldError("status", f"{alert.status.value} not allowed")],
            )
        foreign = [str(r) for r in alert.references if r.sender not in agency.senders]
        if foreign:
            raise Forbidden(
                "references to another sender's alerts are refused: " + " ".join(foreign),
                code="foreign-reference",
                extra={"references": foreign},
            )
        bad_hazards = [h for h in checked.hazards if not agency.may_warn(h)]
        if bad_hazards:
            raise Forbidden(
                f"agency {agency.id} may not warn about: {', '.join(bad_hazards)}",
                code="hazard-not-allowed",
                extra={"hazards": bad_hazards},
            )
        outside: list[str] = []
        errors: list[FieldError] = []
        reaches = not self.config.directory.units  # no directory: planning reports it
        for i, info in enumerate(alert.info):
            for j, (area, found) in enumerate(
                zip(info.area, area_codes(info, self._geocode_names), strict=True)
            ):
                for code in found:
                    if not agency.covers(code):
                        outside.append(code)
                        errors.append(
                            FieldError(
                                f"info[{i}].area[{j}]", f"{code} is outside the jurisdiction"
                            )
                        )
                    elif not reaches:
                        reaches = self._known(code)
                if not found:
                    touched = self._shape_touches(agency, area.polygon, area.circle)
                    reaches = reaches or touched
                    if not touched:
                        errors.append(
                            FieldError(
                                f"info[{i}].area[{j}]",
                                "polygon/circle does not touch any unit of the jurisdiction",
                            )
                        )
                elif not reaches and (area.polygon or area.circle):
                    # The planner targets the union of geocodes and shapes.
                    reaches = self._shape_touches(agency, area.polygon, area.circle)
        if errors:
            codes_out = list(dict.fromkeys(outside))
            limit = self.config.settings.ingest.limits.errors
            shown, extra = capped(errors, limit)
            raise Forbidden(
                "area outside the agency's jurisdiction"
                + (f": {', '.join(codes_out[:limit])}" if outside else ""),
                code="area-not-allowed",
                errors=shown,
                extra={"codes": codes_out[:limit], "jurisdiction": agency.jurisdiction, **extra},
            )
        return reaches

    def _known(self, code: str) -> bool:
        """Whether a division code selects at least one unit of the directory (the
        planner's rule: a village or grid its village, a higher code every unit under
        it), by bisection in the sorted unit list."""
        directory = self.config.directory
        if codes.tier(code) >= codes.Tier.VILLAGE:
            return directory.unit_of(code) is not None
        prefix = codes.significant(code)
        units = directory.units
        at = bisect.bisect_left(units, prefix)
        return at < len(units) and units[at].startswith(prefix)

    def _shape_touches(self, agency: Agency, polygons: list[str], circles: list[str]) -> bool:
        directory = self.config.directory
        if not directory.units:
            return True  # no geometry configured: planning reports what it could not place
        shapes = [polygon_geometry(parse_polygon(p)) for p in polygons]
        shapes += [circle_geometry(*parse_circle(c)) for c in circles]
        return any(agency.covers(u) for shape in shapes for u in directory.units_in(shape))

    def _expires(self, alert: Alert) -> datetime:
        lifetime = timedelta(seconds=self.config.settings.ingest.default_lifetime_s)
        return max(info.expires or (alert.sent + lifetime) for info in alert.info)

    def _record(
        self, agency: Agency, alert: Alert, checked: Checked, received: datetime
    ) -> AlertRecord:
        return AlertRecord(
            id=alert_id(alert.sender, alert.identifier),
            agency=agency.id,
            received=received,
            level=checked.level,
            hazards=checked.hazards,
            state=AlertState.ACTIVE,
            content_hash=content_hash(alert),
            alert=alert,
            expires=self._expires(alert),
        )

    def _answer(
        self, record: AlertRecord, outcome: AcceptOutcome, notes: list[CapNote]
    ) -> Accepted:
        if outcome.kind == "conflict":
            raise Conflict(
                f"alert {record.alert.sender},{record.alert.identifier} is already stored with"
                " other content; post a new identifier (an Update) to change it",
                code="identifier-reused",
                extra={"id": record.id, "links": links(record.id)},
            )
        if outcome.kind == "nothing":
            raise Unprocessable(
                "Cancel references no alert this gateway knows; nothing was changed",
                code="nothing-to-cancel",
                title="Nothing to cancel",
                extra={"unknown_references": outcome.unknown_refs},
            )
        if outcome.kind == "unknown-area":
            raise _unknown_area(outcome.unknown_refs)
        if outcome.kind == "status-mismatch":
            raise _status_mismatch(record.alert, outcome.mismatched)
        if outcome.kind == "not-released":
            raise Conflict(
                "references alerts that were never sent ("
                + ", ".join(f"{ref}: {state}" for ref, state in outcome.mismatched)
                + "): one waiting for approval is rejected, not updated or cancelled",
                code="reference-not-released",
                extra={"references": [{"id": r, "state": st} for r, st in outcome.mismatched]},
            )
        body: dict[str, Any] = {
            "id": record.id,
            "status": "accepted" if outcome.kind == "new" else "duplicate",
            "links": links(record.id),
        }
        if outcome.kind == "new":
            cancel = record.alert.msgType is MsgType.CANCEL
            held = record.state is AlertState.PENDING
            body["state"] = (AlertState.CANCELLED if cancel and not held else record.state).value
            body["level"] = record.level.value
            body["hazards"] = record.hazards
            body["msgType"] = record.alert.msgType.value
            body["exercise"] = record.exercise
            if outcome.known_refs:
                verb = "cancels" if record.alert.msgType is MsgType.CANCEL else "supersedes"
                body[verb] = outcome.known_refs
            if outcome.unknown_refs:
                body["unknown_references"] = outcome.unknown_refs
                body["flags"] = ["references-unknown"]
        if notes:
            limit = self.config.settings.ingest.limits.errors
            body["warnings"] = [n.as_dict() for n in notes[:limit]]
            if len(notes) > limit:
                body["warnings_omitted"] = len(notes) - limit
        return Accepted(202 if outcome.kind == "new" else 200, body, record, outcome)


def _unknown_area(unknown_refs: list[str] | None = None) -> Unprocessable:
    extra: dict[str, Any] = {}
    if unknown_refs is not None:
        extra["unknown_references"] = unknown_refs
    return Unprocessable(
        "none of the alert's areas is a village or community this gateway knows (its"
        " geocodes select no unit of the directory, its shapes touch none), so nobody would"
        " be warned; check the codes, or warn by another way while the directory lacks them",
        code="unknown-area",
        title="Alert would reach nobody",
        errors=[FieldError("info.area", "selects no unit of the directory")],
        extra=extra,
    )


def _status_mismatch(alert: Alert, mismatched: list[tuple[str, str]]) -> Unprocessable:
    """A drill must never change a live warning, nor a live message a drill's."""
    by_id = {alert_id(r.sender, r.identifier): (i, str(r)) for i, r in enumerate(alert.references)}
    refs = []
    errors = []
    for ref, status in mismatched:
        i, text = by_id.get(ref, (-1, ref))
        refs.append({"id": ref, "reference": text, "status": status})
        errors.append(
            FieldError(
                f"references[{i}]" if i >= 0 else "references",
                f"refers to a stored {status or 'unknown-status'} alert;"
                f" {alert.status.value} alerts may only reference {alert.status.value} alerts",
            )
        )
    return Unprocessable(
        f"{alert.status.value} {alert.msgType.value} references alerts of another status ("
        + ", ".join(f"{r['id']}: {r['status']}" for r in refs)
        + "); exercises, tests and actual warnings never change each other. Nothing was"
        " stored",
        code="status-mismatch",
        title="References across statuses",
        errors=errors,
        extra={"alert_status": alert.status.value, "references": refs},
    )


def links(alert: str) -> dict[str, str]:
    base = f"/api/v1/alerts/{alert}"
    return {"self": base, "deliveries": f"{base}/deliveries", "coverage": f"{base}/coverage"}
