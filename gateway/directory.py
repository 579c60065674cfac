"""Directory: divisions, endpoints, recipients, households and population groups, indexed
for planning and coverage.

The directory is configuration data (see docs/configuration.md). Divisions form the tree
prefecture → county → township → village/community → grid. The *units* of targeting and
coverage are the village/community divisions: every endpoint and recipient belongs to
one (a grid code given for a recipient is counted in its village).

Recipients are kept in columns, per unit, because a county may have a million of them:
planning walks columns and hands out index ranges, it never builds one object per person.

Households (optional: a directory without them is measured by coverage definition v1)
are columns too: id, unit, grid cell (网格), residents, coordinates when known. SMS and
app recipients name the household they belong to; each loudspeaker and screen has a
footprint — the households it reaches — given explicitly (household ids or cells, from
an audibility walk) or as a position and a radius, resolved here once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator
from shapely import STRtree
from shapely.affinity import scale
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from gateway import codes
from gateway.codes import Tier
from gateway.models import Channel

__all__ = [
    "Channel",
    "Directory",
    "Display",
    "Division",
    "Endpoint",
    "EndpointKind",
    "Group",
    "Households",
    "RecipientColumns",
    "circle_geometry",
    "polygon_geometry",
    "within_radius",
]

KM_PER_DEGREE = 111.32
M_PER_DEGREE = 111_320.0


class EndpointKind(StrEnum):
    LOUDSPEAKER = "loudspeaker"
    DISPLAY = "display"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Group(_Row):
    """A population group (school, care home, herders …) that alerts may target alone."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    names: dict[str, str]


class Division(_Row):
    code: str
    tier: Tier
    name: dict[str, str]
    parent: str | None = None
    population: int = Field(default=0, ge=0)
    # Languages spoken, most used first.
    languages: list[str] = []
    kind: str | None = None  # street, town, township, community, village, park …
    # Outline as (lat, lon) pairs, the CAP order; or a centroid when no outline is known.
    polygon: list[tuple[float, float]] | None = None
    centroid: tuple[float, float] | None = None

    def label(self, lang: str) -> str:
        return self.name.get(lang) or self.name.get("zh") or self.code


class Display(_Row):
    chars_per_line: int = Field(ge=4, le=400)
    lines: int = Field(ge=1, le=100)


