"""Rendering: the open term choices an agency makes in `gateway.yaml`, applied to the
shipped texts of one language.

Some wordings wait for a native speaker or the issuing agency to decide (预警 as
ئاگاھلاندۇرۇش or ئالدىن ئاگاھلاندۇرۇش, the word for an exercise, …; see
docs/translations.md, "Open questions"). Each is declared in `strings/<lang>.yaml` under
`terms`, with the wording the shipped texts use now:

    terms:
      warning: {text: "ئاگاھلاندۇرۇش", options: ["ئالدىن ئاگاھلاندۇرۇش"], see: UG-5}

`render.terms.<lang>.<id>` in `gateway.yaml` replaces that wording wherever a word starts
with it, in every string, guidance block and template of the language (so inflected forms
follow: ئاگاھلاندۇرۇشى). A key that is not a term but the dotted key of a string
(`level_warning.red`, `time_format`) replaces that one string. Names from the
configuration (places, agencies, hazards) are not touched: they are configuration already.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml

__all__ = [
    "TermLoader",
    "apply_to_strings",
    "read_strings",
    "replacer",
    "template_language",
    "term_issues",
]

Replace = Callable[[str], str]


def _declared(strings: Mapping[str, Any]) -> dict[str, str]:
    terms = strings.get("terms") or {}
    return {k: str(v["text"] if isinstance(v, dict) else v) for k, v in terms.items()}


def _is_string_key(strings: Mapping[str, Any], key: str) -> bool:
    node: Any = strings
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node or part == "terms":
            return False
        node = node[part]
    return isinstance(node, str)


def term_issues(strings: Mapping[str, Any], chosen: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, reason) for every chosen key that is neither a declared term nor a string,
    and for a time format that does not format."""
    out = []
    declared = _declared(strings)
    for key, value in chosen.items():
        if key in declared:
            continue
        if not _is_string_key(strings, key):
            out.append((key, "not a term of this language's strings file, nor one of its strings"))
        elif key == "time_format":
            try:
                value.format(year=2026, month=7, day=15, hour=14, minute=30)
            except (KeyError, IndexError, ValueError) as exc:
                out.append((key, f"not a time format with year, month, day, hour, minute: {exc}"))
    return out


def replacer(strings: Mapping[str, Any], chosen: Mapping[str, str]) -> Replace:
    """A function putting the chosen wording of every declared term in a text."""
    declared = _declared(strings)
    pairs = {declared[k]: v for k, v in chosen.items() if k in declared and declared[k] != v}
    if not pairs:
        return lambda text: text
    # Longest first, at the start of a word only, so a term never matches inside another word.
    alternatives = "|".join(re.escape(w) for w in sorted(pairs, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})")
    return lambda text: pattern.sub(lambda m: pairs[m.group(0)], text)


def apply_to_strings(strings: dict[str, Any], chosen: Mapping[str, str]) -> dict[str, Any]:
    """The strings of one language with the chosen terms and strings put in."""
    replace = replacer(strings, chosen)

    def walk(node: Any, top: bool = False) -> Any:
        if isinstance(node, str):
            return replace(node)
        if isinstance(node, dict):
            return {k: node[k] if top and k == "terms" else walk(node[k]) for k in node}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(strings, top=True)
    for key, value in chosen.items():
        if key in _declared(strings) or not _is_string_key(strings, key):
            continue
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node[part]
        node[last] = value
    return out


def template_language(name: str) -> str | None:
    """The language of a template path: `_phrases/ug.j2` and `sms/ug/alert.j2` are ug."""
    parts = name.split("/")
    if len(parts) == 2 and parts[0] == "_phrases":
        return parts[1].removesuffix(".j2")
    return parts[1] if len(parts) >= 3 else None


class TermLoader(jinja2.FileSystemLoader):
    """A file loader that puts each language's chosen terms into its templates' text."""

    def __init__(self, searchpath: Path, replacers: Mapping[str, Replace]) -> None:
        super().__init__(str(searchpath))
        self.replacers = dict(replacers)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        replace = self.replacers.get(template_language(template) or "")
        return (replace(source) if replace else source), filename, uptodate


def read_strings(templates_dir: Path, lang: str) -> dict[str, Any] | None:
    """One strings file, or None if the language has none."""
    path = Path(templates_dir) / "strings" / f"{lang}.yaml"
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
