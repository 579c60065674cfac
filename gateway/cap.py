"""Ingest: the CAP 1.2 codec (XML through defusedxml, and the JSON form with CAP names).

`decode()` turns a request body into the plain dict shape of `models.Alert` plus a list
of schema notes; `to_alert()` validates that dict. The XML reader knows the CAP 1.2
schema's element order and repetition, so `warngate validate` can report schema
problems with their location. Problems that do not change the meaning of an alert
(element order, `Z` instead of `-00:00`, foreign elements outside the place the schema
allows them) are *schema notes*: `warngate validate` treats them as errors, ingest
accepts the alert and lists them in its answer, because a live warning must not be
refused over the order of two elements.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import defusedxml
import defusedxml.ElementTree as DET
import orjson
from pydantic import ValidationError

from gateway.errors import BadRequest, FieldError, Unprocessable, UnsupportedMediaType
from gateway.models import Alert

__all__ = [
    "CAP_NS",
    "DSIG_NS",
    "CapNote",
    "Decoded",
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


def decode(body: bytes, content_type: str | None) -> Decoded:
    """Read a request body as CAP XML or JSON by its media type; raise on unreadable input."""
    kind = media_type(content_type)
    if kind in XML_TYPES:
        data, notes = decode_xml(body)
        return Decoded(data, notes, "xml")
    if kind in JSON_TYPES:
        return Decoded(decode_json(body), [], "json")
    raise UnsupportedMediaType(
        f"content type {kind or '(none)'!r} is not accepted; send one of "
        + ", ".join(sorted(XML_TYPES | JSON_TYPES)),
        extra={"accepted": sorted(XML_TYPES | JSON_TYPES)},
    )


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8 JSON: {exc}", code="malformed-json") from None
    if isinstance(data, dict) and set(data) == {"alert"} and isinstance(data["alert"], dict):
        data = data["alert"]
    if not isinstance(data, dict):
        raise BadRequest("JSON body must be an object holding one CAP alert", code="malformed-json")
    return data


def decode_xml(body: bytes) -> tuple[dict[str, Any], list[CapNote]]:
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
    ns, name = _split(root.tag)
    if name != "alert":
        raise Unprocessable(
            f"root element is {root.tag!r}, expected a CAP 1.2 <alert>",
            code="not-cap",
            title="Invalid alert",
            errors=[FieldError("alert", "root element must be <alert>")],
        )
    if ns != CAP_NS:
        raise Unprocessable(
            f"namespace {ns or '(none)'!r} is not CAP 1.2 ({CAP_NS})",
            code="not-cap",
            title="Invalid alert",
            errors=[FieldError("alert", f"namespace must be {CAP_NS}")],
        )
    notes: list[CapNote] = []
    data = _element(root, "alert", "alert", notes)
    assert isinstance(data, dict)
    return data, notes


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _element(elem: ET.Element, kind: str, loc: str, notes: list[CapNote]) -> dict[str, Any]:
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
            notes.append(CapNote(where, f"<{name}> may occur only once"))
        value: Any = _element(child, name, where, notes) if name in _SEQUENCES else _text(child)
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


def to_alert(data: dict[str, Any]) -> Alert:
    """Validate a decoded alert against the CAP rules; raise `Unprocessable` naming fields."""
    try:
        return Alert.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        summary = "; ".join(f"{e.loc}: {e.msg}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise Unprocessable(
            f"not a valid CAP 1.2 alert: {summary}{more}",
            code="invalid-cap",
            errors=errors,
            title="Invalid alert",
        ) from None


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
