"""Settings: read a whole configuration directory into typed objects, or list what is wrong.

Files (see docs/configuration.md):

    gateway.yaml     runtime settings (gateway/settings.py)
    agencies.yaml    issuing agencies and duty operators
    hazards.yaml     the hazard catalogue
    divisions.yaml   administrative divisions with population, languages, geometry
    groups.yaml      population groups
    endpoints.csv    loudspeakers and display screens
    recipients.csv   SMS subscribers, app devices, messengers
    households.csv   households: unit, grid cell, residents, coordinates (optional)
    policy.yaml      channel policy, coverage targets, escalation (optional)

`load_config()` collects every problem (file, key, reason) before raising one ConfigError,
so `warngate check-config` can print them all at once.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError
from shapely.validation import explain_validity

from gateway import codes
from gateway.auth import Agency, Operator, Registry
from gateway.codes import Tier
from gateway.directory import (
    Channel,
    Directory,
    Division,
    Endpoint,
    Group,
    Households,
    RecipientColumns,
    polygon_geometry,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.hazards import Hazard, HazardCatalogue
from gateway.policy import Policy
from gateway.settings import Settings, load_settings, read_yaml
from gateway.store.base import Retention
from gateway.terms import read_strings, term_issues

__all__ = [
    "RESIDENTS_TOLERANCE",
    "Config",
    "check_phone",
    "load_config",
    "load_directory",
    "residents_tolerance",
]

M = TypeVar("M", bound=BaseModel)

_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_PUSH_CHANNELS = {Channel.SMS, Channel.APP, Channel.MESSENGER}
_HOUSEHOLD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# The residents of a unit's households may differ from its population in
# divisions.yaml by this share (or by RESIDENTS_SLACK persons, whichever is larger):
# the census figure and the household register are rarely taken on the same day.
RESIDENTS_TOLERANCE = 0.01
RESIDENTS_SLACK = 3


def residents_tolerance(population: int) -> int:
    """How far a unit's household residents may be from its population."""
    return max(RESIDENTS_SLACK, math.floor(population * RESIDENTS_TOLERANCE))


def check_phone(number: str) -> bool:
    """A Chinese mobile number (11 digits, 1[3-9]…) or an E.164 number (+ and 8–15 digits)."""
    return bool(_CN_MOBILE.match(number) or _E164.match(number))


@dataclass(frozen=True)
class Config:
    settings: Settings
    registry: Registry
    hazards: HazardCatalogue
    directory: Directory
    policy: Policy

    def retention(self) -> Retention:
        r = self.settings.retention
        return Retention.days(r.recipient_days, r.report_days)


class _Issues:
    def __init__(self) -> None:
        self.items: list[ConfigIssue] = []

    def add(self, file: str, key: str, reason: str) -> None:
        self.items.append(ConfigIssue(file, key, reason))

    def from_validation(self, file: str, prefix: str, exc: ValidationError) -> None:
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            self.add(file, f"{prefix}.{loc}" if loc else prefix, str(err["msg"]))


def _yaml_list(directory: Path, name: str, key: str, issues: _Issues) -> list[Any]:
    path = directory / name
    if not path.exists():
        return []
    try:
        data = read_yaml(path)
    except ConfigError as exc:
        issues.items.extend(exc.issues)
        return []
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get(key, []), list):
        issues.add(name, key, f"expected a mapping with a list under '{key}'")
        return []
    return list(data.get(key) or [])


def _models(
    model: type[M], rows: list[Any], file: str, key: str, issues: _Issues, label: str = "id"
) -> Iterator[M]:
    for i, row in enumerate(rows):
        name = f"{key}[{i}]"
        if isinstance(row, dict) and label in row:
            name = f"{key}[{row[label]}]"
        try:
            yield model.model_validate(row)
        except ValidationError as exc:
            issues.from_validation(file, name, exc)


def load_config(config_dir: Path | str | None = None, **overrides: Any) -> Config:
    """Read and check a configuration directory; raise ConfigError listing every problem."""
    issues = _Issues()
    settings: Settings | None = None
    try:
        settings = load_settings(config_dir, **overrides)
    except ConfigError as exc:
        issues.items.extend(exc.issues)
    directory = Path(config_dir or (settings.config_dir if settings else "config"))
    if not directory.is_dir():
        raise ConfigError([ConfigIssue(str(directory), "", "configuration directory not found")])

    hazards = list(
        _models(
            Hazard,
            _yaml_list(directory, "hazards.yaml", "hazards", issues),
            "hazards.yaml",
            "hazards",
            issues,
        )
    )
    catalogue = HazardCatalogue(hazards)
    registry = _load_registry(directory, catalogue, issues)
    dirx = _load_directory(directory, issues)
    policy = Policy.load(directory, dirx, issues.add)
    _check_jurisdictions(registry, dirx, issues)
    if settings is not None:
        _check_channels(settings, dirx, policy, issues)
        _check_templates(settings, issues)
    if issues.items or settings is None:
        raise ConfigError(issues.items)
    return Config(settings, registry, catalogue, dirx, policy)


