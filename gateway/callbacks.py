"""Receipts: what providers and messengers report back, written as receipt states.

Provider delivery receipts carry warngate's delivery id (`{alert}:{channel}:{recipient}`)
and the provider's status word, mapped through the provider's table. Messengers
acknowledge relay tasks by the task code (one per alert × unit, in the task text) and
their phone number: first `received`, then `relayed` with the households told — a
count, or the households (ids or grid cells) by name, which coverage v2 counts
household by household (appended to the reach log). A messenger's SMS reply
`CODE 3 <household> <informed>` is a post-alert survey answer (gateway.surveys).
Repeated, late and out-of-order receipts are harmless: the state machine in the store
only moves forward.

A provider confirms only what it was given: a receipt counts when the delivery's
record names that provider (the sender writes it as the note of `sent`, and later
states keep it). Anything else is refused, counted in
`warngate_receipts_refused_total` and listed in the answer — a backup provider's token
cannot confirm the primary's deliveries, and nobody can mark a delivery as done before
it is sent (which would have stopped it being sent at all). A receipt may overtake the
sender's own record of the send, so one for a delivery with no record yet is looked up
again for up to `VERIFY_WAIT_S` before it is refused.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import Config
from gateway.coverage.reach import record_line
from gateway.errors import BadRequest, NotFound, Unauthorized, Unprocessable
from gateway.jsonbody import fields_of, read_json
from gateway.metrics import Metrics
from gateway.models import AlertRecord, Channel, ProviderConfig
from gateway.receipts import CONFIRMED, DeliveryState, ProviderStatusMap
from gateway.store import ReceiptUpdate, Store, now_ms
from gateway.store.deliveries import stored_note
from gateway.surveys import SurveyDesk

__all__ = ["ReceiptDesk", "relay_code"]

_FAMILY_CHANNELS = {"sms": {Channel.SMS, Channel.MESSENGER}, "app": {Channel.APP}}
_INBOUND = re.compile(
    r"^\s*([A-Z2-7]{8})\s+([12])(?:\s+([0-9]{1,5}))?\s*$", re.IGNORECASE | re.ASCII
)
_SURVEY = re.compile(
    r"^\s*([A-Z2-7]{8})\s+3\s+([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\s+([0-9]{1,4})\s*$",
    re.IGNORECASE | re.ASCII,
)
_CODE = re.compile(r"[A-Z2-7]{8}")
# The recipient part of a delivery id: a directory id (gateway.directory), nothing that
# could split the fields of a stored receipt.
_RECIPIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VERIFY_WAIT_S = 5.0  # how long a receipt may wait for the sender's record of the send


def relay_code(secret: str, alert: str, unit: str) -> str:
    """The task code of an alert's relay tasks in one unit (8 base32 characters)."""
    digest = hmac.new(secret.encode(), f"{alert}|{unit}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:8]


# What a messenger's phone may add around `CODE 1` / `CODE 2 45`: quotes copied from the
# hint, a full stop, full-width or native digits. Mapped to the ASCII reply before it
# is read (then read in ASCII only: nothing else counts as a digit).
_REPLY_QUOTES = "\"'«»“”‘’「」『』‹›"
_REPLY_END = ".。!！,，;；"
_DIGITS = {
    **{ord(c): str(i) for i, c in enumerate("٠١٢٣٤٥٦٧٨٩")},  # Arabic-Indic (ug, kk)
    **{ord(c): str(i) for i, c in enumerate("۰۱۲۳۴۵۶۷۸۹")},  # extended Arabic-Indic
    **{ord(c): str(i) for i, c in enumerate("᠐᠑᠒᠓᠔᠕᠖᠗᠘᠙")},  # Mongolian
}


def normalize_reply(text: str) -> str:
    """A messenger's reply as the gateway reads it: full-width forms folded (NFKC),
    native digits as ASCII digits, quotes and a trailing full stop dropped."""
    folded = unicodedata.normalize("NFKC", text[:200]).translate(_DIGITS)
    folded = "".join(" " if c in _REPLY_QUOTES else c for c in folded)
    return folded.strip().rstrip(_REPLY_END).strip()


def _phone(number: str) -> str:
    digits = re.sub(r"[^\d+]", "", number)
    return digits.removeprefix("+86") if digits.startswith("+86") else digits


class ProviderReceipt(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=3, max_length=200)
    status: str = Field(min_length=1, max_length=40)


class RelayAck(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=5, max_length=20)
    status: str = Field(pattern=r"^(received|relayed)$")
    # How many households were told, or which (household ids or grid cells).
    households: (
        Annotated[int, Field(ge=0, le=100_000)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=10_000)
        ]
        | None
    ) = None


