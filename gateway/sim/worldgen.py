"""Simulator: build a world from a world file and the units of a sample county, and the
registry the gateway is given for it.

The world keeps the county's units (codes, populations, outlines: each unit is a square
of its outline's area, in metres) and fills them in: households of 1–6 residents that
add up to the unit's population, settled around a village core and a few hamlets (in a
community: evenly); grid cells (网格) of about 150 households; loudspeakers placed
`spread` (at the centres of the settlement, k-means), `dense` (all near the core) or
`random` (anywhere in the unit), each with its true audible radius; screens in
communities; phones (Poisson per household) held by residents; messengers, each with
the households of some cells.

`registry(world, base)` is what the gateway sees: the same units, loudspeakers and
screens with the footprint the registry believes (an audibility walk with
`registry_footprint_error`, or position + `registered_radius_m`), phones as SMS and app
recipients, messengers — never the true radii, the device fates or the people.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon

from gateway.directory import (
    M_PER_DEGREE,
    Directory,
    Display,
    Endpoint,
    EndpointKind,
    Households,
    RecipientColumns,
)
from gateway.models import Channel
from gateway.sim.world import Device, Fate, Messenger, World
from gateway.sim.worldspec import WorldSpec

__all__ = ["HOUSEHOLD_SIZES", "build_world", "from_registry", "registry"]

# Residents per household 1..6 and their shares (mean 2.8, as the sample directory).
HOUSEHOLD_SIZES = (1, 2, 3, 4, 5, 6)
HOUSEHOLD_SHARES = (0.15, 0.30, 0.25, 0.18, 0.08, 0.04)
M_PER_DEG = 111_320.0
CELL_HOUSEHOLDS = 150
TOKEN = "sha256:" + "0" * 64  # simulated devices authenticate nowhere


def _side_m(base: Directory, unit: str) -> float:
    div = base.divisions[unit]
    if div.polygon and div.centroid:
        cos = math.cos(math.radians(div.centroid[0]))
        ring = [(lon * M_PER_DEG * cos, lat * M_PER_DEG) for lat, lon in div.polygon]
        return math.sqrt(Polygon(ring).area)
    return 1000.0 if div.kind == "community" else 3000.0


def _households(rng: np.random.Generator, population: int) -> np.ndarray:
    sizes = rng.choice(HOUSEHOLD_SIZES, size=population // 2 + 2, p=HOUSEHOLD_SHARES)
    total = np.cumsum(sizes)
    k = int(np.searchsorted(total, population))  # the household that reaches it
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= int(total[k]) - population
    return sizes[sizes > 0].astype(np.int32)


def _positions(rng: np.random.Generator, n: int, side: float, community: bool) -> np.ndarray:
    if community:
        return rng.uniform(0.05 * side, 0.95 * side, (n, 2))
    centre = np.array([side / 2, side / 2])
    core = min(300.0, side / 8)
    hamlets = centre + rng.uniform(-side / 3, side / 3, (int(rng.integers(2, 5)), 2))
    which = rng.random(n)
    pts = centre + rng.normal(0, core, (n, 2))
    in_hamlet = which >= 0.75
    choice = rng.integers(0, len(hamlets), int(in_hamlet.sum()))
    pts[in_hamlet] = hamlets[choice] + rng.normal(0, core / 2.5, (int(in_hamlet.sum()), 2))
    return np.clip(pts, 0, side)


def _kmeans(rng: np.random.Generator, pts: np.ndarray, k: int) -> np.ndarray:
    centres = pts[rng.choice(len(pts), size=k, replace=False)]
    for _ in range(8):
        d = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        nearest = d.argmin(1)
        for j in range(k):
            mine = pts[nearest == j]
            if len(mine):
                centres[j] = mine.mean(0)
    return centres


def _within(pts: np.ndarray, x: float, y: float, r: float) -> np.ndarray:
    return np.flatnonzero(((pts[:, 0] - x) ** 2 + (pts[:, 1] - y) ** 2) <= r * r)


def _walked(
    rng: np.random.Generator, pts: np.ndarray, true: np.ndarray, x: float, y: float, r: float,
    error: float,
) -> np.ndarray:  # fmt: skip
    """An audibility walk: the true footprint with a share `error` of its households
    wrongly left out and as many wrongly put in (from the ring just beyond it)."""
    k = round(error * len(true))
    if k == 0:
        return true
    kept = rng.choice(true, size=len(true) - k, replace=False)
    ring = np.setdiff1d(_within(pts, x, y, 2 * r), true)
    if len(ring) < k:
        ring = np.setdiff1d(np.arange(len(pts)), true)
    added = rng.choice(ring, size=min(k, len(ring)), replace=False)
    return np.sort(np.concatenate([kept, added]))


def _device(
    rng: np.random.Generator, spec: WorldSpec, kind: Channel, name: str, unit: int,
    where: tuple[float, float, float], pts: np.ndarray, offset: int,
) -> Device:  # fmt: skip
    """A loudspeaker or screen at (x, y) really carrying r metres; what the registry
    believes of it; and what it really does (its fate)."""
    x, y, r = where
    true = _within(pts, x, y, r)
    if spec.registry_footprints == "radius" and kind is Channel.LOUDSPEAKER:
        believed = _within(pts, x, y, spec.registered_radius_m)
    else:
        believed = _walked(rng, pts, true, x, y, r, spec.registry_footprint_error)
    roll = rng.random()
    fate = Fate.OK
    for share, f in ((spec.offline_devices, Fate.OFFLINE),
                     (spec.broken_devices, Fate.BROKEN),
                     (spec.lying_devices, Fate.LYING)):  # fmt: skip
        if roll < share:
            fate = f
            break
        roll -= share
    prefix = "ls" if kind is Channel.LOUDSPEAKER else "ds"
    return Device(f"{prefix}-{name}", kind, unit, x, y, r, true + offset, believed + offset, fate)


def build_world(spec: WorldSpec, base: Directory) -> World:
    """The world of `spec` over the units of `spec.county` in the base directory."""
    rng = np.random.default_rng(spec.seed)
    units = base.units_under(spec.county)
    if not units:
        raise ValueError(f"no units under {spec.county} in the directory")
    hh_unit, hh_res, hh_x, hh_y, hh_cell = [], [], [], [], []
    devices: list[Device] = []
    messengers: list[Messenger] = []
    offset = 0
    for ui, code in enumerate(units):
        div = base.divisions[code]
        community = div.kind == "community"
        side = _side_m(base, code)
        sizes = _households(rng, div.population)
        n = len(sizes)
        pts = _positions(rng, n, side, community)
        g = max(1, round(math.sqrt(n / CELL_HOUSEHOLDS)))
        cx = np.minimum((pts[:, 0] / side * g).astype(np.int32), g - 1)
        cy = np.minimum((pts[:, 1] / side * g).astype(np.int32), g - 1)
        cells = cx + g * cy
        hh_unit.append(np.full(n, ui, np.int32))
        hh_res.append(sizes)
        hh_x.append(pts[:, 0])
        hh_y.append(pts[:, 1])
        hh_cell.append(cells.astype(np.int32))

        def device(kind: Channel, j: int, x: float, y: float, r: float) -> Device:
            return _device(rng, spec, kind, f"{code}-{j}", ui, (x, y, r), pts, offset)  # noqa: B023

        if rng.random() >= spec.units_without_loudspeakers:
            per = float(rng.uniform(*spec.loudspeakers_per_1000))
            k = max(1, min(n, round(div.population / 1000 * per)))
            if spec.loudspeaker_placement == "spread":
                where = _kmeans(rng, pts, k)
            elif spec.loudspeaker_placement == "dense":
                core = pts[((pts - np.median(pts, 0)) ** 2).sum(1).argsort()[: max(1, n // 4)]]
                where = core.mean(0) + rng.normal(0, 40.0, (k, 2))
            else:
                where = rng.uniform(0, side, (k, 2))
            for j, (x, y) in enumerate(where, start=1):
                r = float(rng.uniform(*spec.audible_radius_m))
                devices.append(device(Channel.LOUDSPEAKER, j, float(x), float(y), r))
        if community:
            screens = round(float(rng.uniform(*spec.screens_per_community)))
            for j in range(1, screens + 1):
                x, y = pts[rng.integers(n)]
                r = float(rng.uniform(*spec.visible_radius_m))
                devices.append(device(Channel.DISPLAY, j, float(x), float(y), r))
        m = max(1, min(g * g, round(float(rng.uniform(*spec.messengers_per_unit)))))
        order = rng.permutation(g * g)
        for j in range(m):
            mine = np.flatnonzero(np.isin(cells, order[j::m]))
            messengers.append(Messenger(f"m-{code}-{j + 1}", ui, rng.permutation(mine) + offset))
        offset += n

    residents = np.concatenate(hh_res)
    phones = rng.poisson(spec.phones_per_household, len(residents))
    ph_household = np.repeat(np.arange(len(residents), dtype=np.int64), phones)
    first = np.concatenate(([0], np.cumsum(residents)[:-1])).astype(np.int64)
    # The k-th phone of a household is held by its k-th resident (a spare by a random one).
    nth = np.arange(len(ph_household)) - np.repeat(np.cumsum(phones) - phones, phones)
    spare = nth >= residents[ph_household]
    nth[spare] = rng.integers(0, residents[ph_household][spare])
    ph_owner = first[ph_household] + nth
    world = World(
        spec=spec,
        units=units,
        unit_population=np.array([base.divisions[u].population for u in units], np.int64),
        hh_unit=np.concatenate(hh_unit),
        hh_residents=residents,
        hh_x=np.concatenate(hh_x),
        hh_y=np.concatenate(hh_y),
        hh_cell=np.concatenate(hh_cell),
        devices=devices,
        ph_household=ph_household,
        ph_owner=ph_owner,
        ph_app=rng.random(len(ph_household)) < spec.app_share,
        messengers=messengers,
        ph_ids=[f"p{i:07d}" for i in range(len(ph_household))],
        hh_ids=[f"h{i:07d}" for i in range(len(residents))],
    )
    return world


def _geo(world: World, base: Directory) -> tuple[np.ndarray, np.ndarray]:
    """Households' coordinates in degrees: each unit's square of metres centred on its
    centroid (as the registry would hold them)."""
    lat = np.zeros(len(world.hh_residents))
    lon = np.zeros(len(world.hh_residents))
    for ui, code in enumerate(world.units):
        a, b = world.unit_households[ui]
        lat0, lon0 = base.divisions[code].centroid or (40.0, 90.0)
        side = _side_m(base, code)
        cos = math.cos(math.radians(lat0))
        lat[a:b] = lat0 + (world.hh_y[a:b] - side / 2) / M_PER_DEGREE
        lon[a:b] = lon0 + (world.hh_x[a:b] - side / 2) / (M_PER_DEGREE * cos)
    return lat, lon


def registry(
    world: World, base: Directory
) -> tuple[Directory, dict[tuple[str, Channel], np.ndarray]]:
    """The directory the gateway is given for the world — households, footprints as
    the registry believes them, recipients linked to their household — and for each
    (unit, channel) of its recipient columns the world's phone (or messenger) index of
    each row."""
    lat, lon = _geo(world, base)
    cells = [
        f"{world.units[int(u)]}{int(c) + 1:03d}"
        for u, c in zip(world.hh_unit.tolist(), world.hh_cell.tolist(), strict=True)
    ]
    households = Households(
        list(world.hh_ids),
        [world.units[int(u)] for u in world.hh_unit.tolist()],
        cells,
        world.hh_residents.astype(np.int32),
        lat,
        lon,
    )
    endpoints = []
    radius = world.spec.registry_footprints == "radius"
    for d in world.devices:
        unit = world.units[d.unit]
        div = base.divisions[unit]
        side = _side_m(base, unit)
        lat0, lon0 = div.centroid or (40.0, 90.0)
        where: dict[str, object]
        if radius and d.kind is Channel.LOUDSPEAKER:
            cos = math.cos(math.radians(lat0))
            where = {
                "lat": lat0 + (d.y - side / 2) / M_PER_DEGREE,
                "lon": lon0 + (d.x - side / 2) / (M_PER_DEGREE * cos),
                "radius_m": world.spec.registered_radius_m,
            }
        else:  # an audibility walk: the households it named
            where = {"footprint": [world.hh_ids[i] for i in d.registry_households.tolist()]}
        endpoints.append(
            Endpoint.model_validate(
                {
                    "id": d.id,
                    "kind": EndpointKind(d.kind.value),
                    "unit": unit,
                    "languages": div.languages or ["zh"],
                    "covers_population": int(world.hh_residents[d.registry_households].sum()),
                    "token_hash": TOKEN,
                    "display": (
                        Display(chars_per_line=16, lines=4) if d.kind is Channel.DISPLAY else None
                    ),
                    **where,
                }
            )
        )
    recipients: dict[tuple[str, Channel], RecipientColumns] = {}
    rows: dict[tuple[str, Channel], list[int]] = {}
    for p, h in enumerate(world.ph_household.tolist()):
        unit = world.units[int(world.hh_unit[h])]
        channel = Channel.APP if world.ph_app[p] else Channel.SMS
        cols = recipients.setdefault((unit, channel), RecipientColumns())
        lang = (base.divisions[unit].languages or ["zh"])[0]
        address = f"app-{p:016x}" if channel is Channel.APP else f"154{p:08d}"
        cols.append(world.ph_ids[p], address, lang, int(world.hh_residents[h]), "", False, 0,
                    household=h, cell=cells[h])  # fmt: skip
        rows.setdefault((unit, channel), []).append(p)
    for mi, msgr in enumerate(world.messengers):
        unit = world.units[msgr.unit]
        cols = recipients.setdefault((unit, Channel.MESSENGER), RecipientColumns())
        lang = (base.divisions[unit].languages or ["zh"])[0]
        cell = cells[int(msgr.households[0])] if len(msgr.households) else ""
        cols.append(msgr.id, f"1549{mi:07d}", lang, 1, "", False, len(msgr.households),
                    cell=cell)  # fmt: skip
        rows.setdefault((unit, Channel.MESSENGER), []).append(mi)
    directory = Directory(
        base.divisions.values(), endpoints, recipients, base.groups.values(), households
    )
    for d in world.devices:  # what the gateway computed from what it was told
        d.registry_households = directory.footprints[d.id]
    return directory, {k: np.array(v, dtype=np.int64) for k, v in rows.items()}


def from_registry(spec: WorldSpec, directory: Directory) -> World:
    """A world over a configuration's own registry: its households (where they are
    registered), loudspeakers and screens at their registered positions but carrying
    their *true* radius (drawn from the world's range; a device registered only by an
    audibility walk really reaches that footprint with `registry_footprint_error`),
    its phones held by residents of their household, its messengers calling on the
    households of their cell. What the registry says stays what the gateway reads; the
    world's people, device fates and radii are the truth beside it (`warngate simulate
    --world`, the demo). Placement keys of the world file do not apply."""
    h = directory.households
    if h is None:
        raise ValueError("the directory has no households: a world needs them")
    rng = np.random.default_rng(spec.seed)
    units = [u for u in directory.units_under(spec.county) if u in h.by_unit]
    order = np.concatenate([h.by_unit[u] for u in units]) if units else np.zeros(0, np.int64)
    where = np.full(len(h), -1, np.int64)
    where[order] = np.arange(len(order))
    xs, ys, cells, hh_unit = [], [], [], []
    frames: dict[str, tuple[float, float, float]] = {}
    for ui, u in enumerate(units):
        members = h.by_unit[u]
        div = directory.divisions[u]
        lat0, lon0 = div.centroid or (float(np.nanmean(h.lat[members])),
                                      float(np.nanmean(h.lon[members])))  # fmt: skip
        cos = math.cos(math.radians(lat0))
        frames[u] = (lat0, lon0, cos)
        x = np.nan_to_num((h.lon[members] - lon0) * M_PER_DEGREE * cos)
        y = np.nan_to_num((h.lat[members] - lat0) * M_PER_DEGREE)
        xs.append(x)
        ys.append(y)
        names = sorted({h.cells[i] for i in members.tolist()})
        cells.append(np.array([names.index(h.cells[i]) for i in members.tolist()], np.int32))
        hh_unit.append(np.full(len(members), ui, np.int32))
    hx = np.concatenate(xs) if xs else np.zeros(0)
    hy = np.concatenate(ys) if ys else np.zeros(0)
    devices: list[Device] = []
    for ui, u in enumerate(units):
        a = int(where[h.by_unit[u][0]])
        pts = np.stack([hx[a : a + len(h.by_unit[u])], hy[a : a + len(h.by_unit[u])]], axis=1)
        lat0, lon0, cos = frames[u]
        for e in directory.endpoints_by_unit.get(u, []):
            kind = Channel(e.kind.value)
            registered = where[directory.footprints.get(e.id, np.zeros(0, np.int64))]
            radius = spec.audible_radius_m if kind is Channel.LOUDSPEAKER else spec.visible_radius_m
            if e.lat is not None and e.lon is not None and e.radius_m:
                ex = (e.lon - lon0) * M_PER_DEGREE * cos
                ey = (e.lat - lat0) * M_PER_DEGREE
                if spec.registered_radius_is_true:  # the registry is right: its footprint
                    r, true = e.radius_m, registered
                else:
                    r = float(rng.uniform(*radius))
                    true = _within(pts, ex, ey, r) + a
            else:
                ex = ey = 0.0
                r = e.radius_m or float(np.mean(radius))
                local = registered - a
                true = _walked(rng, pts, local, ex, ey, r, spec.registry_footprint_error) + a
            dev = _device(rng, spec, kind, e.id, ui, (ex, ey, r), pts, a)
            dev.id, dev.true_households, dev.registry_households = e.id, true, registered
            devices.append(dev)
    phone_house, phone_ids, phone_app = [], [], []
    messengers: list[Messenger] = []
    for ui, u in enumerate(units):
        members = h.by_unit[u]
        for channel in (Channel.SMS, Channel.APP):
            cols = directory.recipients_of(u, channel)
            if cols is None:
                continue
            for rid, home in zip(cols.ids, cols.household, strict=True):
                k = home if home >= 0 else int(members[rng.integers(len(members))])
                phone_house.append(int(where[k]))
                phone_ids.append(rid)
                phone_app.append(channel is Channel.APP)
        cols = directory.recipients_of(u, Channel.MESSENGER)
        if cols is not None:
            for rid, cell in zip(cols.ids, cols.cells, strict=True):
                area = h.by_cell.get(cell, members) if cell else members
                messengers.append(Messenger(rid, ui, rng.permutation(where[area])))
    residents = h.residents[order].astype(np.int32)
    ph_household = np.array(phone_house, np.int64)
    first = np.concatenate(([0], np.cumsum(residents)[:-1])).astype(np.int64)
    nth = np.zeros(len(ph_household), np.int64)
    seen: dict[int, int] = {}
    for i, k in enumerate(ph_household.tolist()):
        nth[i] = seen.get(k, 0)
        seen[k] = nth[i] + 1
    spare = nth >= residents[ph_household]
    nth[spare] = rng.integers(0, residents[ph_household][spare]) if spare.any() else nth[spare]
    return World(
        spec=spec,
        units=units,
        unit_population=np.array([h.residents_of(u) for u in units], np.int64),
        hh_unit=np.concatenate(hh_unit) if hh_unit else np.zeros(0, np.int32),
        hh_residents=residents,
        hh_x=hx,
        hh_y=hy,
        hh_cell=np.concatenate(cells) if cells else np.zeros(0, np.int32),
        devices=devices,
        ph_household=ph_household,
        ph_owner=first[ph_household] + nth,
        ph_app=np.array(phone_app, bool),
        messengers=messengers,
        ph_ids=phone_ids,
        hh_ids=[h.ids[i] for i in order.tolist()],
    )
