"""Rendering: the text each channel carries, per language, checked against channel limits.

One strict jinja2 environment (StrictUndefined, autoescape off: every output is plain
text for phones, screens and speech, never HTML). Templates live in
`templates/<channel>/<lang>/<kind>[.<hazard>].j2`; the lookup order is documented in
docs/templates.md:

1. languages: the recipient's language, then the unit's languages in order, then `zh`;
2. within a language: the hazard-specific template, then the generic one.

Limits are checked after rendering. Too long for its channel, a message is rendered
again as each shorter variant in turn (`VARIANTS`): compact (all guidance, no agency
description; templates shorten the rest, so a messenger task keeps its guidance and
its reply hint), one-block (the first guidance block), short (no guidance); if even
that is too long, `LimitExceeded` is raised. Nothing is ever cut silently.
Right-to-left texts get the right-to-left mark at the start of every line, on every
channel.
Rendering is pure (the files are read once when the Renderer is built) and is done once
per channel × language × unit × kind, never per recipient.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import yaml

from channels.sms import sms_segments
from gateway import codes
from gateway.auth import Agency
from gateway.codes import Tier
from gateway.directory import Channel, Directory
from gateway.errors import LimitExceeded, RenderError, TemplateMissing
from gateway.hazards import HazardCatalogue
from gateway.models import AlertRecord, Info, Level, Status
from gateway.plan import Kind, requested_groups
from gateway.settings import RenderSettings
from gateway.terms import TermLoader, apply_to_strings, replacer

__all__ = [
    "GUIDANCE_PARAMETER",
    "Rendered",
    "Renderer",
    "layout_lines",
    "sms_segments",
    "speech_seconds",
]

GUIDANCE_PARAMETER = "guidance"  # valueName prefix: guidance:<department> = text
FALLBACK_LANGUAGE = "zh"
# Tried in this order until one fits: compact keeps the guidance (templates shorten the
# rest), one-block keeps its first block only (the one an SMS carries), short has none.
VARIANTS = ("full", "compact", "one-block", "short")
RLM = "\u200f"
NNBSP = "\u202f"

# Speaking pace of a village broadcast: Chinese characters per second, words per second.
_CJK_PER_SECOND = 4.0
_WORDS_PER_SECOND = {"ug": 2.0, "kk": 2.0, "mn": 1.8, "en": 2.3}
# Characters that should not begin a line on a screen (kinsoku).
_NO_LINE_START = frozenset("，。！？、；：）》」』】,.!?;:)]}%")


@functools.cache  # a few thousand distinct characters, looked up millions of times
def _is_cjk(c: str) -> bool:
    return unicodedata.east_asian_width(c) in ("W", "F")


def speech_seconds(text: str, lang: str) -> float:
    """Estimated time to speak `text` at village-broadcast pace: CJK letters one by
    one, other scripts by words (a CJK character also ends a word)."""
    # Each distinct character is looked at once (a script repeats its text).
    counts = Counter(text)
    wide = [c for c in counts if _is_cjk(c)]
    cjk = sum(counts[c] for c in wide if c.isalpha())
    words = len(text.translate(dict.fromkeys(map(ord, wide), " ")).split())
    return round(cjk / _CJK_PER_SECOND + words / _WORDS_PER_SECOND.get(lang, 2.2), 1)


def layout_lines(text: str, chars_per_line: int, max_lines: int) -> list[str]:
    """Wrap text for a screen of `chars_per_line` × `lines`; raise LimitExceeded.

    CJK text breaks between any two characters (not before closing punctuation);
    other scripts break at spaces, never at the narrow no-break space Mongolian uses
    before suffixes. The text keeps its logical order: right-to-left and vertical
    scripts are laid out by the device.
    """
    width = chars_per_line
    out: list[str] = []
    for paragraph in text.split("\n"):
        paragraph = paragraph.strip()
        mark = RLM if paragraph.startswith(RLM) else ""  # kept, but it takes no room
        paragraph = paragraph.removeprefix(mark).strip()
        if not paragraph:
            continue
        first = len(out)
        line = ""
        for token in _tokens(paragraph):
            if len(line) + len(token) <= width:
                line += token
                continue
            if line.strip():
                if token[:1] in _NO_LINE_START and len(line) > 1:
                    token, line = line[-1] + token, line[:-1]
                out.append(line.rstrip())
            line = token.lstrip()
            while len(line.rstrip()) > width:  # a word longer than the line is cut
                out.append(line[:width])
                line = line[width:]
        if line.strip():
            out.append(line.rstrip())
        if mark and len(out) > first:
            out[first] = mark + out[first]
    if len(out) > max_lines:
        raise LimitExceeded(
            f"{len(out)} lines on a {max_lines}-line screen",
            limit="display-lines",
            measured=len(out),
            allowed=max_lines,
        )
    return out


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    word = ""
    for c in text:
        if _is_cjk(c):
            if word:
                tokens.append(word)
                word = ""
            tokens.append(c)
        elif c == " ":
            tokens.append(word + " ")
            word = ""
        else:
            word += c  # includes NNBSP: a Mongolian word and its suffix stay together
    if word:
        tokens.append(word)
    return tokens


@dataclass(frozen=True)
class Rendered:
    channel: Channel
    kind: Kind
    language: str  # the language actually used
    requested: str  # the language asked for
    text: str
    title: str | None = None
    direction: str = "ltr"
    variant: str = "full"  # one of VARIANTS: the first that was within the limits
    encoding: str | None = None  # sms
    segments: int | None = None  # sms
    seconds: float | None = None  # loudspeaker
    template: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fallback(self) -> bool:
        return self.language != self.requested


@dataclass(frozen=True)
class Context:
    """What one rendering needs besides the channel and language."""

    record: AlertRecord
    kind: Kind
    unit: str
    agency: Agency
    previous_level: Level | None = None
    tz: timezone = timezone(timedelta(hours=8))
    relay_code: str | None = None  # messenger tasks: the code to acknowledge with
    at: datetime | None = None  # the time the message speaks of, if not the alert's sent


class Renderer:
    def __init__(
        self,
        templates_dir: Path,
        hazards: HazardCatalogue,
        directory: Directory,
        limits: RenderSettings | None = None,
    ) -> None:
        self.dir = Path(templates_dir)
        self.hazards = hazards
        self.directory = directory
        self.limits = limits or RenderSettings()
        self.strings: dict[str, dict[str, Any]] = {}
        self.guidance: dict[str, dict[str, Any]] = {}
        for path in sorted((self.dir / "strings").glob("*.yaml")):
            self.strings[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        # The agency's choices of open terms (gateway.yaml render.terms; gateway/terms.py).
        chosen = {lang: dict(t) for lang, t in self.limits.terms.items() if lang in self.strings}
        replacers = {lang: replacer(self.strings[lang], t) for lang, t in chosen.items()}
        for path in sorted((self.dir / "guidance").glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            if path.stem in replacers:
                data = _replace_all(data, replacers[path.stem])
            self.guidance[path.stem] = data
        for lang, terms in chosen.items():
            self.strings[lang] = apply_to_strings(self.strings[lang], terms)
        self.env = jinja2.Environment(
            loader=TermLoader(self.dir, replacers),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # plain text for SMS, speech and screens; never HTML
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self._names = set(self.env.list_templates(extensions=["j2"]))

    def compile_all(self) -> int:
        """Compile every template now (jinja2 otherwise compiles each on first use), so
        that the first warning after a start does not wait for it; how many."""
        for name in sorted(self._names):
            self.env.get_template(name)
        return len(self._names)

    @property
    def languages(self) -> list[str]:
        return sorted(self.strings)

    def language_order(self, requested: str, unit: str) -> list[str]:
        div = self.directory.divisions.get(unit)
        order = [requested, *(div.languages if div else []), FALLBACK_LANGUAGE]
        return list(dict.fromkeys(lang for lang in order if lang in self.strings))

    def template_for(self, channel: Channel, kind: Kind, hazard: str, langs: list[str]) -> str:
        tried = []
        for lang in langs:
            for name in (f"{channel}/{lang}/{kind}.{hazard}.j2", f"{channel}/{lang}/{kind}.j2"):
                if name in self._names:
                    return name
                tried.append(name)
        raise TemplateMissing(f"no template for {channel}/{kind}; tried {', '.join(tried)}")

    def render(self, channel: Channel, lang: str, ctx: Context) -> Rendered:
        """The message for one channel, language, unit and kind."""
        hazard = ctx.record.hazards[0]
        langs = self.language_order(lang, ctx.unit)
        name = self.template_for(channel, ctx.kind, hazard, langs)
        used = name.split("/")[1]
        strings = self.strings[used]
        tried: list[dict[str, Any]] = []
        for variant in VARIANTS:
            m = self._message(used, ctx, variant)
            if m in tried:  # e.g. one block of guidance: one-block is compact again
                continue
            tried.append(m)
            try:
                return self._render(name, channel, used, lang, strings, ctx, variant, m)
            except LimitExceeded:
                if variant == VARIANTS[-1]:
                    raise
        raise AssertionError("unreachable: the short variant is never a repeat")

    # -- internals ---------------------------------------------------------------------

    def _render(
        self,
        name: str,
        channel: Channel,
        lang: str,
        requested: str,
        strings: dict[str, Any],
        ctx: Context,
        variant: str,
        m: dict[str, Any],
    ) -> Rendered:
        try:
            raw = self.env.get_template(name).render(m=m, s=strings)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{name}: {exc}") from exc
        text = _clean(raw)
        status = ctx.record.alert.status
        direction = str(strings.get("direction", "ltr"))
        base = Rendered(
            channel=channel,
            kind=ctx.kind,
            language=lang,
            requested=requested,
            text="",
            direction=direction,
            variant=variant,
            template=name,
        )
        rtl = RLM if direction == "rtl" else ""
        if channel is Channel.LOUDSPEAKER:
            return self._speech(text, strings, status, base, rtl)
        marker = ""
        if status is Status.EXERCISE:
            marker = str(strings["exercise_marker"])
        elif status is Status.TEST:
            marker = str(strings["test_marker"])
        title = None
        if channel is Channel.APP:
            title, _, body = text.partition("\n")
            title = rtl + marker + title.strip()
            text = _lines_start(marker + body.strip(), rtl)
            if len(title) > self.limits.app_max_title:
                raise LimitExceeded(
                    "app title too long",
                    limit="app-title",
                    measured=len(title),
                    allowed=self.limits.app_max_title,
                )
            if len(title) + len(text) > self.limits.app_max_chars:
                raise LimitExceeded(
                    "app message too long",
                    limit="app-chars",
                    measured=len(title) + len(text),
                    allowed=self.limits.app_max_chars,
                )
            return replace(base, text=text, title=title)
        if channel is Channel.MESSENGER and ctx.relay_code and ctx.relay_code not in text:
            label = strings.get("relay_code_label", "CODE")
            separator = strings.get("relay_code_separator", ": ")
            text = f"{text}\n{label}{separator}{ctx.relay_code}"
        text = _lines_start(marker + text, rtl)
        if channel is Channel.DISPLAY:
            self._check_screens(text, ctx.unit)
        if channel in (Channel.SMS, Channel.MESSENGER):
            encoding, _, segments = sms_segments(text)
            allowed = (
                self.limits.messenger_max_segments
                if channel is Channel.MESSENGER
                else self.limits.sms_max_segments
            )
            if segments > allowed:
                raise LimitExceeded(
                    f"{segments} SMS segments",
                    limit="sms-segments",
                    measured=segments,
                    allowed=allowed,
                )
            return replace(base, text=text, encoding=encoding, segments=segments)
        return replace(base, text=text)

    def _check_screens(self, text: str, unit: str) -> None:
        """The text must fit every screen of the unit within the allowed pages."""
        geometries = {
            (e.display.chars_per_line, e.display.lines)
            for e in self.directory.endpoints_by_unit.get(unit, [])
            if e.display is not None
        }
        for chars, lines in sorted(geometries):
            layout_lines(text, chars, lines * self.limits.display_max_pages)

    def _speech(
        self, text: str, strings: dict[str, Any], status: Status, base: Rendered, rtl: str
    ) -> Rendered:
        """A loudspeaker script: level announced first (by the template), repeated."""
        once = " ".join(text.split("\n"))
        repeats = self.limits.loudspeaker_repeats
        joiner = f" {strings['repeat_joiner']} "
        script = joiner.join([once] * repeats)
        if status is Status.EXERCISE:
            script = f"{strings['exercise_spoken']} {script} {strings['exercise_spoken']}"
        elif status is Status.TEST:
            script = f"{strings['test_spoken']} {script} {strings['test_spoken']}"
        script = rtl + script  # one paragraph; a script may also be shown on a screen
        seconds = speech_seconds(script, base.language)
        if seconds > self.limits.loudspeaker_max_seconds:
            raise LimitExceeded(
                f"speech of {seconds:.0f} s",
                limit="speech-seconds",
                measured=int(seconds),
                allowed=int(self.limits.loudspeaker_max_seconds),
            )
        return replace(base, text=script, seconds=seconds)

    def _message(self, lang: str, ctx: Context, variant: str) -> dict[str, Any]:
        record = ctx.record
        hazard = self.hazards.get(record.hazards[0])
        info = _info_in(record, lang)
        prev = ctx.previous_level
        change = None
        if prev is not None and ctx.kind is Kind.UPDATE:
            change = (
                "same"
                if prev is record.level
                else ("upgrade" if record.level.rank < prev.rank else "downgrade")
            )
        strings = self.strings[lang]
        fmt = str(strings.get("time_format", "{month}/{day} {hour:02d}:{minute:02d}"))
        short = variant == "short"
        brief = variant != "full"
        guidance = [] if short else self._guidance(record, lang, info)
        return {
            "kind": ctx.kind.value,
            "exercise": record.exercise,
            "level": record.level.value,
            "previous_level": prev.value if prev else None,
            "change": change,
            "hazard": record.hazards[0],
            "hazard_name": hazard.name(lang) if hazard else record.alert.info[0].event,
            "place": self.place(ctx.unit, lang),
            "unit_name": self._label(ctx.unit, lang),
            "county_name": self._county(ctx.unit, lang),
            "sender_name": _name_in(ctx.agency.name, lang),
            "issued_at": _when(ctx.at or record.alert.sent, ctx.tz, fmt),
            "expires_at": _when(record.expires, ctx.tz, fmt),
            "headline_text": info.headline if info else None,
            "description": None if brief or not info else info.description,
            "instruction": info.instruction if info else None,
            "guidance": guidance[:1] if variant == "one-block" else guidance,
            "groups": [self._group_name(g, lang) for g in requested_groups(record)],
            "compact": brief,  # a channel limit was exceeded: shorten, keep the guidance
            "short": short,  # the shorter variant: no guidance either
            "relay_code": ctx.relay_code,
        }

    def _guidance(self, record: AlertRecord, lang: str, info: Info | None) -> list[dict[str, str]]:
        """The agency's own guidance blocks in this language, else the shipped ones."""
        if info is not None:
            own = [
                {"department": p.valueName.split(":", 1)[1].strip(), "text": p.value}
                for p in info.parameter
                if p.valueName.casefold().startswith(GUIDANCE_PARAMETER + ":")
            ]
            if own:
                return own
        blocks = self.guidance.get(lang, {}).get(record.hazards[0], {}).get(record.level.value)
        wanted = _departments(record)
        out = [dict(b) for b in blocks or []]
        return [b for b in out if b.get("department") in wanted] if wanted else out

    def place(self, unit: str, lang: str) -> str:
        """County, township and village names, in the language's natural joining."""
        parts = [self._county(unit, lang)]
        parent = codes.parent(unit)
        if parent and parent in self.directory.divisions:
            parts.append(self._label(parent, lang))
        parts.append(self._label(unit, lang))
        sep = "" if lang == "zh" else " "
        return sep.join(p for p in parts if p)

    def _label(self, code: str, lang: str) -> str:
        div = self.directory.divisions.get(code)
        return div.label(lang) if div else code

    def _county(self, unit: str, lang: str) -> str:
        for code in self.directory.ancestors(unit):
            if codes.tier(code) is Tier.COUNTY:
                return self._label(code, lang)
        return ""

    def _group_name(self, group: str, lang: str) -> str:
        g = self.directory.groups.get(group)
        return _name_in(g.names, lang) if g else group


