"""Simulator: a 2-D world whose truth the estimator does not share.

A `World` is a county as it really is: households at coordinates (metres, one frame
per unit), their residents, loudspeakers and screens with the radius they *really*
carry and the footprint the registry *believes* they have, devices that are offline,
broken or lying, phones owned by residents, and messengers with the households they
will call on. `World.run_alert` plays one alert through it: which deliveries really
arrive, which receipts come back (and when, or never), who is at home, who hears,
reads, is visited or told — and returns the receipts the gateway would get beside the
truth (when each household was really delivered to, when each person was informed).

The estimator only ever sees the registry (`gateway.sim.worldgen.registry`) and the
receipts: never the true radii, the lying devices, the lost receipts or the people.

Times are minutes after the alert was accepted. Everything is drawn from one seeded
numpy generator per alert, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from gateway.models import Channel
from gateway.sim.worldspec import WorldSpec

__all__ = [
    "AlertDraw",
    "AlertRun",
    "Device",
    "Fate",
    "Messenger",
    "People",
    "PushOutcome",
    "Survey",
    "World",
    "draw_alert",
]

INF = np.inf
ACK_EVERY = 10  # a messenger's app reports the households it called on every 10 visits
I32 = NDArray[np.int32]
I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
B = NDArray[np.bool_]


class Fate(IntEnum):
    """What a loudspeaker or screen really does when a warning reaches its unit."""

    OK = 0  # fetches, plays, reports played
    OFFLINE = 1  # never fetches (its delivery stays queued)
    BROKEN = 2  # fetches, stays silent, reports failed
    LYING = 3  # fetches, stays silent, reports played


@dataclass
class Device:
    id: str
    kind: Channel  # loudspeaker or display
    unit: int
    x: float
    y: float
    true_radius_m: float
    true_households: I64  # households really within reach
    registry_households: I64  # what the registry says (walked footprint or radius)
    fate: Fate = Fate.OK


@dataclass
class Messenger:
    id: str
    unit: int
    households: I64  # the households of its cells, in the order it calls on them


@dataclass
class World:
    """A county as it really is (see the module docstring)."""

    spec: WorldSpec
    units: list[str]
    unit_population: I64
    hh_unit: I32  # households sorted by unit
    hh_residents: I32
    hh_x: F64
    hh_y: F64
    hh_cell: I32  # grid cell number within the unit
    devices: list[Device]
    ph_household: I64  # phones
    ph_owner: I64  # the resident (global person index) who holds the phone
    ph_app: B  # reached by the app rather than by SMS
    messengers: list[Messenger]
    ph_ids: list[str] = field(default_factory=list)
    hh_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hh_first_person: I64 = np.concatenate(([0], np.cumsum(self.hh_residents)[:-1])).astype(
            np.int64
        )
        self.person_household: I64 = np.repeat(
            np.arange(len(self.hh_residents), dtype=np.int64), self.hh_residents
        )
        self.persons = int(self.hh_residents.sum())
        starts = np.searchsorted(self.hh_unit, np.arange(len(self.units)), side="left")
        stops = np.searchsorted(self.hh_unit, np.arange(len(self.units)), side="right")
        self.unit_households: list[tuple[int, int]] = [
            (int(a), int(b)) for a, b in zip(starts, stops, strict=True)
        ]
        self.unit_index = {code: i for i, code in enumerate(self.units)}
        self.device_index = {d.id: i for i, d in enumerate(self.devices)}
        self.phone_index = {pid: i for i, pid in enumerate(self.ph_ids)}
        self.messenger_index = {m.id: i for i, m in enumerate(self.messengers)}
        self._device_persons: dict[int, I64] = {}

    def persons_of(self, households: I64) -> I64:
        """Global person indices of the residents of `households`."""
        if len(households) == 0:
            return np.zeros(0, dtype=np.int64)
        counts = self.hh_residents[households].astype(np.int64)
        starts = self.hh_first_person[households]
        offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(counts) - counts, counts
        )
        return np.repeat(starts, counts) + offsets

    def device_persons(self, device: int) -> I64:
        """Residents really within reach of a device (computed once)."""
        found = self._device_persons.get(device)
        if found is None:
            found = self._device_persons[device] = self.persons_of(
                self.devices[device].true_households
            )
        return found

    def households_of_units(self, units: Iterable[int]) -> I64:
        parts = [np.arange(*self.unit_households[u], dtype=np.int64) for u in units]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def run_alert(
        self,
        seed: int,
        units: Sequence[int],
        *,
        loudspeakers: Sequence[int] = (),
        displays: Sequence[int] = (),
        phones: I64 | None = None,
        messengers: Sequence[int] = (),
        repeats: dict[int, Sequence[float]] | None = None,
    ) -> AlertRun:
        """One alert over `units`, reaching the planned devices, phones and messengers
        (indices into this world). `repeats`: device → minutes it is told to play again."""
        return _simulate(self, np.random.default_rng(seed), units, loudspeakers, displays,
                         phones, messengers, repeats or {})  # fmt: skip


@dataclass(frozen=True)
class AlertDraw:
    """The behaviour of one alert, drawn from the world's ranges."""

    away: float
    hear: float
    see: float
    read: float
    tell: float
    visit: float


