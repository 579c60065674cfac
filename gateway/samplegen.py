"""Directory: a deterministic generator of realistic sample directories (and big ones for benchmarks).

`generate(out)` writes the five directory files of a configuration directory:

    divisions.yaml   two prefectures, three counties, their townships and ~190
                     villages/communities with population, languages, outline and centroid
    groups.yaml      the population groups
    households.csv   every household: unit, grid cell (网格, ~150 households), residents
                     (1–5) adding up to the unit's population, coordinates around a
                     village core and a few hamlets (in a community: evenly)
    endpoints.csv    village loudspeakers and display screens, placed where people live,
                     with an audible/visible radius; one loudspeaker in ten with the
                     cells of an audibility walk as its footprint
    recipients.csv   SMS subscribers and app devices (each of a household), messengers
                     (grid workers, 灾害信息员; registered in a grid cell)

Names of divisions and groups already in OUT are kept (they are translated by hand);
everything else is regenerated.

The areas are real (Changji Hui Autonomous Prefecture with Changji City and Mori Kazakh
Autonomous County in Xinjiang; Kangbashi District of Ordos City in Inner Mongolia) but
everything below the county is invented: township and village names are composed from
common place-name parts, the codes, populations and outlines are made up, and so is
every person. Phone numbers use the prefix 154, which no Chinese carrier has been given,
so a misconfigured demo cannot text a real person.

The output depends only on the arguments: the same arguments give byte-identical files
(seeded `random.Random` streams, integer arithmetic where the result is written, lists
walked in code order). The division tree does not depend on the row counts, so a
benchmark directory (`--recipients 1000000 --endpoints 10000`) has the same
divisions.yaml as the committed sample. Recipient rows are streamed unit by unit.

Endpoint device tokens are derived from the endpoint id (`device_token`): a documented
DEMO token, for local use only; endpoints.csv stores only its hash.

    python -m gateway.samplegen config     # regenerate the committed sample
"""  # noqa: E501  (the first line is the module's title)

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import TextIO

import numpy as np
import yaml
from shapely import contains_xy
from shapely.geometry import Polygon

from gateway import codes
from gateway.directory import within_radius
from gateway.sample_places import (
    _COUNTIES,
    _COUNTY_LABEL,
    _GROUPS,
    _PREFECTURES,
    _County,
    _LangChoice,
    _Langs,
    _NamePool,
)

__all__ = [
    "DEFAULT_ENDPOINTS",
    "DEFAULT_RECIPIENTS",
    "DEFAULT_SEED",
    "Summary",
    "device_token",
    "generate",
    "main",
]

DEFAULT_RECIPIENTS = 4000
DEFAULT_ENDPOINTS = 320
DEFAULT_SEED = 2026

ENDPOINT_HEADER = (
    "id",
    "kind",
    "unit",
    "languages",
    "covers_population",
    "token_hash",
    "groups",
    "exercise",
    "chars_per_line",
    "lines",
)
ENDPOINT_FOOTPRINT_HEADER = ("lat", "lon", "radius_m", "footprint")
RECIPIENT_HEADER = (
    "id",
    "channel",
    "address",
    "unit",
    "language",
    "groups",
    "persons",
    "exercise",
    "households",
    "household",
)
HOUSEHOLD_HEADER = ("id", "unit", "cell", "residents", "lat", "lon")

# Fake mobile numbers: 154 + 8 digits. 154 is a valid-looking but unallocated prefix.
_PHONE_PREFIX = "154"
_PHONE_HALF = 10**4  # 8 digits: 10**4 squared
_APP_HALF = 2**32  # 16 hex digits
MAX_RECIPIENTS = 50_000_000

_KM_PER_DEG_LAT = 111.32
_LANG_ORDER = ("zh", "ug", "kk", "mn", "en")


def device_token(endpoint_id: str) -> str:
    """The documented DEMO device token of a sample endpoint (local use only)."""
    return f"wgdev-{endpoint_id}"


def _token_hash(endpoint_id: str) -> str:
    return "sha256:" + hashlib.sha256(device_token(endpoint_id).encode()).hexdigest()


# -- divisions -----------------------------------------------------------------------------

_Point = tuple[float, float]


@dataclass
class _Division:
    code: str
    kind: str
    name: dict[str, str]
    languages: _Langs
    population: int = 0
    centroid: _Point | None = None
    polygon: list[_Point] | None = None


@dataclass
class _Unit:
    """A village or community, with what the row generators need to know about it."""

    div: _Division
    county: str
    pastoral: bool
    tourist: bool
    school: bool
    care_home: bool
    hospital: bool

    @property
    def code(self) -> str:
        return self.div.code

    @property
    def population(self) -> int:
        return self.div.population

    @property
    def languages(self) -> _Langs:
        return self.div.languages

    @property
    def community(self) -> bool:
        return self.div.kind == "community"