class ReceiptDesk:
    def __init__(self, config: Config, store: Store, metrics: Metrics) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.maps = {
            name: ProviderStatusMap(p.statuses) for name, p in config.settings.providers.items()
        }
        self._accepted: dict[str, int] = {}
        self.verify_wait_s = VERIFY_WAIT_S

    def provider(self, name: str, token: str | None) -> ProviderConfig:
        found = self.config.settings.providers.get(name)
        if found is None:
            raise NotFound(f"no provider {name!r}", code="provider-not-found")
        secret = found.callback_token.get_secret_value() if found.callback_token else None
        token = (token or "").strip()
        # A byte above 0x7f arrives as a lone surrogate, which cannot be encoded (a 500).
        if (
            secret is None
            or not token.isascii()
            or not hmac.compare_digest(token.encode(), secret.encode())
        ):
            raise Unauthorized("wrong or missing X-Callback-Token", code="bad-callback-token")
        return found

    async def _accepted_ms(self, alert: str) -> int | None:
        if alert not in self._accepted:
            life = await self.store.lifecycle(alert)
            if life is None:
                return None
            self._accepted[alert] = life[2]
        return self._accepted[alert]

    async def provider_receipts(self, name: str, family: str, body: bytes) -> dict[str, Any]:
        """A provider's delivery receipts: one object, a list, or {"receipts": [...]}."""
        data = read_json(body, invalid_code="invalid-receipt")
        if isinstance(data, dict):
            data = data.get("receipts", [data])
        if not isinstance(data, list) or len(data) > 10_000:
            raise Unprocessable("expected up to 10000 receipts", code="invalid-receipt")
        try:
            rows = [ProviderReceipt.model_validate(r) for r in data]
        except ValidationError as exc:
            raise Unprocessable(
                "invalid receipt", code="invalid-receipt", errors=fields_of(exc)
            ) from None
        table = self.maps[name]
        channels = {c.value for c in _FAMILY_CHANNELS[family]}
        groups: dict[tuple[str, str], list[ReceiptUpdate]] = {}
        ignored: list[dict[str, str]] = []
        for row in rows:
            state = table(row.status)
            parts = row.id.split(":", 2)
            if state is None:
                ignored.append({"id": row.id, "reason": f"unknown status {row.status!r}"})
                continue
            if len(parts) != 3 or parts[1] not in channels or not _RECIPIENT.fullmatch(parts[2]):
                ignored.append({"id": row.id, "reason": "not a delivery id of this channel"})
                continue
            alert, channel, rid = parts
            if channel == Channel.MESSENGER.value and state is DeliveryState.ACKNOWLEDGED:
                state = DeliveryState.DELIVERED  # only the messenger's own ack means relayed
            groups.setdefault((alert, channel), []).append(ReceiptUpdate(rid, state.value))
        changed = 0
        deadline = time.monotonic() + self.verify_wait_s  # for the whole request
        for (alert, channel), updates in groups.items():
            accepted = await self._accepted_ms(alert)
            if accepted is None:
                ignored += [{"id": f"{alert}:{channel}:{u.id}", "reason": "unknown alert"}
                            for u in updates]  # fmt: skip
                continue
            self.metrics.receipts.labels(channel, name).inc(len(updates))
            mine, refused = await self._sent_through(name, alert, channel, updates, deadline)
            ignored += refused
            if not mine:
                continue
            reach = "acknowledged" if channel == Channel.MESSENGER.value else ""
            changed += await self.store.record(
                alert, channel, mine, accepted_ms=accepted, reach_state=reach
            )
            age = max(0.0, (now_ms() - accepted) / 1000)
            confirmed = sum(1 for u in mine if DeliveryState(u.state) in CONFIRMED)
            self.metrics.latency.observe((channel, "delivered"), age, confirmed)
        return {"received": len(rows), "changed": changed, "ignored": ignored}

    async def _sent_through(
        self,
        provider: str,
        alert: str,
        channel: str,
        updates: list[ReceiptUpdate],
        deadline: float,
    ) -> tuple[list[ReceiptUpdate], list[dict[str, str]]]:
        """(receipts of deliveries sent through `provider`, the others as refusals).

        One HMGET per look; deliveries with no record of a send yet are looked up again,
        with growing pauses, until `deadline` (monotonic) has passed: the provider's
        receipt can come before the sender has written what the provider answered."""
        note = stored_note(provider)
        others = {stored_note(p) for p in self.config.settings.providers if p != provider}
        mine: list[ReceiptUpdate] = []
        refused: list[dict[str, str]] = []

        def refuse(u: ReceiptUpdate, why: str, reason: str) -> None:
            refused.append({"id": f"{alert}:{channel}:{u.id}", "reason": reason})
            self.metrics.receipts_refused.labels(channel, provider, why).inc()

        waiting = updates
        pause = 0.05
        while True:
            found = await self.store.receipt_states(alert, channel, [u.id for u in waiting])
            later = []
            for u, current in zip(waiting, found, strict=True):
                if current is None or current[0] == DeliveryState.QUEUED.value:
                    later.append(u)
                elif current[1] == note:
                    mine.append(u)
                elif current[1] in others:
                    refuse(u, "other-provider", "sent through another provider")
                else:
                    refuse(u, "not-sent", "not sent through this provider")
            waiting = later
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            await asyncio.sleep(min(pause, left))
            pause *= 2
        for u in waiting:
            refuse(u, "not-sent", "not sent through this provider")
        return mine, refused

    async def relay(self, code: str, body: bytes) -> dict[str, Any]:
        data = read_json(body, invalid_code="invalid-relay")
        try:
            ack = RelayAck.model_validate(data)
        except ValidationError as exc:
            raise Unprocessable(
                "invalid relay acknowledgement", code="invalid-relay", errors=fields_of(exc)
            ) from None
        return await self._relay(code.upper(), ack)

    async def inbound_sms(self, body: bytes) -> dict[str, Any]:
        """A messenger's SMS reply, forwarded by the provider: `CODE 1` or `CODE 2 45`."""
        data = read_json(body, invalid_code="invalid-relay")
        try:
            sender, text = str(data["from"]), str(data["text"])
        except (KeyError, TypeError, IndexError):
            raise BadRequest('expected {"from", "text"}', code="malformed-json") from None
        text = normalize_reply(text)
        survey = _SURVEY.match(text)
        if survey is not None:
            code, household, informed = survey.groups()
            record, unit, _ = await self._messenger(code.upper(), sender)
            desk = SurveyDesk(self.config, self.store)
            return await desk.from_sms(record, unit, sender, household, int(informed))
        match = _INBOUND.match(text)
        if match is None:
            raise Unprocessable(
                "reply is not 'CODE 1' (received), 'CODE 2 N' (relayed to N households)"
                " or 'CODE 3 HOUSEHOLD N' (a survey: N residents of HOUSEHOLD knew)",
                code="invalid-relay",
            )
        code, step, households = match.groups()
        ack = RelayAck(
            phone=sender,
            status="received" if step == "1" else "relayed",
            households=int(households) if households else None,
        )
        return await self._relay(code.upper(), ack)

    async def _messenger(self, code: str, phone: str) -> tuple[AlertRecord, str, int]:
        """The alert and unit of a relay task, and the messenger's row in the unit's
        columns; 404 for an unknown task or a phone that is not its unit's messenger."""
        task = await self.store.relay_task(code) if _CODE.fullmatch(code) else None
        if task is None:
            raise NotFound(f"no relay task {code!r}", code="relay-not-found")
        alert, unit = task
        cols = self.config.directory.recipients_of(unit, Channel.MESSENGER)
        number = _phone(phone)
        row = None
        if cols is not None:
            row = next((i for i, a in enumerate(cols.addresses) if _phone(a) == number), None)
        record = await self.store.get_alert(alert)
        if cols is None or row is None or record is None:
            raise NotFound("this phone is not a messenger of the task's unit", code="not-messenger")
        return record, unit, row

    async def relay_survey(self, code: str, body: bytes) -> dict[str, Any]:
        """`POST /api/v1/relay/{code}/survey`: a messenger's post-alert survey."""
        code = code.upper()
        task = await self.store.relay_task(code) if _CODE.fullmatch(code) else None
        if task is None:
            raise NotFound(f"no relay task {code!r}", code="relay-not-found")
        record = await self.store.get_alert(task[0])
        if record is None:
            raise NotFound(f"no relay task {code!r}", code="relay-not-found")
        cols = self.config.directory.recipients_of(task[1], Channel.MESSENGER)
        phones = {_phone(a) for a in cols.addresses} if cols is not None else set()
        desk = SurveyDesk(self.config, self.store)
        return await desk.from_messenger(record, task[1], body, lambda p: _phone(p) in phones)

    def _named(self, unit: str, names: list[str]) -> list[str]:
        """Household ids of the named households or cells, all of `unit`; 422 naming
        the first that is not."""
        h = self.config.directory.households
        if h is None:
            raise Unprocessable(
                "this directory has no households: relay a count of households",
                code="invalid-relay",
            )
        out: list[str] = []
        for name in names:
            k = h.index.get(name)
            if k is not None and h.units[k] == unit:
                out.append(name)
            elif name in h.by_cell and name.startswith(unit):
                out.extend(h.ids[i] for i in h.by_cell[name].tolist())
            else:
                raise Unprocessable(
                    f"{name!r} is no household or grid cell of unit {unit}", code="invalid-relay"
                )
        return sorted(set(out))

    async def _relay(self, code: str, ack: RelayAck) -> dict[str, Any]:
        record, unit, row = await self._messenger(code, ack.phone)
        alert = record.id
        cols = self.config.directory.recipients_of(unit, Channel.MESSENGER)
        assert cols is not None
        accepted = await self._accepted_ms(alert) or now_ms()
        persons = ""
        state = DeliveryState.DELIVERED
        line = ""
        minute = max(0, (now_ms() - accepted) // 60_000)
        if ack.status == "relayed":
            if ack.households is None:
                raise Unprocessable("relayed needs households", code="invalid-relay")
            if isinstance(ack.households, list):
                named = self._named(unit, ack.households)
                count = len(named)
                line = record_line(minute, "households", unit, cols.ids[row], " ".join(named))
            else:
                count = ack.households
                line = record_line(minute, "count", unit, cols.ids[row], str(count))
            size = self.config.settings.dispatch.household_size
            persons = str(round(count * size))
            state = DeliveryState.ACKNOWLEDGED
        update = ReceiptUpdate(
            cols.ids[row], state.value, unit, persons, cols.languages[row], cols.groups[row]
        )
        changed = await self.store.record(
            alert,
            Channel.MESSENGER.value,
            [update],
            accepted_ms=accepted,
            reach_state=DeliveryState.ACKNOWLEDGED.value,
        )
        if line:
            await self.store.append_reach(alert, Channel.MESSENGER.value, [line])
        self.metrics.receipts.labels(Channel.MESSENGER.value, "relay").inc()
        return {"alert": alert, "unit": unit, "state": state.value, "changed": changed}