@dataclass
class DeviceOutcome:
    """What one loudspeaker or screen did and reported."""

    device: int
    fetched: float  # INF: never fetched
    plays: list[float]  # when it really sounded
    reported: list[float]  # when its played/displayed receipts arrive (lost ones left out)
    failed_at: float = INF  # a `failed` receipt


@dataclass
class PushOutcome:
    """SMS/app phones of an alert: one row per planned phone."""

    phone: I64
    sent: F64  # the provider took it
    delivered: B  # it really arrived
    arrived: F64  # when (INF if never)
    receipt: F64  # when its delivered/failed receipt came back (INF: lost)


@dataclass
class MessengerOutcome:
    messenger: int
    task_delivered: float
    acknowledged: float  # its last acknowledgement (INF: never acknowledged)
    households: I64  # the households it really called on
    visits: F64  # when
    # When each visit was acknowledged: a grid worker's app sends the households it
    # called on every few visits (`messenger_names_households`); INF: that ack was lost.
    acked: F64 = field(default_factory=lambda: np.zeros(0))


@dataclass
class Survey:
    """What a post-alert survey of households found (the truth, at the survey minute)."""

    households: I64
    residents: I32
    informed: I32  # residents who knew of the warning
    at_home: I32
    # Per household: channels that informed a resident directly ("loudspeaker", "sms" …).
    channels: list[list[str]]


@dataclass
class AlertRun:
    """An alert played through the world: receipts for the gateway, and the truth."""

    draw: AlertDraw
    units: list[int]
    households: I64  # the targeted households
    devices: list[DeviceOutcome]
    push: PushOutcome
    messengers: list[MessengerOutcome]
    hh_delivered: F64  # per household of the world: first real delivery (INF: none)
    informed: F64  # per person of the world: when informed (INF: never)
    direct: F64  # per person: when informed other than by a household member
    direct_channel: NDArray[np.int8]  # per person: the channel of `direct` (index into CHANNELS)
    at_home: B

    def delivered_share(self, world: World, minute: float, units: Sequence[int] | None = None
                        ) -> float:  # fmt: skip
        """Share of residents of the targeted (or given) units whose household was really
        delivered to by `minute`."""
        hh = self.households if units is None else world.households_of_units(units)
        res = world.hh_residents[hh]
        total = int(res.sum())
        return float(res[self.hh_delivered[hh] <= minute].sum() / total) if total else 0.0

    def informed_share(self, world: World, minute: float, units: Sequence[int] | None = None
                       ) -> float:  # fmt: skip
        hh = self.households if units is None else world.households_of_units(units)
        persons = world.persons_of(hh)
        return float((self.informed[persons] <= minute).mean()) if len(persons) else 0.0

    def survey(self, world: World, rng: np.random.Generator, n: int, minute: float) -> Survey:
        """`n` targeted households drawn at random, asked at `minute`."""
        pick = rng.choice(self.households, size=min(n, len(self.households)), replace=False)
        pick.sort()
        informed, home, channels = [], [], []
        for h in pick:
            persons = world.persons_of(np.array([h]))
            informed.append(int((self.informed[persons] <= minute).sum()))
            home.append(int(self.at_home[persons].sum()))
            mask = self.direct[persons] <= minute
            channels.append(sorted({CHANNELS[c] for c in self.direct_channel[persons][mask]}))
        return Survey(
            pick.astype(np.int64),
            world.hh_residents[pick],
            np.array(informed, dtype=np.int32),
            np.array(home, dtype=np.int32),
            channels,
        )


CHANNELS = ("none", "loudspeaker", "display", "sms", "app", "messenger")
_CH = {name: i for i, name in enumerate(CHANNELS)}


