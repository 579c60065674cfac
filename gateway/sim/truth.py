"""Simulator: the live truth of a world while the real gateway runs over HTTP.

The fake providers, devices and messengers of `gateway.sim` report here what *really*
happened to each alert — a message that arrived (its receipt may be lost), a
loudspeaker that sounded (not one that only says so), the households a messenger
called on — and the world's people answer as in the in-process benchmark
(`gateway.sim.world.People`): who was at home, heard, read, was told. The truth of an
alert at any moment is then the share of its units' residents really delivered to and
really informed, beside the gateway's own D and C (`Simulation.compare`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gateway.sim.world import Fate, People, World, draw_alert

__all__ = ["LiveTruth"]


@dataclass
class _Alert:
    people: People
    started: float = field(default_factory=time.monotonic)


class LiveTruth:
    def __init__(self, world: World, seed: int = 1) -> None:
        self.world = world
        self.seed = seed
        self.alerts: dict[str, _Alert] = {}
        self.households = {hid: i for i, hid in enumerate(world.hh_ids)}

    def _alert(self, alert: str) -> _Alert:
        found = self.alerts.get(alert)
        if found is None:
            digest = hashlib.sha256(f"{self.seed}|{alert}".encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            draw = draw_alert(self.world.spec, rng)
            at_home = rng.random(self.world.persons) >= draw.away
            found = self.alerts[alert] = _Alert(People(self.world, rng, draw, at_home))
        return found

    def minutes(self, alert: str) -> float:
        return (time.monotonic() - self._alert(alert).started) / 60.0

    def fate(self, device: str) -> Fate:
        i = self.world.device_index.get(device)
        return self.world.devices[i].fate if i is not None else Fate.OK

    def played(self, alert: str, device: str) -> None:
        i = self.world.device_index.get(device)
        if i is not None and self.world.devices[i].fate is Fate.OK:
            self._alert(alert).people.play(i, self.minutes(alert))

    def arrived(self, alert: str, recipient: str) -> None:
        i = self.world.phone_index.get(recipient)
        if i is not None:
            self._alert(alert).people.arrive(
                np.array([i], np.int64), np.array([self.minutes(alert)])
            )

    def called(self, alert: str, messenger: str, wanted: int) -> list[str]:
        """A messenger calls on up to `wanted` households of its cell, now; their ids
        (for its acknowledgement, which names them)."""
        i = self.world.messenger_index.get(messenger)
        if i is None:
            return []
        households = self.world.messengers[i].households[:wanted]
        now = self.minutes(alert)
        self._alert(alert).people.visit(households, np.full(len(households), now))
        return [self.world.hh_ids[h] for h in households.tolist()]

    def shares(self, alert: str, units: Sequence[str]) -> tuple[float, float]:
        """(truly delivered, truly informed) shares of the residents of `units`, now."""
        w = self.world
        picked = [w.unit_index[u] for u in units if u in w.unit_index]
        if alert not in self.alerts or not picked:
            return 0.0, 0.0
        hh_delivered, informed, _, _ = self.alerts[alert].people.resolve()
        households = w.households_of_units(picked)
        res = w.hh_residents[households]
        now = self.minutes(alert)
        delivered = float(res[hh_delivered[households] <= now].sum() / max(1, res.sum()))
        persons = w.persons_of(households)
        told = float((informed[persons] <= now).mean()) if len(persons) else 0.0
        return delivered, told
