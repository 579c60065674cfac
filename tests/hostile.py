"""The hostile-input corpus: requests to the alert API that no gateway may accept.

`corpus(ctx)` generates the cases from a valid alert and the stored alerts of `ctx`:
XML bombs and external entities, wrong encodings, invalid UTF-8, wrong content types,
oversized and deeply nested bodies, replays, areas outside the jurisdiction or unknown,
wrong and malformed keys, references across statuses, and every CAP field given wrong
types, ranges and extremes (NaN, infinities, huge numbers, Unicode digits, NUL and other
control characters, far dates). tests/test_hostile.py sends each one and checks that it
is answered 4xx problem+json and that nothing was stored.

`raw_xml()` writes any dict as CAP-shaped XML (the codec's encoder needs a valid alert).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from gateway.cap import CAP_NS
from tests import alerts as A

ALERTS = "/api/v1/alerts"
JSON = "application/json"
XML_TYPES = ("application/cap+xml", "application/xml", "text/xml")
BODY_LIMIT = 1024 * 1024

# Codes a case class may be answered with; None: any 4xx problem code.
HOSTILE_XML = frozenset({"hostile-xml"})
UNREADABLE = frozenset({"malformed-json", "malformed-xml", "invalid-cap", "unsupported-encoding"})


@dataclass(frozen=True)
class Case:
    """One request. `raw_headers` (bytes aiohttp's client will not send, such as a
    non-ASCII byte in Authorization) makes the test write the request on a socket."""

    name: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    method: str = "POST"
    path: str = ALERTS
    raw_headers: bytes | None = None
    codes: frozenset[str] | None = None
    # The alert id a case would store if it were wrongly accepted (to name it).
    identifier: str | None = None


@dataclass
class Context:
    """What the corpus refers to: stored alerts of each status, a loopback URL that
    must never be fetched, and a local file that must never be read."""

    live: dict[str, Any]  # an Actual alert, stored and live
    exercise: dict[str, Any]
    test: dict[str, Any]
    live_id: str
    canary_url: str
    secret_path: str
    serial: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def identifier(self) -> str:
        return f"HOSTILE-{next(self.serial):05d}"

    def alert(self, **kw: Any) -> dict[str, Any]:
        """A valid alert with a fresh identifier: each case's own."""
        return A.alert(identifier=self.identifier(), **kw)


def headers(
    content_type: str | None = JSON, key: str | None = A.MET
) -> tuple[tuple[str, str], ...]:
    out = []
    if key is not None:
        out.append(("Authorization", f"Bearer {key}"))
    if content_type is not None:
        out.append(("Content-Type", content_type))
    return tuple(out)


def dumps(data: Any) -> bytes:
    """JSON the way a careless client writes it: NaN and Infinity as bare words, lone
    surrogates escaped (orjson would refuse to write either)."""
    return json.dumps(data, ensure_ascii=True, allow_nan=True).encode()


def raw_xml(data: Any, *, declaration: bool = True) -> bytes:
    """A dict as CAP-namespaced XML, keys as element names and lists repeated; text is
    escaped but otherwise written as given (a NUL stays a NUL: the XML is then broken,
    which is the point)."""
    parts: list[str] = []

    def emit(name: str, value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                emit(name, item)
        elif isinstance(value, dict):
            parts.append(f"<{name}>")
            for key, item in value.items():
                emit(str(key), item)
            parts.append(f"</{name}>")
        elif value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            parts.append(f"<{name}>{escape(text)}</{name}>")

    parts.append(f'<alert xmlns="{CAP_NS}">')
    if isinstance(data, dict):
        for key, item in data.items():
            emit(str(key), item)
    parts.append("</alert>")
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if declaration else ""
    return (head + "".join(parts)).encode("utf-8", "surrogatepass")


def _post_both(
    name: str, data: Any, ctx: Context, *, xml: bool = True, codes: frozenset[str] | None = None
) -> Iterator[Case]:
    ident = data.get("identifier") if isinstance(data, dict) else None
    ident = ident if isinstance(ident, str) else None
    yield Case(f"{name} [json]", dumps(data), headers(), codes=codes, identifier=ident)
    if xml:
        yield Case(
            f"{name} [xml]", raw_xml(data), headers(XML_TYPES[0]), codes=codes, identifier=ident
        )


# -- XML bombs, external entities, DTDs ------------------------------------------------


def _xml_doc(doctype: str, identifier: str, extra: str = "") -> str:
    return (
        f'<?xml version="1.0"?>{doctype}<alert xmlns="{CAP_NS}">'
        f"<identifier>{identifier}</identifier>{extra}</alert>"
    )


def xml_bombs(ctx: Context) -> Iterator[Case]:
    url = ctx.canary_url
    docs: list[tuple[str, str]] = []
    for depth in range(2, 10):  # billion laughs: 10^depth "lol"s
        ents = '<!ENTITY l0 "lol">' + "".join(
            f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, depth + 1)
        )
        docs.append(
            (f"billion laughs depth {depth}", _xml_doc(f"<!DOCTYPE alert [{ents}]>", f"&l{depth};"))
        )
        docs.append(
            (
                f"billion laughs depth {depth} in an attribute",
                _xml_doc(f"<!DOCTYPE alert [{ents}]>", "X", f'<note a="&l{depth};"/>'),
            )
        )
    for size, refs in ((1000, 100), (50_000, 15), (100_000, 9)):  # quadratic blowup
        ent = f'<!DOCTYPE alert [<!ENTITY a "{"x" * size}">]>'
        docs.append(
            (f"quadratic blowup {size}x{refs}", _xml_doc(ent, "X", f"<note>{'&a;' * refs}</note>"))
        )
    for target in (
        "file:///etc/passwd",
        f"file://{ctx.secret_path}",
        ctx.secret_path,
        "secret.txt",
        "/proc/self/environ",
        url,
        url.replace("http://", "https://"),
        url.replace("http://", "ftp://"),
        f"jar:{url}!/x",
        f"netdoc:{url}",
        "php://filter/resource=/etc/passwd",
        "expect://id",
    ):
        docs.append(
            (
                f"XXE to {target}",
                _xml_doc(f'<!DOCTYPE alert [<!ENTITY x SYSTEM "{target}">]>', "&x;"),
            )
        )
        docs.append(
            (
                f"XXE parameter entity to {target}",
                _xml_doc(f'<!DOCTYPE alert [<!ENTITY % p SYSTEM "{target}"> %p;]>', "X"),
            )
        )
        docs.append(
            (f"external DTD {target}", _xml_doc(f'<!DOCTYPE alert SYSTEM "{target}">', "X"))
        )
        docs.append(
            (
                f"public DTD {target}",
                _xml_doc(f'<!DOCTYPE alert PUBLIC "-//EVIL//X" "{target}">', "X"),
            )
        )
    docs.append(("internal DTD only", _xml_doc("<!DOCTYPE alert [<!ELEMENT alert ANY>]>", "X")))
    docs.append(("empty DOCTYPE", _xml_doc("<!DOCTYPE alert>", "X")))
    docs.append(
        (
            "unparsed entity",
            _xml_doc(
                f'<!DOCTYPE alert [<!NOTATION n SYSTEM "{url}">'
                f'<!ENTITY u SYSTEM "{url}" NDATA n>]>',
                "X",
            ),
        )
    )
    for name, doc in docs:
        for kind in XML_TYPES:
            yield Case(f"{name} [{kind}]", doc.encode(), headers(kind), codes=HOSTILE_XML)
        # The same in UTF-16: the declaration must not slip past in another encoding.
        yield Case(
            f"{name} [utf-16]",
            doc.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>', 1).encode("utf-16"),
            headers(XML_TYPES[0]),
            codes=HOSTILE_XML,
        )
    # Fetch-by-reference tricks that need no DTD; in an alert refused for its content
    # (no sender …), so that only the fetch (never) would tell.
    xi = 'xmlns:xi="http://www.w3.org/2001/XInclude"'
    xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    refs = [
        f'<xi:include {xi} href="{url}/xi"/>',
        f'<xi:include {xi} href="file://{ctx.secret_path}" parse="text"/>',
        f'<note {xsi} xsi:schemaLocation="{CAP_NS} {url}/xsd">x</note>',
    ]
    for i, ref in enumerate(refs):
        doc = (
            f'<?xml version="1.0"?><?xml-stylesheet href="{url}/xsl"?><alert xmlns="{CAP_NS}">'
            f"<identifier>{ctx.identifier()}</identifier>{ref}</alert>"
        )
        yield Case(f"fetch by reference {i}", doc.encode(), headers(XML_TYPES[0]))


