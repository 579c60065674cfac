"""Coverage: D, delivery coverage — a union over households, exact given the registry.

The targeted population of an alert is the residents of the households of its units
(of a group-targeted alert: the households of the group's recipients and in the
footprints of the group's loudspeakers and screens). A household is *covered* from the
first minute a confirmed footprint holds it:

    a played loudspeaker's or displayed screen's footprint, the household of an SMS or
    app recipient with a delivered receipt, a household a messenger named as told.

D = residents of covered households / residents of targeted households, per unit and
summed for any tier: a union, never a sum before a cap, never an independence
assumption. Beside it, D with the sends that have no receipt yet (sent, neither
confirmed nor failed) counted at the measured P(delivered | no receipt) of their
provider — delivered / (delivered + failed) among its sends of the alert with a
final receipt, (d + 1)/(d + f + 2) — labelled an estimate, like a messenger's count of
households without names (each household of its cell told with count / households).

`Prepared` maps an alert's deliveries onto the targeted households once; `at(minute)`
gives what held by that minute, for D and for C's exposures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gateway.coverage.informed import Exposure
from gateway.coverage.reach import ChannelReach, Reach
from gateway.directory import Directory, Households
from gateway.models import Channel

__all__ = ["Delivered", "Prepared", "Targets", "first_minute", "targets"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
INF = math.inf
PHONES = (Channel.SMS, Channel.APP)
DEVICES = (Channel.LOUDSPEAKER, Channel.DISPLAY)


@dataclass
class Targets:
    """The households an alert is measured against, grouped by unit."""

    units: list[str]  # units measured over households (definition v2)
    households: I64  # their targeted households (directory indices), by unit
    unit_of: I64  # per targeted household: its position in `units`
    residents: I64
    population: I64  # per unit: residents of its targeted households
    without_households: list[str]  # units of the alert with no household in the directory
    groups: list[str]

    def position(self, n_households: int) -> I64:
        """Directory household index → position among the targeted (−1: not targeted)."""
        pos = np.full(n_households, -1, np.int64)
        pos[self.households] = np.arange(len(self.households))
        return pos


def targets(directory: Directory, units: Sequence[str], groups: Sequence[str] = ()) -> Targets:
    h = directory.households
    assert h is not None, "definition v2 needs households"
    measured = [u for u in sorted(units) if u in h.by_unit]
    missing = [u for u in sorted(units) if u not in h.by_unit]
    wanted = set(groups)
    parts: list[I64] = []
    for u in measured:
        members = h.by_unit[u]
        if wanted:
            members = _group_households(directory, h, u, wanted)
        parts.append(members)
    households = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    unit_of = np.repeat(np.arange(len(measured)), [len(p) for p in parts]).astype(np.int64)
    residents = h.residents[households].astype(np.int64)
    population = np.bincount(unit_of, weights=residents, minlength=len(measured)).astype(np.int64)
    return Targets(measured, households, unit_of, residents, population, missing, sorted(wanted))


def _group_households(directory: Directory, h: Households, unit: str, groups: set[str]) -> I64:
    """A group's people in a unit: households of its recipients, and in the footprints
    of its loudspeakers and screens."""
    found: list[I64] = []
    for channel in PHONES:
        cols = directory.recipients_of(unit, channel)
        if cols is not None:
            homes = [home for home, g in zip(cols.household, cols.groups, strict=True)
                     if home >= 0 and groups.intersection(g.split())]  # fmt: skip
            found.append(np.array(homes, np.int64))
    for e in directory.endpoints_by_unit.get(unit, []):
        if groups.intersection(e.groups):
            found.append(directory.footprints.get(e.id, np.zeros(0, np.int64)))
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


@dataclass
class Delivered:
    """What held by one minute."""

    minute: float
    covered: NDArray[np.bool_]  # per targeted household: confirmed
    estimate: F64  # per targeted household: P(delivered) counting unconfirmed sends
    exposure: Exposure
    delivered: F64  # D per unit
    delivered_estimate: F64
    p: dict[str, float]  # measured P(delivered | no receipt) per channel


@dataclass
class _Devices:
    ids: list[str]
    ptr: I64  # CSR over targeted household positions
    members: I64
    sent: F64
    confirmed: F64
    failed: F64
    repeats: list[F64]  # per device: minutes of repeat plays


class Prepared:
    """An alert's deliveries mapped onto its targeted households, once."""

    def __init__(self, directory: Directory, t: Targets, reach: Reach) -> None:
        h = directory.households
        assert h is not None
        self.targets = t
        pos = t.position(len(h))
        self.n = len(t.households)
        # Phones: the targeted household each belongs to.
        phone_pos: list[I64] = []
        sent, conf, failed, provider = [], [], [], []
        for channel in PHONES:
            r = reach.get(channel.value)
            homes = np.full(len(r), -1, np.int64)
            by_unit: dict[str, list[int]] = {}
            for i, unit in enumerate(r.units):
                by_unit.setdefault(unit, []).append(i)
            for unit, rows in by_unit.items():
                found = directory.households_of(unit, channel, [r.ids[i] for i in rows])
                homes[rows] = found
            phone_pos.append(np.where(homes >= 0, pos[np.maximum(homes, 0)], -1))
            prefix = f"{channel.value}:"
            provider += [prefix + x for x in r.provider]
            sent.append(r.sent)
            conf.append(r.confirmed)
            failed.append(r.failed)
        self.phone_pos = np.concatenate(phone_pos) if phone_pos else np.zeros(0, np.int64)
        self.phone_sent = np.concatenate(sent) if sent else np.zeros(0)
        self.phone_conf = np.concatenate(conf) if conf else np.zeros(0)
        self.phone_failed = np.concatenate(failed) if failed else np.zeros(0)
        names = sorted(set(provider))
        self.providers = names
        self.phone_provider = np.array([names.index(p) for p in provider], np.int64)
        self.devices = {c: self._devices(directory, pos, reach.get(c.value)) for c in DEVICES}
        # Messengers: named households, and counts for a cell.
        m = reach.get(Channel.MESSENGER.value)
        visit_pos, visit_min = [], []
        for _, minute, ids in m.named:
            for hid in ids:
                k = h.index.get(hid, -1)
                if k >= 0 and pos[k] >= 0:
                    visit_pos.append(pos[k])
                    visit_min.append(minute)
        self.visit_pos = np.array(visit_pos, np.int64)
        self.visit_min = np.array(visit_min, np.float64)
        self.counted: list[tuple[I64, float, float]] = []
        for i, minute, count in m.counted:
            cell = directory.recipient_cell(m.units[i], Channel.MESSENGER, m.ids[i])
            area = h.by_cell.get(cell) if cell else h.by_unit.get(m.units[i])
            if area is None:
                continue
            inside = pos[area]
            inside = inside[inside >= 0]
            if len(inside):
                self.counted.append((inside, minute, min(1.0, count / len(area))))

    def _devices(self, directory: Directory, pos: I64, r: ChannelReach) -> _Devices:
        ptr = [0]
        members: list[I64] = []
        for eid in r.ids:
            found = directory.footprints.get(eid, np.zeros(0, np.int64))
            p = pos[found]
            p = p[p >= 0]
            members.append(p)
            ptr.append(ptr[-1] + len(p))
        repeats: list[list[float]] = [[] for _ in r.ids]
        for i, minute in r.repeats:
            repeats[i].append(minute)
        return _Devices(
            list(r.ids),
            np.array(ptr, np.int64),
            np.concatenate(members) if members else np.zeros(0, np.int64),
            r.sent, r.confirmed, r.failed,
            [np.array(sorted(x), np.float64) for x in repeats],
        )  # fmt: skip

    def events(self) -> list[float]:
        """Every minute at which something was confirmed (for time to target)."""
        found = [self.phone_conf, self.visit_min]
        for d in self.devices.values():
            found.append(d.confirmed)
            found.extend(d.repeats)
        out = np.concatenate(found) if found else np.zeros(0)
        return sorted({float(x) for x in out[np.isfinite(out)]})

    def at(self, minute: float | None) -> Delivered:
        """What held by `minute` (bucket < minute; None: everything so far). The last
        few answers are kept: a report and a monitor round ask for the same minutes."""
        t = INF if minute is None else float(minute)
        cache: dict[float, Delivered] = self.__dict__.setdefault("_at_cache", {})
        found = cache.get(t)
        if found is None:
            found = self._at(t)
            if len(cache) >= 64:
                cache.pop(next(iter(cache)))
            cache[t] = found
        return found

    def _at(self, t: float) -> Delivered:
        n = self.n
        covered = np.zeros(n, bool)
        log_miss = np.zeros(n)  # log P(not delivered) from unconfirmed sends
        p: dict[str, float] = {}

        # phones
        conf = self.phone_conf < t
        fail = ~conf & (self.phone_failed < t)
        open_ = (self.phone_sent < t) & ~conf & ~fail
        p_of = np.ones(len(self.providers))
        for k in range(len(self.providers)):
            mine = self.phone_provider == k
            nd, nf = int((conf & mine).sum()), int((fail & mine).sum())
            p_of[k] = (nd + 1) / (nd + nf + 2)
        for channel in PHONES:
            sel = [k for k, name in enumerate(self.providers) if name.startswith(channel.value)]
            if sel:
                p[channel.value] = float(np.mean(p_of[sel]))
        ok = self.phone_pos >= 0
        covered[self.phone_pos[conf & ok]] = True
        phones = np.bincount(self.phone_pos[conf & ok], minlength=n)
        unc = open_ & ok
        phones_unc = np.bincount(self.phone_pos[unc], minlength=n)
        p_unc = p_of[self.phone_provider[unc]]
        np.add.at(log_miss, self.phone_pos[unc], np.log1p(-np.minimum(p_unc, 1 - 1e-9)))
        p_phone = float(p_unc.mean()) if len(p_unc) else 1.0

        counts: dict[Channel, tuple[I64, I64, float]] = {}
        for channel, dev in self.devices.items():
            c = dev.confirmed < t
            f = ~c & (dev.failed < t)
            o = (dev.sent < t) & ~c & ~f
            p_dev = (int(c.sum()) + 1) / (int(c.sum()) + int(f.sum()) + 2)
            p[channel.value] = p_dev
            plays = np.zeros(n, np.int64)
            unconfirmed = np.zeros(n, np.int64)
            for i in range(len(dev.sent)):
                members = dev.members[dev.ptr[i] : dev.ptr[i + 1]]
                if not len(members):
                    continue
                if c[i]:
                    covered[members] = True
                    plays[members] += 1 + int((dev.repeats[i] < t).sum())
                elif o[i]:
                    unconfirmed[members] += 1
                    log_miss[members] += math.log1p(-min(p_dev, 1 - 1e-9))
            counts[channel] = (plays, unconfirmed, p_dev)

        visited = np.zeros(n, np.int64)
        seen = self.visit_pos[self.visit_min < t]
        visited[seen] = 1
        covered[seen] = True
        weight_miss = np.zeros(n)
        for members, m, w in self.counted:
            if m < t:
                weight_miss[members] += math.log1p(-min(w, 1 - 1e-9))
        log_miss += weight_miss
        visit_weight = np.where(visited > 0, 0.0, -np.expm1(weight_miss))

        estimate = np.where(covered, 1.0, -np.expm1(log_miss))
        tg = self.targets
        res = tg.residents.astype(np.float64)
        pop = np.maximum(tg.population, 1).astype(np.float64)
        k = len(tg.units)
        d_unit = np.bincount(tg.unit_of, weights=res * covered, minlength=k) / pop
        d_est = np.bincount(tg.unit_of, weights=res * estimate, minlength=k) / pop
        ls_plays, ls_unc, p_ls = counts[Channel.LOUDSPEAKER]
        ds_plays, ds_unc, p_ds = counts[Channel.DISPLAY]
        exposure = Exposure(
            tg.residents, ls_plays, ls_unc, ds_plays, ds_unc, visited, visit_weight,
            phones.astype(np.int64), phones_unc.astype(np.int64), p_ls, p_ds, p_phone,
        )  # fmt: skip
        return Delivered(t, covered, estimate, exposure, d_unit, d_est, p)

    def first_covered(self) -> F64:
        """Per targeted household, the first minute it was covered (INF: never)."""
        first = np.full(self.n, INF)
        ok = self.phone_pos >= 0
        np.minimum.at(first, self.phone_pos[ok], self.phone_conf[ok])
        for d in self.devices.values():
            for i in range(len(d.sent)):
                members = d.members[d.ptr[i] : d.ptr[i + 1]]
                if len(members) and np.isfinite(d.confirmed[i]):
                    np.minimum.at(first, members, d.confirmed[i])
        np.minimum.at(first, self.visit_pos, self.visit_min)
        return first


def first_minute(first: F64, weights: F64, groups: I64, population: F64, target: float
                 ) -> F64:  # fmt: skip
    """Per group, the first minute T at which the weighted share covered before T
    reached `target` (INF: not reached): the bucket of the deciding household, + 1."""
    out = np.full(len(population), INF)
    order = np.lexsort((first, groups))
    g, f, w = groups[order], first[order], weights[order]
    for k in range(len(population)):
        sel = g == k
        need = target * population[k]
        cum = np.cumsum(w[sel])
        hit = np.flatnonzero(cum >= need - 1e-9)
        if population[k] > 0 and len(hit) and np.isfinite(f[sel][hit[0]]):
            out[k] = f[sel][hit[0]] + 1
    return out
