"""Planning: who must be reached by an alert, through which channel, in which language.

A pure function of the stored alert, the directory, the policy, the moment of planning
and (for updates and cancellations) who was reached by the versions it replaces. It
never builds one object per person: push recipients are handed out as index lists into
the directory's per-unit columns, grouped by unit × channel × language × message kind.

Delivery ids are deterministic: `{alert}:{channel}:{recipient or endpoint id}`, so
planning twice yields the same ids and a re-planned alert never sends twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from gateway import codes
from gateway.auth import Agency
from gateway.directory import (
    Channel,
    Directory,
    Endpoint,
    RecipientColumns,
    circle_geometry,
    polygon_geometry,
)
from gateway.models import (
    Alert,
    AlertRecord,
    Level,
    MsgType,
    Status,
    parse_circle,
    parse_polygon,
)
from gateway.policy import Policy

__all__ = [
    "GROUPS_PARAMETER",
    "EndpointDelivery",
    "Kind",
    "Plan",
    "PushGroup",
    "TargetUnit",
    "delivery_id",
    "plan_alert",
    "requested_groups",
    "target_units",
]

GROUPS_PARAMETER = "groups"
PUSH_CHANNELS = (Channel.SMS, Channel.APP, Channel.MESSENGER)
PULL_CHANNELS = (Channel.LOUDSPEAKER, Channel.DISPLAY)
# Population groups of village officials (the `sms_officials` escalation step).
OFFICIAL_GROUPS = ("village_officials", "officials")


class Kind(StrEnum):
    """Which message a delivery carries."""

    ALERT = "alert"  # a new warning (also: an update reaching someone for the first time)
    UPDATE = "update"  # a change to a warning this person already received
    CANCEL = "cancel"  # the warning is lifted (解除), or no longer covers this unit


def delivery_id(alert: str, channel: Channel | str, target: str) -> str:
    return f"{alert}:{channel}:{target}"


@dataclass(frozen=True)
class TargetUnit:
    code: str
    population: int
    channels: tuple[Channel, ...]
    languages: tuple[str, ...]
    steps: tuple[str, ...] = ()  # escalation steps applied from the start


@dataclass(frozen=True)
class PushGroup:
    """Push recipients of one unit, channel, language and message kind."""

    channel: Channel
    unit: str
    language: str
    kind: Kind
    columns: RecipientColumns
    rows: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def ids(self) -> Iterator[str]:
        ids = self.columns.ids
        return (ids[i] for i in self.rows)

    @property
    def persons(self) -> int:
        p = self.columns.persons
        return sum(p[i] for i in self.rows)


@dataclass(frozen=True)
class EndpointDelivery:
    """A loudspeaker or screen: it pulls its unit's messages in its languages."""

    endpoint: Endpoint
    channel: Channel
    kind: Kind


@dataclass
class Plan:
    alert: str
    level: Level
    exercise: bool
    units: list[TargetUnit] = field(default_factory=list)
    push: list[PushGroup] = field(default_factory=list)
    endpoints: list[EndpointDelivery] = field(default_factory=list)
    # Units the alert's area reached that lie outside the agency's jurisdiction.
    outside: list[str] = field(default_factory=list)
    # Geocodes that name no unit of the directory.
    unresolved: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # Units whose loudspeakers play the warning more than once (escalation).
    repeats: dict[str, int] = field(default_factory=dict)

    def delivery_ids(self) -> Iterator[str]:
        for g in self.push:
            for rid in g.ids():
                yield delivery_id(self.alert, g.channel, rid)
        for e in self.endpoints:
            yield delivery_id(self.alert, e.channel, e.endpoint.id)

    def targeted(self) -> dict[tuple[str, Channel], int]:
        """Persons each unit × channel is planned to reach (before any receipt).

        Loudspeakers and screens count the population within their reach; push
        channels the persons their recipients stand for (messengers: 0 until they
        report how many households they told).
        """
        out: dict[tuple[str, Channel], int] = {}
        for g in self.push:
            if g.channel is Channel.MESSENGER or g.kind is Kind.CANCEL:
                continue
            key: tuple[str, Channel] = (g.unit, g.channel)
            out[key] = out.get(key, 0) + g.persons
        for e in self.endpoints:
            if e.kind is Kind.CANCEL:
                continue
            key = (e.endpoint.unit, e.channel)
            out[key] = out.get(key, 0) + e.endpoint.covers_population
        return out

    def count(self) -> int:
        return sum(len(g) for g in self.push) + len(self.endpoints)