def _load_registry(directory: Path, catalogue: HazardCatalogue, issues: _Issues) -> Registry:
    file = "agencies.yaml"
    agencies = list(
        _models(Agency, _yaml_list(directory, file, "agencies", issues), file, "agencies", issues)
    )
    operators = list(
        _models(
            Operator, _yaml_list(directory, file, "operators", issues), file, "operators", issues
        )
    )
    seen_ids: set[str] = set()
    seen_keys: dict[str, str] = {}
    seen_senders: dict[str, str] = {}
    for p in [*agencies, *operators]:
        if p.id in seen_ids:
            issues.add(file, p.id, "id is used twice")
        seen_ids.add(p.id)
        for digest in p.api_keys:
            if digest in seen_keys:
                issues.add(file, f"{p.id}.api_keys", f"key is also held by {seen_keys[digest]}")
            seen_keys[digest] = p.id
    for a in agencies:
        for s in a.senders:
            if s in seen_senders:
                issues.add(
                    file, f"{a.id}.senders", f"sender {s!r} also belongs to {seen_senders[s]}"
                )
            seen_senders[s] = a.id
        for h in a.hazards:
            if h != "*" and h not in catalogue:
                issues.add(file, f"{a.id}.hazards", f"unknown hazard {h!r} (not in hazards.yaml)")
    if not agencies:
        issues.add(file, "agencies", "no agency is configured: nobody could post an alert")
    return Registry(agencies, operators)


def _check_channels(settings: Settings, dirx: Directory, policy: Policy, issues: _Issues) -> None:
    """Every push channel the policy uses needs a provider route, or its deliveries
    would wait in their queue for ever."""
    used: set[Channel] = set()
    for unit in dirx.units or ["000000"]:
        for channels in policy.for_unit(unit).channels.values():
            used.update(channels)
    for channel in sorted(used & _PUSH_CHANNELS):
        if channel not in settings.channels:
            issues.add(
                "gateway.yaml",
                f"channels.{channel.value}",
                "the policy sends through this channel but no provider route is configured",
            )


def _check_templates(settings: Settings, issues: _Issues) -> None:
    strings = settings.templates_dir / "strings"
    if not (strings / "zh.yaml").is_file():
        issues.add(
            "gateway.yaml",
            "templates_dir",
            f"{settings.templates_dir} has no strings/zh.yaml (the fallback language)",
        )
    for lang, chosen in settings.render.terms.items():
        found = read_strings(settings.templates_dir, lang)
        if found is None:
            issues.add("gateway.yaml", f"render.terms.{lang}", f"no strings/{lang}.yaml")
            continue
        for key, reason in term_issues(found, chosen):
            issues.add("gateway.yaml", f"render.terms.{lang}.{key}", reason)


def _check_jurisdictions(registry: Registry, dirx: Directory, issues: _Issues) -> None:
    if not dirx.divisions:
        return
    for p in [*registry.agencies.values(), *registry.operators.values()]:
        for code in p.jurisdiction:
            if code not in dirx.divisions:
                issues.add(
                    "agencies.yaml", f"{p.id}.jurisdiction", f"{code} is not in divisions.yaml"
                )


def load_directory(directory: Path) -> Directory:
    """Only the directory part of a configuration directory; raises ConfigError."""
    issues = _Issues()
    dirx = _load_directory(Path(directory), issues)
    if issues.items:
        raise ConfigError(issues.items)
    return dirx


def _load_directory(directory: Path, issues: _Issues) -> Directory:
    groups = list(
        _models(
            Group,
            _yaml_list(directory, "groups.yaml", "groups", issues),
            "groups.yaml",
            "groups",
            issues,
        )
    )
    group_ids = {g.id for g in groups}
    divisions = _load_divisions(directory, issues)
    by_code = {d.code: d for d in divisions}
    households = _load_households(directory, by_code, issues)
    endpoints = _load_endpoints(directory, by_code, group_ids, issues)
    recipients = _load_recipients(directory, by_code, group_ids, households, issues)
    dirx = Directory(divisions, endpoints, recipients, groups, households)
    if households is not None:
        _check_households(dirx, households, issues)
    return dirx


