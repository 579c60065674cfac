"""API: every route as a declared operation — who may call it, what it takes, what it answers.

`gateway.api.openapi` turns this table into the OpenAPI document. Request bodies name the
pydantic models their handlers validate with; ranges come from the constants the
handlers check against where those are importable, and are otherwise checked by
tests/test_openapi.py against the live app (every documented numeric range is probed at
both ends and just outside them), as are the routes themselves (this table and the
aiohttp router list the same methods and paths) and the problem codes (each documented
code is raised somewhere in the code base, and every code the code base raises is
documented for some route).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from gateway.api import answers as A
from gateway.api.coverage import AT_MAX_MINUTES
from gateway.api.devices import WAIT_RANGE_S
from gateway.callbacks import ProviderReceipt, RelayAck
from gateway.console import api as person
from gateway.endpoints import Heartbeat, Receipt, Receipts
from gateway.models import Alert, AlertState, Channel
from gateway.surveys import MessengerSurvey, SurveyBody

__all__ = [
    "OPERATIONS",
    "REFERENCED",
    "SCHEMAS",
    "Answer",
    "Body",
    "Operation",
    "Param",
    "Problems",
]

Problems = Mapping[int, tuple[str, ...]]  # HTTP status → problem codes
SCHEMAS = "#/components/schemas/"


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Body:
    """A request body: a model (or a JSON Schema) per media type."""

    content: Mapping[str, type[BaseModel] | dict[str, Any]]
    description: str
    required: bool = True


@dataclass(frozen=True)
class Answer:
    """A successful answer: a model, or a JSON Schema, in one media type."""

    status: int
    description: str
    schema: type[BaseModel] | dict[str, Any] | None = None
    media: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # name → description


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    security: tuple[tuple[str, ...], ...]  # alternatives, each a set of scheme names
    answers: tuple[Answer, ...]
    problems: Problems
    parameters: tuple[Param, ...] = ()
    body: Body | None = None
    description: str = ""


def merge(*groups: Problems) -> dict[int, tuple[str, ...]]:
    """Problem codes of several groups, by status, each code once."""
    out: dict[int, tuple[str, ...]] = {}
    for group in groups:
        for status, codes in group.items():
            out[status] = tuple(dict.fromkeys(out.get(status, ()) + codes))
    return dict(sorted(out.items()))


# -- what many routes share ------------------------------------------------------------

# Every route that reads or writes Redis answers 503 (with Retry-After) while it is away.
STORE_PROBLEMS: Problems = {503: ("store-unavailable",)}
KEY_PROBLEMS: Problems = merge({401: ("missing-key", "bad-key", "unknown-key")}, STORE_PROBLEMS)
DEVICE_PROBLEMS: Problems = merge({401: ("bad-device-token",)}, STORE_PROBLEMS)
CALLBACK_PROBLEMS: Problems = merge(
    {401: ("bad-callback-token",), 404: ("provider-not-found",)}, STORE_PROBLEMS
)
BODY_PROBLEMS: Problems = {400: ("malformed-body",), 413: ("too-large",)}
JSON_BODY_PROBLEMS: Problems = merge(BODY_PROBLEMS, {400: ("malformed-json",)})
QUERY_PROBLEMS: Problems = {400: ("bad-query",)}
ALERT_PROBLEMS: Problems = merge(KEY_PROBLEMS, {404: ("alert-not-found",)})

READER = (("agencyKey",), ("operatorKey",))
AGENCY = (("agencyKey",),)
DEVICE = (("deviceToken",),)
PROVIDER = (("callbackToken",),)
PERSON = (("sessionCookie",),)
NOBODY: tuple[tuple[str, ...], ...] = ((),)  # no credentials

ALERT_ID = Param(
    "id", "path", {"type": "string"}, "the gateway's alert id (`id` of the post's answer)", True
)
ENDPOINT_ID = Param(
    "id", "path", {"type": "string"}, "the loudspeaker's or screen's id (`endpoints.csv`)", True
)
PROVIDER_NAME = Param(
    "provider", "path", {"type": "string"}, "the provider's name in `gateway.yaml`", True
)
SINCE = Param(
    "since",
    "query",
    {"type": "string"},
    "the `cursor` (long-poll) or last event `id` (stream) seen; none, an unknown or an"
    " out-of-range one gets the whole current state, never a 400",
)


def ref(model: type[BaseModel]) -> dict[str, Any]:
    """A reference to a model's schema; the generator puts every model it names under
    components/schemas (`REFERENCED` lists those named only through a reference)."""
    return {"$ref": SCHEMAS + model.__name__}


def _whole(low: int, high: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def _enum(values: type[AlertState] | type[Channel]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


# Ranges of GET /api/v1/alerts/{id}/deliveries (gateway/api/alerts.py): a Redis HSCAN
# cursor, and a page size.
CURSOR_RANGE = (0, 2**63 - 1)
COUNT_RANGE = (1, 1000)

CAP_XML = {
    "type": "string",
    "description": "one CAP 1.2 `<alert>` in the namespace urn:oasis:names:tc:emergency:cap:1.2,"
    " UTF-8 (or another encoding the XML declaration names); no DTD, entity declarations or"
    " external references",
}
PROVIDER_RECEIPTS = {
    "anyOf": [
        ref(ProviderReceipt),
        {"type": "array", "items": ref(ProviderReceipt), "maxItems": 10_000},
        {
            "type": "object",
            "properties": {
                "receipts": {
                    "type": "array",
                    "items": ref(ProviderReceipt),
                    "maxItems": 10_000,
                }
            },
            "required": ["receipts"],
        },
    ]
}
DEVICE_RECEIPTS = {"anyOf": [ref(Receipts), ref(Receipt)]}
EVENT_STREAM = {
    "type": "object",
    "description": "one server-sent event per change: `id` is the entry's `seq`, `event` its"
    " `action`, `data` the message as JSON; a `: keepalive` comment between changes",
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["play", "cancel"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": ref(A.DeviceMessage),
        },
    },
    "required": ["data"],
}


# What POST /api/v1/alerts (and a drafter's POST /api/v1/submissions) take and answer.
POST_PROBLEMS: Problems = merge(
    KEY_PROBLEMS,
    BODY_PROBLEMS,
    {
        400: ("malformed-json", "malformed-xml", "hostile-xml"),
        403: (
            "not-an-agency",
            "sender-not-allowed",
            "status-not-allowed",
            "foreign-reference",
            "hazard-not-allowed",
            "area-not-allowed",
        ),
        409: ("identifier-reused", "reference-not-released"),
        415: ("unsupported-media-type", "unsupported-encoding"),
        422: (
            "not-cap",
            "invalid-cap",
            "over-limit",
            "unacceptable-alert",
            "unknown-area",
            "status-mismatch",
            "nothing-to-cancel",
        ),
    },
)
POST_BODY = Body(
    {
        "application/cap+xml": CAP_XML,
        "application/xml": CAP_XML,
        "text/xml": CAP_XML,
        "application/json": Alert,
        "application/cap+json": Alert,
    },
    "one CAP 1.2 alert, at most `ingest.max_body_bytes` (1 MiB by default); in JSON with"
    " the CAP element names, a single-element list may be a bare value",
)

# The person routes (gateway/console/api.py): a session cookie, and on unsafe methods its
# CSRF token.
SESSION_PROBLEMS: Problems = merge(
    STORE_PROBLEMS, {401: ("not-logged-in",), 403: ("csrf-mismatch",)}
)
CSRF = Param(
    "X-CSRF-Token",
    "header",
    {"type": "string"},
    "the session's CSRF token (`csrf_token` of the login's answer)",
    True,
)

OPERATIONS: tuple[Operation, ...] = (
    # -- agencies: alerts -------------------------------------------------------------
    Operation(
        "post",
        "/api/v1/alerts",
        "postAlert",
        "alerts",
        "Post a CAP 1.2 alert (issue, update or cancel)",
        AGENCY,
        (
            Answer(
                202,
                "stored and queued for dissemination",
                A.Posted,
                headers={"Location": "the alert's URL"},
            ),
            Answer(
                200,
                "the same alert was posted before; nothing is sent again",
                A.Posted,
                headers={"Location": "the alert's URL"},
            ),
        ),
        POST_PROBLEMS,
        body=POST_BODY,
        description="The checks run in this order: key (401), body size (413), agency (403),"
        " content type (415), readable (400), CAP 1.2 rules (422), the gateway's rules (422),"
        " the agency's rights (403), then what is stored (202, 200, 409, 422).",
    ),
    Operation(
        "get",
        "/api/v1/alerts",
        "listAlerts",
        "alerts",
        "List alerts, newest first",
        READER,
        (Answer(200, "summaries of the alerts the key may read", A.AlertList),),
        merge(KEY_PROBLEMS, QUERY_PROBLEMS),
        (
            Param("state", "query", _enum(AlertState), "only alerts in this state"),
            Param("limit", "query", _whole(1, 1000, 100), "at most this many"),
            Param("agency", "query", {"type": "string"}, "operators only: one agency's alerts"),
        ),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{id}",
        "getAlert",
        "alerts",
        "One alert, with its chain and its CAP content",
        READER,
        (Answer(200, "the alert", A.AlertDetail),),
        ALERT_PROBLEMS,
        (ALERT_ID,),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{id}/deliveries",
        "getDeliveries",
        "alerts",
        "Deliveries of an alert: counts per channel and state, and a page of recipients",
        READER,
        (Answer(200, "counts and one page of one channel's deliveries", A.Deliveries),),
        merge(ALERT_PROBLEMS, QUERY_PROBLEMS),
        (
            ALERT_ID,
            Param("channel", "query", _enum(Channel), "the channel to page through"),
            Param("cursor", "query", _whole(*CURSOR_RANGE, 0), "`next_cursor` of the last page"),
            Param("count", "query", _whole(*COUNT_RANGE, 100), "deliveries per page (about)"),
        ),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{id}/messages",
        "getRenderedMessages",
        "alerts",
        "The texts as rendered, per channel, unit, language and kind",
        READER,
        (Answer(200, "what was sent", A.RenderedMessages),),
        merge(ALERT_PROBLEMS, QUERY_PROBLEMS),
        (
            ALERT_ID,
            Param(
                "unit",
                "query",
                {"type": "string", "pattern": "^[0-9]{2,12}$"},
                "one unit's texts (a division code)",
            ),
            Param("channel", "query", _enum(Channel), "one channel's texts"),
        ),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{id}/coverage",
        "getAlertCoverage",
        "coverage",
        "Coverage of an alert: population reached against the target",
        READER,
        (Answer(200, "the coverage report (docs/coverage.md)", {"type": "object"}),),
        merge(ALERT_PROBLEMS, QUERY_PROBLEMS),
        (
            ALERT_ID,
            Param(
                "at",
                "query",
                _whole(0, AT_MAX_MINUTES),
                "as it stood this many minutes after the alert was accepted",
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/dead-letters",
        "listDeadLetters",
        "alerts",
        "Batches no provider took, of the reader's jurisdiction, newest first",
        READER,
        (Answer(200, "at most 100 dead letters", A.DeadLetters),),
        merge(ALERT_PROBLEMS, QUERY_PROBLEMS),
        (Param("alert", "query", {"type": "string"}, "one alert's (required for agencies)"),),
    ),
    Operation(
        "get",
        "/api/v1/coverage/broadcast",
        "getBroadcastCoverage",
        "coverage",
        "Emergency-broadcast coverage: population in reach of healthy loudspeakers",
        READER,
        (Answer(200, "per unit, with roll-ups", {"type": "object"}),),
        merge(KEY_PROBLEMS, QUERY_PROBLEMS, {403: ("area-not-allowed",)}),
        (
            Param(
                "unit",
                "query",
                {"type": "string"},
                "a division code inside your"
                " jurisdiction (default: the first of your jurisdiction)",
            ),
        ),
    ),
    Operation(
        "get",
        "/api/v1/endpoints/{id}",
        "getEndpoint",
        "devices",
        "What a loudspeaker or screen is, and whether it is online",
        READER,
        (Answer(200, "the device and its last heartbeat", A.EndpointStatus),),
        merge(KEY_PROBLEMS, {404: ("endpoint-not-found",)}),
        (ENDPOINT_ID,),
    ),
    # -- devices ------------------------------------------------------------------------
    Operation(
        "get",
        "/api/v1/endpoints/{id}/messages",
        "pollMessages",
        "devices",
        "Long-poll: what changed for the device since its cursor",
        DEVICE,
        (Answer(200, "the changes (maybe none, after `wait`)", A.DeviceMessages),),
        merge(DEVICE_PROBLEMS, QUERY_PROBLEMS),
        (
            ENDPOINT_ID,
            Param(
                "wait",
                "query",
                {
                    "type": "number",
                    "minimum": WAIT_RANGE_S[0],
                    "maximum": WAIT_RANGE_S[1],
                    "default": 0,
                },
                "seconds to wait for a change when there is none (plain digits, a fraction"
                " allowed, no exponent); more than `endpoints.max_wait_s` waits that long",
            ),
            SINCE,
        ),
    ),
    Operation(
        "get",
        "/api/v1/endpoints/{id}/stream",
        "streamMessages",
        "devices",
        "Server-sent events: the current state, then each change as it happens",
        DEVICE,
        (Answer(200, "an endless event stream", EVENT_STREAM, "text/event-stream"),),
        DEVICE_PROBLEMS,
        (
            ENDPOINT_ID,
            SINCE,
            Param("Last-Event-ID", "header", {"type": "string"}, "as `since`; wins over it"),
        ),
    ),
    Operation(
        "post",
        "/api/v1/endpoints/{id}/receipts",
        "postDeviceReceipts",
        "devices",
        "Played, displayed or failed: checked whole, one refused receipt changes nothing",
        DEVICE,
        (Answer(200, "the receipts recorded", A.DeviceReceiptsAnswer),),
        merge(
            DEVICE_PROBLEMS,
            JSON_BODY_PROBLEMS,
            {404: ("alert-not-found",), 422: ("invalid-receipt", "not-sent-to-device")},
        ),
        (ENDPOINT_ID,),
        Body({"application/json": DEVICE_RECEIPTS}, "up to 100 receipts, or one; 64 KiB"),
    ),
    Operation(
        "post",
        "/api/v1/endpoints/{id}/heartbeat",
        "postHeartbeat",
        "devices",
        "The device's health; extra keys are kept as sent",
        DEVICE,
        (Answer(200, "when it was seen", A.HeartbeatAnswer),),
        merge(DEVICE_PROBLEMS, JSON_BODY_PROBLEMS, {422: ("invalid-heartbeat",)}),
        (ENDPOINT_ID,),
        Body({"application/json": Heartbeat}, "nested at most 16 levels; 64 KiB", False),
    ),
    # -- providers and messengers ---------------------------------------------------------
    *(
        Operation(
            "post",
            f"/api/v1/callbacks/{family}/{{provider}}",
            f"post{family.capitalize()}Receipts",
            "providers",
            f"Delivery receipts of the {family} provider",
            PROVIDER,
            (
                Answer(
                    200, "what was recorded, and what was refused and why", A.ProviderReceiptsAnswer
                ),
            ),
            merge(CALLBACK_PROBLEMS, JSON_BODY_PROBLEMS, {422: ("invalid-receipt",)}),
            (PROVIDER_NAME,),
            Body(
                {"application/json": PROVIDER_RECEIPTS},
                'one receipt, a list, or `{"receipts": [...]}`; up to 10,000; 4 MiB',
            ),
            "A receipt counts only for a delivery sent through this provider.",
        )
        for family in ("sms", "app")
    ),
    Operation(
        "post",
        "/api/v1/callbacks/sms/{provider}/inbound",
        "postInboundSms",
        "messengers",
        "A messenger's SMS reply, forwarded by the provider",
        PROVIDER,
        (Answer(200, "the relay task's new state", A.RelayAnswer),),
        merge(
            CALLBACK_PROBLEMS,
            JSON_BODY_PROBLEMS,
            {404: ("relay-not-found", "not-messenger"), 422: ("invalid-relay",)},
        ),
        (PROVIDER_NAME,),
        Body({"application/json": A.InboundSms}, "64 KiB"),
    ),
    Operation(
        "post",
        "/api/v1/relay/{code}",
        "postRelayAck",
        "messengers",
        "A messenger's acknowledgement by app: received, then relayed to N households",
        NOBODY,
        (Answer(200, "the relay task's new state", A.RelayAnswer),),
        merge(
            JSON_BODY_PROBLEMS, {404: ("relay-not-found", "not-messenger"), 422: ("invalid-relay",)}
        ),
        (
            Param(
                "code",
                "path",
                {"type": "string"},
                "the task code in the task's text (8 characters A-Z and 2-7, any case)",
                True,
            ),
        ),
        Body({"application/json": RelayAck}, "the messenger's phone proves who relayed; 64 KiB"),
    ),
    # -- post-alert surveys (docs/coverage.md) ------------------------------------------
    Operation(
        "post",
        "/api/v1/alerts/{id}/surveys",
        "postSurvey",
        "coverage",
        "A duty desk's survey answers for households of its jurisdiction after an alert",
        (("operatorKey",),),
        (
            Answer(
                200,
                "the answers kept, and the alert's persons-informed interval now",
                {"type": "object"},
            ),
        ),
        merge(
            ALERT_PROBLEMS,
            JSON_BODY_PROBLEMS,
            {
                403: ("not-a-desk",),
                422: ("invalid-survey", "unknown-household", "no-households"),
            },
        ),
        (ALERT_ID,),
        Body({"application/json": SurveyBody}, "1 to many household answers; 1 MiB"),
    ),
    Operation(
        "get",
        "/api/v1/alerts/{id}/surveys",
        "getSurveys",
        "coverage",
        "The survey answers kept for an alert",
        READER,
        (Answer(200, "households surveyed and what they said", {"type": "object"}),),
        ALERT_PROBLEMS,
        (ALERT_ID,),
    ),
    Operation(
        "post",
        "/api/v1/relay/{code}/survey",
        "postMessengerSurvey",
        "messengers",
        "A messenger's survey answers for households of the task's village",
        NOBODY,
        (Answer(200, "the answers kept", {"type": "object"}),),
        merge(
            JSON_BODY_PROBLEMS,
            STORE_PROBLEMS,
            {
                404: ("relay-not-found", "not-messenger"),
                422: ("invalid-survey", "unknown-household", "no-households"),
            },
        ),
        (
            Param(
                "code",
                "path",
                {"type": "string"},
                "the task code in the task's text (8 characters A-Z and 2-7, any case)",
                True,
            ),
        ),
        Body({"application/json": MessengerSurvey}, "the messenger's phone and the answers"),
    ),
    # -- people: sessions and the approval flow (gateway/console/api.py) ----------------
    Operation(
        "post",
        "/api/v1/session",
        "login",
        "people",
        "Log in: a session cookie, and the CSRF token for unsafe requests",
        NOBODY,
        (
            Answer(
                200,
                "logged in; the cookie `wgsession` is set (HttpOnly, SameSite=Strict)",
                person.SessionAnswer,
                headers={"Set-Cookie": "the session cookie"},
            ),
        ),
        merge(
            JSON_BODY_PROBLEMS,
            STORE_PROBLEMS,
            {401: ("bad-login",), 422: ("invalid-body",), 429: ("account-locked",)},
        ),
        body=Body({"application/json": person.Login}, "an account of accounts.yaml; 64 KiB"),
        description="After `console.lockout_failures` failed logins of an account within"
        " `console.lockout_window_s`, it is locked for `console.lockout_s` (429 with"
        " Retry-After). A session ends after `console.idle_s` without a request.",
    ),
    Operation(
        "get",
        "/api/v1/session",
        "getSession",
        "people",
        "Who is logged in (renews the session)",
        PERSON,
        (Answer(200, "the session", person.SessionAnswer),),
        merge(STORE_PROBLEMS, {401: ("not-logged-in",)}),
    ),
    Operation(
        "delete",
        "/api/v1/session",
        "logout",
        "people",
        "Log out: the session ends",
        PERSON,
        (Answer(200, "logged out", {"type": "object"}),),
        SESSION_PROBLEMS,
        (CSRF,),
    ),
    Operation(
        "post",
        "/api/v1/submissions",
        "postSubmission",
        "people",
        "A drafter submits an alert, written for the account's agency",
        PERSON,
        (
            Answer(
                202,
                "stored; `state` is `pending-approval` where a second person must release it",
                A.Posted,
                headers={"Location": "the alert's URL"},
            ),
            Answer(
                200,
                "the same alert was submitted before",
                A.Posted,
                headers={"Location": "the alert's URL"},
            ),
        ),
        merge(
            {status: c for status, c in POST_PROBLEMS.items() if status != 401},
            SESSION_PROBLEMS,
            {403: ("role-required", "outside-jurisdiction")},
        ),
        (CSRF,),
        body=POST_BODY,
        description="The same checks as `POST /api/v1/alerts`, with the account's agency as"
        " the poster; the alert must lie in the account's jurisdiction.",
    ),
    Operation(
        "post",
        "/api/v1/previews",
        "postPreview",
        "people",
        "Preview an alert: every channel × language as it would go out; nothing is sent",
        (("agencyKey",), ("sessionCookie",)),
        (
            Answer(
                200,
                "the messages, limit failures, predicted coverage, duplicates",
                person.PreviewAnswer,
            ),
        ),
        merge(
            {status: c for status, c in POST_PROBLEMS.items() if status != 409},
            SESSION_PROBLEMS,
            QUERY_PROBLEMS,
            {403: ("role-required",)},
        ),
        (
            Param(
                "unit",
                "query",
                {"type": "string", "pattern": "^[0-9]{2,12}$"},
                "whose messages to show in full (default: the first unit reached)",
            ),
            Param(
                "X-CSRF-Token",
                "header",
                {"type": "string"},
                "with a session: its CSRF token",
            ),
        ),
        body=POST_BODY,
        description="What ingest would refuse is answered as for `POST /api/v1/alerts`, and"
        " the store is not touched (no 409).",
    ),
    *(
        Operation(
            "post",
            f"/api/v1/alerts/{{id}}/{verb}",
            op_id,
            "people",
            text,
            PERSON,
            (Answer(200, "the alert after the move", person.Decided),),
            merge(
                SESSION_PROBLEMS,
                BODY_PROBLEMS,
                {
                    400: ("malformed-json",),
                    403: ("role-required", *extra403),
                    404: ("alert-not-found",),
                    409: extra409,
                    422: ("invalid-body",),
                },
            ),
            (ALERT_ID, CSRF),
            Body({"application/json": model}, body_text, verb in ("approve", "review")),
            description,
        )
        for verb, op_id, text, extra403, extra409, model, body_text, description in (
            (
                "approve",
                "approveAlert",
                "Approve and release an alert waiting for approval (two-person rule)",
                ("own-approval", "outside-jurisdiction"),
                ("not-pending", "expired-unreleased"),
                person.Note,
                "optional",
                "By an approver whose jurisdiction holds every unit the alert targets, never"
                " its drafter (403 `own-approval`). The alert is planned and sent from now.",
            ),
            (
                "reject",
                "rejectAlert",
                "Send an alert waiting for approval back to its drafter, with a reason",
                ("outside-jurisdiction",),
                ("not-pending", "expired-unreleased"),
                person.Reason,
                "the reason the drafter sees",
                "Nothing of it is ever sent; the drafter edits and submits it again.",
            ),
            (
                "emergency-release",
                "emergencyRelease",
                "Release alone, in an emergency, where the policy allows it",
                (
                    "outside-jurisdiction",
                    "emergency-release-not-allowed",
                    "emergency-window-exceeded",
                ),
                ("not-pending", "expired-unreleased"),
                person.Reason,
                "why no second person could approve it (audited)",
                "Only where `policy.yaml` `approval.emergency_release_minutes` is above 0, for"
                " an alert that expires within it; flagged until an approver reviews it.",
            ),
            (
                "review",
                "reviewRelease",
                "Review an emergency release afterwards (a second person, once)",
                ("own-review",),
                ("not-emergency-release", "already-reviewed"),
                person.Note,
                "optional: what the review found",
                "",
            ),
        )
    ),
    Operation(
        "get",
        "/api/v1/approvals",
        "listApprovals",
        "people",
        "What waits for a second person in your jurisdiction",
        PERSON,
        (Answer(200, "pending approvals and emergency releases due review", person.Approvals),),
        merge(STORE_PROBLEMS, {401: ("not-logged-in",)}),
    ),
    Operation(
        "get",
        "/api/v1/canaries",
        "listCanaries",
        "people",
        "Scheduled tests of your jurisdiction and their recent runs",
        PERSON,
        (Answer(200, "schedules and runs", person.CanaryAnswer),),
        merge(STORE_PROBLEMS, {401: ("not-logged-in",)}),
    ),
    Operation(
        "post",
        "/api/v1/canaries/{schedule}/run",
        "runCanary",
        "people",
        "Run a scheduled test now (a Test alert to its canary receivers)",
        PERSON,
        (Answer(202, "started; its receipts are checked until the timeout", {"type": "object"}),),
        merge(
            SESSION_PROBLEMS,
            {
                403: ("role-required", "outside-jurisdiction"),
                404: ("schedule-not-found",),
                409: ("test-running",),
            },
        ),
        (
            Param("schedule", "path", {"type": "string"}, "a schedule's id (canaries.yaml)", True),
            CSRF,
        ),
    ),
    Operation(
        "get",
        "/api/v1/accounts",
        "listAccounts",
        "people",
        "Admins: the accounts of your jurisdiction and their lockouts",
        PERSON,
        (Answer(200, "the accounts, never their password hashes", person.AccountsAnswer),),
        merge(STORE_PROBLEMS, {401: ("not-logged-in",), 403: ("role-required",)}),
    ),
    Operation(
        "post",
        "/api/v1/accounts/{account}/unlock",
        "unlockAccount",
        "people",
        "Admins: end an account's lockout after failed logins",
        PERSON,
        (Answer(200, "unlocked", {"type": "object"}),),
        merge(SESSION_PROBLEMS, {403: ("role-required",), 404: ("account-not-found",)}),
        (Param("account", "path", {"type": "string"}, "an account's id", True), CSRF),
    ),
    # -- health ---------------------------------------------------------------------------
    Operation(
        "get",
        "/healthz",
        "healthz",
        "health",
        "The process answers",
        NOBODY,
        (Answer(200, "alive", A.StatusAnswer),),
        {},
    ),
    Operation(
        "get",
        "/readyz",
        "readyz",
        "health",
        "The process can do its work",
        NOBODY,
        (Answer(200, "ready", A.StatusAnswer),),
        {503: ("not-ready",)},
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "health",
        "Prometheus metrics",
        NOBODY,
        (Answer(200, "the text exposition format", {"type": "string"}, "text/plain"),),
        {},
    ),
    Operation(
        "get",
        "/api/v1/openapi.json",
        "openapi",
        "health",
        "This document",
        NOBODY,
        (Answer(200, "OpenAPI 3.1", {"type": "object"}),),
        {},
    ),
)

# Models named only through `ref`: the generator puts them under components/schemas too.
REFERENCED: tuple[type[BaseModel], ...] = (ProviderReceipt, Receipt, Receipts, A.DeviceMessage)
