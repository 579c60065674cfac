"""Console: the pages' jinja2 environment — HTML autoescaped, strings in zh and en.

Pages are written with their English text inside `t("…")`; `templates/console/i18n/
zh.yaml` gives each its Chinese (tests/test_console_pages.py checks that none is
missing). The language is the account's, or the one chosen on the page (`?lang=`,
kept in a cookie).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jinja2
import yaml
from aiohttp import web

__all__ = ["LANGUAGES", "Pages", "language_of", "local_time"]

LANGUAGES = ("zh", "en")
LANG_COOKIE = "wglang"
LEVEL_COLOURS = {"red": "#c8102e", "orange": "#ff8200", "yellow": "#f2c500", "blue": "#0057b8"}
CHINA = timezone(timedelta(hours=8))


class Pages:
    """The console's templates and their strings."""

    def __init__(self, templates_dir: Path) -> None:
        self.dir = templates_dir / "console"
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.dir),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.strings: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            path = self.dir / "i18n" / f"{lang}.yaml"
            self.strings[lang] = (
                yaml.safe_load(path.read_text(encoding="utf-8")) or {} if path.exists() else {}
            )
        self.env.globals.update(level_colour=LEVEL_COLOURS.get, pct=_pct, when=_when, ago=_ago)

    def translator(self, lang: str) -> Callable[..., str]:
        table = self.strings.get(lang, {})

        def t(text: str, **values: Any) -> str:
            out = table.get(text) or text
            return out.format(**values) if values else out

        return t

    def render(self, name: str, lang: str, **context: Any) -> str:
        template = self.env.get_template(name)
        return template.render(t=self.translator(lang), lang=lang, **context)


def language_of(request: web.Request, account_language: str | None) -> str:
    chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return account_language if account_language in LANGUAGES else "zh"


def _pct(value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value) * 100:.1f}%"


@functools.cache
def _tz() -> timezone:
    return CHINA


def local_time(value: Any) -> str:
    """A time as the duty desk reads it: China time, to the minute."""
    return _when(value)


def _when(value: Any) -> str:
    """A time as the duty desk reads it (China time, to the minute)."""
    if value is None or value == "":
        return "–"
    if isinstance(value, int | float):
        dt = datetime.fromtimestamp(value / 1000, UTC)
    elif isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value)
    return dt.astimezone(_tz()).strftime("%m-%d %H:%M")


def _ago(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