def requested_groups(record: AlertRecord) -> list[str]:
    """Population groups named by the alert's `groups` parameter (precise release)."""
    return groups_of(record.alert)


def groups_of(alert: Alert) -> list[str]:
    """Group ids of the `groups` parameters of all info blocks (space or comma lists)."""
    found: list[str] = []
    for info in alert.info:
        for value in info.parameters(GROUPS_PARAMETER):
            for g in value.replace(",", " ").replace("，", " ").split():
                if g not in found:
                    found.append(g)
    return found


def target_units(
    record: AlertRecord, directory: Directory, geocode_names: Iterable[str]
) -> tuple[list[str], list[str]]:
    """Units the alert's areas touch (union over areas and info blocks), and the
    geocodes that matched no unit."""
    names = {n.casefold() for n in geocode_names}
    units: set[str] = set()
    unresolved: list[str] = []
    for info in record.alert.info:
        for area in info.area:
            for g in area.geocode:
                if g.valueName.casefold() not in names:
                    continue
                code = codes.normalize(g.value)
                if codes.tier(code) >= codes.Tier.VILLAGE:
                    own = directory.unit_of(code)
                    found = [own] if own else []
                else:
                    found = directory.units_under(code)
                if not found and code not in unresolved:
                    unresolved.append(code)
                units.update(found)
            for text in area.polygon:
                units.update(directory.units_in(polygon_geometry(parse_polygon(text))))
            for text in area.circle:
                units.update(directory.units_in(circle_geometry(*parse_circle(text))))
    return sorted(units), unresolved


def plan_alert(
    record: AlertRecord,
    directory: Directory,
    policy: Policy,
    agency: Agency,
    *,
    now: datetime,
    geocode_names: Iterable[str],
    reached: Mapping[Channel, frozenset[str]] | None = None,
    extra_steps: Mapping[str, Sequence[str]] | None = None,
    only_units: set[str] | None = None,
    only_channels: set[Channel] | None = None,
) -> Plan:
    """The deliveries of one alert version.

    `reached` (for an Update or Cancel) says who had an earlier version of this warning:
    for push channels the ids of recipients it was sent to, for loudspeakers and
    screens the units where it was published. Everyone there hears of the change: an
    update where the unit is still in the area (even when this version's level, groups
    or quiet hours would not reach them), a cancellation where it is not.

    `extra_steps`: escalation-ladder steps per unit to apply from the start
    (`gateway.escalation`): a channel name adds that channel, `sms_officials` adds SMS
    to village officials, `loudspeaker_repeat` has loudspeakers play it once more.
    `only_units` / `only_channels` restrict the plan (an escalation adds one step to
    one unit).
    """
    reached = reached or {}
    extra_steps = extra_steps or {}
    msg_type = record.alert.msgType
    exercise = record.alert.status is not Status.ACTUAL
    plan = Plan(record.id, record.level, exercise, groups=requested_groups(record))
    if msg_type is MsgType.CANCEL:
        return _plan_cancel(plan, directory, reached)

    units, plan.unresolved = target_units(record, directory, geocode_names)
    inside = [u for u in units if agency.covers(u)]
    plan.outside = [u for u in units if not agency.covers(u)]
    if only_units is not None:
        inside = [u for u in inside if u in only_units]
    wanted_groups = set(plan.groups)
    for unit in inside:
        rules = policy.for_unit(unit)
        channels = list(rules.channels_for(record.level, now))
        steps = tuple(extra_steps.get(unit, ()))
        officials_only: set[Channel] = set()
        for step in steps:
            if step == "sms_officials" and Channel.SMS not in channels:
                channels.append(Channel.SMS)
                officials_only.add(Channel.SMS)
            elif step == "loudspeaker_repeat":
                plan.repeats[unit] = plan.repeats.get(unit, 0) + 1
            elif step in Channel.__members__.values() and Channel(step) not in channels:
                channels.append(Channel(step))
        only_marked = exercise and rules.exercise_only_marked
        div = directory.divisions[unit]
        plan.units.append(
            TargetUnit(
                unit, div.population, tuple(channels), tuple(div.languages or ("zh",)), steps
            )
        )
        for channel in channels:
            if only_channels is not None and channel not in only_channels:
                continue
            groups = set(OFFICIAL_GROUPS) if channel in officials_only else wanted_groups
            if channel in PUSH_CHANNELS:
                _plan_push(plan, directory, unit, channel, groups, only_marked, reached)
            else:
                _plan_pull(plan, directory, unit, channel, groups, only_marked, reached)
    if msg_type is MsgType.UPDATE and reached:
        _follow_up(plan, directory, reached, set(inside))
    return plan


