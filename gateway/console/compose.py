"""Console: compose — a duty officer's form made into a CAP 1.2 alert (JSON form).

The console writes CAP like any agency: the account's agency is the sender, the units
picked (or drawn) are the areas, the level is the `level` parameter, the department
guidance blocks chosen are the `guidance` parameter. The result goes through the same
ingest path as an agency's post (`POST /api/v1/submissions`), so the console can do
nothing an agency could not. Quick-launch templates (`quick.yaml` of the configuration
directory) fill the same form.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway import codes
from gateway.auth import Agency
from gateway.config import Config
from gateway.errors import ConfigError, ConfigIssue
from gateway.models import AlertRecord, Level, format_cap_time
from gateway.settings import read_yaml

__all__ = [
    "LANGUAGES",
    "QUICK_FILE",
    "SEVERITY",
    "Draft",
    "QuickTemplate",
    "draft_from_form",
    "draft_from_record",
    "load_quick",
    "to_cap",
]

LANGUAGES = {"zh": "zh-CN", "ug": "ug-Arab-CN", "kk": "kk-Arab-CN", "mn": "mn-Mong-CN", "en": "en"}
SEVERITY = {
    Level.RED: "Extreme",
    Level.ORANGE: "Severe",
    Level.YELLOW: "Moderate",
    Level.BLUE: "Minor",
}
QUICK_FILE = "quick.yaml"
GEOCODE = "CPEAS Geographic Code"
TEXTS = ("headline", "description", "instruction")
MAX_UNITS = 5000


@dataclass
class Draft:
    """What the compose form holds (also the form filled from a template or an alert)."""

    hazard: str = ""
    level: str = "red"
    status: str = "Actual"
    msg_type: str = "Alert"
    units: list[str] = field(default_factory=list)
    polygon: str = ""
    circle: str = ""
    expires_minutes: int = 360
    guidance: list[str] = field(default_factory=list)  # departments
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # lang → headline …
    references: list[str] = field(default_factory=list)  # CAP reference triplets
    note: str = ""
    identifier: str = ""  # kept between preview and submit
    sent: str = ""
    expires_at: str = ""  # kept between preview and submit (the same alert, to the second)
    confirm_duplicate: bool = False
    area_desc: str = ""

    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if any(self.texts.get(lang, {}).values())] or ["zh"]


class QuickTemplate(BaseModel):
    """A quick-launch template: a hazard and level ready to go ("launch") or to check
    first ("review and launch")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{1,63}$")
    title: dict[str, str]
    hazard: str
    level: Level
    area: list[str] = Field(min_length=1)
    expires_minutes: int = Field(default=360, ge=10, le=7 * 24 * 60)
    guidance: list[str] = []
    headline: dict[str, str] = {}
    description: dict[str, str] = {}
    instruction: dict[str, str] = {}

    def draft(self) -> Draft:
        texts: dict[str, dict[str, str]] = {}
        for key in TEXTS:
            for lang, text in getattr(self, key).items():
                texts.setdefault(lang, {})[key] = text
        return Draft(
            hazard=self.hazard,
            level=self.level.value,
            units=[codes.normalize(c) for c in self.area],
            expires_minutes=self.expires_minutes,
            guidance=list(self.guidance),
            texts=texts,
        )


def load_quick(path: Path) -> list[QuickTemplate]:
    if not path.exists():
        return []
    data = read_yaml(path) or {}
    rows = data.get("quick", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ConfigError([ConfigIssue(path.name, "quick", "expected a list of templates")])
    out, issues = [], []
    for i, row in enumerate(rows):
        try:
            out.append(QuickTemplate.model_validate(row))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                issues.append(ConfigIssue(path.name, f"quick[{i}].{loc}", str(err["msg"])))
    if issues:
        raise ConfigError(issues)
    return out


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value or "")
    except ValueError:
        return default
    return max(low, min(high, number))


def draft_from_form(form: Mapping[str, Any], units: list[str]) -> Draft:
    """The draft a posted compose form describes (values the form cannot make are
    left for ingest to refuse, with its own messages)."""
    texts: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        for key in TEXTS:
            value = str(form.get(f"{key}_{lang}", "")).strip()
            if value:
                texts.setdefault(lang, {})[key] = value
    return Draft(
        hazard=str(form.get("hazard", "")),
        level=str(form.get("level", "red")),
        status=str(form.get("status", "Actual")),
        msg_type=str(form.get("msg_type", "Alert")),
        units=units[:MAX_UNITS],
        polygon=str(form.get("polygon", "")).strip(),
        circle=str(form.get("circle", "")).strip(),
        expires_minutes=_int(form.get("expires_minutes"), 360, 10, 7 * 24 * 60),
        guidance=[str(g) for g in form.getall("guidance", [])] if hasattr(form, "getall") else [],
        texts=texts,
        references=[r for r in str(form.get("references", "")).split() if r],
        note=str(form.get("note", "")).strip(),
        identifier=str(form.get("identifier", "")),
        sent=str(form.get("sent", "")),
        expires_at=str(form.get("expires_at", "")),
        confirm_duplicate=form.get("confirm_duplicate") == "yes",
        area_desc=str(form.get("area_desc", "")).strip(),
    )


