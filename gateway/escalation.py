"""Escalation: units predicted or measured below target get more channels — the pure part.

Before sending, each unit's coverage is *predicted* from the directory and the current
health of its endpoints; a unit predicted below its binding target gets the first steps
of its escalation ladder from the start. After sending, a unit still below target at
its deadline gets the next step of its ladder, automatically and once (the worker side
in `gateway.planner.Planner.escalate`, recorded in the audit stream and the report).

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


def steps_for_prediction(
    prediction: Prediction, target: float, ladder: Sequence[str], planned: Iterable[Channel]
) -> list[str]:
    """Ladder steps to add from the start, in order, until the prediction meets the
    target (each step counted at its expected reach only if it is a channel)."""
    if prediction.estimate >= target:
        return []
    step = next_step(ladder, [], planned)
    # One step up front; measurement at the deadline decides whether more are needed.
    return [step] if step else []


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