def _plan_push(
    plan: Plan,
    directory: Directory,
    unit: str,
    channel: Channel,
    groups: set[str],
    only_marked: bool,
    reached: Mapping[Channel, frozenset[str]],
) -> None:
    cols = directory.recipients_of(unit, channel)
    if cols is None:
        return
    seen = reached.get(channel, frozenset())
    by_key: dict[tuple[str, Kind], list[int]] = {}
    for i in range(len(cols)):
        if only_marked and not cols.exercise[i]:
            continue
        if groups and not groups.intersection(cols.groups[i].split()):
            continue
        kind = Kind.UPDATE if cols.ids[i] in seen else Kind.ALERT
        by_key.setdefault((cols.languages[i], kind), []).append(i)
    for (lang, kind), rows in sorted(by_key.items()):
        plan.push.append(PushGroup(channel, unit, lang, kind, cols, tuple(rows)))


def _plan_pull(
    plan: Plan,
    directory: Directory,
    unit: str,
    channel: Channel,
    groups: set[str],
    only_marked: bool,
    reached: Mapping[Channel, frozenset[str]],
) -> None:
    kind = Kind.UPDATE if unit in reached.get(channel, frozenset()) else Kind.ALERT
    for ep in directory.endpoints_by_unit.get(unit, []):
        if ep.kind.value != channel.value:
            continue
        if only_marked and not ep.exercise:
            continue
        if groups and not groups.intersection(ep.groups):
            continue
        plan.endpoints.append(EndpointDelivery(ep, channel, kind))


def _follow_up(
    plan: Plan, directory: Directory, reached: Mapping[Channel, frozenset[str]], inside: set[str]
) -> None:
    """Everyone an earlier version reached and this version's plan does not: an update
    where their unit is still in the area, a cancellation where it is not."""
    planned_ids = {(g.channel, rid) for g in plan.push for rid in g.ids()}
    planned_units = {(e.channel, e.endpoint.unit) for e in plan.endpoints}
    for channel in PUSH_CHANNELS:
        ids = reached.get(channel)
        if not ids:
            continue
        for (unit, ch), cols in sorted(directory.recipients.items()):
            if ch is not channel:
                continue
            kind = Kind.UPDATE if unit in inside else Kind.CANCEL
            by_lang: dict[str, list[int]] = {}
            for i, rid in enumerate(cols.ids):
                if rid in ids and (channel, rid) not in planned_ids:
                    by_lang.setdefault(cols.languages[i], []).append(i)
            for lang, rows in sorted(by_lang.items()):
                plan.push.append(PushGroup(channel, unit, lang, kind, cols, tuple(rows)))
    for channel in PULL_CHANNELS:
        for unit in sorted(reached.get(channel, frozenset())):
            if (channel, unit) in planned_units:
                continue
            kind = Kind.UPDATE if unit in inside else Kind.CANCEL
            for ep in directory.endpoints_by_unit.get(unit, []):
                if ep.kind.value == channel.value:
                    plan.endpoints.append(EndpointDelivery(ep, channel, kind))


def _plan_cancel(
    plan: Plan, directory: Directory, reached: Mapping[Channel, frozenset[str]]
) -> Plan:
    """A cancellation goes to everyone an earlier version reached, in their language."""
    for channel in PUSH_CHANNELS:
        ids = reached.get(channel)
        if not ids:
            continue
        for (unit, ch), cols in sorted(directory.recipients.items()):
            if ch is not channel:
                continue
            by_lang: dict[str, list[int]] = {}
            for i, rid in enumerate(cols.ids):
                if rid in ids:
                    by_lang.setdefault(cols.languages[i], []).append(i)
            for lang, rows in sorted(by_lang.items()):
                plan.push.append(PushGroup(channel, unit, lang, Kind.CANCEL, cols, tuple(rows)))
    for channel in PULL_CHANNELS:
        for unit in sorted(reached.get(channel, frozenset())):
            for ep in directory.endpoints_by_unit.get(unit, []):
                if ep.kind.value == channel.value:
                    plan.endpoints.append(EndpointDelivery(ep, channel, Kind.CANCEL))
    units = sorted({g.unit for g in plan.push} | {e.endpoint.unit for e in plan.endpoints})
    for unit in units:
        div = directory.divisions[unit]
        plan.units.append(TargetUnit(unit, div.population, (), tuple(div.languages or ("zh",))))
    return plan