def draft_from_record(record: AlertRecord, msg_type: str) -> Draft:
    """The form for an Update or Cancel of a stored alert (or to edit a rejected one):
    its areas, texts and guidance; references to it for an Update or Cancel."""
    alert = record.alert
    texts: dict[str, dict[str, str]] = {}
    units: list[str] = []
    polygon = circle = ""
    guidance: list[str] = []
    for info in alert.info:
        for key in TEXTS:
            value = getattr(info, key)
            if value:
                texts.setdefault(info.lang, {})[key] = value
        for area in info.area:
            for g in area.geocode:
                if g.valueName == GEOCODE and g.value not in units:
                    units.append(g.value)
            polygon = polygon or (area.polygon[0] if area.polygon else "")
            circle = circle or (area.circle[0] if area.circle else "")
        for value in info.parameters("guidance"):
            guidance += [d for d in value.split() if d not in guidance]
    left = max(10, int((record.expires - datetime.now(UTC)).total_seconds() // 60))
    refs = [f"{alert.sender},{alert.identifier},{format_cap_time(alert.sent)}"]
    return Draft(
        hazard=record.hazards[0],
        level=record.level.value,
        status=alert.status.value,
        msg_type=msg_type,
        units=units,
        polygon=polygon,
        circle=circle,
        expires_minutes=left,
        guidance=guidance,
        texts=texts,
        references=refs if msg_type in ("Update", "Cancel") else [],
    )


def new_identifier(account: str, now: datetime) -> str:
    return f"WG-{account}-{now:%Y%m%d%H%M%S}-{secrets.token_hex(2).upper()}"


def to_cap(
    draft: Draft, config: Config, agency: Agency, account: str, now: datetime
) -> dict[str, Any]:
    """The CAP 1.2 alert (JSON form) of a draft, written as `agency`."""
    hazard = config.hazards.get(draft.hazard)
    try:
        level = Level(draft.level)
    except ValueError:
        level = Level.RED
    expires_text = draft.expires_at or format_cap_time(
        now + timedelta(minutes=draft.expires_minutes)
    )
    names = [
        config.directory.divisions[u].label("zh")
        for u in draft.units
        if u in config.directory.divisions
    ]
    area: dict[str, Any] = {
        "areaDesc": draft.area_desc
        or ("、".join(names[:8]) + (" …" if len(names) > 8 else ""))
        or "—",
    }
    if draft.units:
        area["geocode"] = [{"valueName": GEOCODE, "value": u} for u in draft.units]
    if draft.polygon:
        area["polygon"] = [draft.polygon]
    if draft.circle:
        area["circle"] = [draft.circle]
    params = [{"valueName": "level", "value": level.value}]
    if draft.guidance:
        params.append({"valueName": "guidance", "value": " ".join(draft.guidance)})
    infos = []
    for lang in draft.languages():
        texts = draft.texts.get(lang, {})
        info: dict[str, Any] = {
            "language": LANGUAGES[lang],
            "category": [hazard.category if hazard else "Other"],
            "event": hazard.name(lang) if hazard else (draft.hazard or "—"),
            "urgency": "Immediate" if level.high_priority else "Expected",
            "severity": SEVERITY[level],
            "certainty": "Likely",
            "eventCode": [{"valueName": "hazard", "value": draft.hazard}],
            "expires": expires_text,
            "senderName": agency.display_name(lang),
            "parameter": params,
            "area": [area],
        }
        info.update({k: v for k, v in texts.items() if v})
        infos.append(info)
    data: dict[str, Any] = {
        "identifier": draft.identifier or new_identifier(account, now),
        "sender": agency.senders[0],
        "sent": draft.sent or format_cap_time(now),
        "status": draft.status,
        "msgType": draft.msg_type,
        "scope": "Public",
        "info": infos,
    }
    if draft.references:
        data["references"] = " ".join(draft.references)
    if draft.note:
        data["note"] = draft.note
    return data
