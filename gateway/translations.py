"""Rendering: the generated parts of docs/translations.md — every shipped text side by
side, and examples rendered by the real renderer from the sample configuration — and a
census of what the sample configuration renders.

    python -m gateway.translations              # rewrite the generated parts of the doc
    python -m gateway.translations --check      # exit 1 if the doc is stale
    python -m gateway.translations --census     # render failures, variants, SMS segments

Native reviewers must read what is sent, not what someone once typed into a document: a
test (tests/test_translations.py) fails when the document differs from this output.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.auth import Agency
from gateway.callbacks import relay_code
from gateway.config import Config, load_config
from gateway.directory import Channel
from gateway.errors import RenderError
from gateway.models import Alert, AlertRecord, AlertState, Level, Status
from gateway.plan import Kind
from gateway.render import Context, Rendered, Renderer

__all__ = [
    "DOC",
    "Census",
    "census",
    "example_record",
    "generate",
    "main",
    "renderer_for",
    "sample_unit",
]

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "translations.md"
LANGS = ("zh", "ug", "kk", "mn", "en")
NAMES = {
    "zh": "中文 zh",
    "ug": "ئۇيغۇرچە ug",
    "kk": "قازاقشا kk",
    "mn": "ᠮᠣᠩᠭᠣᠯ mn",
    "en": "English en",
}
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
_BLOCK = re.compile(r"(<!-- generated:(\w+) -->\n).*?(<!-- /generated:\2 -->)", re.DOTALL)


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


# -- the document ----------------------------------------------------------------------


def _cell(text: Any) -> str:
    value = str(text)
    if value != value.strip():
        value = f"“{value}”"  # a trailing space that matters (the markers)
    return value.replace("|", "\\|").replace("\n", " ")


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _flat(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if not prefix and key == "terms":
                continue
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _lookup(strings: dict[str, Any], key: str) -> Any:
    node: Any = strings
    for part in key.split("."):
        node = node.get(part, "—") if isinstance(node, dict) else "—"
    return node


def _terms_block(r: Renderer) -> list[str]:
    out = [
        _row(["setting in gateway.yaml", "shipped wording", "options", "finding"]),
        "| --- | --- | --- | --- |",
    ]
    for lang in LANGS:
        for tid, term in (r.strings[lang].get("terms") or {}).items():
            options = " / ".join(term.get("options") or []) or "(native speaker to propose)"
            out.append(_row([f"`render.terms.{lang}.{tid}`", term["text"], options, term["see"]]))
    return out


def _strings_section(r: Renderer) -> list[str]:
    head = " | ".join(NAMES[lang] for lang in LANGS)
    out = [
        "## Strings (`templates/strings/<lang>.yaml`)",
        "",
        f"| key | {head} |",
        "| --- |" + " --- |" * len(LANGS),
    ]
    for key, _ in _flat(r.strings["zh"]):
        out.append(_row([f"`{key}`", *(_lookup(r.strings[lang], key) for lang in LANGS)]))
    sample = {"year": 2026, "month": 7, "day": 15, "hour": 14, "minute": 30}
    when = "; ".join(f"{lang}: {r.strings[lang]['time_format'].format(**sample)}" for lang in LANGS)
    return [*out, "", f"`time_format` rendered for 15 July 14:30: {when}.", ""]


def _hazards_section(config: Config) -> list[str]:
    head = " | ".join(NAMES[lang] for lang in LANGS)
    out = [
        "## Hazard names (`config/hazards.yaml`)",
        "",
        f"| id | {head} | zh/en aliases |",
        "| --- |" + " --- |" * (len(LANGS) + 1),
    ]
    for hz in config.hazards.by_id.values():
        names = [hz.names.get(lang, "—") for lang in LANGS]
        out.append(_row([f"`{hz.id}`", *names, ", ".join(hz.aliases)]))
    return [*out, ""]


def _guidance_section(config: Config, r: Renderer) -> list[str]:
    head = " | ".join(NAMES[lang] for lang in LANGS)
    out = [
        "## Protective guidance (`templates/guidance/<lang>.yaml`)",
        "",
        "Red and orange carry two departments' blocks (industrial accidents one), yellow and "
        "blue one. SMS carries the first block, the loudspeaker and messenger two (a compact "
        "messenger task the first one when two do not fit), the app all.",
        "",
    ]
    for hz in config.hazards.by_id.values():
        out += [f"### {hz.id} — {hz.name('zh')} / {hz.name('en')}", ""]
        out += [f"| level | department | {head} |", "| --- | --- |" + " --- |" * len(LANGS)]
        for level, blocks in r.guidance["zh"].get(hz.id, {}).items():
            for i, block in enumerate(blocks):
                texts = [r.guidance[lang][hz.id][level][i]["text"] for lang in LANGS]
                out.append(_row([level, f"`{block['department']}`", *texts]))
        out.append("")
    return out


def _phrases_section(r: Renderer) -> list[str]:
    head = " | ".join(NAMES[lang] for lang in LANGS)
    out = [
        "## Fixed phrases inside the templates",
        "",
        "Action lines for screens, and for SMS and messenger tasks when the gateway has to send "
        "the short variant (no guidance blocks), by level (`short_action` in "
        "`_phrases/<lang>.j2`):",
        "",
        f"| level | {head} |",
        "| --- |" + " --- |" * len(LANGS),
    ]
    macros = {lang: r.env.get_template(f"_phrases/{lang}.j2").module for lang in LANGS}
    for level in Level:
        m = {"level": level.value}
        out.append(_row([level.value, *(macros[lang].short_action(m) for lang in LANGS)]))  # type: ignore[attr-defined]
    return [*out, ""]


def _names_section(config: Config) -> list[str]:
    head = " | ".join(NAMES[lang] for lang in LANGS)
    out = [
        "## Agency and group names (`config/agencies.yaml`, `config/groups.yaml`)",
        "",
        "They sign every SMS (【…】) and name the groups an alert is for; review them with the "
        "rest.",
        "",
        f"| agency | {head} |",
        "| --- |" + " --- |" * len(LANGS),
    ]
    for a in config.registry.agencies.values():
        names = a.name if isinstance(a.name, dict) else {"zh": a.name}
        out.append(_row([f"`{a.id}`", *(names.get(lang, "—") for lang in LANGS)]))
    out += ["", f"| group | {head} |", "| --- |" + " --- |" * len(LANGS)]
    for g in config.directory.groups.values():
        out.append(_row([f"`{g.id}`", *(g.names.get(lang, "—") for lang in LANGS)]))
    return [*out, ""]


def _examples(config: Config, r: Renderer, lang: str) -> Iterator[tuple[str, Rendered]]:
    """(label, rendering) of every channel and kind in one language, for its village."""
    unit = sample_unit(lang)
    met, em = (config.registry.agencies[a] for a in AGENCIES[unit[:3]])
    secret = config.settings.secret.get_secret_value()
    tz = config.policy.for_unit(unit).tz()
    red, orange = example_record(agency=met.id), example_record(Level.ORANGE, agency=met.id)
    quake = example_record(hazard="earthquake", agency=em.id, description=True)
    drill = example_record(agency=met.id, status=Status.EXERCISE)
    code = relay_code(secret, red.id, unit)
    kinds: list[tuple[str, AlertRecord, Kind, Level | None, Agency]] = [
        ("alert", red, Kind.ALERT, None, met),
        ("update (red → orange)", orange, Kind.UPDATE, Level.RED, met),
        ("cancel", red, Kind.CANCEL, Level.RED, met),
    ]
    for channel in (Channel.SMS, Channel.APP, Channel.LOUDSPEAKER, Channel.DISPLAY):
        extra = []
        if channel in (Channel.SMS, Channel.LOUDSPEAKER):
            extra.append(("earthquake alert (override template)", quake, Kind.ALERT, None, em))
        if channel is Channel.SMS:
            extra.append(("exercise alert", drill, Kind.ALERT, None, met))
        for label, rec, kind, prev, agency in [*kinds, *extra]:
            ctx = Context(rec, kind, unit, agency, prev, tz)
            yield f"{channel.value}|{label}", r.render(channel, lang, ctx)
    for label, rec, kind, prev, agency in kinds:
        ctx = Context(rec, kind, unit, agency, prev, tz, relay_code=code)
        yield f"messenger|{label}", r.render(Channel.MESSENGER, lang, ctx)


def _describe(out: Rendered) -> str:
    parts = [f"`{out.template}`", out.variant]
    if out.segments is not None:
        parts.append(f"{out.segments} SMS segment" + ("s" if out.segments > 1 else ""))
    if out.seconds is not None:
        parts.append(f"{out.seconds:.0f} s")
    return ", ".join(parts)


def _examples_section(config: Config, r: Renderer) -> list[str]:
    xj = config.directory.divisions[XINJIANG_UNIT].name
    mn = config.directory.divisions[MONGOLIAN_UNIT].name
    out = [
        "## Rendered examples",
        "",
        f"Rendered by `gateway.render.Renderer` from the sample configuration: a red rainstorm "
        f"warning for {xj['zh']} (`{XINJIANG_UNIT}`; zh, ug, kk and en) from `changji-met` and "
        f"for {mn['zh']} (`{MONGOLIAN_UNIT}`; mn) from `kangbashi-met`, issued 15 July 14:30 "
        "and valid until 16 July 08:00, for schools and care homes, posted with a Chinese info "
        "block only (no headline); then its update from red to orange and its cancellation; an "
        "earthquake warning from `changji-em` / `ordos-em` whose zh and en info blocks give the "
        "magnitude; an Exercise; messenger tasks with their task code. Each example names its "
        "template and the variant sent (`full`; `compact`, `one-block` or `short` when a longer "
        "text was over the channel limit). Every line of a ug and kk text starts with U+200F "
        "RIGHT-TO-LEFT MARK (invisible here). Regenerate with `python -m gateway.translations`.",
        "",
    ]
    for lang in LANGS:
        out += [f"### {NAMES[lang]}", ""]
        channel = ""
        for key, rendered in _examples(config, r, lang):
            ch, label = key.split("|")
            if ch != channel:
                out += [f"#### {ch}", ""]
                channel = ch
            text = (
                rendered.text if rendered.title is None else f"{rendered.title}\n\n{rendered.text}"
            )
            out += [f"*{label}* — {_describe(rendered)}", "", "```text", text, "```", ""]
    return out


def _census_section(config: Config, r: Renderer, counted: Census | None) -> list[str]:
    c = (counted or census(config, r)).report()
    out = [
        "## Census of the sample configuration",
        "",
        f"The red rainstorm warning of the area's meteorological bureau rendered for every unit "
        f"of the sample ({len(config.directory.units)}), channel, shipped language and kind "
        f"(alert, update red → orange, cancel): {c['renders']} renderings, {c['failures']} "
        f"failures. Every hazard, level and kind from every agency that may issue it, in the "
        f"two example villages: {c['hazard_renders']} renderings, {c['hazard_failures']} "
        "failures (`python -m gateway.translations --census`).",
        "",
        "Not sent in full (channel | language | kind | variant: units):",
        "",
    ]
    out += [f"* {k}: {n}" for k, n in c["variants_not_full"].items()] or ["* none"]
    out += [
        "",
        "Messenger tasks, SMS segments (limit `render.messenger_max_segments`, "
        f"{config.settings.render.messenger_max_segments}):",
        "",
        "| language and kind | fewest | median | most |",
        "| --- | --- | --- | --- |",
    ]
    for key, s in c["messenger_segments"].items():
        out.append(_row([key, s["min"], s["median"], s["max"]]))
    return [*out, ""]


def generate(doc: str, config: Config, counted: Census | None = None) -> str:
    """The document with its generated blocks rewritten (`counted`: the census of this
    configuration, if already taken)."""
    r = renderer_for(config)
    blocks = {
        "terms": _terms_block(r),
        "texts": [
            *_strings_section(r),
            *_hazards_section(config),
            *_guidance_section(config, r),
            *_phrases_section(r),
            *_names_section(config),
            *_examples_section(config, r),
            *_census_section(config, r, counted),
        ],
    }
    found = {m.group(2) for m in _BLOCK.finditer(doc)}
    if found != set(blocks):
        raise ValueError(f"{DOC.name} needs the generated blocks {sorted(blocks)}, has {found}")

    def fill(m: re.Match[str]) -> str:
        body = "\n".join(blocks[m.group(2)]).rstrip("\n")
        return f"{m.group(1)}{body}\n{m.group(3)}"

    return _BLOCK.sub(fill, doc)


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
    parser.add_argument("--doc", type=Path, default=DOC)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="exit 1 if the document is stale")
    what.add_argument("--census", action="store_true", help="print the sample's census (JSON)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    if args.census:
        sys.stdout.write(json.dumps(census(config).report(), ensure_ascii=False, indent=1) + "\n")
        return 0
    doc = args.doc.read_text(encoding="utf-8")
    new = generate(doc, config)
    if args.check:
        if new != doc:
            sys.stderr.write(f"{args.doc} is stale: run `python -m gateway.translations`\n")
            return 1
        return 0
    if new != doc:
        args.doc.write_text(new, encoding="utf-8")
        sys.stdout.write(f"wrote {args.doc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
