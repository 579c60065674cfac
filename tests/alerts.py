"""Builders for CAP alerts used across the tests (JSON dicts with CAP names, and XML)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.cap import encode_xml
from gateway.models import Alert, format_cap_time

MET = "wgdemo-changji-met"
MET_SENDER = "met.changji@warngate.example"
WATER = "wgdemo-changji-water"
WATER_SENDER = "water.changji@warngate.example"
MORI = "wgdemo-mori-met"
MORI_SENDER = "met.mori@warngate.example"
EM = "wgdemo-changji-em"
EM_SENDER = "em.changji@warngate.example"
OPERATOR = "wgdemo-changji-duty"
CHANGJI_CITY = "652301"
MORI_COUNTY = "652328"
KANGBASHI = "150603"

_counter = itertools.count(1)


def auth(key: str = MET) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def json_headers(key: str = MET) -> dict[str, str]:
    return {**auth(key), "Content-Type": "application/json"}


def xml_headers(key: str = MET, kind: str = "application/cap+xml") -> dict[str, str]:
    return {**auth(key), "Content-Type": kind}


def cap_time(dt: datetime) -> str:
    return format_cap_time(dt)


def info(
    *,
    language: str = "zh-CN",
    hazard: str = "rainstorm",
    event: str = "暴雨",
    level: str | None = "red",
    severity: str = "Extreme",
    geocodes: list[str] | None = None,
    polygon: str | None = None,
    circle: str | None = None,
    expires: datetime | None = None,
    headline: str = "昌吉市气象台发布暴雨红色预警",
    **extra: Any,
) -> dict[str, Any]:
    area: dict[str, Any] = {"areaDesc": "昌吉市"}
    if geocodes is None and polygon is None and circle is None:
        geocodes = [CHANGJI_CITY]
    if geocodes:
        area["geocode"] = [{"valueName": "CPEAS Geographic Code", "value": g} for g in geocodes]
    if polygon:
        area["polygon"] = [polygon]
    if circle:
        area["circle"] = [circle]
    params = [{"valueName": "level", "value": level}] if level else []
    data: dict[str, Any] = {
        "language": language,
        "category": ["Met"],
        "event": event,
        "urgency": "Immediate",
        "severity": severity,
        "certainty": "Likely",
        "eventCode": [{"valueName": "hazard", "value": hazard}],
        "expires": cap_time(expires or datetime.now(UTC) + timedelta(hours=6)),
        "senderName": "昌吉回族自治州气象局",
        "headline": headline,
        "description": "预计未来3小时内昌吉市将出现50毫米以上降水。",
        "instruction": "请远离河道，转移到安全地带。",
        "parameter": params,
        "area": [area],
    }
    data.update(extra)
    return data


def alert(
    *,
    identifier: str | None = None,
    sender: str = MET_SENDER,
    sent: datetime | None = None,
    msg_type: str = "Alert",
    status: str = "Actual",
    references: list[dict[str, Any]] | None = None,
    infos: list[dict[str, Any]] | None = None,
    **info_kw: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "identifier": identifier or f"TEST-{next(_counter):06d}-{datetime.now(UTC):%H%M%S%f}",
        "sender": sender,
        "sent": cap_time(sent or datetime.now(UTC).replace(microsecond=0)),
        "status": status,
        "msgType": msg_type,
        "scope": "Public",
        "info": infos if infos is not None else [info(**info_kw)],
    }
    if references:
        data["references"] = " ".join(ref_of(r) for r in references)
    return data


def ref_of(data: dict[str, Any]) -> str:
    """The CAP reference triplet of an alert dict."""
    return f"{data['sender']},{data['identifier']},{data['sent']}"


def to_xml(data: dict[str, Any]) -> bytes:
    return encode_xml(Alert.model_validate(data))
