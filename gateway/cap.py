"""Ingest: the CAP 1.2 codec (XML through defusedxml, and the JSON form with CAP names).

`decode()` turns a request body into the plain dict shape of `models.Alert` plus a list
of schema notes; `to_alert()` validates that dict. The XML reader knows the CAP 1.2
schema's element order and repetition, so `warngate validate` can report schema
problems with their location. Problems that do not change the meaning of an alert
(element order, `Z` instead of `-00:00`, foreign elements outside the place the schema
allows them) are *schema notes*: `warngate validate` treats them as errors, ingest
accepts the alert and lists them in its answer, because a live warning must not be
refused over the order of two elements. Problems that do change it (an element CAP
allows once given twice, a JSON key repeated: which one would win?) are errors.

Every body is bounded before it is validated (`check_limits`, the `ingest.limits`
settings): counting the parts of a parsed body is cheap, validating a million empty
`info` blocks is not, and neither is an answer listing their six million errors.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import orjson
from pydantic import ValidationError

from gateway.errors import BadRequest, FieldError, Unprocessable, UnsupportedMediaType
from gateway.models import Alert, clip
from gateway.settings import IngestLimits

__all__ = [
    "CAP_NS",
    "DSIG_NS",
    "CapNote",
    "Decoded",
    "capped",
    "check_limits",
    "decode",
    "decode_json",
    "decode_xml",
    "encode_xml",
    "field_errors",
    "to_alert",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XML_TYPES = frozenset({"application/cap+xml", "application/xml", "text/xml"})
JSON_TYPES = frozenset({"application/json", "application/cap+json"})
# The encodings expat reads itself. Any other name would go to Python's codecs, which
# expat can use for single-byte encodings only: GBK and GB2312 fail inside the parser.
XML_ENCODINGS = frozenset({"utf-8", "utf-16", "us-ascii", "iso-8859-1"})
JSON_CHARSETS = frozenset({"utf-8", "us-ascii"})
_XML_ENCODING = re.compile(
    rb"^(?:\xef\xbb\xbf)?<\?xml[ \t\r\n][^>]{0,200}?encoding[ \t\r\n]*=[ \t\r\n]*"
    rb"[\"']([^\"'>]{0,60})[\"']"
)
# Characters XML 1.0 cannot carry (NUL and other C0 controls, lone surrogates, U+FFFE/F).
# A JSON alert is the XML alert with other punctuation, so they are refused there too.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The CAP structure is five levels deep. Deeper nesting in a large body is refused
# before validation; in a small one it is cheap, and the CAP rules refuse it.
MAX_DEPTH = 16

# Element order per the CAP 1.2 schema; names in REPEATED may occur more than once.
_SEQUENCES: dict[str, tuple[str, ...]] = {
    "alert": (
        "identifier",
        "sender",
        "sent",
        "status",
        "msgType",
        "source",
        "scope",
        "restriction",
        "addresses",
        "code",
        "note",
        "references",
        "incidents",
        "info",
    ),
    "info": (
        "language",
        "category",
        "event",
        "responseType",
        "urgency",
        "severity",
        "certainty",
        "audience",
        "eventCode",
        "effective",
        "onset",
        "expires",
        "senderName",
        "headline",
        "description",
        "instruction",
        "web",
        "contact",
        "parameter",
        "resource",
        "area",
    ),
    "resource": ("resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"),
    "area": ("areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"),
    "eventCode": ("valueName", "value"),
    "parameter": ("valueName", "value"),
    "geocode": ("valueName", "value"),
}
_REPEATED = frozenset(
    {"code", "info", "category", "responseType", "eventCode", "parameter", "resource", "area"}
    | {"polygon", "circle", "geocode"}
)
_TIME_ELEMENTS = frozenset({"sent", "effective", "onset", "expires"})
_CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")


@dataclass(frozen=True)
class CapNote:
    """A schema-level remark on a CAP document, located by element path."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


@dataclass(frozen=True)
class Decoded:
    data: dict[str, Any]
    notes: list[CapNote]
    format: str  # "xml" or "json"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def charset(content_type: str | None) -> str | None:
    """The `charset` parameter of a Content-Type, lower-cased, if there is one."""
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def decode(body: bytes, content_type: str | None, limits: IngestLimits | None = None) -> Decoded:
    """Read a request body as CAP XML or JSON by its media type, within `limits`; raise
    on unreadable, hostile or oversized input."""
    limits = limits or IngestLimits()
    kind = media_type(content_type)
    declared = charset(content_type)
    if kind in XML_TYPES:
        if declared is not None and declared not in XML_ENCODINGS:
            raise _unsupported_encoding(declared, XML_ENCODINGS)
        data, notes = decode_xml(body, limits)
        # expat refused characters XML cannot carry; its elements were counted.
        check_limits(data, limits, body_size=0, text_checked=True)
        return Decoded(data, notes, "xml")
    if kind in JSON_TYPES:
        if declared is not None and declared not in JSON_CHARSETS:
            raise _unsupported_encoding(declared, JSON_CHARSETS)
        return Decoded(decode_json(body, limits), [], "json")
    raise UnsupportedMediaType(
        f"content type {clip(kind) or '(none)'!r} is not accepted; send one of "
        + ", ".join(sorted(XML_TYPES | JSON_TYPES)),
        extra={"accepted": sorted(XML_TYPES | JSON_TYPES)},
    )