def _load_divisions(directory: Path, issues: _Issues) -> list[Division]:
    file = "divisions.yaml"
    rows = _yaml_list(directory, file, "divisions", issues)
    out: list[Division] = []
    seen: set[str] = set()
    explicit_parent: dict[str, str] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            issues.add(file, f"divisions[{i}]", "expected a mapping")
            continue
        key = f"divisions[{row.get('code', i)}]"
        raw = dict(row)
        try:
            raw["code"] = codes.normalize(str(raw.get("code", "")))
            if raw.get("parent") is not None:
                raw["parent"] = codes.normalize(str(raw["parent"]))
        except ValueError as exc:
            issues.add(file, key, str(exc))
            continue
        raw.setdefault("tier", codes.tier(raw["code"]).name.lower())
        if isinstance(raw["tier"], str):
            try:
                raw["tier"] = Tier[raw["tier"].upper()]
            except KeyError:
                issues.add(file, f"{key}.tier", f"unknown tier {raw['tier']!r}")
                continue
        if raw.get("parent") is None:
            raw["parent"] = codes.parent(raw["code"])
        else:
            explicit_parent[raw["code"]] = raw["parent"]
        try:
            div = Division.model_validate(raw)
        except ValidationError as exc:
            issues.from_validation(file, key, exc)
            continue
        if div.code in seen:
            issues.add(file, key, "duplicate code")
            continue
        seen.add(div.code)
        if div.tier is not codes.tier(div.code):
            issues.add(
                file,
                f"{key}.tier",
                f"code {div.code} is a {codes.tier(div.code).name.lower()} code",
            )
        if div.polygon:
            geom = polygon_geometry(div.polygon)
            if len(div.polygon) < 4 or div.polygon[0] != div.polygon[-1]:
                issues.add(file, f"{key}.polygon", "needs at least 4 points, first equal to last")
            elif not geom.is_valid:
                issues.add(file, f"{key}.polygon", f"invalid polygon: {explain_validity(geom)}")
        out.append(div)
    codes_known = {d.code for d in out}
    for d in out:
        # A derived parent may be absent (the top of the sample tree); a written one may not.
        if d.code in explicit_parent and d.parent not in codes_known:
            issues.add(file, f"divisions[{d.code}].parent", f"unknown parent {d.parent}")
        elif d.tier > Tier.COUNTY and d.parent not in codes_known:
            issues.add(file, f"divisions[{d.code}].parent", f"parent {d.parent} is not listed")
        if d.parent is not None and not codes.covers(d.parent, d.code):
            issues.add(file, f"divisions[{d.code}]", f"code is outside its parent {d.parent}")
        if d.tier is Tier.VILLAGE and d.population == 0:
            issues.add(
                file, f"divisions[{d.code}].population", "a village/community needs a population"
            )
    return out


def _csv_rows(directory: Path, name: str, issues: _Issues) -> Iterator[tuple[int, dict[str, str]]]:
    path = directory / name
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        yield from enumerate(reader, start=2)


def _languages(value: str) -> list[str]:
    return [x for x in value.replace(",", " ").split() if x]


def _load_endpoints(
    directory: Path, divisions: dict[str, Division], group_ids: set[str], issues: _Issues
) -> list[Endpoint]:
    file = "endpoints.csv"
    out = []
    seen: set[str] = set()
    for line, row in _csv_rows(directory, file, issues):
        key = f"line {line}"
        try:
            unit = codes.normalize(row.get("unit", ""))
        except ValueError as exc:
            issues.add(file, f"{key}.unit", str(exc))
            continue
        display = None
        if row.get("chars_per_line"):
            display = {"chars_per_line": row["chars_per_line"], "lines": row.get("lines") or 0}
        raw = {
            "id": row.get("id", ""),
            "kind": row.get("kind", ""),
            "unit": unit,
            "languages": _languages(row.get("languages", "")),
            "covers_population": row.get("covers_population") or 0,
            "token_hash": row.get("token_hash", ""),
            "groups": (row.get("groups") or "").split(),
            "exercise": (row.get("exercise") or "").lower() in {"1", "true", "yes"},
            "display": display,
            "footprint": (row.get("footprint") or "").split(),
        }
        for column in ("lat", "lon", "radius_m"):
            if row.get(column):
                raw[column] = row[column]
        try:
            ep = Endpoint.model_validate(raw)
        except ValidationError as exc:
            issues.from_validation(file, key, exc)
            continue
        if ep.id in seen:
            issues.add(file, f"{key}.id", f"duplicate endpoint id {ep.id}")
        seen.add(ep.id)
        div = divisions.get(ep.unit)
        if div is None or div.tier is not Tier.VILLAGE:
            issues.add(
                file, f"{key}.unit", f"{ep.unit} is not a village/community in divisions.yaml"
            )
        if ep.kind == "display" and ep.display is None:
            issues.add(file, f"{key}.chars_per_line", "a display needs chars_per_line and lines")
        if not ep.token_hash.startswith("sha256:"):
            issues.add(file, f"{key}.token_hash", "device tokens are stored as sha256:<hex> hashes")
        for g in ep.groups:
            if g not in group_ids:
                issues.add(file, f"{key}.groups", f"unknown group {g!r}")
        out.append(ep)
    return out