@dataclass
class _Tree:
    divisions: list[_Division] = field(default_factory=list)  # depth-first, code order
    units: list[_Unit] = field(default_factory=list)  # code order
    headings: dict[str, str] = field(default_factory=dict)  # code -> comment before it


def _weighted(rng: Random, choices: _LangChoice) -> _Langs:
    total = sum(w for _, w in choices)
    x = rng.randrange(total)
    for value, w in choices:
        if x < w:
            return value
        x -= w
    raise AssertionError("unreachable")


def _pack(sizes: Sequence[_Point], gap: float) -> tuple[list[_Point], float, float]:
    """Shelf-pack (width, height) boxes into rows about as wide as the whole is tall.

    Returns each box's lower-left offset and the total width and height.
    """
    if not sizes:
        return [], 0.0, 0.0
    area = sum((w + gap) * (h + gap) for w, h in sizes)
    max_w = max(max(w for w, _ in sizes), math.sqrt(area) * 1.25)
    rows: list[list[int]] = [[]]
    x = 0.0
    for i, (w, _) in enumerate(sizes):
        if rows[-1] and x + w > max_w:
            rows.append([])
            x = 0.0
        rows[-1].append(i)
        x += w + gap
    offsets: list[_Point] = [(0.0, 0.0)] * len(sizes)
    width = 0.0
    y = 0.0
    for row in reversed(rows):  # the first row ends up at the top (north)
        x = 0.0
        for i in row:
            offsets[i] = (x, y)
            x += sizes[i][0] + gap
        width = max(width, x - gap)
        y += max(sizes[i][1] for i in row) + gap
    return offsets, width, y - gap


