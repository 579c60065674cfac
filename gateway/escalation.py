"""Escalation: units predicted or measured below target get more channels — the pure part.

Before sending, each unit's coverage is *predicted* from the directory and the current
health of its endpoints (under definition v2 a union over its households of what each
planned channel is expected to reach); a unit predicted below its binding target gets
one step of its escalation ladder from the start — never a loudspeaker repeat (nothing
has played yet) and never the last step left, which is kept for the checks while the
alert runs. After sending, a unit found short at a checkpoint (gateway.monitor: half its
deadline against its trajectory, then the deadline) gets the next step, automatically
and once per checkpoint (the worker side in `gateway.planner.Planner.escalate`,
recorded in the audit stream and the report).

Ladder steps (policy.yaml `escalation`):
    messenger            relay tasks to the unit's grid workers / information officers
    sms_officials        SMS to village officials (groups village_officials, officials)
    loudspeaker_repeat   the unit's loudspeakers play the warning once more
    sms, app, display, loudspeaker
                         that channel, if the level's policy left it out
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gateway.coverage import combine
from gateway.directory import Directory
from gateway.models import Channel
from gateway.plan import OFFICIAL_GROUPS

__all__ = [
    "EXPECTED_SUCCESS",
    "OFFICIAL_GROUPS",
    "Prediction",
    "next_step",
    "predict_unit",
    "steps_for_prediction",
]

# Share of a channel's planned reach that is expected to be confirmed (v1 constants;
# documented in docs/coverage.md). Loudspeakers and screens count only healthy devices.
EXPECTED_SUCCESS: Mapping[Channel, float] = {
    Channel.SMS: 0.9,
    Channel.APP: 0.5,
    Channel.LOUDSPEAKER: 0.95,
    Channel.DISPLAY: 0.9,
    Channel.MESSENGER: 0.8,
}


@dataclass(frozen=True)
class Prediction:
    unit: str
    population: int
    reach: dict[str, float]
    estimate: float


def predict_unit(
    directory: Directory,
    unit: str,
    channels: Iterable[Channel],
    healthy: set[str],
    household_size: float,
) -> Prediction:
    """Expected coverage of a unit from who can be reached and which devices are healthy."""
    if directory.has_households(unit):
        return _predict_households(directory, unit, list(channels), healthy)
    pop = directory.divisions[unit].population
    reach: dict[str, float] = {}
    for channel in channels:
        persons = 0.0
        if channel in (Channel.LOUDSPEAKER, Channel.DISPLAY):
            persons = sum(
                e.covers_population
                for e in directory.endpoints_by_unit.get(unit, [])
                if e.kind.value == channel.value and e.id in healthy
            )
        else:
            cols = directory.recipients_of(unit, channel)
            if cols is not None:
                if channel is Channel.MESSENGER:
                    persons = sum(cols.households) * household_size
                else:
                    persons = sum(cols.persons)
        share = min(1.0, persons / pop) if pop else 0.0
        reach[channel.value] = share * EXPECTED_SUCCESS[channel]
    return Prediction(unit, pop, reach, combine(reach.values())[1])


def _predict_households(
    directory: Directory, unit: str, channels: list[Channel], healthy: set[str]
) -> Prediction:
    """Definition v2's prediction: per household, P(delivered) = 1 − Π (1 − expected
    success) over the planned channels that reach it (its phones, the footprints of
    its healthy loudspeakers and screens, its unit's messengers at their share of
    households); residents-weighted. A union, never a sum before a cap."""
    h = directory.households
    assert h is not None
    members = h.by_unit[unit]
    pos = {int(k): i for i, k in enumerate(members.tolist())}
    miss = np.ones(len(members))
    reach: dict[str, float] = {}
    residents = h.residents[members].astype(np.float64)
    total = float(residents.sum()) or 1.0
    for channel in channels:
        hit = np.zeros(len(members), bool)
        if channel in (Channel.LOUDSPEAKER, Channel.DISPLAY):
            for e in directory.endpoints_by_unit.get(unit, []):
                if e.kind.value == channel.value and e.id in healthy:
                    for k in directory.footprints.get(e.id, np.zeros(0, np.int64)).tolist():
                        if k in pos:
                            hit[pos[k]] = True
            p = EXPECTED_SUCCESS[channel]
            share = hit
        elif channel is Channel.MESSENGER:
            cols = directory.recipients_of(unit, channel)
            told = sum(cols.households) if cols is not None else 0
            p = EXPECTED_SUCCESS[channel] * min(1.0, told / max(1, len(members)))
            share = np.ones(len(members), bool) if told else hit
        else:
            cols = directory.recipients_of(unit, channel)
            if cols is not None:
                for k in cols.household:
                    if k in pos:
                        hit[pos[k]] = True
            p = EXPECTED_SUCCESS[channel]
            share = hit
        miss *= np.where(share, 1.0 - p, 1.0)
        reach[channel.value] = float((residents * share).sum() / total) * p
    estimate = float((residents * (1.0 - miss)).sum() / total)
    return Prediction(unit, int(total), reach, estimate)


def steps_for_prediction(
    prediction: Prediction, target: float, ladder: Sequence[str], planned: Iterable[Channel]
) -> list[str]:
    """The ladder step to add from the start for a unit predicted short: the first one
    left that is not a loudspeaker repeat (nothing has played yet), and only if another
    step is left after it — the last is kept for the checks while the alert runs."""
    if prediction.estimate >= target:
        return []
    planned = list(planned)
    left: list[str] = []
    while (step := next_step(ladder, left, planned)) is not None:
        left.append(step)
    if len(left) < 2:
        return []
    first = next((s for s in left if s != "loudspeaker_repeat"), None)
    return [first] if first else []


def next_step(ladder: Sequence[str], done: Iterable[str], planned: Iterable[Channel]) -> str | None:
    """The first ladder step not yet taken. A channel already planned counts as taken,
    and so does `sms_officials` when SMS already goes to everyone (officials included)."""
    have = {c.value for c in planned}
    taken = set(done) | have
    if Channel.SMS.value in have:
        taken.add("sms_officials")
    for step in ladder:
        if step not in taken:
            return step
    return None