# -- encodings and bytes ---------------------------------------------------------------

ENCODINGS = (
    "GB2312", "GBK", "GB18030", "cp936", "HZ-GB-2312", "Big5", "Shift_JIS", "EUC-JP",
    "EUC-KR", "ISO-2022-JP", "UTF-32", "UTF-7", "utf8", "x-nonsense", "", "rot13",
    "base64", "zlib", "idna", "punycode", "unicode_escape", "raw_unicode_escape", "mbcs",
)  # fmt: skip


def encodings(ctx: Context) -> Iterator[Case]:
    for enc in ENCODINGS:
        data = ctx.alert()
        text = raw_xml(data).decode().replace('encoding="UTF-8"', f'encoding="{enc}"', 1)
        try:
            body = text.encode(enc) if enc else text.encode()
            if not body.lstrip().startswith(b"<"):
                body = text.encode()
        except (LookupError, UnicodeError, TypeError):
            body = text.encode()
        for kind in XML_TYPES:
            yield Case(
                f"declared encoding {enc!r} [{kind}]",
                body,
                headers(kind),
                codes=UNREADABLE,
                identifier=data["identifier"],
            )
    for charset in (
        "gbk",
        "gb2312",
        "utf-16",
        "utf-32",
        "latin-1",
        "x-evil",
        "utf-8, gbk",
        '"',
        "",
    ):
        data = ctx.alert()
        yield Case(
            f"JSON charset {charset!r}",
            dumps(data),
            headers(f"{JSON}; charset={charset}"),
            codes=frozenset({"unsupported-encoding"}),
            identifier=data["identifier"],
        )
        if charset not in ("utf-16", "latin-1"):
            data = ctx.alert()
            yield Case(
                f"XML charset {charset!r}",
                raw_xml(data),
                headers(f"{XML_TYPES[0]}; charset={charset}"),
                codes=frozenset({"unsupported-encoding"}),
                identifier=data["identifier"],
            )
    data = ctx.alert()
    gbk = raw_xml(data).decode().encode("gbk")
    yield Case(
        "GBK bytes declared UTF-8",
        gbk,
        headers(XML_TYPES[0]),
        codes=UNREADABLE,
        identifier=data["identifier"],
    )
    yield Case(
        "GBK bytes as JSON",
        json.dumps(data, ensure_ascii=False).encode("gbk"),
        headers(),
        codes=UNREADABLE,
        identifier=data["identifier"],
    )
    yield Case(
        "UTF-16 JSON",
        json.dumps(data, ensure_ascii=False).encode("utf-16"),
        headers(),
        codes=UNREADABLE,
    )
    yield Case("UTF-8 BOM JSON", b"\xef\xbb\xbf" + dumps(data), headers(), codes=UNREADABLE)
    yield Case(
        "UTF-16 without BOM XML",
        raw_xml(data).decode().encode("utf-16-le"),
        headers(XML_TYPES[0]),
        codes=UNREADABLE,
    )


BAD_UTF8 = {
    "0xFF": b"\xff",
    "0xFE": b"\xfe",
    "overlong slash": b"\xc0\xaf",
    "overlong 3-byte": b"\xe0\x80\xaf",
    "encoded surrogate": b"\xed\xa0\x80",
    "above U+10FFFF": b"\xf4\x90\x80\x80",
    "5-byte form": b"\xf8\x88\x80\x80\x80",
    "lone continuation": b"\x80",
    "truncated 2-byte": b"\xc3",
    "truncated 3-byte": b"\xe4\xb8",
}


