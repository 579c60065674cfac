"""Models: the typed shapes every stage passes on (CAP 1.2 alert, stored record, levels).

The CAP classes use the CAP element names as field names, so the JSON form of an alert is
the XML form with the same names (`info[]`, `area[]`, `geocode[]`, `parameter[]`).
Values are validated here against the CAP 1.2 value lists and rules; what warngate adds
on top of CAP (accepted statuses, the warning level, hazards, jurisdictions) is checked
in `ingest` and `auth`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_RADIUS_KM",
    "TRANSITIONS",
    "UNRELEASED",
    "Alert",
    "AlertRecord",
    "AlertState",
    "Area",
    "Category",
    "Certainty",
    "Channel",
    "Info",
    "Level",
    "MsgType",
    "NamedValue",
    "ProviderConfig",
    "Reference",
    "Resource",
    "ResponseType",
    "Scope",
    "Severity",
    "Status",
    "Transition",
    "Urgency",
    "clip",
    "format_cap_time",
    "parse_circle",
    "parse_polygon",
]


class Status(StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(StrEnum):
    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class ResponseType(StrEnum):
    SHELTER = "Shelter"
    EVACUATE = "Evacuate"
    PREPARE = "Prepare"
    EXECUTE = "Execute"
    AVOID = "Avoid"
    MONITOR = "Monitor"
    ASSESS = "Assess"
    ALL_CLEAR = "AllClear"
    NONE = "None"


class Urgency(StrEnum):
    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(StrEnum):
    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(StrEnum):
    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


class Level(StrEnum):
    """The four warning colours of the Chinese warning system, most severe first."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"

    @property
    def rank(self) -> int:
        """1 for red … 4 for blue (the Roman level Ⅰ…Ⅳ)."""
        return _LEVEL_RANK[self]

    @property
    def high_priority(self) -> bool:
        """Red and orange go in the fast lane."""
        return self in (Level.RED, Level.ORANGE)


_LEVEL_RANK = {Level.RED: 1, Level.ORANGE: 2, Level.YELLOW: 3, Level.BLUE: 4}


class Channel(StrEnum):
    """Delivery channels. Loudspeakers and displays pull; the others are pushed."""

    SMS = "sms"
    APP = "app"
    LOUDSPEAKER = "loudspeaker"
    DISPLAY = "display"
    MESSENGER = "messenger"


