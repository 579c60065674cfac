"""Rendering: a census of what the sample configuration renders, and the example warnings
the census, the tests and the translation reviewers render.

    python -m gateway.translations --census     # render failures, variants, SMS segments
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.callbacks import relay_code
from gateway.config import Config, load_config
from gateway.directory import Channel
from gateway.errors import RenderError
from gateway.models import Alert, AlertRecord, AlertState, Level, Status
from gateway.plan import Kind
from gateway.render import Context, Rendered, Renderer

__all__ = [
    "Census",
    "census",
    "example_record",
    "main",
    "renderer_for",
    "sample_unit",
]

ROOT = Path(__file__).resolve().parent.parent
LANGS = ("zh", "ug", "kk", "mn", "en")
TZ = timezone(timedelta(hours=8))
SENT = datetime(2026, 7, 15, 14, 30, tzinfo=TZ)
EXPIRES = datetime(2026, 7, 16, 8, 0, tzinfo=TZ)
XINJIANG_UNIT = "652301101201"  # 喀拉塔斯村 (zh, ug, kk)
MONGOLIAN_UNIT = "150603001001"  # 呼和塔拉社区 (zh, mn)
AGENCIES = {  # (meteorology, emergency management) by area
    "652": ("changji-met", "changji-em"),
    "150": ("kangbashi-met", "ordos-em"),
}
QUAKE = "7月15日14时28分在呼图壁县（北纬44.0度，东经86.8度）发生5.8级地震，震源深度10千米。"
QUAKE_EN = "A magnitude 5.8 earthquake struck Hutubi County (44.0N, 86.8E) at 14:28, 10 km deep."


def renderer_for(config: Config) -> Renderer:
    s = config.settings
    return Renderer(s.templates_dir, config.hazards, config.directory, s.render)


def sample_unit(lang: str) -> str:
    """The sample village whose languages include `lang` (zh and en: the Xinjiang one)."""
    return MONGOLIAN_UNIT if lang == "mn" else XINJIANG_UNIT


def example_record(
    level: Level = Level.RED,
    *,
    hazard: str = "rainstorm",
    agency: str = "changji-met",
    status: Status = Status.ACTUAL,
    description: bool = False,
    alert_id: str = "example",
) -> AlertRecord:
    """A warning as an agency posts it: a zh info block (and an en one for the
    earthquake's description), no headline, for schools and care homes."""
    params = [
        {"valueName": "level", "value": level.value},
        {"valueName": "groups", "value": "schools care_homes"},
    ]
    area = [{"areaDesc": "昌吉市", "geocode": [{"valueName": "adcode", "value": "652301"}]}]
    common = {
        "category": ["Geo" if hazard == "earthquake" else "Met"],
        "event": hazard,
        "urgency": "Immediate",
        "severity": "Extreme",
        "certainty": "Likely",
        "expires": EXPIRES.isoformat(),
        "parameter": params,
        "area": area,
    }
    infos = [{"language": "zh-CN", **common}]
    if description:
        infos[0]["description"] = QUAKE
        infos.append({"language": "en-US", **common, "description": QUAKE_EN})
    data = {
        "identifier": alert_id,
        "sender": "example@warngate.example",
        "sent": SENT.isoformat(),
        "status": status.value,
        "msgType": "Alert",
        "scope": "Public",
        "info": infos,
    }
    return AlertRecord(
        id=alert_id,
        agency=agency,
        received=SENT,
        level=level,
        hazards=[hazard],
        state=AlertState.ACTIVE,
        content_hash="example",
        alert=Alert.model_validate(data),
        expires=EXPIRES,
    )


# -- the census ------------------------------------------------------------------------


@dataclass
class Census:
    """What the sample configuration renders: every channel × language × kind × unit."""

    renders: int = 0
    failures: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    variants: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    messenger_segments: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(list)
    )
    tasks: dict[tuple[str, str, str], Rendered] = field(default_factory=dict)
    hazard_renders: int = 0  # every hazard, level and kind in the two example villages
    hazard_failures: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        seg = {
            f"{lang} {kind}": {"min": min(v), "median": statistics.median(v), "max": max(v)}
            for (lang, kind), v in sorted(self.messenger_segments.items())
        }
        return {
            "renders": self.renders,
            "failures": sum(self.failures.values()),
            "failures_by": {"|".join(k): n for k, n in sorted(self.failures.items())},
            "variants_not_full": {
                "|".join(k): n for k, n in sorted(self.variants.items()) if k[3] != "full"
            },
            "messenger_segments": seg,
            "hazard_renders": self.hazard_renders,
            "hazard_failures": sum(self.hazard_failures.values()),
            "hazard_failures_by": {"|".join(k): n for k, n in sorted(self.hazard_failures.items())},
        }


def census(config: Config, r: Renderer | None = None) -> Census:
    """Render the red rainstorm warning (alert, update red → orange, cancel) of the area's
    meteorological bureau for every unit, channel and shipped language; and every hazard,
    level and kind, from every agency that may issue it, in the two example villages."""
    r = r or renderer_for(config)
    out = Census()
    for unit in (XINJIANG_UNIT, MONGOLIAN_UNIT):
        for agency in config.registry.agencies.values():
            if not agency.covers(unit):
                continue
            for hazard in (h for h in config.hazards.by_id if agency.may_warn(h)):
                for level in Level:
                    rec = example_record(level, hazard=hazard, agency=agency.id)
                    for kind in Kind:
                        prev = None if kind is Kind.ALERT else Level.RED
                        ctx = Context(rec, kind, unit, agency, prev, relay_code="PYMM6PHC")
                        for channel in Channel:
                            for lang in r.languages:
                                out.hazard_renders += 1
                                try:
                                    r.render(channel, lang, ctx)
                                except RenderError as exc:
                                    key = (channel.value, lang, kind.value, _reason(exc))
                                    out.hazard_failures[key] += 1
    secret = config.settings.secret.get_secret_value()
    for unit in config.directory.units:
        met = config.registry.agencies[AGENCIES.get(unit[:3], AGENCIES["652"])[0]]
        tz = config.policy.for_unit(unit).tz()
        messengers = config.directory.recipients_of(unit, Channel.MESSENGER) is not None
        cases = [
            (Kind.ALERT, example_record(agency=met.id), None),
            (Kind.UPDATE, example_record(Level.ORANGE, agency=met.id), Level.RED),
            (Kind.CANCEL, example_record(agency=met.id), Level.RED),
        ]
        for kind, rec, prev in cases:
            for channel in Channel:
                code = relay_code(secret, rec.id, unit) if channel is Channel.MESSENGER else None
                ctx = Context(rec, kind, unit, met, prev, tz, relay_code=code)
                for lang in r.languages:
                    out.renders += 1
                    try:
                        got = r.render(channel, lang, ctx)
                    except RenderError as exc:
                        out.failures[(channel.value, lang, kind.value, _reason(exc))] += 1
                        continue
                    out.variants[(channel.value, lang, kind.value, got.variant)] += 1
                    if channel is Channel.MESSENGER and messengers:
                        out.messenger_segments[(lang, kind.value)].append(got.segments or 0)
                        out.tasks[(unit, lang, kind.value)] = got
    return out


def _reason(exc: RenderError) -> str:
    return str(getattr(exc, "limit", "") or getattr(exc, "code", "render-failed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.translations", description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "config")
    parser.add_argument("--census", action="store_true", help="print the sample's census (JSON)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    sys.stdout.write(json.dumps(census(config).report(), ensure_ascii=False, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