def _load_recipients(
    directory: Path,
    divisions: dict[str, Division],
    group_ids: set[str],
    households: Households | None,
    issues: _Issues,
) -> dict[tuple[str, Channel], RecipientColumns]:
    file = "recipients.csv"
    out: dict[tuple[str, Channel], RecipientColumns] = {}
    seen: set[str] = set()
    strings: dict[str, str] = {}  # one shared object per distinct short string
    for line, row in _csv_rows(directory, file, issues):
        key = f"line {line}"
        rid = row.get("id") or ""
        channel_s = row.get("channel") or ""
        address = row.get("address") or ""
        try:
            channel = Channel(channel_s)
        except ValueError:
            issues.add(file, f"{key}.channel", f"unknown channel {channel_s!r}")
            continue
        if channel not in _PUSH_CHANNELS:
            issues.add(file, f"{key}.channel", f"{channel_s} endpoints belong in endpoints.csv")
            continue
        if not rid or rid in seen:
            issues.add(file, f"{key}.id", "missing or duplicate recipient id")
            continue
        seen.add(rid)
        try:
            unit_code = codes.normalize(row.get("unit") or "")
        except ValueError as exc:
            issues.add(file, f"{key}.unit", str(exc))
            continue
        cell = ""
        if codes.tier(unit_code) is Tier.GRID:
            cell = unit_code
            unit_code = codes.parent(unit_code) or unit_code
        div = divisions.get(unit_code)
        if div is None or div.tier is not Tier.VILLAGE:
            issues.add(
                file, f"{key}.unit", f"{unit_code} is not a village/community in divisions.yaml"
            )
            continue
        if channel in (Channel.SMS, Channel.MESSENGER) and not check_phone(address):
            issues.add(
                file, f"{key}.address", f"{address!r} is not a Chinese mobile or E.164 number"
            )
            continue
        if not address:
            issues.add(file, f"{key}.address", "missing address")
            continue
        try:
            persons = int(row.get("persons") or 1)
            relays = int(row.get("households") or 0)
        except ValueError:
            issues.add(file, f"{key}.persons", "persons and households must be whole numbers")
            continue
        groups = " ".join(sorted((row.get("groups") or "").split()))
        for g in groups.split():
            if g not in group_ids:
                issues.add(file, f"{key}.groups", f"unknown group {g!r}")
        home = -1
        named = (row.get("household") or "").strip()
        if named:
            if households is None or named not in households.index:
                issues.add(file, f"{key}.household", f"unknown household {named!r}")
                continue
            home = households.index[named]
            if households.units[home] != unit_code:
                issues.add(
                    file,
                    f"{key}.household",
                    f"household {named} lives in {households.units[home]}, not in {unit_code}",
                )
                continue
        lang = row.get("language") or (div.languages[0] if div.languages else "zh")
        cols = out.setdefault((unit_code, channel), RecipientColumns())
        cols.append(
            rid,
            address,
            strings.setdefault(lang, lang),
            persons,
            strings.setdefault(groups, groups),
            (row.get("exercise") or "").lower() in {"1", "true", "yes"},
            relays,
            household=home,
            cell=strings.setdefault(cell, cell),
        )
    return out