def draw_alert(spec: WorldSpec, rng: np.random.Generator) -> AlertDraw:
    def u(r: tuple[float, float]) -> float:
        return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else r[0]

    return AlertDraw(
        away=u(spec.away_share),
        hear=u(spec.hear_probability),
        see=u(spec.see_probability),
        read=u(spec.read_probability),
        tell=u(spec.tell_probability),
        visit=u(spec.visit_probability),
    )


def _u(rng: np.random.Generator, r: tuple[float, float], size: int = 1) -> F64:
    """`size` uniform draws from a range (a range of one value needs no draw)."""
    return rng.uniform(r[0], r[1], size) if r[1] > r[0] else np.full(size, r[0])


class _Direct:
    """Times persons learnt of the warning other than from their household: events are
    collected, and the earliest per person kept once at the end."""

    def __init__(self) -> None:
        self.persons: list[I64] = []
        self.times: list[F64] = []
        self.channels: list[NDArray[np.int8]] = []

    def add(self, persons: I64, when: F64 | float, ch: int) -> None:
        if len(persons):
            self.persons.append(persons)
            self.times.append(np.broadcast_to(np.asarray(when, np.float64), persons.shape))
            self.channels.append(np.full(len(persons), ch, np.int8))

    def resolve(self, n: int) -> tuple[F64, NDArray[np.int8]]:
        direct = np.full(n, INF)
        channel = np.zeros(n, dtype=np.int8)
        if not self.persons:
            return direct, channel
        persons = np.concatenate(self.persons)
        times = np.concatenate(self.times)
        channels = np.concatenate(self.channels)
        np.minimum.at(direct, persons, times)
        earliest = times == direct[persons]  # ties: any of the channels
        channel[persons[earliest]] = channels[earliest]
        return direct, channel


class People:
    """What the people of a world do with what really happens during one alert: events
    come in (plays, arrived messages, messenger calls), each drawn once as it comes;
    `resolve` says who was informed when (telling drawn once per person up front, so
    asking again later never changes an earlier answer).

    At home in a playing loudspeaker's true footprint a resident hears each play with
    `hear` (a screen: `see`); a phone's owner reads an arrived message with `read` a
    while later; at home when a messenger calls, a resident learns with `visit`; then
    each resident is told by the household with `tell`, a while after its first member
    learnt (one round: the told do not tell on)."""

    def __init__(self, w: World, rng: np.random.Generator, draw: AlertDraw, at_home: B) -> None:
        self.w = w
        self.rng = rng
        self.draw = draw
        self.at_home = at_home
        self.events = _Direct()
        self.hh_delivered = np.full(len(w.hh_residents), INF)
        self.tell = rng.random(w.persons) < draw.tell
        self.tell_delay = _u(rng, w.spec.tell_delay_min, w.persons)

    def play(self, device: int, t: float) -> None:
        dev = self.w.devices[device]
        np.minimum.at(self.hh_delivered, dev.true_households, t)
        persons = self.w.device_persons(device)
        p = self.draw.hear if dev.kind is Channel.LOUDSPEAKER else self.draw.see
        heard = persons[self.at_home[persons] & (self.rng.random(len(persons)) < p)]
        self.events.add(heard, t, _CH[dev.kind.value])

    def arrive(self, phones: I64, arrived: F64) -> None:
        w = self.w
        np.minimum.at(self.hh_delivered, w.ph_household[phones], arrived)
        reads = self.rng.random(len(phones)) < self.draw.read
        read_at = arrived[reads] + self.rng.exponential(w.spec.read_delay_min, int(reads.sum()))
        app = w.ph_app[phones[reads]]
        for is_app, ch in ((False, "sms"), (True, "app")):
            sel = app == is_app
            self.events.add(w.ph_owner[phones[reads][sel]], read_at[sel], _CH[ch])

    def visit(self, households: I64, times: F64) -> None:
        if not len(households):
            return
        w = self.w
        np.minimum.at(self.hh_delivered, households, times)
        persons = w.persons_of(households)
        when = np.repeat(times, w.hh_residents[households])
        learn = self.at_home[persons] & (self.rng.random(len(persons)) < self.draw.visit)
        self.events.add(persons[learn], when[learn], _CH["messenger"])

    def resolve(self) -> tuple[F64, F64, F64, NDArray[np.int8]]:
        """(first real delivery per household, when each person was informed, when
        directly, by which channel)."""
        w = self.w
        direct, channel = self.events.resolve(w.persons)
        first = np.minimum.reduceat(direct, w.hh_first_person) if w.persons else np.zeros(0)
        first_of_person = first[w.person_household]
        told = self.tell & np.isfinite(first_of_person)
        told_at = np.where(told, first_of_person + self.tell_delay, INF)
        return self.hh_delivered.copy(), np.minimum(direct, told_at), direct, channel