def _grid(n: int, cell: float) -> tuple[int, int, float, float]:
    cols = math.isqrt(n - 1) + 1 if n else 0
    rows = -(-n // cols) if n else 0
    return cols, rows, cols * cell, rows * cell


@dataclass
class _Cell:
    unit: _Unit
    x: float  # lower-left, km east of the county's west edge
    y: float
    size: float


def _outline(rng: Random, cell: _Cell, per_edge: int) -> list[_Point]:
    """A star-shaped ring inside the cell: each point of the inset square pulled inwards.

    Points keep their angular order around the centre, so the ring is simple (valid).
    """
    inset = cell.size * 0.03
    x0, y0 = cell.x + inset, cell.y + inset
    side = cell.size - 2 * inset
    cx, cy = x0 + side / 2, y0 + side / 2
    steps = per_edge + 1
    ring: list[_Point] = []
    corners = (
        (x0, y0, 1, 0),
        (x0 + side, y0, 0, 1),
        (x0 + side, y0 + side, -1, 0),
        (x0, y0 + side, 0, -1),
    )
    for sx, sy, dx, dy in corners:
        for k in range(steps):
            px, py = sx + dx * side * k / steps, sy + dy * side * k / steps
            pull = rng.random() * (0.25 if k == 0 else 0.15)
            ring.append((px + (cx - px) * pull, py + (cy - py) * pull))
    ring.append(ring[0])
    return ring


def _build_tree(seed: int) -> _Tree:
    rng = Random(f"warngate-samplegen-divisions-{seed}")
    tree = _Tree()
    for pref in _PREFECTURES:
        pref_div = _Division(pref.code, "prefecture", pref.name, pref.languages)
        tree.divisions.append(pref_div)
        tree.headings[pref.code] = f"{pref.name['en']} ({pref.name['zh']})"
        for county in (c for c in _COUNTIES if c.prefecture == pref.code):
            county_div = _Division(county.code, county.kind, county.name, county.languages)
            tree.divisions.append(county_div)
            tree.headings[county.code] = f"{county.name['en']} ({county.name['zh']})"
            units = _build_county(rng, county, tree)
            county_div.population = sum(u.population for u in units)
            pref_div.population += county_div.population
            tree.units.extend(units)
    return tree


def _build_county(rng: Random, county: _County, tree: _Tree) -> list[_Unit]:
    names = _NamePool(rng, county.family)
    blocks: list[tuple[_Division, list[_Unit], list[tuple[list[_Unit], float]]]] = []
    for town in county.towns:
        code = f"{county.code}{town.suffix:03d}"
        tkind = "township" if town.kind == "ethnic_township" else town.kind
        town_langs = ("kk", "zh", "ug") if town.kind == "ethnic_township" else county.languages
        town_div = _Division(code, tkind, names.name(town.kind, town.pastoral > 0.5), town_langs)
        n_comm = rng.randint(*town.communities)
        n_vill = rng.randint(*town.villages)
        communities: list[_Unit] = []
        villages: list[_Unit] = []
        for i in range(n_comm):
            langs = _weighted(rng, county.community_langs)
            div = _Division(
                f"{code}{i + 1:03d}",
                "community",
                names.name("community", langs[0] != "zh"),
                langs,
                population=round(rng.triangular(*_tri(county.community_pop))),
            )
            communities.append(
                _Unit(
                    div,
                    county.code,
                    pastoral=False,
                    tourist=rng.random() < (0.15 if county.family == "mn" else 0.06),
                    school=rng.random() < 0.5,
                    care_home=rng.random() < 0.2,
                    hospital=rng.random() < 0.1,
                )
            )
        for i in range(n_vill):
            pastoral = rng.random() < town.pastoral
            langs = _weighted(rng, county.pastoral_langs if pastoral else county.village_langs)
            low, high, mode = county.village_pop
            if pastoral:
                high, mode = min(high, 2000), min(mode, 700)
            kind = "village"
            name_kind = "gachaa" if county.family == "mn" and pastoral else kind
            div = _Division(
                f"{code}{201 + i:03d}",
                kind,
                names.name(name_kind, pastoral or langs[0] != "zh"),
                langs,
                population=round(rng.triangular(low, high, mode)),
            )
            villages.append(
                _Unit(
                    div,
                    county.code,
                    pastoral=pastoral,
                    tourist=rng.random() < (0.12 if pastoral else 0.05),
                    school=div.population >= 800 and rng.random() < 0.6,
                    care_home=rng.random() < 0.1,
                    hospital=False,
                )
            )
        town_div.population = sum(u.population for u in communities + villages)
        sub = [
            (g, s)
            for g, s in ((communities, county.community_km), (villages, town.village_km))
            if g
        ]
        blocks.append((town_div, communities + villages, sub))
    _lay_out(rng, county, [sub for _, _, sub in blocks])
    units: list[_Unit] = []
    for town_div, town_units, _ in blocks:
        tree.divisions.append(town_div)
        tree.divisions.extend(u.div for u in town_units)
        units.extend(town_units)
    return units


def _tri(spec: tuple[int, int, int]) -> tuple[float, float, float]:
    return float(spec[0]), float(spec[1]), float(spec[2])


def _lay_out(rng: Random, county: _County, towns: list[list[tuple[list[_Unit], float]]]) -> None:
    """Give every unit an outline and centroid: towns as blocks of square cells."""
    town_sizes: list[_Point] = []
    town_parts: list[tuple[list[_Point], list[tuple[int, int, float]]]] = []
    for sub in towns:
        grids = [_grid(len(group), cell) for group, cell in sub]
        offs, w, h = _pack([(gw, gh) for _, _, gw, gh in grids], gap=0.3)
        town_sizes.append((w, h))
        town_parts.append(
            (
                offs,
                [
                    (cols, rows, cell)
                    for (cols, rows, _, _), (_, cell) in zip(grids, sub, strict=True)
                ],
            )
        )
    town_offs, width, height = _pack(town_sizes, gap=1.0)
    cells: list[tuple[_Cell, int]] = []
    for sub, (tx, ty), (offs, shapes) in zip(towns, town_offs, town_parts, strict=True):
        for (group, _), (gx, gy), (cols, rows, cell) in zip(sub, offs, shapes, strict=True):
            for i, unit in enumerate(group):
                col, row = i % cols, i // cols
                x = tx + gx + col * cell
                y = ty + gy + (rows - 1 - row) * cell
                cells.append((_Cell(unit, x, y, cell), 1 if unit.community else 2))
    km_lon = _KM_PER_DEG_LAT * county.cos_lat

    def geo(x: float, y: float) -> _Point:
        lat = county.lat + (y - height / 2) / _KM_PER_DEG_LAT
        lon = county.lon + (x - width / 2) / km_lon
        return (round(lat, 5), round(lon, 5))

    for c, per_edge in cells:
        c.unit.div.polygon = [geo(x, y) for x, y in _outline(rng, c, per_edge)]
        c.unit.div.centroid = geo(c.x + c.size / 2, c.y + c.size / 2)


# -- YAML ----------------------------------------------------------------------------------

_PLAIN = re.compile(r"[^\W\d_][\w '.\u180e\u202f-]*")
_YAML_WORDS = {"yes", "no", "true", "false", "on", "off", "null", "y", "n"}


def _scalar(value: str) -> str:
    """A YAML scalar for a flow mapping: plain when safe, else double-quoted."""
    if _PLAIN.fullmatch(value) and value == value.strip() and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def _flow_map(items: dict[str, str]) -> str:
    keys = [k for k in _LANG_ORDER if k in items] + sorted(k for k in items if k not in _LANG_ORDER)
    return "{" + ", ".join(f"{k}: {_scalar(items[k])}" for k in keys) + "}"


def _point(p: _Point) -> str:
    return f"[{p[0]!r}, {p[1]!r}]"


def _header(seed: int, recipients: int, endpoints: int) -> str:
    args = "config"
    if recipients != DEFAULT_RECIPIENTS:
        args += f" --recipients {recipients}"
    if endpoints != DEFAULT_ENDPOINTS:
        args += f" --endpoints {endpoints}"
    if seed != DEFAULT_SEED:
        args += f" --seed {seed}"
    return (
        f"# Generated by `python -m gateway.samplegen {args}` (seed {seed}). Do not edit by hand.\n"
    )


def _write_divisions(fh: TextIO, tree: _Tree, header: str) -> None:
    fh.write(header)
    fh.write("divisions:\n")
    for d in tree.divisions:
        if d.code in tree.headings:
            fh.write(f"\n  # {tree.headings[d.code]}\n")
        fh.write(f'  - code: "{d.code}"\n')
        fh.write(f"    name: {_flow_map(d.name)}\n")
        fh.write(f"    population: {d.population}\n")
        fh.write(f"    languages: [{', '.join(d.languages)}]\n")
        fh.write(f"    kind: {d.kind}\n")
        if d.centroid is not None:
            fh.write(f"    centroid: {_point(d.centroid)}\n")
        if d.polygon is not None:
            fh.write(f"    polygon: [{', '.join(_point(p) for p in d.polygon)}]\n")


def _write_groups(fh: TextIO, header: str, kept: dict[str, dict[str, str]]) -> None:
    fh.write(header)
    fh.write("groups:\n")
    for gid, generated in _GROUPS:
        names = kept.get(gid, generated)
        fh.write(f"  - {{id: {gid}, names: {_flow_map(names)}}}\n")


# -- allocation ----------------------------------------------------------------------------


def _allocate(total: int, weights: Sequence[int], rng: Random) -> list[int]:
    """Split `total` in proportion to integer weights; the sum is exactly `total`.

    Each share is its quota rounded down or up (systematic sampling on the remainders),
    in integer arithmetic.
    """
    whole = sum(weights)
    if total <= 0 or whole <= 0:
        return [0] * len(weights)
    shares = [total * w // whole for w in weights]
    left = total - sum(shares)
    if left:
        threshold = rng.randrange(whole)
        cum = 0
        for i, w in enumerate(weights):
            cum += total * w % whole
            while threshold < cum:
                shares[i] += 1
                threshold += whole
    return shares


class _Numbers:
    """Distinct pseudo-random numbers below `half`**2: a keyed permutation of a counter.

    A four-round Feistel network on the two "digits" (quotient and remainder by `half`) is
    a bijection whatever its round function, so the numbers never repeat and do not
    look sequential.
    """

    def __init__(self, rng: Random, half: int) -> None:
        self.half = half
        self.space = half * half
        self.keys = [rng.randrange(half) for _ in range(4)]
        self.offset = rng.randrange(self.space)
        self.next = 0

    def take(self) -> int:
        half = self.half
        left, right = divmod((self.next + self.offset) % self.space, half)
        self.next += 1
        for key in self.keys:
            left, right = right, (left + ((right + key) * 0x9E3779B1 >> 7)) % half
        return left * half + right


# -- households ----------------------------------------------------------------------------

_M_PER_DEG = 111_320.0
_CELL_HOUSEHOLDS = 150  # a grid cell (网格) of about this many households


@dataclass
class _Homes:
    """The households of one unit; positions in metres east/north of its centroid."""

    ids: list[str]
    residents: list[int]
    x: np.ndarray
    y: np.ndarray
    cells: list[str]
    lat0: float
    lon0: float

    def __post_init__(self) -> None:
        # As written to households.csv, and so as the directory will see them.
        points = [self.geo(x, y) for x, y in zip(self.x.tolist(), self.y.tolist(), strict=True)]
        self.lat = np.array([p[0] for p in points])
        self.lon = np.array([p[1] for p in points])

    def geo(self, x: float, y: float) -> _Point:
        lat = self.lat0 + y / _M_PER_DEG
        lon = self.lon0 + x / (_M_PER_DEG * math.cos(math.radians(self.lat0)))
        return (round(lat, 5), round(lon, 5))

    def within(self, at: int, r: float) -> np.ndarray:
        """Households within `r` metres of household `at`, as the directory computes it."""
        lat, lon = float(self.lat[at]), float(self.lon[at])
        return np.flatnonzero(within_radius(self.lat, self.lon, lat, lon, r))

    def residents_of(self, members: np.ndarray) -> int:
        return sum(self.residents[i] for i in members.tolist())


def _gauss(draw: Callable[[], float]) -> float:
    """A standard normal draw from two uniform ones (Box-Muller): only `random()` is
    guaranteed to give the same numbers on every Python version."""
    return math.sqrt(-2.0 * math.log(1.0 - draw())) * math.cos(2.0 * math.pi * draw())


def _build_homes(units: Sequence[_Unit], seed: int) -> dict[str, _Homes]:
    rng = Random(f"warngate-samplegen-households-{seed}")
    draw = rng.random
    out: dict[str, _Homes] = {}
    number = 0
    for unit in units:
        assert unit.div.centroid is not None
        assert unit.div.polygon is not None
        lat0, lon0 = unit.div.centroid
        cos = math.cos(math.radians(lat0))
        poly = Polygon([((lon - lon0) * _M_PER_DEG * cos, (lat - lat0) * _M_PER_DEG)
                        for lat, lon in unit.div.polygon])  # fmt: skip
        minx, miny, maxx, maxy = poly.bounds
        side = math.sqrt(poly.area)
        sizes: list[int] = []
        left = unit.population
        while left > 0:
            size = min(_persons(draw()), left)
            sizes.append(size)
            left -= size
        n = len(sizes)
        core = min(200.0, side / 8)
        hamlets = [((draw() - 0.5) * side / 1.5, (draw() - 0.5) * side / 1.5)
                   for _ in range(2 + int(draw() * 3))]  # fmt: skip
        xs, ys = np.zeros(n), np.zeros(n)
        todo = list(range(n))
        for _ in range(50):  # rejection sampling into the outline
            cand = []
            for _i in todo:
                if unit.community:
                    cand.append((minx + draw() * (maxx - minx), miny + draw() * (maxy - miny)))
                elif draw() < 0.75:
                    cand.append((_gauss(draw) * core, _gauss(draw) * core))
                else:
                    hx, hy = hamlets[int(draw() * len(hamlets))]
                    cand.append((hx + _gauss(draw) * core / 2.5, hy + _gauss(draw) * core / 2.5))
            cx = np.array([c[0] for c in cand])
            cy = np.array([c[1] for c in cand])
            inside = contains_xy(poly, cx, cy)
            still = []
            for i, ok, x, y in zip(todo, inside.tolist(), cx.tolist(), cy.tolist(), strict=True):
                if ok:
                    xs[i], ys[i] = x, y
                else:
                    still.append(i)
            todo = still
            if not todo:
                break
        g = max(1, round(math.sqrt(n / _CELL_HOUSEHOLDS)))
        col = np.minimum(((xs - minx) / (maxx - minx) * g).astype(int), g - 1)
        row = np.minimum(((ys - miny) / (maxy - miny) * g).astype(int), g - 1)
        cells = [f"{unit.code}{c + g * r + 1:03d}" for c, r in zip(col.tolist(), row.tolist(),
                                                                   strict=True)]  # fmt: skip
        ids = [f"h{number + i + 1:07d}" for i in range(n)]
        number += n
        out[unit.code] = _Homes(ids, sizes, xs, ys, cells, lat0, lon0)
    return out


def _write_households(fh: TextIO, units: Sequence[_Unit], homes: dict[str, _Homes]) -> int:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(HOUSEHOLD_HEADER)
    count = 0
    for unit in units:
        h = homes[unit.code]
        for hid, n, cell, x, y in zip(h.ids, h.residents, h.cells, h.x.tolist(), h.y.tolist(),
                                      strict=True):  # fmt: skip
            lat, lon = h.geo(x, y)
            writer.writerow((hid, unit.code, cell, n, f"{lat:.5f}", f"{lon:.5f}"))
        count += len(h.ids)
    return count


def _place(rng: Random, h: _Homes, first: bool, radius: tuple[float, float], walked: float
           ) -> tuple[tuple[str, str, str, str], int]:  # fmt: skip
    """A device where people live (the first loudspeaker of a unit at its core, the
    others at a random household), its radius, and — with probability `walked` — the
    cells of an audibility walk as its footprint. The row's footprint columns and the
    residents it reaches."""
    draw = rng.random
    n = len(h.ids)
    at = int(np.argmin(h.x**2 + h.y**2)) if first else min(n - 1, int(draw() * n))
    r = round(radius[0] + (radius[1] - radius[0]) * draw())
    members = h.within(at, r)
    footprint = ""
    if draw() < walked:
        walk = sorted({h.cells[i] for i in members.tolist()})
        footprint = " ".join(walk)
        members = np.array([i for i, c in enumerate(h.cells) if c in set(walk)], dtype=int)
    lat, lon = float(h.lat[at]), float(h.lon[at])
    return (f"{lat:.5f}", f"{lon:.5f}", str(r), footprint), h.residents_of(members)


# -- endpoints -----------------------------------------------------------------------------


def _write_endpoints(
    fh: TextIO, units: Sequence[_Unit], total: int, seed: int, homes: dict[str, _Homes]
) -> dict[str, int]:
    rng = Random(f"warngate-samplegen-endpoints-{seed}")
    placing = Random(f"warngate-samplegen-footprints-{seed}")
    weights = [
        (6 + 2 * u.tourist) if u.community else (4 if u.tourist else 1 if u.school else 0)
        for u in units
    ]
    displays = total * 12 // 100 if any(weights) else 0
    speakers = total - displays
    villages = [i for i, u in enumerate(units) if not u.community]
    gaps = set(rng.sample(villages, len(units) * 4 // 100)) if villages else set()
    eligible = [i for i in range(len(units)) if i not in gaps]
    per_unit = [0] * len(units)
    pops = [units[i].population for i in eligible]
    if speakers >= len(eligible):
        extra = _allocate(speakers - len(eligible), pops, rng)
        for i, n in zip(eligible, extra, strict=True):
            per_unit[i] = 1 + n
    else:
        for i, n in zip(eligible, _allocate(speakers, pops, rng), strict=True):
            per_unit[i] = n
    screens = _allocate(displays, weights, rng)

    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(ENDPOINT_HEADER + ENDPOINT_FOOTPRINT_HEADER)
    counts = {"loudspeaker": 0, "display": 0}
    for unit, n_ls, n_ds in zip(units, per_unit, screens, strict=True):
        langs = unit.languages
        if n_ls:
            poor = rng.random() < 0.12
            share = 0.2 + 0.3 * rng.random() if poor else 0.5 + 0.45 * rng.random()
            # The old share draws keep the stream (and so every other column) as it was.
            _split(rng, int(unit.population * share), n_ls)
            for j in range(1, n_ls + 1):
                eid = f"ls-{unit.code}-{j}"
                k = len(langs) if len(langs) == 1 or rng.random() < 0.75 else len(langs) - 1
                groups = "herders" if unit.pastoral and rng.random() < 0.25 else ""
                where, cover = _place(placing, homes[unit.code], j == 1, (150, 400), 0.1)
                writer.writerow(
                    (
                        eid,
                        "loudspeaker",
                        unit.code,
                        " ".join(langs[:k]),
                        cover,
                        _token_hash(eid),
                        groups,
                        _flag(rng, 0.03),
                        "",
                        "",
                        *where,
                    )
                )
            counts["loudspeaker"] += n_ls
        if n_ds:
            purposes: list[tuple[str, int]] = []
            if unit.community:
                purposes.append(("", 3))
            if unit.school:
                purposes.append(("schools", 1))
            if unit.tourist:
                purposes.append(("tourist_sites", 2))
            if unit.hospital:
                purposes.append(("hospitals", 1))
            if not purposes:
                purposes.append(("", 1))
            _split(rng, int(unit.population * (0.02 + 0.06 * rng.random())), n_ds)
            for j in range(1, n_ds + 1):
                eid = f"ds-{unit.code}-{j}"
                group = _pick(rng, purposes)
                chars = (12, 16, 20, 24)[rng.randrange(4)]
                lines = rng.randint(2, 6)
                where, cover = _place(placing, homes[unit.code], False, (30, 80), 0.0)
                writer.writerow(
                    (
                        eid,
                        "display",
                        unit.code,
                        " ".join(langs[:2]),
                        cover,
                        _token_hash(eid),
                        group,
                        _flag(rng, 0.03),
                        chars,
                        lines,
                        *where,
                    )
                )
            counts["display"] += n_ds
    return counts


def _split(rng: Random, budget: int, n: int) -> list[int]:
    """`n` random integer shares of `budget` whose sum does not exceed it."""
    weights = [rng.randint(50, 150) for _ in range(n)]
    whole = sum(weights)
    return [budget * w // whole for w in weights]


def _pick(rng: Random, choices: Sequence[tuple[str, int]]) -> str:
    x = rng.randrange(sum(w for _, w in choices))
    for value, w in choices:
        if x < w:
            return value
        x -= w
    raise AssertionError("unreachable")


def _flag(rng: Random, p: float) -> str:
    return "true" if rng.random() < p else "false"


# -- recipients ----------------------------------------------------------------------------

# Household sizes 1..5, mean 2.82: cumulative thresholds for one random() draw.
_PERSONS_CUM = (0.15, 0.45, 0.70, 0.88, 1.0)


def _write_recipients(
    fh: TextIO, units: Sequence[_Unit], total: int, seed: int, homes: dict[str, _Homes]
) -> dict[str, int]:
    rng = Random(f"warngate-samplegen-recipients-{seed}")
    linking = Random(f"warngate-samplegen-links-{seed}")
    wanted = [_pick_int(rng, ((1, 50), (2, 35), (3, 15))) for _ in units]
    messengers = _allocate(min(sum(wanted), total // 10), wanted, rng)
    pushed = _allocate(total - sum(messengers), [u.population for u in units], rng)
    phones = _Numbers(rng, _PHONE_HALF)
    devices = _Numbers(rng, _APP_HALF)
    width = max(7, len(str(total)))
    counts = {"sms": 0, "app": 0, "messenger": 0}
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(RECIPIENT_HEADER)
    rid = 0
    draw = rng.random
    for unit, n_push, n_msg in zip(units, pushed, messengers, strict=True):
        code = unit.code
        langs = unit.languages
        lang_cum = _language_table(langs)
        group_cum = _group_table(unit)
        p_app = 0.08 if unit.pastoral else 0.20 if unit.community else 0.15
        cadres = min(n_push, rng.randint(2, 4))
        h = homes[code]
        cells = sorted(set(h.cells))
        rows: list[tuple[str, ...]] = []
        n_sms = 0
        for k in range(n_push):
            rid += 1
            if k < cadres:
                channel = "sms"
                groups = "officials village_officials" if draw() < 0.25 else "village_officials"
            else:
                channel = "app" if draw() < p_app else "sms"
                groups = _lookup(group_cum, draw())
            if channel == "sms":
                address = f"{_PHONE_PREFIX}{phones.take():08d}"
                n_sms += 1
            else:
                address = f"app-{devices.take():016x}"
            home = min(len(h.ids) - 1, int(linking.random() * len(h.ids)))
            lang = _lookup(lang_cum, draw())
            draw()  # was the household size; now the household's own residents
            rows.append(
                (
                    f"r{rid:0{width}d}",
                    channel,
                    address,
                    code,
                    lang,
                    groups,
                    str(h.residents[home]),
                    "true" if draw() < 0.02 else "false",
                    "",
                    h.ids[home],
                )
            )
        for _ in range(n_msg):
            rid += 1
            rows.append(
                (
                    f"r{rid:0{width}d}",
                    "messenger",
                    f"{_PHONE_PREFIX}{phones.take():08d}",
                    cells[min(len(cells) - 1, int(linking.random() * len(cells)))],
                    langs[0],
                    "",
                    "1",
                    "true" if draw() < 0.02 else "false",
                    str(rng.randint(20, 200)),
                    "",
                )
            )
        writer.writerows(rows)
        counts["sms"] += n_sms
        counts["app"] += n_push - n_sms
        counts["messenger"] += n_msg
    return counts


def _pick_int(rng: Random, choices: Sequence[tuple[int, int]]) -> int:
    x = rng.randrange(sum(w for _, w in choices))
    for value, w in choices:
        if x < w:
            return value
        x -= w
    raise AssertionError("unreachable")


def _table(entries: Sequence[tuple[str, float]]) -> list[tuple[float, str]]:
    """Cumulative thresholds for picking a value with one `random()` draw."""
    run = 0.0
    out: list[tuple[float, str]] = []
    for value, p in entries:
        run += p
        out.append((run, value))
    return out


def _lookup(table: Sequence[tuple[float, str]], x: float) -> str:
    for threshold, value in table:
        if x < threshold:
            return value
    return table[-1][1]


def _persons(x: float) -> int:
    for size, threshold in enumerate(_PERSONS_CUM, start=1):
        if x < threshold:
            return size
    return 5


def _language_table(langs: _Langs) -> list[tuple[float, str]]:
    weights = (70, 20, 10)[: len(langs)]
    whole = sum(weights)
    return _table([(lang, w / whole) for lang, w in zip(langs, weights, strict=True)])


def _group_table(unit: _Unit) -> list[tuple[float, str]]:
    """Groups of an ordinary subscriber of the unit: mostly none."""
    entries: list[tuple[str, float]] = []
    if unit.pastoral:
        entries.append(("herders", 0.35))
    entries.append(("enterprises", 0.03 if unit.community else 0.015))
    if unit.school:
        entries.append(("schools", 0.02))
    if unit.care_home:
        entries.append(("care_homes", 0.01))
    if unit.hospital:
        entries.append(("hospitals", 0.01))
    if unit.tourist:
        entries.append(("tourist_sites", 0.04))
    entries.append(("", 1.0))
    return _table(entries)


# -- entry points --------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """What `generate` wrote."""

    divisions_by_tier: dict[str, int]
    units_by_kind: dict[str, int]
    villages: int  # villages and communities: the units
    population: int
    population_by_county: dict[str, int]
    endpoints_by_kind: dict[str, int]
    recipients_by_channel: dict[str, int]
    households: int = 0

    @property
    def endpoints(self) -> int:
        return sum(self.endpoints_by_kind.values())

    @property
    def recipients(self) -> int:
        return sum(self.recipients_by_channel.values())

    def describe(self) -> str:
        def parts(counts: dict[str, int]) -> str:
            return ", ".join(f"{k} {n:,}" for k, n in counts.items())

        counties = "; ".join(
            f"{code} {_COUNTY_LABEL.get(code, code)} {n:,}"
            for code, n in self.population_by_county.items()
        )
        return "\n".join(
            (
                f"divisions   {parts(self.divisions_by_tier)}",
                f"units       {self.villages:,} ({parts(self.units_by_kind)})",
                f"population  {self.population:,} ({counties})",
                f"households  {self.households:,}",
                f"endpoints   {self.endpoints:,} ({parts(self.endpoints_by_kind)})",
                f"recipients  {self.recipients:,} ({parts(self.recipients_by_channel)})",
            )
        )


def generate(
    out: Path,
    *,
    recipients: int = DEFAULT_RECIPIENTS,
    endpoints: int = DEFAULT_ENDPOINTS,
    seed: int = DEFAULT_SEED,
    names_from: Path | None = None,
) -> Summary:
    """Write divisions.yaml, groups.yaml, households.csv, endpoints.csv and recipients.csv
    into `out`, keeping the names of divisions and groups already there (or in
    `names_from`, a configuration directory)."""
    if not 0 <= recipients <= MAX_RECIPIENTS:
        raise ValueError(f"recipients must be between 0 and {MAX_RECIPIENTS}")
    if endpoints < 0:
        raise ValueError("endpoints must not be negative")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tree = _build_tree(seed)
    header = _header(seed, recipients, endpoints)
    names = Path(names_from) if names_from is not None else out
    kept = _kept_names(names / "divisions.yaml", "divisions", "code", "name")
    for d in tree.divisions:
        d.name = kept.get(d.code, d.name)
    group_names = _kept_names(names / "groups.yaml", "groups", "id", "names")
    homes = _build_homes(tree.units, seed)
    with (out / "divisions.yaml").open("w", encoding="utf-8", newline="\n") as fh:
        _write_divisions(fh, tree, header)
    with (out / "groups.yaml").open("w", encoding="utf-8", newline="\n") as fh:
        _write_groups(fh, header, group_names)
    with (out / "households.csv").open("w", encoding="utf-8", newline="") as fh:
        n_households = _write_households(fh, tree.units, homes)
    with (out / "endpoints.csv").open("w", encoding="utf-8", newline="") as fh:
        ep_counts = _write_endpoints(fh, tree.units, endpoints, seed, homes)
    with (out / "recipients.csv").open("w", encoding="utf-8", newline="") as fh:
        rc_counts = _write_recipients(fh, tree.units, recipients, seed, homes)

    tiers = {"prefecture": 0, "county": 0, "township": 0, "village": 0}
    for d in tree.divisions:
        tiers[codes.tier(d.code).name.lower()] += 1
    kinds: dict[str, int] = {}
    by_county: dict[str, int] = {}
    for u in tree.units:
        kinds[u.div.kind] = kinds.get(u.div.kind, 0) + 1
        by_county[u.county] = by_county.get(u.county, 0) + u.population
    return Summary(
        divisions_by_tier=tiers,
        units_by_kind=dict(sorted(kinds.items())),
        villages=len(tree.units),
        population=sum(u.population for u in tree.units),
        population_by_county=by_county,
        endpoints_by_kind=ep_counts,
        recipients_by_channel=rc_counts,
        households=n_households,
    )


def _kept_names(path: Path, key: str, label: str, field_: str) -> dict[str, dict[str, str]]:
    """Names already in a divisions.yaml / groups.yaml (translated by hand: a
    regeneration keeps them); {} when there is no such file."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, dict[str, str]] = {}
    for row in data.get(key) or []:
        if isinstance(row, dict) and isinstance(row.get(field_), dict) and label in row:
            out[str(row[label])] = {str(k): str(v) for k, v in row[field_].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.samplegen",
        description="Write a deterministic sample directory (divisions, groups, endpoints, "
        "recipients) into OUT.",
    )
    parser.add_argument("out", metavar="OUT", type=Path, help="directory to write into")
    parser.add_argument(
        "--recipients",
        type=int,
        default=DEFAULT_RECIPIENTS,
        help=f"recipient rows (default {DEFAULT_RECIPIENTS})",
    )
    parser.add_argument(
        "--endpoints",
        type=int,
        default=DEFAULT_ENDPOINTS,
        help=f"endpoint rows (default {DEFAULT_ENDPOINTS})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--names-from",
        type=Path,
        default=None,
        help="keep the division and group names of this configuration directory (default: OUT)",
    )
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            recipients=args.recipients,
            endpoints=args.endpoints,
            seed=args.seed,
            names_from=args.names_from,
        )
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(f"wrote {args.out}\n{summary.describe()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
