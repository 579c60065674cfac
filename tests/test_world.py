"""The 2-D world of the simulator: tiny worlds whose answer is known by hand, the world
file format, the county builder's invariants, and the in-process receipt replay checked
against the receipt script in a real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import load_directory
from gateway.coverage.reach import parse_log
from gateway.errors import ConfigError
from gateway.models import Channel
from gateway.receipts import DeliveryState
from gateway.sim.replay import Deliveries, replay
from gateway.sim.world import Device, Fate, Messenger, World
from gateway.sim.worldgen import build_world, registry
from gateway.sim.worldspec import WorldSpec, load_worlds
from gateway.store import ReceiptUpdate, Store

S = DeliveryState
CONFIG = Path(__file__).resolve().parents[1] / "config"
UNIT = "652301001001"
I64 = np.int64


def certain(**kw: Any) -> WorldSpec:
    """Nothing left to chance unless a test says so: everyone at home hears, reads and
    is visited; nobody tells; no receipt is lost, no message undelivered."""
    base: dict[str, Any] = {
        "name": "tiny",
        "away_share": 0.0,
        "hear_probability": 1.0,
        "see_probability": 1.0,
        "read_probability": 1.0,
        "tell_probability": 0.0,
        "visit_probability": 1.0,
        "receipt_loss": {"sms": 0, "app": 0, "loudspeaker": 0, "display": 0, "messenger": 0},
        "undelivered": {"sms": 0, "app": 0},
        "messenger_responsive": 1.0,
        "messenger_households": 10,
        "messenger_start_min": 5,
        "messenger_minutes_per_household": 1,
    }
    base.update(kw)
    return WorldSpec.model_validate(base)


def tiny(spec: WorldSpec, fate: Fate = Fate.OK, phone_household: int = 2) -> World:
    """One unit, three households of 2, 3 and 1 residents (persons 0-1, 2-4, 5); one
    loudspeaker really heard in households 0 and 1; one phone, held by the first
    resident of `phone_household`; one messenger for household 2."""
    speaker = Device("ls-1", Channel.LOUDSPEAKER, 0, 0.0, 0.0, 100.0,
                     np.array([0, 1], I64), np.array([0, 1], I64), fate)  # fmt: skip
    first = [0, 2, 5][phone_household]
    return World(
        spec=spec,
        units=[UNIT],
        unit_population=np.array([6], I64),
        hh_unit=np.zeros(3, np.int32),
        hh_residents=np.array([2, 3, 1], np.int32),
        hh_x=np.array([10.0, 50.0, 500.0]),
        hh_y=np.zeros(3),
        hh_cell=np.zeros(3, np.int32),
        devices=[speaker],
        ph_household=np.array([phone_household], I64),
        ph_owner=np.array([first], I64),
        ph_app=np.array([False]),
        messengers=[Messenger("m-1", 0, np.array([2], I64))],
        ph_ids=["p1"],
        hh_ids=["h0", "h1", "h2"],
    )


def run(world: World, **kw: Any) -> Any:
    args: dict[str, Any] = {"loudspeakers": [0], "phones": np.array([0], I64)}
    args.update(kw)
    return world.run_alert(1, [0], **args)


def test_everyone_reached_when_nothing_is_left_to_chance() -> None:
    w = tiny(certain())
    r = run(w)
    assert r.delivered_share(w, 60) == 1.0  # households 0, 1 by the speaker, 2 by SMS
    assert r.informed_share(w, 60) == 1.0
    assert r.push.delivered.tolist() == [True]
    assert np.isfinite(r.push.receipt).all()
    [speaker] = r.devices
    assert speaker.plays == [speaker.fetched]
    assert len(speaker.reported) == 1
    # Before anything happened nobody is reached.
    assert r.delivered_share(w, 0) == 0.0
    assert r.informed_share(w, 0) == 0.0


def test_people_away_hear_nothing_but_read_their_phone() -> None:
    w = tiny(certain(away_share=1.0))
    r = run(w)
    assert r.delivered_share(w, 60) == 1.0  # delivery does not depend on who is home
    assert r.informed_share(w, 60) == pytest.approx(1 / 6)  # only the phone's owner


def test_told_household_members_count_even_when_away() -> None:
    w = tiny(certain(away_share=1.0, tell_probability=1.0), phone_household=1)
    r = run(w)
    # The phone is held in household 1 (3 residents): its owner reads, tells the two
    # others; households 0 and 2 are away from the loudspeaker and have no phone.
    assert r.informed_share(w, 60) == pytest.approx(3 / 6)
    assert r.delivered_share(w, 60) == pytest.approx(5 / 6)  # h0, h1 (speaker), h1 (SMS)


@pytest.mark.parametrize("fate", [Fate.LYING, Fate.BROKEN, Fate.OFFLINE])
def test_a_silent_device_reaches_nobody_whatever_it_reports(fate: Fate) -> None:
    w = tiny(certain(), fate)
    r = run(w)
    assert r.delivered_share(w, 60) == pytest.approx(1 / 6)  # only household 2, by SMS
    assert r.informed_share(w, 60) == pytest.approx(1 / 6)
    [speaker] = r.devices
    assert speaker.plays == []
    if fate is Fate.LYING:
        assert len(speaker.reported) == 1  # a played receipt for a play that never was
    elif fate is Fate.BROKEN:
        assert speaker.reported == []
        assert np.isfinite(speaker.failed_at)
    else:
        assert not np.isfinite(speaker.fetched)
        assert speaker.reported == []


def test_lost_receipts_do_not_change_the_truth() -> None:
    loss = {"sms": 1, "app": 1, "loudspeaker": 1, "display": 1, "messenger": 1}
    w = tiny(certain(receipt_loss=loss))
    r = run(w, messengers=[0])
    assert r.delivered_share(w, 60) == 1.0
    assert r.informed_share(w, 60) == 1.0
    assert not np.isfinite(r.push.receipt).any()
    assert r.devices[0].reported == []
    assert not np.isfinite(r.messengers[0].acknowledged)


def test_a_messenger_calls_after_its_delay_and_says_whom() -> None:
    w = tiny(certain(hear_probability=0.0, read_probability=0.0))
    r = run(w, messengers=[0], phones=np.zeros(0, I64))
    [m] = r.messengers
    assert m.households.tolist() == [2]
    # Task within ~2.3 min, start 5 min later, 1 min per household: visited by 8.3 min.
    assert 6.0 <= m.visits[0] <= 8.4
    assert m.acknowledged == pytest.approx(m.visits[0] + 0.5)
    assert r.informed_share(w, 60) == pytest.approx(1 / 6)  # household 2's resident
    assert r.informed_share(w, 5) == 0.0
    # The speaker played (delivered to h0, h1) but nobody heard it.
    assert r.delivered_share(w, 60) == 1.0


def test_a_repeat_is_another_chance_to_hear() -> None:
    spec = certain(hear_probability=0.5)
    w = tiny(spec)
    assert len(run(w, phones=np.zeros(0, I64)).devices[0].plays) == 1
    heard_once, heard_twice = [], []
    for seed in range(300):
        a = w.run_alert(seed, [0], loudspeakers=[0])
        b = w.run_alert(seed, [0], loudspeakers=[0], repeats={0: [30.0]})
        assert len(b.devices[0].plays) == 2
        heard_once.append(a.informed_share(w, 60) * 6)
        heard_twice.append(b.informed_share(w, 60) * 6)
    # 5 residents in the footprint: E = 5 × 0.5 = 2.5 once, 5 × 0.75 = 3.75 twice. With
    # 300 alerts the mean of each has a standard error below 0.07: 0.3 is > 4 of them.
    assert abs(np.mean(heard_once) - 2.5) < 0.3
    assert abs(np.mean(heard_twice) - 3.75) < 0.3


def test_a_survey_reports_what_each_household_knew() -> None:
    w = tiny(certain(away_share=1.0, tell_probability=1.0), phone_household=1)
    r = run(w)
    survey = r.survey(w, np.random.default_rng(0), 10, 60)
    assert survey.households.tolist() == [0, 1, 2]  # all three, sorted
    assert survey.residents.tolist() == [2, 3, 1]
    assert survey.informed.tolist() == [0, 3, 0]
    assert survey.at_home.tolist() == [0, 0, 0]
    assert survey.channels == [[], ["sms"], []]


# -- world files -------------------------------------------------------------------------


def test_shipped_world_files_load() -> None:
    files = sorted((CONFIG / "worlds").glob("*.yaml"))
    assert files
    for f in files:
        worlds = load_worlds(f)
        assert worlds, f
        assert len({w.name for w in worlds}) == len(worlds)


def test_world_file_defaults_ranges_and_unknown_keys(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("worlds:\n  - name: a\n    hear_probability: 0.7\n  - name: b\n")
    a, b = load_worlds(f)
    assert a.hear_probability == (0.7, 0.7)
    assert b.hear_probability == (0.6, 0.95)  # the documented default
    assert b.loudspeaker_placement == "spread"
    f.write_text(
        "worlds:\n  - name: a\n    hear_probabilty: 0.7\n"  # misspelt
        "  - name: b\n    away_share: [0.5, 0.2]\n"
        "  - name: c\n    read_probability: [0.5, 1.5]\n"
        "  - name: c\n    receipt_loss: {sms: 0.1, fax: 0.2}\n"
        "  - name: e\n    loudspeaker_placement: everywhere\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_worlds(f)
    keys = {i.key for i in exc.value.issues}
    assert "worlds[a].hear_probabilty" in keys
    assert "worlds[b].away_share" in keys
    assert "worlds[c].read_probability" in keys
    assert "worlds[c].receipt_loss.fax" in keys
    assert "worlds[c].name" in keys  # used twice
    assert "worlds[e].loudspeaker_placement" in keys
    f.write_text("world: []\n")
    with pytest.raises(ConfigError):
        load_worlds(f)


# -- building a county -------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Any:
    return load_directory(CONFIG)


def _township(**kw: Any) -> WorldSpec:
    return WorldSpec.model_validate({"name": "t", "county": "652301001", **kw})


def test_built_world_adds_up_to_the_directory(base: Any) -> None:
    w = build_world(_township(), base)
    assert w.units == base.units_under("652301001")
    per_unit = np.bincount(w.hh_unit, weights=w.hh_residents, minlength=len(w.units))
    assert per_unit.astype(int).tolist() == [base.divisions[u].population for u in w.units]
    assert set(np.unique(w.hh_residents)) <= {1, 2, 3, 4, 5, 6}
    assert w.person_household[w.ph_owner].tolist() == w.ph_household.tolist()
    assert 1.0 < len(w.ph_household) / len(w.hh_residents) < 1.4  # Poisson mean 1.2
    for d in w.devices:
        assert (w.hh_unit[d.true_households] == d.unit).all()
        # No footprint error: the registry's walked footprint is the true one.
        assert d.registry_households.tolist() == d.true_households.tolist()
        low, high = (150, 400) if d.kind is Channel.LOUDSPEAKER else (30, 80)
        assert low <= d.true_radius_m <= high
    again = build_world(_township(), base)
    assert again.hh_x.tolist() == w.hh_x.tolist()  # the seed decides everything


def test_footprint_errors_move_the_stated_share(base: Any) -> None:
    w = build_world(_township(registry_footprint_error=0.25), base)
    for d in w.devices:
        true, said = set(d.true_households.tolist()), set(d.registry_households.tolist())
        k = round(0.25 * len(true))
        assert len(true - said) == k
        assert len(said - true) == min(k, len(said - true))  # as many put in, if there are
        assert len(said) <= len(true)


def test_dense_placement_overlaps_more_than_spread(base: Any) -> None:
    def overlap(w: World) -> float:
        """Residents in the footprints of loudspeakers, counted with repetition, over
        residents in at least one: 1 means no overlap."""
        counted = sum(int(w.hh_residents[d.true_households].sum()) for d in w.devices
                      if d.kind is Channel.LOUDSPEAKER)  # fmt: skip
        union = np.zeros(len(w.hh_residents), bool)
        for d in w.devices:
            if d.kind is Channel.LOUDSPEAKER:
                union[d.true_households] = True
        return counted / max(1, int(w.hh_residents[union].sum()))

    spec = {"loudspeakers_per_1000": [2.0, 2.0]}
    dense = build_world(_township(loudspeaker_placement="dense", **spec), base)
    spread = build_world(_township(loudspeaker_placement="spread", **spec), base)
    assert overlap(dense) > 1.5 * overlap(spread)


def test_registry_holds_what_the_gateway_may_know(base: Any) -> None:
    w = build_world(_township(registry_footprint_error=0.25, lying_devices=0.5), base)
    true_footprints = {d.id: d.true_households.tolist() for d in w.devices}
    directory, rows = registry(w, base)
    h = directory.households
    assert h is not None
    assert h.residents.tolist() == w.hh_residents.tolist()
    assert all(h.residents_of(u) == base.divisions[u].population for u in w.units)
    wrong = 0
    for d in w.devices:
        e = directory.endpoints[d.id]
        assert e.covers_population == int(w.hh_residents[d.registry_households].sum())
        # The gateway reads the walked footprint, never the truth behind it.
        assert directory.footprints[d.id].tolist() == d.registry_households.tolist()
        wrong += directory.footprints[d.id].tolist() != true_footprints[d.id]
    assert wrong > 0
    phones = sum(len(v) for (u, ch), v in rows.items() if ch is not Channel.MESSENGER)
    assert phones == len(w.ph_household)
    for (unit, channel), idx in rows.items():
        cols = directory.recipients_of(unit, channel)
        assert cols is not None
        if channel is Channel.MESSENGER:
            assert cols.ids == [w.messengers[i].id for i in idx]
        else:
            assert cols.ids == [w.ph_ids[i] for i in idx]
            assert cols.persons == w.hh_residents[w.ph_household[idx]].tolist()
            assert cols.household == w.ph_household[idx].tolist()


# -- the replay is the receipt script ------------------------------------------------------

PATTERNS: list[tuple[DeliveryState, ...]] = [
    (),
    (S.SENT,),
    (S.SENT, S.DELIVERED),
    (S.SENT, S.FAILED),
    (S.DELIVERED, S.SENT),  # the receipt overtook the sender's record
    (S.SENT, S.DELIVERED, S.FAILED),  # a late failure never undoes a delivery
    (S.SENT, S.DELIVERED, S.ACKNOWLEDGED),
    (S.SENT, S.DELIVERED, S.DELIVERED),  # repeated receipt
]


async def test_replay_counts_what_the_receipt_script_counts(redis: Any, prefix: str) -> None:
    store = Store(redis, prefix)
    rng = np.random.default_rng(3)
    n = 60
    pattern = rng.integers(0, len(PATTERNS), n)
    times = np.sort(rng.uniform(0, 9, (n, 3)), axis=1)
    persons = rng.integers(1, 6, n)
    units = rng.integers(0, 2, n)
    codes = [UNIT, "652301001002"]
    d = Deliveries(
        channel="sms",
        ids=[f"r{i}" for i in range(n)],
        unit_codes=codes,
        units=units.astype(I64),
        persons=persons.astype(I64),
        patterns=PATTERNS,
        pattern=pattern.astype(I64),
        times=times,
    )
    mine = replay(d)
    t0 = 1_700_000_000_000
    events = sorted(
        (float(times[i, k]), i, state)
        for i in range(n)
        for k, state in enumerate(PATTERNS[int(pattern[i])])
    )
    for when, i, state in events:
        update = ReceiptUpdate(f"r{i}", state.value, codes[int(units[i])], str(persons[i]))
        await store.record("a1", "sms", [update], accepted_ms=t0, now=t0 + int(when * 60_000))
    theirs = {k: v for k, v in (await store.aggregates("a1")).items() if k[0] in "rs"}
    assert theirs == mine.aggregates
    assert any(k.startswith("r|") for k in theirs)
    # The reach log the script appends says the same of each delivery (coverage v2).
    text = await redis.get(store.keys.reach_log("a1", "sms"))
    logged = parse_log("sms", text.splitlines(keepends=True))
    at = {rid: i for i, rid in enumerate(logged.ids)}
    for i in range(n):
        k = at.get(f"r{i}")
        if k is None:
            assert not PATTERNS[int(pattern[i])], i  # no receipt, no line
            continue
        assert logged.units[k] == codes[int(units[i])]
        for got, want in ((logged.sent[k], mine.first_sent[i]),
                          (logged.confirmed[k], mine.first_confirmed[i]),
                          (logged.failed[k], mine.final_failed[i])):  # fmt: skip
            assert got == (np.floor(want) if np.isfinite(want) else np.inf), (i, got, want)


def test_a_world_over_the_registry_keeps_what_the_registry_says(base: Any) -> None:
    from gateway.sim.truth import LiveTruth
    from gateway.sim.worldgen import from_registry

    spec = _township(registered_radius_is_true=True, lying_devices=0.0, offline_devices=0.0,
                     broken_devices=0.0)  # fmt: skip
    w = from_registry(spec, base)
    h = base.households
    units = base.units_under("652301001")
    assert w.units == units
    assert w.persons == sum(h.residents_of(u) for u in units)
    endpoints = [e for u in units for e in base.endpoints_by_unit.get(u, [])]
    assert sorted(d.id for d in w.devices) == sorted(e.id for e in endpoints)
    for d in w.devices:  # the registry is right: true footprint = registered footprint
        assert [w.hh_ids[i] for i in d.true_households] == [h.ids[i] for i in base.footprints[d.id]]
    live = LiveTruth(w, seed=3)
    speaker = next(d for d in w.devices if d.kind is Channel.LOUDSPEAKER)
    assert live.shares("a", [units[0]]) == (0.0, 0.0)
    live.played("a", speaker.id)
    delivered, informed = live.shares("a", [w.units[speaker.unit]])
    covered = int(w.hh_residents[speaker.true_households].sum())
    assert delivered == pytest.approx(covered / w.unit_population[speaker.unit])
    assert 0 < informed <= delivered
    # Asking again changes nothing (each event is drawn once, as it comes).
    assert live.shares("a", [w.units[speaker.unit]]) == (delivered, informed)
