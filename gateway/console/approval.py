"""Console: the approval flow — who must approve what, and the moves people make.

The states and the moves between them are `models.TRANSITIONS` (applied by the store's
scripts, atomically); this module decides *who* may make a move:

- at intake, whether a new alert version waits for a second person (`intake`): Actual
  alerts at the levels and message types the jurisdiction's policy names
  (`policy.yaml` `approval`), unless an agency posts by API and is configured for
  automatic release (`auto_release`, audited as such);
- `approve`: an approver of the jurisdiction who did not draft it (two-person rule);
- `emergency_release`: the drafter alone, only where the policy allows it and only
  for an alert that expires within `emergency_release_minutes` (time-boxed), with a
  reason; flagged until a second person `review`s it;
- `reject`: an approver, with a reason the drafter sees.

Every move is in the audit stream with the person who made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import codes
from gateway.auth import Agency
from gateway.config import Config
from gateway.errors import Conflict, Forbidden, NotFound, ProblemError
from gateway.models import AlertRecord, AlertState, Status, Transition
from gateway.plan import target_units
from gateway.store import Store, alert_id

__all__ = ["ApprovalDesk", "Person", "intake", "needs_approval", "units_of"]


@dataclass(frozen=True)
class Person:
    """Who makes a move: an account id and what matters of it here (gateway/console
    /accounts.py `Account` is one; the approval flow needs no more)."""

    id: str
    roles: frozenset[str]
    jurisdiction: tuple[str, ...]

    def covers(self, code: str) -> bool:
        return any(codes.covers(j, code) for j in self.jurisdiction)


def units_of(config: Config, record: AlertRecord) -> list[str]:
    """The units an alert version targets (for a Cancel or an Update without areas of
    its own: its agency's jurisdiction, whose policy then applies)."""
    units, _ = target_units(record, config.directory, config.settings.ingest.geocode_names)
    if units:
        return units
    agency = config.registry.agencies.get(record.agency)
    return list(agency.jurisdiction) if agency else []


def needs_approval(config: Config, record: AlertRecord) -> bool:
    """Whether the policy of any unit the alert targets asks for a second person."""
    if record.alert.status is not Status.ACTUAL:
        return False
    for unit in units_of(config, record):
        rule = config.policy.for_unit(unit).approval
        if record.level in rule.levels and record.alert.msgType in rule.msg_types:
            return True
    return False


def intake(
    config: Config, record: AlertRecord, agency: Agency, drafted_by: str | None
) -> AlertRecord:
    """The record as it is to be stored: `pending-approval` when it must wait, with
    what the approval flow knows of it so far."""
    approval: dict[str, Any] = {"drafted_by": drafted_by} if drafted_by else {}
    if not needs_approval(config, record):
        return record.model_copy(update={"approval": approval or None})
    if drafted_by is None and agency.auto_release:
        approval.update({"required": False, "decision": "auto-release"})
        return record.model_copy(update={"approval": approval})
    approval.update({"required": True, "submitted_at": record.received.isoformat()})
    return record.model_copy(update={"state": AlertState.PENDING, "approval": approval})


class ApprovalDesk:
    """The moves of the approval flow, checked for the person making them."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    async def _pending(self, alert: str, person: Person) -> AlertRecord:
        record = await self.store.get_alert(alert)
        agency = self.config.registry.agencies.get(record.agency) if record else None
        if record is None or agency is None or not _overlaps(person, agency.jurisdiction):
            raise NotFound(f"no alert {alert!r}", code="alert-not-found")
        return record

    def _check_jurisdiction(self, record: AlertRecord, person: Person) -> None:
        outside = [u for u in units_of(self.config, record) if not person.covers(u)]
        if outside:
            raise Forbidden(
                f"the alert reaches units outside your jurisdiction: {', '.join(outside[:10])}",
                code="outside-jurisdiction",
                extra={"units": outside[:100], "jurisdiction": list(person.jurisdiction)},
            )

    @staticmethod
    def _check_role(person: Person, role: str) -> None:
        if role not in person.roles:
            raise Forbidden(
                f"this needs the {role} role", code="role-required", extra={"role": role}
            )

    @staticmethod
    def _waiting(record: AlertRecord, now: datetime) -> None:
        if record.state is AlertState.EXPIRED and (record.approval or {}).get("required"):
            raise Conflict(
                "its expiry passed while it waited for approval; it was never sent."
                " Compose it again with a new expiry",
                code="expired-unreleased",
                extra={"state": record.state.value},
            )
        if record.state is not AlertState.PENDING:
            raise Conflict(
                f"the alert is {record.state.value}, not waiting for approval",
                code="not-pending",
                extra={"state": record.state.value},
            )

    async def approve(self, alert: str, person: Person, *, now: datetime | None = None) -> str:
        """The two-person rule: an approver of the jurisdiction other than its drafter."""
        when = now or datetime.now(UTC)
        record = await self._pending(alert, person)
        self._check_role(person, "approver")
        self._waiting(record, when)
        drafter = (record.approval or {}).get("drafted_by")
        if drafter == person.id:
            raise Forbidden(
                "nobody approves their own alert: a second approver must release it",
                code="own-approval",
                extra={"drafted_by": drafter},
            )
        self._check_jurisdiction(record, person)
        return await self._release(record, person, Transition.APPROVE, when, {})

    async def emergency_release(
        self, alert: str, person: Person, reason: str, *, now: datetime | None = None
    ) -> str:
        """One person alone, where configured, for a short-lived alert, with a reason."""
        when = now or datetime.now(UTC)
        record = await self._pending(alert, person)
        if not ({"drafter", "approver"} & person.roles):
            self._check_role(person, "drafter")
        self._waiting(record, when)
        self._check_jurisdiction(record, person)
        windows = [
            self.config.policy.for_unit(u).approval.emergency_release_minutes
            for u in units_of(self.config, record)
        ]
        window = min(windows, default=0)
        if window <= 0:
            raise Forbidden(
                "the policy of this area allows no release by one person"
                " (policy.yaml approval.emergency_release_minutes)",
                code="emergency-release-not-allowed",
            )
        if record.expires > when + timedelta(minutes=window):
            raise Forbidden(
                f"one person may release alone only an alert that expires within {window}"
                f" minutes; this one expires {record.expires.isoformat()}: shorten it, or have"
                " it approved",
                code="emergency-window-exceeded",
                extra={"window_minutes": window, "expires": record.expires.isoformat()},
            )
        extra = {"reason": reason, "review": "due"}
        return await self._release(record, person, Transition.EMERGENCY_RELEASE, when, extra)

    async def _release(
        self,
        record: AlertRecord,
        person: Person,
        transition: Transition,
        when: datetime,
        extra: dict[str, Any],
    ) -> str:
        at = int(when.timestamp() * 1000)
        approval = {
            "decision": transition.value,
            "decided_by": person.id,
            "decided_at": when.isoformat(),
            **extra,
        }
        audit = {"event": transition.value, "id": record.id, "by": person.id, "at": at}
        if "reason" in extra:
            audit["reason"] = extra["reason"]
        refs = [alert_id(r.sender, r.identifier) for r in record.alert.references]
        done = await self.store.release(record, refs, transition, approval, audit, now=at)
        if done.kind == "expired":
            self._waiting(record.model_copy(update={"state": AlertState.EXPIRED}), when)
        if done.kind != "released":
            raise _moved(done.kind, done.state)
        return done.kind

    async def reject(
        self, alert: str, person: Person, reason: str, *, now: datetime | None = None
    ) -> str:
        when = now or datetime.now(UTC)
        record = await self._pending(alert, person)
        self._check_role(person, "approver")
        self._waiting(record, when)
        self._check_jurisdiction(record, person)
        approval = {
            "decision": Transition.REJECT.value,
            "decided_by": person.id,
            "decided_at": when.isoformat(),
            "reason": reason,
        }
        at = int(when.timestamp() * 1000)
        audit = {"event": "reject", "id": record.id, "by": person.id, "at": at, "reason": reason}
        done = await self.store.reject(record.id, approval, audit, now=at)
        if done.kind != "rejected":
            raise _moved(done.kind, done.state)
        return done.kind

    async def review(
        self, alert: str, person: Person, note: str, *, now: datetime | None = None
    ) -> str:
        """A second person looks at an emergency release afterwards (once)."""
        when = now or datetime.now(UTC)
        record = await self._pending(alert, person)
        self._check_role(person, "approver")
        approval = record.approval or {}
        if approval.get("decision") != Transition.EMERGENCY_RELEASE.value:
            raise Conflict(
                "only an emergency release is reviewed afterwards",
                code="not-emergency-release",
            )
        if approval.get("decided_by") == person.id:
            raise Forbidden("the person who released it alone cannot review it", code="own-review")
        fields = {
            "review": "done",
            "reviewed_by": person.id,
            "reviewed_at": when.isoformat(),
            "review_note": note,
        }
        at = int(when.timestamp() * 1000)
        audit = {"event": "review", "id": record.id, "by": person.id, "at": at, "note": note}
        done = await self.store.review(record.id, fields, audit)
        if done.kind == "reviewed":
            raise Conflict(
                f"already reviewed by {done.state}",
                code="already-reviewed",
                extra={"reviewed_by": done.state},
            )
        if done.kind != "ok":
            raise _moved(done.kind, done.state)
        return "reviewed"

    async def waiting(self, person: Person) -> list[AlertRecord]:
        """Versions waiting for approval that the person's jurisdiction overlaps."""
        return self._mine(await self.store.get_alerts(await self.store.pending_ids()), person)

    async def due_review(self, person: Person) -> list[AlertRecord]:
        """Emergency releases of the person's jurisdiction not yet reviewed."""
        return self._mine(await self.store.get_alerts(await self.store.review_ids()), person)

    def _mine(self, records: list[AlertRecord], person: Person) -> list[AlertRecord]:
        out = []
        for record in records:
            agency = self.config.registry.agencies.get(record.agency)
            if agency is not None and _overlaps(person, agency.jurisdiction):
                out.append(record)
        return out


def _overlaps(person: Person, jurisdiction: list[str]) -> bool:
    return any(
        codes.covers(mine, theirs) or codes.covers(theirs, mine)
        for mine in person.jurisdiction
        for theirs in jurisdiction
    )


def _moved(kind: str, state: str | None) -> ProblemError:
    """A move the store refused after the checks (another person was quicker)."""
    if kind == "missing":
        return NotFound("no such alert", code="alert-not-found")
    return Conflict(
        f"the alert is {state or kind} now, not waiting for approval",
        code="not-pending",
        extra={"state": state or kind},
    )
