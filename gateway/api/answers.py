"""API: the shapes of the JSON answers, for the OpenAPI document (gateway.api.openapi).

Request bodies are described by the models the handlers validate with; answers are
written as dicts, so their shapes are stated here. They are not hand-kept in the sense
that matters: the Schemathesis run of the test suite (tests/test_openapi.py) checks
every answer it gets against them, so a handler that drifts from its shape fails CI.
Fields that some answers leave out are optional; objects allow more fields than listed
(an answer may grow, a client must not break on it).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.models import AlertState, Channel, Level, MsgType, Status

__all__ = [
    "ANSWER_MODELS",
    "AlertDetail",
    "AlertList",
    "AlertSummary",
    "DeadLetters",
    "Deliveries",
    "DeviceMessage",
    "DeviceMessages",
    "DeviceReceiptsAnswer",
    "EndpointStatus",
    "FieldProblem",
    "HeartbeatAnswer",
    "InboundSms",
    "Links",
    "Posted",
    "Problem",
    "ProviderReceiptsAnswer",
    "RelayAnswer",
    "RenderedMessages",
    "StatusAnswer",
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Links(_Answer):
    self: str
    deliveries: str
    coverage: str


class FieldProblem(_Answer):
    loc: str = Field(description="where: a dotted path such as `info[0].area[0]`")
    msg: str


class Problem(_Answer):
    """RFC 9457 problem details; `code` is stable and machine-readable."""

    type: str = Field(description="`https://warngate.org/problems/<code>`")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what is wrong, in a sentence")
    code: str
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldProblem] | None = Field(
        default=None, description="field problems, located; some codes add fields of their own"
    )


class Posted(_Answer):
    """The answer to a post: 202 for a new alert, 200 for a repeated one."""

    id: str
    status: Literal["accepted", "duplicate"]
    links: Links
    state: AlertState | None = Field(
        default=None,
        description="a new alert's state: `pending-approval` while it waits for a second"
        " person (nothing is sent before), else `active` (`cancelled` for a Cancel)",
    )
    level: Level | None = None
    hazards: list[str] | None = None
    msgType: MsgType | None = None
    exercise: bool | None = None
    supersedes: list[str] | None = Field(default=None, description="Update: versions replaced")
    cancels: list[str] | None = Field(default=None, description="Cancel: versions cancelled")
    unknown_references: list[str] | None = None
    flags: list[str] | None = None
    warnings: list[FieldProblem] | None = Field(default=None, description="schema notes on XML")


class AlertSummary(_Answer):
    id: str
    state: AlertState
    agency: str
    sender: str
    identifier: str
    sent: str
    received: str
    expires: str
    msgType: MsgType
    status: Status
    exercise: bool
    level: Level
    hazards: list[str]
    headline: str
    links: Links


class AlertList(_Answer):
    alerts: list[AlertSummary]


class AlertDetail(AlertSummary):
    supersedes: list[str]
    superseded_by: str | None
    cancelled_by: str | None
    unknown_references: list[str]
    approval: dict[str, Any] = Field(
        default_factory=dict,
        description="who drafted, approved, rejected (and why) or released it alone"
        " (docs/console.md); empty when no person was involved",
    )
    alert: dict[str, Any] = Field(description="the CAP alert in its JSON form")


class Delivery(_Answer):
    id: str = Field(description="`<alert>:<channel>:<recipient>`, as providers echo it")
    recipient: str
    channel: Channel
    state: str
    at: str
    unit: str | None
    attempts: int | None
    note: str | None


class Deliveries(_Answer):
    id: str
    state: AlertState
    planned: dict[str, Any]
    planning_done: bool
    counts: dict[str, dict[str, int]] = Field(description="channel → state → deliveries")
    outside: list[Any]
    unresolved: list[Any]
    render_failures: list[Any]
    channel: Channel | None
    deliveries: list[Delivery]
    next_cursor: int | None = Field(description="give as `cursor` for the next page")
    dead_letters: list[dict[str, Any]]


class RenderedMessages(_Answer):
    id: str
    messages: list[dict[str, Any]]


class DeadLetters(_Answer):
    dead_letters: list[dict[str, Any]]


class EndpointStatus(_Answer):
    id: str
    kind: str
    unit: str
    languages: list[str]
    covers_population: int
    exercise: bool
    online: bool
    last_seen: int | None
    last_request: int | None
    health: dict[str, Any] | None


class DeviceMessage(_Answer):
    """One live warning as a device plays or shows it; also the data of an SSE event."""

    id: str
    seq: str
    action: Literal["play", "cancel"]
    reason: str | None
    kind: str | None
    level: str | None
    hazard: str | None
    status: str | None
    expires: str
    supersedes: list[str]
    repeat: int
    content: Any


class DeviceMessages(_Answer):
    endpoint: str
    unit: str
    cursor: str = Field(description="give as `since` next time")
    messages: list[DeviceMessage]
    server_time: int


class DeviceReceiptsAnswer(_Answer):
    accepted: int
    changed: int


class HeartbeatAnswer(_Answer):
    endpoint: str
    last_seen: int


class Ignored(_Answer):
    id: str
    reason: str


class ProviderReceiptsAnswer(_Answer):
    received: int
    changed: int
    ignored: list[Ignored]


class InboundSms(BaseModel):
    """A messenger's SMS reply as the provider forwards it: `CODE 1` or `CODE 2 N`."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="the messenger's phone number")
    text: str = Field(description="`CODE 1` (received) or `CODE 2 N` (relayed to N households)")


class RelayAnswer(_Answer):
    alert: str
    unit: str
    state: str
    changed: int


class StatusAnswer(_Answer):
    status: Literal["ok", "ready"]


ANSWER_MODELS: tuple[type[BaseModel], ...] = (
    AlertDetail,
    AlertList,
    DeadLetters,
    Deliveries,
    DeviceMessages,
    DeviceReceiptsAnswer,
    EndpointStatus,
    HeartbeatAnswer,
    Posted,
    Problem,
    ProviderReceiptsAnswer,
    RelayAnswer,
    RenderedMessages,
    StatusAnswer,
)