def invalid_utf8(ctx: Context) -> Iterator[Case]:
    for label, seq in BAD_UTF8.items():
        data = ctx.alert()
        ident = data["identifier"]
        body = dumps(data)
        xml = raw_xml(data)
        marked = copy.deepcopy(data)
        marked["identifier"] = ident + "MARK1"
        marked["info"][0]["description"] = "MARK2"
        for where, marker in (("identifier", b"MARK1"), ("description", b"MARK2")):
            for fmt, raw in (("json", dumps(marked)), ("xml", raw_xml(marked))):
                yield Case(
                    f"invalid UTF-8 {label} in {where} [{fmt}]",
                    raw.replace(marker, seq, 1),
                    headers(JSON if fmt == "json" else XML_TYPES[0]),
                    codes=UNREADABLE,
                    identifier=ident,
                )
        yield Case(
            f"invalid UTF-8 {label} in a key [json]",
            body.replace(b'"scope"', b'"sc' + seq + b'ope"', 1),
            headers(),
            codes=UNREADABLE,
            identifier=ident,
        )
        yield Case(
            f"invalid UTF-8 {label} in a tag [xml]",
            xml.replace(b"<scope>", b"<sc" + seq + b"ope>", 1).replace(
                b"</scope>", b"</sc" + seq + b"ope>", 1
            ),
            headers(XML_TYPES[0]),
            codes=UNREADABLE,
            identifier=ident,
        )
        yield Case(
            f"invalid UTF-8 {label} at the end [json]",
            body + seq,
            headers(),
            codes=UNREADABLE,
            identifier=ident,
        )
        yield Case(
            f"invalid UTF-8 {label} at the end [xml]",
            xml + seq,
            headers(XML_TYPES[0]),
            codes=UNREADABLE,
            identifier=ident,
        )


# -- content types ---------------------------------------------------------------------

WRONG_TYPES = (
    "text/plain", "text/html", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "application/octet-stream", "application/jsonx",
    "application/json+evil", "application/json, text/xml", "application/xml+json",
    "application/vnd.api+json", "application/ld+json", "application/cap", "cap+xml",
    "json", "xml", "*/*", "application/*", "", " ", ";", "application/json/x",
    "image/svg+xml", "application/xhtml+xml", "application/soap+xml", "text/json",
    "application/javascript", "application/" + "x" * 2000,
)  # fmt: skip


def content_types(ctx: Context) -> Iterator[Case]:
    for kind in WRONG_TYPES:
        data = ctx.alert()
        yield Case(
            f"content type {kind[:40]!r}",
            dumps(data),
            headers(kind),
            codes=frozenset({"unsupported-media-type"}),
            identifier=data["identifier"],
        )
    data = ctx.alert()
    yield Case(
        "no content type",
        dumps(data),
        headers(None),
        codes=frozenset({"unsupported-media-type"}),
        identifier=data["identifier"],
    )
    for kind in XML_TYPES:
        data = ctx.alert()
        yield Case(
            f"JSON body as {kind}",
            dumps(data),
            headers(kind),
            codes=frozenset({"malformed-xml"}),
            identifier=data["identifier"],
        )
    for kind in (JSON, "application/cap+json"):
        data = ctx.alert()
        yield Case(
            f"XML body as {kind}",
            raw_xml(data),
            headers(kind),
            codes=frozenset({"malformed-json"}),
            identifier=data["identifier"],
        )


# -- sizes and nesting -----------------------------------------------------------------