class ProviderConfig(BaseModel):
    """One provider (an SMS gateway, a push service) as configured in gateway.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(pattern=r"^(sms_http|app_http)$")
    url: str = Field(pattern=r"^https?://")
    auth_header: str = "Authorization"
    auth_value: SecretStr | None = None
    # Recipients per provider call, and messages per second for all workers together.
    batch_size: int = Field(default=500, ge=1, le=10_000)
    rate_per_s: float = Field(default=1000.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    # Not connected within this: nothing went out, and the batch may be retried at once.
    connect_timeout_s: float = Field(default=3.0, gt=0)
    # The provider promises never to send twice a delivery id it has taken (for at least
    # a day): only then is a batch whose answer never came sent again (same ids).
    idempotent: bool = False
    # Shared secret a provider sends in X-Callback-Token with delivery receipts.
    callback_token: SecretStr | None = None
    # Provider status words → receipt states, on top of the common defaults.
    statuses: dict[str, str] = {}

    @field_validator("statuses")
    @classmethod
    def _known_states(cls, value: dict[str, str]) -> dict[str, str]:
        from gateway.receipts import DeliveryState

        known = {s.value for s in DeliveryState}
        for word, state in value.items():
            if state not in known:
                raise ValueError(
                    f"status {word!r} maps to {state!r}, not one of: {', '.join(sorted(known))}"
                )
        return value


class AlertState(StrEnum):
    """The life of an alert version; `TRANSITIONS` says how it moves between them."""

    PENDING = "pending-approval"  # stored, waiting for a second person: nothing planned
    ACTIVE = "active"
    UPDATED = "updated"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"  # sent back by an approver with a reason; never sent


class Transition(StrEnum):
    """What moves an alert version from one state to another, audited by this name."""

    APPROVE = "approve"  # a second person, an approver of the jurisdiction, releases it
    EMERGENCY_RELEASE = "emergency-release"  # its drafter alone: where configured, time-boxed
    REJECT = "reject"  # an approver sends it back to the drafter, with a reason
    SUPERSEDE = "supersede"  # a later Update of the same warning replaced it
    CANCEL = "cancel"  # a Cancel lifted it (解除)
    EXPIRE = "expire"  # its expiry passed (waiting for approval: it was never sent)


# Every allowed move: transition → (states it may start from, state it leads to). The
# store's Lua scripts are generated from this table (gateway/store/alerts.py), so the
# rules live here only and are applied atomically; every other move is refused. A
# released Cancel message is itself `cancelled` (it is the lifting), not `active`.
TRANSITIONS: dict[Transition, tuple[tuple[AlertState, ...], AlertState]] = {
    Transition.APPROVE: ((AlertState.PENDING,), AlertState.ACTIVE),
    Transition.EMERGENCY_RELEASE: ((AlertState.PENDING,), AlertState.ACTIVE),
    Transition.REJECT: ((AlertState.PENDING,), AlertState.REJECTED),
    Transition.SUPERSEDE: ((AlertState.ACTIVE,), AlertState.UPDATED),
    Transition.CANCEL: (
        (AlertState.ACTIVE, AlertState.UPDATED, AlertState.EXPIRED),
        AlertState.CANCELLED,
    ),
    Transition.EXPIRE: ((AlertState.ACTIVE, AlertState.PENDING), AlertState.EXPIRED),
}
# States of versions that were never released: nothing may reference them.
UNRELEASED = (AlertState.PENDING, AlertState.REJECTED)


# --- CAP value checks ---------------------------------------------------------------

# CAP 1.2: identifier and sender "MUST NOT include spaces, commas or restricted
# characters (< and &)"; control characters (NUL …) are no more a name than a space is.
_TOKEN = re.compile(r"^[^\s,<&\x00-\x1f\x7f-\x9f]+$")


def clip(text: str, size: int = 40) -> str:
    """`text` for an error message: a hostile value must not make the answer large."""
    return text if len(text) <= size else text[:size] + f"… ({len(text)} characters)"


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError("must not contain spaces, commas, '<', '&' or control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Token = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(_token)]
Text = Annotated[str, AfterValidator(_not_blank)]


def format_cap_time(value: datetime) -> str:
    """CAP 1.2 dateTime: seconds precision, numeric offset, `-00:00` for UTC."""
    text = value.replace(microsecond=0).isoformat()
    if text.endswith("+00:00"):
        text = text[:-6] + "-00:00"
    return text


# What a CAP time looks like as text: xs:dateTime with seconds and a zone. Digits are
# ASCII ([0-9], not \\d, which matches ٣ and ３ too); a number is not a time.
_TIME_TEXT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})$"
)
# Times outside these years are typing errors or attacks; refusing them here keeps every
# later stage (expiry arithmetic, timestamps, local times) clear of OverflowError.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def _time_text(value: Any) -> Any:
    if isinstance(value, datetime):  # Python callers and stored records
        return value
    if not isinstance(value, str) or not _TIME_TEXT.fullmatch(value.strip()):
        raise ValueError(
            "must be a date and time with seconds and a zone, like 2026-07-15T14:30:00+08:00"
        )
    return value.strip()


def _time_range(value: datetime) -> datetime:
    try:
        in_range = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:  # 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        in_range = False
    if not in_range:
        raise ValueError("must lie within the years 1970 to 2999")
    return value


CapTime = Annotated[
    AwareDatetime,
    BeforeValidator(_time_text),
    AfterValidator(_time_range),
    PlainSerializer(format_cap_time, when_used="json"),
]

# A CAP number (coordinates, radius, altitude) as text: ASCII decimals, an exponent
# allowed. `float()` alone would also take "٣٤", "1_0", "nan" and "inf".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
# CAP separates coordinate pairs by spaces; ASCII whitespace only (not U+3000 …).
_SPACES = re.compile(r"[ \t\r\n]+")
# Half the Earth's circumference: no circle on Earth has a larger radius.
MAX_RADIUS_KM = 20_037.5


def _number(text: str, what: str) -> float:
    if not _NUMBER.fullmatch(text):
        raise ValueError(f"{what} {clip(text)!r} is not a decimal number")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{what} {clip(text)!r} is out of range")
    return value


def _split(text: str) -> list[str]:
    return [part for part in _SPACES.split(text) if part]


def parse_polygon(text: str) -> list[tuple[float, float]]:
    """CAP polygon text ("lat,lon lat,lon …") as (lat, lon) pairs; raises ValueError."""
    points: list[tuple[float, float]] = []
    for pair in _split(text):
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(f"coordinate pair {clip(pair)!r} is not 'latitude,longitude'")
        points.append(_lat_lon(parts[0], parts[1], pair))
    if len(points) < 4:
        raise ValueError(f"a polygon needs at least 4 coordinate pairs, got {len(points)}")
    if points[0] != points[-1]:
        raise ValueError("a polygon must be closed: the first and last pairs must be equal")
    return points


def parse_circle(text: str) -> tuple[float, float, float]:
    """CAP circle text ("lat,lon radius_km") as (lat, lon, radius_km); raises ValueError.

    A radius of 0 is a point (CAP 1.2's own example A.3 has one)."""
    parts = _split(text)
    if len(parts) != 2:
        raise ValueError("a circle is 'latitude,longitude radius' (radius in km)")
    coords = parts[0].split(",")
    if len(coords) != 2:
        raise ValueError(f"circle centre {clip(parts[0])!r} is not 'latitude,longitude'")
    lat, lon = _lat_lon(coords[0], coords[1], parts[0])
    radius = _number(parts[1], "circle radius")
    if not 0 <= radius <= MAX_RADIUS_KM:
        raise ValueError(
            f"circle radius must be between 0 and {MAX_RADIUS_KM:g} km, got {clip(parts[1])}"
        )
    return lat, lon, abs(radius)  # "-0" is 0


def _lat_lon(lat_s: str, lon_s: str, where: str) -> tuple[float, float]:
    if not (_NUMBER.fullmatch(lat_s) and _NUMBER.fullmatch(lon_s)):
        raise ValueError(f"coordinate pair {clip(where)!r} is not numeric")
    lat, lon = float(lat_s), float(lon_s)
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise ValueError(f"latitude in {clip(where)!r} must be within -90..90")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise ValueError(f"longitude in {clip(where)!r} must be within -180..180")
    return lat, lon


def _check_polygon(text: str) -> str:
    parse_polygon(text)
    return " ".join(_split(text))


def _check_circle(text: str) -> str:
    parse_circle(text)
    return " ".join(_split(text))


def _decimal(value: Any) -> Any:
    """A JSON number or an XML decimal text; never a bool, NaN, infinity or "٣"."""
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, str):
        return _number(value.strip(), "number")
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    raise ValueError("must be a finite number")