def _load_households(
    directory: Path, divisions: dict[str, Division], issues: _Issues
) -> Households | None:
    """households.csv: id, unit (may be left out when the cell is given), cell,
    residents, lat, lon. Hundreds of thousands of rows: codes are checked once each."""
    file = "households.csv"
    path = directory / file
    if not path.exists():
        return None
    ids: list[str] = []
    units: list[str] = []
    cells: list[str] = []
    residents: list[int] = []
    lats: list[float] = []
    lons: list[float] = []
    seen: set[str] = set()
    unit_codes: dict[str, str | None] = {}  # raw unit or cell → its unit (None: none)
    cell_codes: dict[tuple[str, str], str | None] = {}  # (raw cell, unit) → cell

    def unit_of(raw: str) -> str | None:
        if raw not in unit_codes:
            try:
                code = codes.normalize(raw)
            except ValueError:
                unit_codes[raw] = None
                return None
            if codes.tier(code) is Tier.GRID:
                code = codes.parent(code) or code
            div = divisions.get(code)
            unit_codes[raw] = code if div is not None and div.tier is Tier.VILLAGE else None
        return unit_codes[raw]

    def cell_of(raw: str, unit: str) -> str | None:
        if (raw, unit) not in cell_codes:
            try:
                cell: str | None = codes.normalize(raw)
            except ValueError:
                cell = None
            if cell is not None and (
                codes.tier(cell) is not Tier.GRID or codes.parent(cell) != unit
            ):
                cell = None
            cell_codes[(raw, unit)] = cell
        return cell_codes[(raw, unit)]

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        col = {name: i for i, name in enumerate(header)}
        missing = [c for c in ("id", "residents") if c not in col]
        if missing or ("unit" not in col and "cell" not in col):
            issues.add(file, "header", "needs the columns id, unit (or cell), residents")
            return None

        def get(row: list[str], name: str) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        for line, row in enumerate(reader, start=2):
            key = f"line {line}"
            hid = get(row, "id")
            if not _HOUSEHOLD_ID.match(hid):
                issues.add(file, f"{key}.id", "missing or malformed household id")
                continue
            if hid in seen:
                issues.add(file, f"{key}.id", f"duplicate household id {hid}")
                continue
            seen.add(hid)
            unit_raw, cell_raw = get(row, "unit"), get(row, "cell")
            unit = unit_of(unit_raw or cell_raw)
            if unit is None:
                issues.add(
                    file, f"{key}.unit", f"{unit_raw or cell_raw!r} is not a village/community"
                )
                continue
            cell = ""
            if cell_raw:
                found = cell_of(cell_raw, unit)
                if found is None:
                    issues.add(file, f"{key}.cell", f"{cell_raw} is not a grid cell of {unit}")
                    continue
                cell = found
            try:
                n = int(get(row, "residents"))
                lat_s, lon_s = get(row, "lat"), get(row, "lon")
                lat = float(lat_s) if lat_s else math.nan
                lon = float(lon_s) if lon_s else math.nan
            except ValueError:
                issues.add(file, key, "residents must be a whole number, lat/lon numbers")
                continue
            if not 1 <= n <= 1000:
                issues.add(file, f"{key}.residents", "residents must be from 1 to 1000")
                continue
            if math.isnan(lat) != math.isnan(lon) or not (
                math.isnan(lat) or (-90 <= lat <= 90 and -180 <= lon <= 180)
            ):
                issues.add(file, f"{key}.lat", "lat and lon go together, in degrees")
                continue
            ids.append(hid)
            units.append(unit)
            cells.append(cell)
            residents.append(n)
            lats.append(lat)
            lons.append(lon)
    return Households(
        ids,
        units,
        cells,
        np.array(residents, np.int32),
        np.array(lats, np.float64),
        np.array(lons, np.float64),
    )


def _check_households(dirx: Directory, households: Households, issues: _Issues) -> None:
    """Households add up to their unit's population; every loudspeaker and screen of a
    unit with households has a footprint, inside its own unit."""
    for unit, members in sorted(households.by_unit.items()):
        population = dirx.divisions[unit].population
        total = int(households.residents[members].sum())
        if abs(total - population) > residents_tolerance(population):
            issues.add(
                "households.csv",
                f"unit {unit}",
                f"residents add up to {total}, the unit's population is {population}"
                f" (tolerance {residents_tolerance(population)}:"
                f" {RESIDENTS_TOLERANCE:.0%} or {RESIDENTS_SLACK} persons)",
            )
    for e in dirx.endpoints.values():
        key = f"endpoint {e.id}.footprint"
        unknown = dirx.unknown_footprint.get(e.id, [])
        if unknown:
            named = ", ".join(repr(t) for t in unknown)
            issues.add("endpoints.csv", key, f"names no household or grid cell: {named}")
        found = dirx.footprints.get(e.id)
        if found is not None and len(found):
            outside = sorted({households.units[i] for i in found.tolist()} - {e.unit})
            if outside:
                issues.add(
                    "endpoints.csv",
                    key,
                    f"reaches households of {', '.join(outside)}, outside its unit {e.unit}",
                )
        if (
            e.unit in households.by_unit
            and not e.footprint
            and (e.lat is None or e.radius_m is None)
        ):
            issues.add(
                "endpoints.csv",
                key,
                "its unit has households: give a position and radius_m, or a footprint",
            )