_SPACES = re.compile(r"[ \t]+")


def _clean(text: str) -> str:
    """Collapse runs of spaces and blank lines from template whitespace. Only ASCII
    spaces and tabs: the narrow no-break space (U+202F) before a Mongolian suffix and
    other Unicode spaces are part of the text."""
    lines = [_SPACES.sub(" ", line).strip(" \t") for line in text.strip().split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _lines_start(text: str, mark: str) -> str:
    """`mark` at the start of every line: phones and screens pick each paragraph's
    direction from its first strong character, which may be a Chinese name or a digit."""
    if not mark:
        return text
    lines = text.split("\n")
    return "\n".join(mark + ln if ln and not ln.startswith(mark) else ln for ln in lines)


def _replace_all(node: Any, replace: Any) -> Any:
    """Guidance data with `replace` applied to every text in it."""
    if isinstance(node, str):
        return replace(node)
    if isinstance(node, dict):
        return {k: _replace_all(v, replace) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_all(v, replace) for v in node]
    return node


def _info_in(record: AlertRecord, lang: str) -> Info | None:
    for info in record.alert.info:
        if info.lang == lang:
            return info
    return None


def _name_in(names: dict[str, str] | str, lang: str) -> str:
    if isinstance(names, str):
        return names
    return names.get(lang) or names.get(FALLBACK_LANGUAGE) or next(iter(names.values()), "")


def _when(value: datetime, tz: timezone, fmt: str) -> str:
    local = value.astimezone(tz)
    return fmt.format(
        year=local.year, month=local.month, day=local.day, hour=local.hour, minute=local.minute
    )


def _departments(record: AlertRecord) -> list[str]:
    found: list[str] = []
    for info in record.alert.info:
        for value in info.parameters(GUIDANCE_PARAMETER):
            found += [d for d in value.replace(",", " ").split() if d not in found]
    return found