def _whole(value: Any) -> Any:
    """A JSON integer or an XML text of ASCII digits; never a bool or a fraction."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,18}", value.strip()):
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("must be a whole number")


Finite = Annotated[float, BeforeValidator(_decimal), Field(ge=-1e7, le=1e7)]
Whole = Annotated[int, BeforeValidator(_whole), Field(ge=0, le=10**15)]


PolygonText = Annotated[str, AfterValidator(_check_polygon)]
CircleText = Annotated[str, AfterValidator(_check_circle)]


def _one_or_many(value: Any) -> Any:
    """CAP JSON from other systems writes single-element lists as a bare value."""
    if value is None:
        return []
    if isinstance(value, str | dict):
        return [value]
    return value


# --- CAP structures -------------------------------------------------------------------


class _Cap(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class NamedValue(_Cap):
    """A CAP `valueName`/`value` pair (eventCode, parameter, geocode)."""

    valueName: Text
    value: str


class Reference(_Cap):
    """One `sender,identifier,sent` triplet of a CAP `references` element."""

    sender: Token
    identifier: Token
    sent: CapTime

    @classmethod
    def parse(cls, text: str) -> Reference:
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(f"reference {text!r} is not 'sender,identifier,sent'")
        return cls.model_validate({"sender": parts[0], "identifier": parts[1], "sent": parts[2]})

    def __str__(self) -> str:
        return f"{self.sender},{self.identifier},{format_cap_time(self.sent)}"


def _parse_references(value: Any) -> Any:
    """CAP text (`s,i,t s,i,t`), a JSON list of such triplets, or of objects."""
    if value is None:
        return []
    if isinstance(value, str):
        return [Reference.parse(part) for part in value.split()]
    if isinstance(value, list):
        return [Reference.parse(v) if isinstance(v, str) else v for v in value]
    return value


class Resource(_Cap):
    resourceDesc: Text
    mimeType: Text
    size: Whole | None = None
    uri: str | None = None
    derefUri: str | None = None
    digest: str | None = None


class Area(_Cap):
    areaDesc: Text
    polygon: Annotated[list[PolygonText], BeforeValidator(_one_or_many)] = []
    circle: Annotated[list[CircleText], BeforeValidator(_one_or_many)] = []
    geocode: Annotated[list[NamedValue], BeforeValidator(_one_or_many)] = []
    altitude: Finite | None = None
    ceiling: Finite | None = None

    @model_validator(mode="after")
    def _ceiling_needs_altitude(self) -> Area:
        if self.ceiling is not None and self.altitude is None:
            raise ValueError("ceiling may only be used with altitude")
        if self.ceiling is not None and self.altitude is not None and self.ceiling < self.altitude:
            raise ValueError("ceiling must not be below altitude")
        return self


class Info(_Cap):
    language: str = Field(default="en-US", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
    category: Annotated[list[Category], BeforeValidator(_one_or_many), Field(min_length=1)]
    event: Text
    responseType: Annotated[list[ResponseType], BeforeValidator(_one_or_many)] = []
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    audience: str | None = None
    eventCode: Annotated[list[NamedValue], BeforeValidator(_one_or_many)] = []
    effective: CapTime | None = None
    onset: CapTime | None = None
    expires: CapTime | None = None
    senderName: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameter: Annotated[list[NamedValue], BeforeValidator(_one_or_many)] = []
    resource: Annotated[list[Resource], BeforeValidator(_one_or_many)] = []
    area: Annotated[
        list[Area],
        BeforeValidator(_one_or_many),
        Field(min_length=1, description="warngate needs at least one area per info"),
    ]

    @model_validator(mode="after")
    def _times_in_order(self) -> Info:
        if self.effective and self.expires and self.expires <= self.effective:
            raise ValueError("expires must be later than effective")
        return self

    def parameters(self, name: str) -> list[str]:
        """Values of the parameters called `name` (case-insensitive)."""
        key = name.casefold()
        return [p.value for p in self.parameter if p.valueName.casefold() == key]

    @property
    def lang(self) -> str:
        """The primary language subtag in lower case: `zh-CN` → `zh`, `ug-Arab-CN` → `ug`."""
        return self.language.split("-")[0].lower()


class Alert(_Cap):
    """A CAP 1.2 alert message."""

    identifier: Token
    sender: Token
    sent: CapTime
    status: Status
    msgType: MsgType
    source: str | None = None
    scope: Scope
    restriction: str | None = None
    addresses: str | None = None
    code: Annotated[list[str], BeforeValidator(_one_or_many)] = []
    note: str | None = None
    references: Annotated[list[Reference], BeforeValidator(_parse_references)] = []
    incidents: str | None = None
    info: Annotated[
        list[Info],
        BeforeValidator(_one_or_many),
        Field(min_length=1, description="warngate needs at least one info block"),
    ]

    @field_validator("references")
    @classmethod
    def _unique_references(cls, refs: list[Reference]) -> list[Reference]:
        seen = set()
        for ref in refs:
            key = (ref.sender, ref.identifier)
            if key in seen:
                raise ValueError(f"reference to {ref.sender},{ref.identifier} is repeated")
            seen.add(key)
        return refs

    @model_validator(mode="after")
    def _cap_rules(self) -> Alert:
        if self.scope is Scope.RESTRICTED and not self.restriction:
            raise ValueError("scope Restricted requires a restriction")
        if self.scope is Scope.PRIVATE and not self.addresses:
            raise ValueError("scope Private requires addresses")
        if self.msgType in (MsgType.UPDATE, MsgType.CANCEL, MsgType.ACK, MsgType.ERROR) and (
            not self.references
        ):
            raise ValueError(f"msgType {self.msgType.value} requires references")
        for i, info in enumerate(self.info):
            if info.expires and info.expires <= self.sent:
                raise ValueError(f"info[{i}].expires must be later than sent")
        return self

    @field_serializer("references")
    def _references_as_text(self, refs: list[Reference]) -> str | None:
        return " ".join(str(r) for r in refs) or None

    def to_cap_dict(self) -> dict[str, Any]:
        """The JSON form: CAP names, empty and unset elements left out, CAP time format."""
        pruned: dict[str, Any] = _prune(self.model_dump(mode="json"))
        return pruned


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v not in (None, [], "")}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


class AlertRecord(BaseModel):
    """An accepted alert as stored: the CAP message plus what the gateway knows of it."""

    model_config = ConfigDict(frozen=True)

    id: str
    agency: str
    received: datetime
    level: Level
    hazards: list[str]
    state: AlertState
    content_hash: str
    alert: Alert
    supersedes: list[str] = []
    superseded_by: str | None = None
    cancelled_by: str | None = None
    unknown_references: list[str] = []
    expires: datetime
    # Who drafted, approved, rejected or released it alone, and why (gateway/console/approval.py).
    approval: dict[str, Any] | None = None

    @property
    def exercise(self) -> bool:
        return self.alert.status is not Status.ACTUAL