def _simulate(
    w: World,
    rng: np.random.Generator,
    units: Sequence[int],
    loudspeakers: Sequence[int],
    displays: Sequence[int],
    phones: I64 | None,
    messengers: Sequence[int],
    repeats: dict[int, Sequence[float]],
) -> AlertRun:
    s = w.spec
    draw = draw_alert(s, rng)
    at_home = rng.random(w.persons) >= draw.away
    loss = s.receipt_loss
    plays: list[tuple[int, float]] = []
    devices: list[DeviceOutcome] = []
    for kind, planned in ((Channel.LOUDSPEAKER, loudspeakers), (Channel.DISPLAY, displays)):
        lost_share = loss.loudspeaker if kind is Channel.LOUDSPEAKER else loss.display
        for d in planned:
            dev = w.devices[d]
            out = DeviceOutcome(d, INF, [], [])
            devices.append(out)
            if dev.fate is Fate.OFFLINE:
                continue
            out.fetched = float(_u(rng, s.fetch_delay_min)[0])
            times = [out.fetched, *sorted(t for t in repeats.get(d, ()) if t >= out.fetched)]
            for t in times:
                if dev.fate is Fate.BROKEN:
                    if rng.random() >= lost_share:
                        out.failed_at = min(out.failed_at, t + float(_u(rng, (0.02, 0.2))[0]))
                    continue
                if dev.fate is Fate.OK:
                    out.plays.append(t)
                    plays.append((d, t))
                if rng.random() >= lost_share:
                    out.reported.append(t + float(_u(rng, (0.02, 0.2))[0]))

    if phones is None:
        phones = np.zeros(0, dtype=np.int64)
    m = len(phones)
    app = w.ph_app[phones]
    sent = _u(rng, s.send_spread_min, m)
    p_undelivered = np.where(app, s.undelivered.app, s.undelivered.sms)
    delivered = rng.random(m) >= p_undelivered
    arrived = np.where(delivered, sent + rng.uniform(0.0, 0.3, m), INF)
    p_lost = np.where(app, loss.app, loss.sms)
    receipt_at = np.where(delivered, arrived, sent) + _u(rng, s.receipt_delay_min, m)
    receipt = np.where(rng.random(m) >= p_lost, receipt_at, INF)
    push = PushOutcome(phones, sent, delivered, arrived, receipt)

    outcomes: list[MessengerOutcome] = []
    for mi in messengers:
        msgr = w.messengers[mi]
        task = float(_u(rng, s.send_spread_min)[0] + rng.uniform(0.0, 0.3))
        if rng.random() >= s.messenger_responsive:
            outcomes.append(MessengerOutcome(mi, task, INF, np.zeros(0, np.int64), np.zeros(0)))
            continue
        start = task + float(_u(rng, s.messenger_start_min)[0])
        k = min(len(msgr.households), round(float(_u(rng, s.messenger_households)[0])))
        called = msgr.households[:k]
        visits = start + np.cumsum(_u(rng, s.messenger_minutes_per_household, k))
        # Acknowledged in batches of ACK_EVERY visits, half a minute after the last of
        # each batch (and the remainder at the end); a lost ack loses its batch.
        ends = np.minimum(np.arange(k) // ACK_EVERY * ACK_EVERY + ACK_EVERY - 1, k - 1)
        batch_at = visits[ends] + 0.5 if k else np.zeros(0)
        lost = rng.random(k // ACK_EVERY + 1) < loss.messenger
        acked = np.where(lost[np.arange(k) // ACK_EVERY], INF, batch_at)
        if not s.messenger_names_households:  # one ack with a count, at the end
            acked = np.full(k, INF if lost[0] else (float(visits[-1]) + 0.5 if k else INF))
        ack = float(acked[np.isfinite(acked)].max()) if np.isfinite(acked).any() else INF
        outcomes.append(MessengerOutcome(mi, task, ack, called, visits, acked))
    people = People(w, rng, draw, at_home)
    for d, t in plays:
        people.play(d, t)
    people.arrive(phones[delivered], arrived[delivered])
    for o in outcomes:
        people.visit(o.households, o.visits)
    hh_delivered, informed, direct, channel = people.resolve()
    return AlertRun(
        draw=draw,
        units=list(units),
        households=w.households_of_units(units),
        devices=devices,
        push=push,
        messengers=outcomes,
        hh_delivered=hh_delivered,
        informed=informed,
        direct=direct,
        direct_channel=channel,
        at_home=at_home,
    )