def _unsupported_encoding(name: str, accepted: Iterable[str]) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"character encoding {clip(name)!r} is not accepted; send UTF-8"
        f" (accepted: {', '.join(sorted(accepted))})",
        code="unsupported-encoding",
        extra={"accepted_encodings": sorted(accepted)},
    )


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out


def decode_json(body: bytes, limits: IngestLimits | None = None) -> dict[str, Any]:
    limits = limits or IngestLimits()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"body is not valid UTF-8 JSON: {clip(str(exc), 120)}", code="malformed-json"
        ) from None
    if isinstance(data, dict) and set(data) == {"alert"} and isinstance(data["alert"], dict):
        data = data["alert"]
    if not isinstance(data, dict):
        raise BadRequest("JSON body must be an object holding one CAP alert", code="malformed-json")
    check_limits(data, limits, body_size=len(body), text_checked=not _may_hold_bad_text(body))
    # orjson keeps the last of two equal keys without a word; a second, slower parse
    # only of bodies that passed the limits finds them ("identifier" twice: which one?).
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except RecursionError:  # a small body nested past Python's recursion limit
        raise _over([("depth", "alert", f"more than {MAX_DEPTH}", MAX_DEPTH)]) from None
    except _DuplicateKey as exc:
        key = clip(str(exc.args[0]))
        raise _invalid(
            [FieldError(key or "alert", f"key {key!r} occurs more than once in one object")],
            limits,
        ) from None
    return data


def decode_xml(
    body: bytes, limits: IngestLimits | None = None
) -> tuple[dict[str, Any], list[CapNote]]:
    limits = limits or IngestLimits()
    found = _XML_ENCODING.match(body[:300])
    if found and found.group(1).decode("latin-1").lower() not in XML_ENCODINGS:
        raise _unsupported_encoding(found.group(1).decode("latin-1"), XML_ENCODINGS)
    try:
        root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise BadRequest(
            "XML with a document type declaration (DTD) is refused", code="hostile-xml"
        ) from None
    except defusedxml.EntitiesForbidden:
        raise BadRequest("XML entity declarations are refused", code="hostile-xml") from None
    except defusedxml.ExternalReferenceForbidden:
        raise BadRequest("XML external references are refused", code="hostile-xml") from None
    except defusedxml.DefusedXmlException as exc:
        raise BadRequest(f"XML refused: {exc}", code="hostile-xml") from None
    except ET.ParseError as exc:
        raise BadRequest(f"body is not well-formed XML: {exc}", code="malformed-xml") from None
    except (ValueError, LookupError) as exc:
        # An encoding expat cannot use ("multi-byte encodings are not supported").
        raise UnsupportedMediaType(
            f"the XML's character encoding cannot be read ({clip(str(exc), 80)}); send UTF-8",
            code="unsupported-encoding",
            extra={"accepted_encodings": sorted(XML_ENCODINGS)},
        ) from None
    ns, name = _split(root.tag)
    if name != "alert":
        raise Unprocessable(
            f"root element is {clip(root.tag)!r}, expected a CAP 1.2 <alert>",
            code="not-cap",
            title="Invalid alert",
            errors=[FieldError("alert", "root element must be <alert>")],
        )
    if ns != CAP_NS:
        raise Unprocessable(
            f"namespace {clip(ns) or '(none)'!r} is not CAP 1.2 ({CAP_NS})",
            code="not-cap",
            title="Invalid alert",
            errors=[FieldError("alert", f"namespace must be {CAP_NS}")],
        )
    for elements, _ in enumerate(root.iter(), 1):
        if elements > limits.nodes:
            raise _over([("nodes", "alert", f"more than {limits.nodes}", limits.nodes)])
    notes: list[CapNote] = []
    errors: list[FieldError] = []
    data = _element(root, "alert", "alert", notes, errors)
    if errors:
        raise _invalid(errors, limits)
    return data, notes


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _element(
    elem: ET.Element, kind: str, loc: str, notes: list[CapNote], errors: list[FieldError]
) -> dict[str, Any]:
    order = _SEQUENCES[kind]
    out: dict[str, Any] = {}
    last = -1
    counts: dict[str, int] = {}
    seen_dsig = False
    for child in elem:
        if not isinstance(child.tag, str):  # comments, processing instructions
            continue
        ns, name = _split(child.tag)
        if ns != CAP_NS:
            if kind == "alert" and ns == DSIG_NS:
                seen_dsig = True
                continue
            where = f"{loc}.{name}"
            notes.append(CapNote(where, f"element {child.tag!r} is not allowed here by CAP 1.2"))
            continue
        idx = counts.get(name, 0)
        counts[name] = idx + 1
        where = f"{loc}.{name}[{idx}]" if name in _REPEATED else f"{loc}.{name}"
        if name not in order:
            # Unknown CAP element: the model rejects it by name, so keep it for that.
            out[name] = _text(child)
            continue
        pos = order.index(name)
        if pos < last or seen_dsig:
            notes.append(CapNote(where, f"<{name}> is out of the order CAP 1.2 prescribes"))
        last = max(last, pos)
        if idx and name not in _REPEATED:
            # Two <identifier>s (or <sent>s, <status>es …): which one is meant? Refused.
            errors.append(FieldError(where.removeprefix("alert."), f"<{name}> may occur only once"))
            continue
        value: Any = (
            _element(child, name, where, notes, errors) if name in _SEQUENCES else _text(child)
        )
        if name in _TIME_ELEMENTS and isinstance(value, str) and not _CAP_TIME.match(value):
            notes.append(
                CapNote(where, "CAP 1.2 writes times as YYYY-MM-DDThh:mm:ss±hh:mm (UTC: -00:00)")
            )
        if name in _REPEATED:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _text(elem: ET.Element) -> str:
    return (elem.text or "").strip()


