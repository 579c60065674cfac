"""Directory: divisions, endpoints, recipients and population groups, indexed for planning.

The directory is configuration data (see docs/configuration.md). Divisions form the tree
prefecture → county → township → village/community → grid. The *units* of targeting and
coverage are the village/community divisions: every endpoint and recipient belongs to
one (a grid code given for a recipient is counted in its village).

Recipients are kept in columns, per unit, because a county may have a million of them:
planning walks columns and hands out index ranges, it never builds one object per person.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
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
    "RecipientColumns",
    "circle_geometry",
    "polygon_geometry",
]

KM_PER_DEGREE = 111.32


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
    ) -> None:
        self.ids.append(rid)
        self.addresses.append(address)
        self.languages.append(language)
        self.persons.append(persons)
        self.groups.append(groups)
        self.exercise.append(exercise)
        self.households.append(households)


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
    ) -> None:
        self.divisions: dict[str, Division] = {d.code: d for d in divisions}
        self.groups: dict[str, Group] = {g.id: g for g in groups}
        self.endpoints: dict[str, Endpoint] = {e.id: e for e in endpoints}
        self.recipients: dict[tuple[str, Channel], RecipientColumns] = recipients or {}
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