class Endpoint(_Row):
    """A village loudspeaker (应急广播 / 大喇叭) or display screen that pulls its messages."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: EndpointKind
    unit: str
    languages: list[str] = Field(min_length=1)
    covers_population: int = Field(ge=0)
    token_hash: str
    groups: list[str] = []
    exercise: bool = False
    display: Display | None = None
    # Where it stands and how far it is heard (seen), or the households / grid cells it
    # reaches (an audibility walk); the explicit footprint wins when both are given.
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_m: float | None = Field(default=None, gt=0, le=5000)
    footprint: list[str] = []

    @model_validator(mode="after")
    def _position(self) -> Endpoint:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        if self.radius_m is not None and self.lat is None:
            raise ValueError("a radius needs a position (lat, lon)")
        return self


@dataclass
class RecipientColumns:
    """Push recipients of one unit and channel, one column per attribute."""

    ids: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    persons: list[int] = field(default_factory=list)
    # Group ids joined by spaces ('' for none): short strings are shared, not copied.
    groups: list[str] = field(default_factory=list)
    exercise: list[bool] = field(default_factory=list)
    # Messengers only: households they relay to.
    households: list[int] = field(default_factory=list)
    # The household a phone belongs to (index into Directory.households; -1: none).
    household: list[int] = field(default_factory=list)
    # The grid cell the recipient was registered in ('' when only its unit is known).
    cells: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def append(
        self,
        rid: str,
        address: str,
        language: str,
        persons: int,
        groups: str,
        exercise: bool,
        households: int,
        *,
        household: int = -1,
        cell: str = "",
    ) -> None:
        self.ids.append(rid)
        self.addresses.append(address)
        self.languages.append(language)
        self.persons.append(persons)
        self.groups.append(groups)
        self.exercise.append(exercise)
        self.households.append(households)
        self.household.append(household)
        self.cells.append(cell)


def within_radius(
    lats: NDArray[np.float64], lons: NDArray[np.float64], lat: float, lon: float, radius_m: float
) -> NDArray[np.bool_]:
    """Which points lie within `radius_m` of (lat, lon): equirectangular around the
    point, exact to well under 1 % at the distances of a loudspeaker; NaN is never in."""
    dy = (lats - lat) * M_PER_DEGREE
    dx = (lons - lon) * M_PER_DEGREE * math.cos(math.radians(lat))
    with np.errstate(invalid="ignore"):
        near: NDArray[np.bool_] = dx * dx + dy * dy <= radius_m * radius_m
    return near


@dataclass
class Households:
    """Every household of the directory, in columns (a county may have hundreds of
    thousands): id, unit, grid cell ('' when not known), residents, and coordinates
    (NaN when not known)."""

    ids: list[str]
    units: list[str]
    cells: list[str]
    residents: NDArray[np.int32]
    lat: NDArray[np.float64]
    lon: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.index: dict[str, int] = {h: i for i, h in enumerate(self.ids)}
        by_unit: dict[str, list[int]] = {}
        by_cell: dict[str, list[int]] = {}
        for i, (unit, cell) in enumerate(zip(self.units, self.cells, strict=True)):
            by_unit.setdefault(unit, []).append(i)
            if cell:
                by_cell.setdefault(cell, []).append(i)
        self.by_unit: dict[str, NDArray[np.int64]] = {
            u: np.array(v, np.int64) for u, v in by_unit.items()
        }
        self.by_cell: dict[str, NDArray[np.int64]] = {
            c: np.array(v, np.int64) for c, v in by_cell.items()
        }

    def __len__(self) -> int:
        return len(self.ids)

    def residents_of(self, unit: str) -> int:
        found = self.by_unit.get(unit)
        return int(self.residents[found].sum()) if found is not None else 0

    def within(self, unit: str, lat: float, lon: float, radius_m: float) -> NDArray[np.int64]:
        """Households of `unit` with coordinates within `radius_m` of (lat, lon)
        (equirectangular around the point: exact to well under 1 % at these distances)."""
        found = self.by_unit.get(unit)
        if found is None:
            return np.zeros(0, np.int64)
        return found[within_radius(self.lat[found], self.lon[found], lat, lon, radius_m)]

    def footprint(self, endpoint: Endpoint) -> tuple[NDArray[np.int64], list[str]]:
        """The households an endpoint reaches, and the footprint entries that name no
        household or cell of the directory."""
        if endpoint.footprint:
            parts: list[NDArray[np.int64]] = []
            unknown: list[str] = []
            for token in endpoint.footprint:
                if token in self.index:
                    parts.append(np.array([self.index[token]], np.int64))
                elif token in self.by_cell:
                    parts.append(self.by_cell[token])
                else:
                    unknown.append(token)
            found = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            return found, unknown
        if endpoint.lat is not None and endpoint.lon is not None and endpoint.radius_m:
            return self.within(endpoint.unit, endpoint.lat, endpoint.lon, endpoint.radius_m), []
        return np.zeros(0, np.int64), []


def polygon_geometry(points: Sequence[tuple[float, float]]) -> Polygon:
    """A shapely polygon in (lon, lat) from CAP-order (lat, lon) points."""
    return Polygon([(lon, lat) for lat, lon in points])


def circle_geometry(lat: float, lon: float, radius_km: float) -> BaseGeometry:
    """A circle of `radius_km` around (lat, lon), as an ellipse in degrees.

    Equirectangular around the centre: accurate to well under 1 % for the radii of
    warning areas (up to a few hundred km) away from the poles.
    """
    dlat = radius_km / KM_PER_DEGREE
    dlon = radius_km / (KM_PER_DEGREE * max(math.cos(math.radians(lat)), 1e-6))
    return scale(Point(lon, lat).buffer(1.0, 64), xfact=dlon, yfact=dlat)


class Directory:
    """Read-only, indexed view of the directory data."""

    def __init__(
        self,
        divisions: Iterable[Division],
        endpoints: Iterable[Endpoint] = (),
        recipients: dict[tuple[str, Channel], RecipientColumns] | None = None,
        groups: Iterable[Group] = (),
        households: Households | None = None,
    ) -> None:
        self.divisions: dict[str, Division] = {d.code: d for d in divisions}
        self.households = households
        self.groups: dict[str, Group] = {g.id: g for g in groups}
        self.endpoints: dict[str, Endpoint] = {e.id: e for e in endpoints}
        self.recipients: dict[tuple[str, Channel], RecipientColumns] = recipients or {}
        self._row_index: dict[tuple[str, Channel], dict[str, int]] = {}
        self.children: dict[str, list[str]] = {}
        for d in self.divisions.values():
            if d.parent:
                self.children.setdefault(d.parent, []).append(d.code)
        self.units: list[str] = sorted(
            c for c, d in self.divisions.items() if d.tier is Tier.VILLAGE
        )
        self.endpoints_by_unit: dict[str, list[Endpoint]] = {}
        for e in self.endpoints.values():
            self.endpoints_by_unit.setdefault(e.unit, []).append(e)
        # Endpoint id → households it reaches (directories with households only), and
        # footprint entries that named nothing (for check-config).
        self.footprints: dict[str, NDArray[np.int64]] = {}
        self.unknown_footprint: dict[str, list[str]] = {}
        if households is not None:
            for e in self.endpoints.values():
                found, unknown = households.footprint(e)
                self.footprints[e.id] = found
                if unknown:
                    self.unknown_footprint[e.id] = unknown
        self._geoms: list[BaseGeometry] = []
        self._geom_units: list[str] = []
        for code in self.units:
            geom = self.unit_geometry(code)
            if geom is not None:
                self._geoms.append(geom)
                self._geom_units.append(code)
        self._tree = STRtree(self._geoms) if self._geoms else None

    # -- tree ------------------------------------------------------------------------

    def unit_of(self, code: str) -> str | None:
        """The village/community a division code belongs to (itself, or a grid's village)."""
        norm = codes.normalize(code)
        if codes.tier(norm) is Tier.GRID:
            norm = codes.parent(norm) or norm
        return norm if norm in self.divisions and codes.tier(norm) is Tier.VILLAGE else None

    def units_under(self, code: str) -> list[str]:
        """All units (villages/communities) at or below a division code, in code order."""
        sig = codes.significant(code)
        return [u for u in self.units if u.startswith(sig)]

    def ancestors(self, code: str) -> Iterator[str]:
        """The code's known ancestors, nearest first."""
        current = self.divisions.get(code)
        while current and current.parent:
            yield current.parent
            current = self.divisions.get(current.parent)

    def population(self, code: str) -> int:
        """Population of a division: its own figure for a unit, the sum of units above."""
        div = self.divisions.get(code)
        if div is not None and div.tier is Tier.VILLAGE:
            return div.population
        return sum(self.divisions[u].population for u in self.units_under(code))

    # -- geometry --------------------------------------------------------------------

    def unit_geometry(self, code: str) -> BaseGeometry | None:
        div = self.divisions[code]
        if div.polygon:
            return polygon_geometry(div.polygon)
        if div.centroid:
            lat, lon = div.centroid
            return Point(lon, lat)
        return None

    def units_in(self, area: BaseGeometry) -> list[str]:
        """Units whose outline intersects `area`, or whose centroid lies in it."""
        if self._tree is None:
            return []
        hits = self._tree.query(area, predicate="intersects")
        return sorted(self._geom_units[int(i)] for i in hits)

    # -- people ----------------------------------------------------------------------

    def recipients_of(self, unit: str, channel: Channel) -> RecipientColumns | None:
        return self.recipients.get((unit, channel))

    def recipient_count(self) -> int:
        return sum(len(cols) for cols in self.recipients.values())

    def _rows(self, unit: str, channel: Channel) -> dict[str, int]:
        """Recipient id → row in its unit's columns (built once per unit × channel)."""
        found = self._row_index.get((unit, channel))
        if found is None:
            cols = self.recipients.get((unit, channel))
            found = {rid: i for i, rid in enumerate(cols.ids)} if cols is not None else {}
            self._row_index[(unit, channel)] = found
        return found

    def households_of(self, unit: str, channel: Channel, ids: Sequence[str]) -> list[int]:
        """The household (index, −1: none) of each recipient of a unit × channel."""
        rows = self._rows(unit, channel)
        cols = self.recipients.get((unit, channel))
        if cols is None:
            return [-1] * len(ids)
        homes = cols.household
        return [homes[r] if (r := rows.get(rid)) is not None else -1 for rid in ids]

    def recipient_cell(self, unit: str, channel: Channel, rid: str) -> str:
        row = self._rows(unit, channel).get(rid)
        cols = self.recipients.get((unit, channel))
        return cols.cells[row] if cols is not None and row is not None else ""

    def has_households(self, unit: str) -> bool:
        """Whether coverage of `unit` can be measured over households (definition v2)."""
        return self.households is not None and unit in self.households.by_unit