# -- limits ----------------------------------------------------------------------------


def _many(value: Any) -> list[Any]:
    """A CAP element that may repeat, as JSON gives it: a list, one value, or nothing."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dicts(value: Any) -> Iterable[dict[str, Any]]:
    return (v for v in _many(value) if isinstance(v, dict))


def check_limits(
    data: dict[str, Any],
    limits: IngestLimits,
    *,
    body_size: int | None = None,
    text_checked: bool = False,
) -> None:
    """Refuse a decoded alert over `limits`, or with text XML cannot carry, before any
    validation: list lengths are read in O(1), then at most two bounded walks.

    `body_size`: a body of at most `limits.nodes` bytes cannot hold more values, so it
    is not counted. `text_checked`: the parser already refused characters XML cannot
    carry (expat does), or the body cannot hold any (see `_may_hold_bad_text`)."""
    over: list[tuple[str, str, int | str, int]] = []

    def count(name: str, loc: str, found: int) -> bool:
        allowed: int = getattr(limits, name)
        if found > allowed:
            over.append((name, loc, found, allowed))
            return False
        return True

    infos = _many(data.get("info"))
    refs = data.get("references")
    count(
        "references", "references", len(refs.split()) if isinstance(refs, str) else len(_many(refs))
    )
    count("values", "code", len(_many(data.get("code"))))
    totals = dict.fromkeys(
        ("areas", "polygons", "points", "circles", "geocodes", "parameters", "event_codes",
         "resources"),
        0,
    )  # fmt: skip
    if count("info", "info", len(infos)):
        for i, info in enumerate(v for v in infos if isinstance(v, dict)):
            for key in ("category", "responseType"):
                count("values", f"info[{i}].{key}", len(_many(info.get(key))))
            totals["parameters"] += len(_many(info.get("parameter")))
            totals["event_codes"] += len(_many(info.get("eventCode")))
            totals["resources"] += len(_many(info.get("resource")))
            areas = _many(info.get("area"))
            totals["areas"] += len(areas)
            if totals["areas"] > limits.areas:
                break
            for area in _dicts(areas):
                polygons = _many(area.get("polygon"))
                totals["polygons"] += len(polygons)
                totals["circles"] += len(_many(area.get("circle")))
                totals["geocodes"] += len(_many(area.get("geocode")))
                if totals["polygons"] <= limits.polygons:
                    totals["points"] += sum(p.count(",") for p in polygons if isinstance(p, str))
    for name, found in totals.items():
        count(name, "info", found)
    if over:
        raise _over(over)
    if body_size is None or body_size > limits.nodes:
        _count_values(data, limits)
    if not text_checked:
        _check_text(data, limits)


def _count_values(data: dict[str, Any], limits: IngestLimits) -> None:
    """Stop past `limits.nodes` values or `MAX_DEPTH` levels, whatever the shape."""
    budget = limits.nodes
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise _over([("nodes", "alert", f"more than {limits.nodes}", limits.nodes)])
        if depth > MAX_DEPTH:
            raise _over([("depth", "alert", f"more than {MAX_DEPTH}", MAX_DEPTH)])
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)


# What a JSON body needs to carry a character XML cannot: an escape (raw control
# characters are not JSON, orjson refuses them), or U+FFFE / U+FFFF written as UTF-8.
_MAYBE_BAD_JSON = re.compile(rb"\\[ubf]|\xef\xbf[\xbe\xbf]")


def _may_hold_bad_text(body: bytes) -> bool:
    if b"\\" not in body and b"\xef\xbf" not in body:  # the common case, found fast
        return False
    return _MAYBE_BAD_JSON.search(body) is not None


def _check_text(data: dict[str, Any], limits: IngestLimits) -> None:
    """Find text XML 1.0 cannot carry (NUL, other C0 controls, U+FFFE/F) in keys and
    values, and name where (depth and count are bounded before this runs)."""
    bad: list[FieldError] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack and len(bad) < limits.errors:
        value, loc = stack.pop()
        if isinstance(value, str):
            found = _NOT_XML_CHAR.search(value)
            if found:
                bad.append(FieldError(clip(loc, 200) or "alert", _bad_char(found.group())))
        elif isinstance(value, dict):
            for key, item in value.items():
                where = f"{loc}.{key}" if loc else str(key)
                found = _NOT_XML_CHAR.search(key)
                if found:
                    bad.append(FieldError(clip(where, 200), "key " + _bad_char(found.group())))
                stack.append((item, where))
        elif isinstance(value, list):
            stack.extend((item, f"{loc}[{i}]") for i, item in enumerate(value))
    if bad:
        raise _invalid(bad, limits)


def _bad_char(char: str) -> str:
    return f"contains U+{ord(char):04X}, a character CAP (XML 1.0) text cannot carry"


def _over(over: Sequence[tuple[str, str, int | str, int]]) -> Unprocessable:
    limits = [
        {"limit": n, "loc": loc, "found": found, "max": allowed} for n, loc, found, allowed in over
    ]
    return Unprocessable(
        "alert over the gateway's limits: "
        + "; ".join(f"{n}: {found} (at most {allowed})" for n, _, found, allowed in over),
        code="over-limit",
        title="Alert too large",
        errors=[
            FieldError(loc, f"{n}: {found}, at most {allowed}") for n, loc, found, allowed in over
        ],
        extra={"limits": limits},
    )


def capped(errors: Sequence[FieldError], limit: int) -> tuple[list[FieldError], dict[str, int]]:
    """The first `limit` errors, each clipped, and the count of the others."""
    shown = [FieldError(clip(e.loc, 200), clip(e.msg, 300)) for e in errors[:limit]]
    rest = len(errors) - len(shown)
    return shown, ({"errors_omitted": rest} if rest else {})


def _invalid(errors: Sequence[FieldError], limits: IngestLimits) -> Unprocessable:
    shown, extra = capped(errors, limits.errors)
    summary = "; ".join(f"{e.loc}: {e.msg}" for e in shown[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return Unprocessable(
        f"not a valid CAP 1.2 alert: {summary}{more}",
        code="invalid-cap",
        errors=shown,
        title="Invalid alert",
        extra=extra,
    )


# -- validation ------------------------------------------------------------------------


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic errors as located messages (`info[0].area[1].polygon[0]: …`)."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ""
        for part in err["loc"]:
            if isinstance(part, int):
                loc += f"[{part}]"
            elif not str(part).startswith("function-") and part not in {"str", "list[str]"}:
                loc += f".{part}" if loc else str(part)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "not a CAP 1.2 element"
        out.append(FieldError(loc or "alert", msg))
    return out


def to_alert(data: dict[str, Any], limits: IngestLimits | None = None) -> Alert:
    """Validate a decoded alert against the CAP rules; raise `Unprocessable` naming fields
    (the first `limits.errors` of them)."""
    try:
        return Alert.model_validate(data)
    except ValidationError as exc:
        raise _invalid(field_errors(exc), limits or IngestLimits()) from None


def encode_xml(alert: Alert) -> bytes:
    """The CAP 1.2 XML form of an alert, elements in schema order."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _fill(root, "alert", alert.to_cap_dict())
    text = ET.tostring(root, encoding="unicode", default_namespace=CAP_NS)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text).encode()


def _fill(parent: ET.Element, kind: str, data: dict[str, Any]) -> None:
    for name in _SEQUENCES[kind]:
        if name not in data:
            continue
        values: Iterable[Any] = data[name] if name in _REPEATED else [data[name]]
        for value in values:
            child = ET.SubElement(parent, f"{{{CAP_NS}}}{name}")
            if isinstance(value, dict):
                _fill(child, name, value)
            else:
                child.text = _xml_text(value)


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