def sizes(ctx: Context) -> Iterator[Case]:
    over = frozenset({"over-limit"})
    big = ctx.alert()
    big["info"][0]["description"] = "雨" * (BODY_LIMIT // 2)
    yield Case(
        "body over the byte limit [json]", dumps(big), headers(), codes=frozenset({"too-large"})
    )
    yield Case(
        "body over the byte limit [xml]",
        raw_xml(big),
        headers(XML_TYPES[0]),
        codes=frozenset({"too-large"}),
    )
    empty = b'{"info":[' + b",".join([b"{}"] * ((BODY_LIMIT - 12) // 3)) + b"]}"
    yield Case("1 MiB of empty info blocks [json]", empty, headers(), codes=over)
    yield Case(
        "1 MiB of empty info blocks [xml]",
        f'<alert xmlns="{CAP_NS}">'.encode() + b"<info/>" * ((BODY_LIMIT - 100) // 7) + b"</alert>",
        headers(XML_TYPES[0]),
        codes=over,
    )

    def grown(name: str, mutate: Callable[[dict[str, Any]], None]) -> Iterator[Case]:
        data = ctx.alert()
        mutate(data)
        yield from _post_both(name, data, ctx, codes=over)

    info = A.info()
    area = info["area"][0]
    geocode = area["geocode"][0]
    yield from grown("33 info blocks", lambda d: d.update(info=[info] * 33))
    yield from grown("1001 areas", lambda d: d["info"][0].update(area=[area] * 1001))
    yield from grown(
        "5001 geocodes", lambda d: d["info"][0]["area"][0].update(geocode=[geocode] * 5001)
    )
    square = "44.0,87.2 44.1,87.2 44.1,87.3 44.0,87.3 44.0,87.2"
    yield from grown(
        "201 polygons", lambda d: d["info"][0]["area"][0].update(polygon=[square] * 201)
    )
    many = " ".join(
        ["44.0,87.2"] + [f"44.{i % 1000:03d},87.3" for i in range(50_001)] + ["44.0,87.2"]
    )
    yield from grown(
        "50,003 polygon points", lambda d: d["info"][0]["area"][0].update(polygon=[many])
    )
    yield from grown(
        "201 circles", lambda d: d["info"][0]["area"][0].update(circle=["44.0,87.3 1"] * 201)
    )
    param = {"valueName": "x", "value": "y"}
    yield from grown("501 parameters", lambda d: d["info"][0]["parameter"].extend([param] * 501))
    yield from grown("201 eventCodes", lambda d: d["info"][0]["eventCode"].extend([param] * 201))
    res = {"resourceDesc": "map", "mimeType": "image/png"}
    yield from grown("51 resources", lambda d: d["info"][0].update(resource=[res] * 51))
    ref = A.ref_of(ctx.live)
    yield from grown(
        "501 references", lambda d: d.update(msgType="Update", references=" ".join([ref] * 501))
    )
    yield from grown("51 categories", lambda d: d["info"][0].update(category=["Met"] * 51))
    yield from grown("51 codes", lambda d: d.update(code=["c"] * 51))
    nodes = ctx.alert()
    nodes["x"] = [[1]] * 50_001  # 100,002 values under a key no limit names
    yield Case("100,002 values [json]", dumps(nodes), headers(), codes=over)
    keys = ctx.alert()
    for i in range(60_000):
        keys[f"k{i}"] = 1
    yield Case(
        "60,000 unknown keys [json]", dumps(keys), headers(), codes=frozenset({"invalid-cap"})
    )
    deep = ctx.alert()
    nested: Any = "x"
    for _ in range(20):
        nested = {"n": nested}
    deep["note"] = nested
    yield from _post_both(
        "nesting 20 deep", deep, ctx, xml=False, codes=over | frozenset({"invalid-cap"})
    )
    for depth in (1025, 70_000, 170_000):
        yield Case(
            f"arrays {depth} deep [json]",
            b"[" * depth + b"]" * depth,
            headers(),
            codes=frozenset({"malformed-json"}),
        )
        yield Case(
            f"objects {depth} deep [json]",
            b'{"a":' * depth + b"1" + b"}" * depth,
            headers(),
            codes=frozenset({"malformed-json"}),
        )
        inner = b"<x>" * depth + b"</x>" * depth
        if len(inner) < BODY_LIMIT:
            yield Case(
                f"elements {depth} deep [xml]",
                f'<alert xmlns="{CAP_NS}">'.encode() + inner + b"</alert>",
                headers(XML_TYPES[0]),
                codes=over | frozenset({"invalid-cap"}),
            )
            yield Case(
                f"CAP elements {depth} deep [xml]",
                f'<alert xmlns="{CAP_NS}"><info>'.encode()
                + b"<info>" * depth
                + b"</info>" * depth
                + b"</info></alert>",
                headers(XML_TYPES[0]),
                codes=over | frozenset({"invalid-cap"}),
            )
    key = ctx.alert()
    key["k" * 500_000] = 1
    yield Case("a 500 kB key [json]", dumps(key), headers(), codes=frozenset({"invalid-cap"}))
    yield Case(
        "a 500 kB tag [xml]",
        f'<alert xmlns="{CAP_NS}"><{"k" * 500_000}/></alert>'.encode(),
        headers(XML_TYPES[0]),
        codes=frozenset({"invalid-cap"}),
    )
    yield Case(
        "a 500 kB root tag [xml]",
        f'<{"k" * 500_000} xmlns="{CAP_NS}"/>'.encode(),
        headers(XML_TYPES[0]),
        codes=frozenset({"not-cap"}),
    )
    yield Case(
        "1 MiB of whitespace [json]",
        b" " * (BODY_LIMIT - 10) + b"{}",
        headers(),
        codes=frozenset({"invalid-cap"}),
    )


# -- replays, jurisdictions, unknown areas, keys -----------------------------------------


def replays(ctx: Context) -> Iterator[Case]:
    live = ctx.live
    variants: dict[str, Callable[[dict[str, Any]], None]] = {
        "another level": lambda d: d["info"][0].update(
            parameter=[{"valueName": "level", "value": "blue"}]
        ),
        "another headline": lambda d: d["info"][0].update(headline="改了"),
        "another area": lambda d: d["info"][0]["area"][0].update(
            geocode=[{"valueName": "CPEAS Geographic Code", "value": "652301001002"}]
        ),
        "a second info": lambda d: d["info"].append(A.info(language="ug-CN")),
        "another status": lambda d: d.update(status="Exercise"),
        "another scope": lambda d: d.update(scope="Restricted", restriction="staff"),
        "a note": lambda d: d.update(note="replayed"),
        "another sent": lambda d: d.update(
            sent=A.cap_time(datetime.fromisoformat(d["sent"]) - timedelta(minutes=1))
        ),
        "another severity": lambda d: d["info"][0].update(severity="Minor"),
        "another event": lambda d: d["info"][0].update(event="暴雨橙色预警"),
    }
    for name, mutate in variants.items():
        data = copy.deepcopy(live)
        mutate(data)
        yield from _post_both(
            f"replay with {name}", data, ctx, codes=frozenset({"identifier-reused"})
        )
    data = copy.deepcopy(live)
    yield Case(
        "replay by another agency",
        dumps(data),
        headers(key=A.WATER),
        codes=frozenset({"sender-not-allowed"}),
    )
    yield Case(
        "replay by an operator",
        dumps(data),
        headers(key=A.OPERATOR),
        codes=frozenset({"not-an-agency"}),
    )


def jurisdictions(ctx: Context) -> Iterator[Case]:
    forbidden = frozenset({"area-not-allowed"})
    for code in (
        "652301",
        "652301001001",
        "652300",
        "650000",
        "150603",
        "150603001001",
        "110101",
        "652301001001007",
    ):
        data = A.alert(identifier=ctx.identifier(), sender=A.MORI_SENDER, geocodes=[code])
        yield from _json_xml_key(f"Mori bureau warns {code}", data, A.MORI, forbidden)
    for code in ("652301", "652328", "650000"):
        data = A.alert(
            identifier=ctx.identifier(), sender="met.kangbashi@warngate.example", geocodes=[code]
        )
        yield from _json_xml_key(
            f"Kangbashi bureau warns {code}", data, "wgdemo-kangbashi-met", forbidden
        )
    for label, kw in (
        (
            "polygon in Beijing",
            {"polygon": "39.9,116.3 39.9,116.5 40.0,116.5 40.0,116.3 39.9,116.3"},
        ),
        (
            "polygon in Kangbashi",
            {"polygon": "39.66,109.68 39.66,109.71 39.67,109.71 39.67,109.68 39.66,109.68"},
        ),
        ("circle in Kangbashi", {"circle": "39.66525,109.6943 2"}),
        ("point in Kangbashi", {"circle": "39.66525,109.6943 0"}),
        ("circle at the antipode", {"circle": "-44.0,-92.7 100"}),
        ("polygon over the pole", {"polygon": "89,0 89,120 89,-120 89,0"}),
        (
            "geocode outside and polygon inside",
            {
                "geocodes": ["150603"],
                "polygon": "44.157,86.925 44.157,86.938 44.166,86.938 44.166,86.925 44.157,86.925",
            },
        ),
    ):
        data = ctx.alert(**kw)
        yield from _json_xml_key(f"Changji bureau, {label}", data, A.MET, forbidden)


def unknown_areas(ctx: Context) -> Iterator[Case]:
    unknown = frozenset({"unknown-area"})
    for code in (
        "652301999999",
        "652301099",
        "652301099000",
        "652399",
        "652399000000",
        "652301999999001",
        "652390",
    ):
        yield from _post_both(
            f"unknown division {code}", ctx.alert(geocodes=[code]), ctx, codes=unknown
        )
    # An Update whose area is unknown and whose reference is unknown reaches nobody.
    missed = A.alert(identifier=ctx.identifier())
    update = ctx.alert(msg_type="Update", references=[missed], geocodes=["652301999999"])
    yield from _post_both(
        "Update of an unknown alert to an unknown area", update, ctx, codes=unknown
    )
    # A polygon inside the jurisdiction's box that touches no village.
    empty = ctx.alert(polygon="44.5,88.9 44.5,88.91 44.51,88.91 44.51,88.9 44.5,88.9")
    yield from _post_both(
        "polygon touching no village", empty, ctx, codes=frozenset({"area-not-allowed"})
    )


def _json_xml_key(
    name: str, data: dict[str, Any], key: str, codes: frozenset[str]
) -> Iterator[Case]:
    ident = data["identifier"]
    yield Case(f"{name} [json]", dumps(data), headers(JSON, key), codes=codes, identifier=ident)
    yield Case(
        f"{name} [xml]", raw_xml(data), headers(XML_TYPES[0], key), codes=codes, identifier=ident
    )


AUTH_VALUES = (
    "", "Bearer", "Bearer ", "bearer", "Basic d2dkZW1vOng=", "Token wgdemo-changji-met",
    "Bearer wgdemo changji met", "Bearer wgdemo-changji-met extra", "Bearer,wgdemo-changji-met",
    "Bearer wrong-key", "Bearer " + "a" * 512, "Bearer " + "a" * 513, "Bearer " + "A" * 4000,
    "Bearer wgdemo-changji-met%00", "Bearer wgdemo-changji-met=x", "Bearer ==", "Bearer =a",
    "Bearer sha256:" + "0" * 64, "Bearer wgdemo-changji-duty-x", "Bearer wgdemo-CHANGJI-met",
    "Bearer\twgdemo-changji-met", "Bearer  ", "Negotiate abc", "Bearer wgdemo-changji-met;",
    "Bearer \"wgdemo-changji-met\"", "Bearer <script>", "Bearer ../../etc/passwd",
)  # fmt: skip
RAW_AUTH = (
    b"Bearer wgdemo-changji-met\xe9",
    b"Bearer \xff\xfe",
    b"Bearer wgdemo-\xe6\x98\x8c\xe5\x90\x89-met",
    b"Bearer \xed\xa0\x80",
    b"\xff",
    b"Bearer wgdemo-changji-met\x80",
    b"Bearer " + b"\xc3\xa9" * 300,
)


def auth(ctx: Context) -> Iterator[Case]:
    routes = [
        ("POST", ALERTS),
        ("GET", ALERTS),
        ("GET", f"{ALERTS}/{ctx.live_id}"),
        ("GET", f"{ALERTS}/{ctx.live_id}/deliveries"),
        ("GET", f"{ALERTS}/{ctx.live_id}/messages"),
        ("GET", f"{ALERTS}/{ctx.live_id}/coverage"),
    ]
    unauthorized = frozenset({"missing-key", "bad-key", "unknown-key"})
    for method, path in routes:
        data = ctx.alert()
        body = dumps(data) if method == "POST" else b""
        ident = data["identifier"] if method == "POST" else None
        base = (("Content-Type", JSON),) if method == "POST" else ()
        yield Case(
            f"{method} {path}: no key",
            body,
            base,
            method,
            path,
            codes=unauthorized,
            identifier=ident,
        )
        for value in AUTH_VALUES:
            yield Case(
                f"{method} {path}: Authorization {value[:40]!r} ({len(value)})",
                body,
                (*base, ("Authorization", value)),
                method,
                path,
                codes=unauthorized,
                identifier=ident,
            )
        yield Case(
            f"{method} {path}: two Authorization headers",
            body,
            (*base, ("Authorization", f"Bearer {A.MET}"), ("Authorization", f"Bearer {A.MET}")),
            method,
            path,
            codes=unauthorized,
            identifier=ident,
        )
        for raw in RAW_AUTH:
            yield Case(
                f"{method} {path}: raw Authorization {raw[:30]!r}",
                body,
                base,
                method,
                path,
                raw_headers=b"Authorization: " + raw + b"\r\n",
                codes=unauthorized,
                identifier=ident,
            )
    data = ctx.alert()
    yield Case(
        "an operator posts",
        dumps(data),
        headers(JSON, A.OPERATOR),
        codes=frozenset({"not-an-agency"}),
        identifier=data["identifier"],
    )
    data = ctx.alert()
    yield Case(
        "the water bureau posts the met bureau's alert",
        dumps(data),
        headers(JSON, A.WATER),
        codes=frozenset({"sender-not-allowed"}),
        identifier=data["identifier"],
    )
    data = A.alert(identifier=ctx.identifier(), sender=A.WATER_SENDER)
    yield Case(
        "the water bureau warns of a rainstorm",
        dumps(data),
        headers(JSON, A.WATER),
        codes=frozenset({"hazard-not-allowed"}),
        identifier=data["identifier"],
    )


# -- references across statuses ---------------------------------------------------------


def cross_status(ctx: Context) -> Iterator[Case]:
    stored = {"Actual": ctx.live, "Exercise": ctx.exercise, "Test": ctx.test}
    mismatch = frozenset({"status-mismatch"})
    for status, target in itertools.permutations(stored, 2):
        for msg_type in ("Update", "Cancel"):
            data = ctx.alert(status=status, msg_type=msg_type, references=[stored[target]])
            yield from _post_both(
                f"{status} {msg_type} of the {target} alert", data, ctx, codes=mismatch
            )
        own = stored[status]
        data = ctx.alert(status=status, msg_type="Cancel", references=[own, stored[target]])
        yield from _post_both(
            f"{status} Cancel of its own and the {target} alert", data, ctx, codes=mismatch
        )


# -- every field, wrong -----------------------------------------------------------------

NOT_TEXT: tuple[Any, ...] = (
    5,
    -1,
    1.5,
    2**63 - 1,
    -(2**63),
    1e308,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    [],
    ["x"],
    {},
    {"a": "b"},
)
BAD_TEXT = (
    "\x00",
    "a\x00b",
    "\x01",
    "a\x08b",
    "\x0b",
    "\x1b[31mred",
    "\ud800",
    "a\udfffb",
    "\ufffe",
    "\uffff",
)
TIMES = (
    "", "yesterday", "1700000000", "2026-07-01", "2026-07-01T12:00:00", "2026-07-01T12:00Z",
    "2026-07-01 12:00:00+08:00", "0001-01-01T23:59:00+00:00", "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-05:00", "0000-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z", "3000-01-01T00:00:00Z", "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-07-01T25:00:00Z", "2026-07-01T12:00:60Z",
    "2026-07-01T12:00:00+24:00", "２０２６-07-01T12:00:00Z", "٢٠٢٦-07-01T12:00:00Z",
    "2026-07-01T12:00:00\x00Z", "+2026-07-01T12:00:00Z", "2026-W27-3T12:00:00Z",
    "2026-07-01T12:00:00.1234567890Z", "P1D", "now", "2026-07-01T12:00:00ZZ",
)  # fmt: skip
TOKENS = (
    "",
    " ",
    "a b",
    "a,b",
    "a<b",
    "a&b",
    "a\x00b",
    "\x1b",
    "a\u0085b",
    "x" * 513,
    "a\tb",
    "a\u3000b",
)
LANGUAGES = (
    "",
    "中文",
    "zh_CN",
    "zh-",
    "z",
    "zh-CN-toolongsubtag",
    "ｚｈ",
    "zh CN",
    "-zh",
    "1234",
    "zh-CN\x00",
)
POLYGONS = (
    "", "44.0,87.2", "44.0,87.2 44.1,87.2 44.1,87.3 44.0,87.3",
    "44.0,87.2 44.1,87.2 44.0,87.2", "nan,nan nan,nan nan,nan nan,nan",
    "inf,0 44.1,87.2 44.1,87.3 inf,0", "94.0,87.2 44.1,87.2 44.1,87.3 94.0,87.2",
    "44.0,187.2 44.1,87.2 44.1,87.3 44.0,187.2", "４4.0,87.2 44.1,87.2 44.1,87.3 ４4.0,87.2",
    "٤٤.0,87.2 44.1,87.2 44.1,87.3 ٤٤.0,87.2", "4_4.0,87.2 44.1,87.2 44.1,87.3 4_4.0,87.2",
    "44.0;87.2 44.1;87.2 44.1;87.3 44.0;87.2", "44.0,87.2,5 44.1,87.2 44.1,87.3 44.0,87.2,5",
    "44.0,87.2\u300044.1,87.2\u300044.1,87.3\u300044.0,87.2",
    "44.0,87.2\u00a044.1,87.2\u00a044.1,87.3\u00a044.0,87.2",
    "1e400,0 44.1,87.2 44.1,87.3 1e400,0", "0x2C,87 44.1,87.2 44.1,87.3 0x2C,87",
    "44.0,87.2 44.1,87.2 44.1,87.3 44.0,87.2\x00", "44.0,,87.2 44.1,87.2 44.1,87.3 44.0,,87.2",
    ", , , ,", "44.0,87.2 " * 3,
)  # fmt: skip
CIRCLES = (
    "", "44.0,87.3", "44.0,87.3 -1", "44.0,87.3 nan", "44.0,87.3 inf", "44.0,87.3 -inf",
    "44.0,87.3 1.797e308", "44.0,87.3 1e308", "44.0,87.3 20038", "44.0,87.3 501",
    "44.0,87.3 ５", "44.0,87.3 1_0", "44.0,87.3 5 5", "44.0 87.3 5", "91,0 5", "44.0,87.3,5",
    "44.0,87.3\u30005", "44.0,87.3 5km", "44.0,87.3 1e99999", "٤٤,87.3 5", "44.0,87.3 0x5",
)  # fmt: skip
GEOCODES = (
    "",
    "65230",
    "652301\x00",
    "６５２３０１",
    "002301",
    "65230100000a",
    "9" * 20,
    "652301 652302",
    "-652301",
    "652301.0",
    "1e5",
)
NUMBERS = (
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1e999",
    "١٢",
    "1_0",
    "abc",
    "",
    "0x10",
    "5 5",
    "1e8",
    "-1e8",
)


def _mutations() -> Iterator[tuple[str, Callable[[dict[str, Any]], None], bool]]:
    """(name, mutation of a valid alert, also as XML)."""

    def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def apply(d: dict[str, Any]) -> None:
            target: Any = d
            parts = path.split(".")
            for part in parts[:-1]:
                target = target[int(part)] if part.isdigit() else target[part]
            last = parts[-1]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value

        return apply

    info, area, geo = "info.0", "info.0.area.0", "info.0.area.0.geocode.0"

    def each(
        path: str, values: tuple[Any, ...]
    ) -> Iterator[tuple[str, Callable[[dict[str, Any]], None], bool]]:
        for v in values:
            yield f"{path} = {v!r:.60}", put(path, v), isinstance(v, str)

    required = (*NOT_TEXT, *BAD_TEXT, None)
    for path in ("identifier", "sender"):
        yield from each(path, (*TOKENS, *NOT_TEXT, None))
    for path in ("sent", f"{info}.effective", f"{info}.onset", f"{info}.expires"):
        yield from each(path, (*TIMES, 1700000000, 1.7e9, True, [], {}, ["2026-07-01T12:00:00Z"]))
    yield from each("sent", ("2126-07-01T12:00:00+08:00", "2999-12-31T23:59:59+00:00"))
    enums = {
        "status": ("", "actual", "ACTUAL", "Real", "System", "Draft", "Actual\x00", "Ａctual"),
        "msgType": ("", "alert", "Warning", "Ack", "Error", "Update", "Cancel"),
        "scope": ("", "public", "Everyone", "Restricted", "Private"),
        f"{info}.urgency": ("", "Now", "immediate", "Immediate\x00"),
        f"{info}.severity": ("", "Huge", "extreme"),
        f"{info}.certainty": ("", "Sure", "likely"),
        f"{info}.category": ("", "Weather", [], ["Weather"], [5], ["Met", "Nope"], ["Met\x00"]),
        f"{info}.responseType": ("Run", ["Run"], [5], ["Shelter\x00"]),
    }
    for path, values in enums.items():
        # None is "not given": an error for a required element, the default for the rest.
        missing = () if path.endswith("responseType") else (None,)
        yield from each(path, (*values, 1, True, 1.5, {}, [[]], *missing))
    for path in (f"{info}.event", f"{area}.areaDesc", f"{geo}.valueName"):
        yield from each(path, ("", "   ", *required))
    optional = ("note", "source", "restriction", "addresses", "incidents")
    optional_info = (
        "audience",
        "senderName",
        "headline",
        "description",
        "instruction",
        "web",
        "contact",
    )
    for path in (*optional, *(f"{info}.{name}" for name in optional_info)):
        yield from each(path, (*NOT_TEXT, *BAD_TEXT))
    yield from each(f"{info}.language", (*LANGUAGES, 5, True, [], {}))
    yield from each(f"{area}.polygon", (*POLYGONS, 5, [5], [[44.0, 87.2]], {"a": 1}, [None]))
    yield from each(f"{area}.circle", (*CIRCLES, 5, [5], [[44.0, 87.3, 5]], {"a": 1}, [None]))
    yield from each(f"{geo}.value", (*GEOCODES, 652301, 652301.0, None, [], {}, True))
    yield from each(
        f"{info}.parameter.0.value", ("purple", "Ⅴ", "红色\x00", "", "0", "5", "红黄", 1, None, [])
    )
    yield from each(
        f"{info}.parameter.0", ("level=red", 5, [], {}, {"valueName": "level"}, {"value": "red"})
    )
    for path in (f"{area}.altitude",):
        yield from each(path, (*NUMBERS, True, [], {}, 1e308, -1e308, 2**63 - 1))
    for v in ("nan", "inf", "١٢", "abc", True, 1e308):
        yield (
            f"ceiling = {v!r}",
            (lambda d, v=v: d["info"][0]["area"][0].update(altitude=1.0, ceiling=v)),
            isinstance(v, str),
        )
    yield "ceiling without altitude", put(f"{area}.ceiling", 3.0), True
    yield (
        "ceiling below altitude",
        (lambda d: d["info"][0]["area"][0].update(altitude=10.0, ceiling=5.0)),
        True,
    )
    for v in (-1, 1.5, "1.5", "١", True, 10**16, "99999999999999999999", [], {}, "nan", "1e3", ""):
        yield (
            f"resource size = {v!r}",
            lambda d, v=v: d["info"][0].update(
                resource=[{"resourceDesc": "map", "mimeType": "image/png", "size": v}]
            ),
            isinstance(v, str),
        )
    for name in ("resourceDesc", "mimeType"):
        for v in ("", *BAD_TEXT[:3], 5, None):
            yield (
                f"resource {name} = {v!r}",
                lambda d, v=v, name=name: d["info"][0].update(
                    resource=[{"resourceDesc": "map", "mimeType": "image/png", name: v}]
                ),
                isinstance(v, str),
            )
    for v in (
        "",
        "a,b",
        "a,b,c,d",
        "s,i,notatime",
        "s,i,2026-07-01T12:00:00",
        "s,i,9999-12-31T23:59:59+00:00",
        "s i,2026-07-01T12:00:00Z",
        "\x00,i,2026-07-01T12:00:00Z",
        5,
        True,
        [1, 2],
        [{"sender": 5}],
        {"a": 1},
        [None],
    ):
        yield (
            f"Update references = {v!r:.60}",
            (lambda d, v=v: d.update(msgType="Update", references=v)),
            isinstance(v, str),
        )
    for v in ([5], [None], [[]], ["\x00"], [{"a": 1}], 5, "a\x00"):
        yield f"code = {v!r}", put("code", v), isinstance(v, str)
    structures: dict[str, Any] = {
        "info": ([], 5, "x", [5], [None], [[]], None),
        f"{info}.area": ([], 5, "x", [5], [None], [[]], None, [{"areaDesc": 5}]),
        f"{info}.eventCode": (5, "x", [5], [None], [{"valueName": "hazard"}]),
        f"{area}.geocode": (5, "x", [5], [None], [{"value": "652301"}]),
    }
    for path, values in structures.items():
        yield from each(path, values)
    yield "unknown key instructions", put("instructions", "typo"), True
    yield "unknown key in info", put(f"{info}.headlines", "typo"), True
    yield "unknown key in area", put(f"{area}.polygons", "typo"), True
    yield "self reference", lambda d: d.update(msgType="Update", references=A.ref_of(d)), True
    yield "expires before sent", put(f"{info}.expires", "2001-01-01T00:00:00+08:00"), True
    yield (
        "expires before effective",
        lambda d: d["info"][0].update(effective=d["info"][0]["expires"], expires=d["sent"]),
        True,
    )


def fields(ctx: Context) -> Iterator[Case]:
    for name, mutate, as_xml in _mutations():
        data = ctx.alert()
        mutate(data)
        yield from _post_both(name, data, ctx, xml=as_xml)
    for top in (
        [],
        "x",
        5,
        None,
        True,
        {},
        {"alert": []},
        {"alert": 5},
        {"alert": {}},
        [A.alert()],
    ):
        yield Case(f"top-level {top!r:.40}", dumps(top), headers())
    yield Case(
        "NaN literal", b'{"identifier": NaN}', headers(), codes=frozenset({"malformed-json"})
    )
    yield Case(
        "trailing comma",
        dumps(ctx.alert())[:-1] + b",}",
        headers(),
        codes=frozenset({"malformed-json"}),
    )
    yield Case(
        "comment", b"/* x */" + dumps(ctx.alert()), headers(), codes=frozenset({"malformed-json"})
    )
    yield Case(
        "two documents", dumps(ctx.alert()) * 2, headers(), codes=frozenset({"malformed-json"})
    )
    yield Case(
        "integer over 64 bits", dumps(ctx.alert()).replace(b'"Public"', b"1" + b"0" * 30), headers()
    )
    data = ctx.alert()
    body = dumps(data)
    yield Case(
        "duplicate key identifier [json]",
        body.replace(b"{", b'{"identifier": "OTHER-ID", ', 1),
        headers(),
        codes=frozenset({"invalid-cap"}),
        identifier=data["identifier"],
    )
    yield Case(
        "duplicate key status [json]",
        body.replace(b"{", b'{"status": "Exercise", ', 1),
        headers(),
        codes=frozenset({"invalid-cap"}),
        identifier=data["identifier"],
    )
    xml = raw_xml(data)
    for element in ("identifier", "sender", "sent", "status", "msgType", "scope"):
        value = str(data[element])
        doubled = xml.replace(
            f"<{element}>".encode(),
            f"<{element}>{escape(value)}X</{element}><{element}>".encode(),
            1,
        )
        yield Case(
            f"two <{element}> elements [xml]",
            doubled,
            headers(XML_TYPES[0]),
            codes=frozenset({"invalid-cap"}),
            identifier=data["identifier"],
        )
    for element in ("urgency", "severity", "event", "expires", "language"):
        doubled = xml.replace(
            f"</{element}>".encode(), f"</{element}><{element}>x</{element}>".encode(), 1
        )
        yield Case(
            f"two <{element}> in an info [xml]",
            doubled,
            headers(XML_TYPES[0]),
            codes=frozenset({"invalid-cap"}),
            identifier=data["identifier"],
        )
    for label, doc in (
        ("two roots", xml + xml),
        ("trailing garbage", xml + b"<"),
        ("character reference to NUL", xml.replace(b"</identifier>", b"&#0;</identifier>", 1)),
        (
            "character reference to a surrogate",
            xml.replace(b"</identifier>", b"&#xD800;</identifier>", 1),
        ),
        ("character reference to U+0001", xml.replace(b"</identifier>", b"&#1;</identifier>", 1)),
        (
            "XML 1.1 with U+0001",
            xml.replace(b'version="1.0"', b'version="1.1"', 1).replace(
                b"</identifier>", b"&#1;</identifier>", 1
            ),
        ),
        ("undefined entity", xml.replace(b"</identifier>", b"&nbsp;</identifier>", 1)),
        ("ampersand in identifier", xml.replace(b"</identifier>", b"&amp;x</identifier>", 1)),
        ("CAP 1.1 namespace", xml.replace(b"cap:1.2", b"cap:1.1", 1)),
        ("no namespace", xml.replace(f' xmlns="{CAP_NS}"'.encode(), b"", 1)),
        ("root <feed>", xml.replace(b"<alert ", b"<feed ", 1).replace(b"</alert>", b"</feed>")),
        ("comment only", b"<!-- nothing -->"),
        ("empty", b""),
        ("whitespace", b"   "),
        ("text only", b"alert"),
        ("processing instruction only", b"<?x y?>"),
    ):
        yield Case(f"XML {label}", doc, headers(XML_TYPES[0]), identifier=data["identifier"])


# -- read routes -------------------------------------------------------------------------


def read_routes(ctx: Context) -> Iterator[Case]:
    bad_query = frozenset({"bad-query"})
    for query in (
        "state=bogus", "state=ACTIVE", "state=%00", "state=active%00", "limit=abc",
        "limit=%D9%A1%D9%A0", "limit=1_0", "limit=-1", "limit=1e3", "limit=99999999999",
        "limit=", "limit=NaN", "limit=inf", "limit=0x10", "limit=%EF%BC%95", "limit=+5",
        "limit=5.0", "limit=%205", "limit=" + "9" * 5000,
    ):  # fmt: skip
        yield Case(
            f"list ?{query[:40]}",
            b"",
            (("Authorization", f"Bearer {A.MET}"),),
            "GET",
            f"{ALERTS}?{query}",
            codes=bad_query,
        )
    not_found = frozenset({"alert-not-found", "not-found"})
    for alert in (
        "nothing", "a" * 4000, "%00", "%FF", "*", "a:b", "..%2F..%2Fetc", "%E6%98%8C", "a%20b",
        "a" + ctx.live_id, ctx.live_id.upper(), ctx.live_id + "%00",
    ):  # fmt: skip
        for tail in ("", "/deliveries", "/messages", "/coverage"):
            yield Case(
                f"GET alert {alert[:30]}{tail}",
                b"",
                (("Authorization", f"Bearer {A.MET}"),),
                "GET",
                f"{ALERTS}/{alert}{tail}",
                codes=not_found,
            )
    for key in ("wgdemo-kangbashi-met", A.WATER, "wgdemo-kangbashi-duty"):
        for tail in ("", "/deliveries", "/messages", "/coverage"):
            yield Case(
                f"{key} reads the live alert{tail}",
                b"",
                (("Authorization", f"Bearer {key}"),),
                "GET",
                f"{ALERTS}/{ctx.live_id}{tail}",
                codes=not_found,
            )
    for method in ("PUT", "DELETE", "PATCH"):
        yield Case(
            f"{method} alerts",
            dumps(ctx.live),
            headers(),
            method,
            ALERTS,
            codes=frozenset({"method-not-allowed"}),
        )
        yield Case(
            f"{method} the live alert",
            dumps(ctx.live),
            headers(),
            method,
            f"{ALERTS}/{ctx.live_id}",
            codes=frozenset({"method-not-allowed"}),
        )
    yield Case(
        "POST to the live alert",
        dumps(ctx.live),
        headers(),
        "POST",
        f"{ALERTS}/{ctx.live_id}",
        codes=frozenset({"method-not-allowed"}),
    )
    yield Case(
        "GET alerts/",
        b"",
        (("Authorization", f"Bearer {A.MET}"),),
        "GET",
        f"{ALERTS}/",
        codes=not_found,
    )


CLASSES: tuple[Callable[[Context], Iterator[Case]], ...] = (
    xml_bombs,
    encodings,
    invalid_utf8,
    content_types,
    sizes,
    replays,
    jurisdictions,
    unknown_areas,
    auth,
    cross_status,
    fields,
    read_routes,
)


def corpus(ctx: Context) -> list[Case]:
    return [case for make in CLASSES for case in make(ctx)]
