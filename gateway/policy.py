"""Planning: channel policy, coverage targets and escalation ladders per jurisdiction.

`policy.yaml` holds a list of rules, each for a division and everything under it; for a
unit the most specific rule applies (a village rule beats its county's, which beats the
prefecture's). A rule that leaves a key out inherits it from the next rule up, and the
top falls back to the defaults below: every channel for every level, no quiet hours,
exercises only to endpoints and recipients marked for exercises, targets 90 % binding /
95 % expected, deadlines 10 minutes for red and orange, 30 for yellow, 60 for blue.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway import codes
from gateway.directory import Channel, Directory
from gateway.errors import ConfigError
from gateway.models import Level, MsgType
from gateway.settings import read_yaml

__all__ = ["Approval", "CoverageModel", "Policy", "QuietHours", "Rule", "Targets", "UnitPolicy"]

ALL_CHANNELS = list(Channel)
# What an escalation step may add: another channel, or the loudspeaker playing again.
ESCALATION_STEPS = {*(c.value for c in Channel), "loudspeaker_repeat", "sms_officials"}


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietHours(_M):
    """Hours when some levels skip some channels (e.g. no loudspeaker at night for blue)."""

    start: time
    end: time
    skip: dict[Level, list[Channel]] = {}

    def active(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


class Targets(_M):
    binding: float = Field(default=0.90, gt=0, le=1)
    expected: float = Field(default=0.95, gt=0, le=1)
    deadline_minutes: dict[Level, int] = {
        Level.RED: 10,
        Level.ORANGE: 10,
        Level.YELLOW: 30,
        Level.BLUE: 60,
    }


def _probability_range(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError("a range [min, max] of probabilities: 0 <= min <= max <= 1")
    return value


class CoverageModel(_M):
    """Priors of the persons-informed model (docs/coverage.md, definition v2), per
    county: what share is usually away, hears a playing loudspeaker, sees a screen,
    reads a message that arrived, tells the household, learns from a messenger's call.
    A range [min, max] says "anywhere in here"; surveys move the estimate, outside it
    too. `prior_strength`: how many surveyed alerts' worth this prior weighs against
    the posteriors of the county's surveyed alerts (see `BetaPrior.pooled`)."""

    away: tuple[float, float] = (0.05, 0.25)
    hear: tuple[float, float] = (0.6, 0.95)
    see: tuple[float, float] = (0.2, 0.5)
    read: tuple[float, float] = (0.8, 0.98)
    tell: tuple[float, float] = (0.5, 0.9)
    visit: tuple[float, float] = (0.85, 1.0)
    prior_strength: float = Field(default=5.0, gt=0, le=1000)

    @field_validator("away", "hear", "see", "read", "tell", "visit")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        return _probability_range(value)

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {
            "away": self.away,
            "hear": self.hear,
            "see": self.see,
            "read": self.read,
            "tell": self.tell,
            "visit": self.visit,
        }


class Approval(_M):
    """Which alerts wait for a second person before anything is sent (docs/console.md)."""

    # Actual alerts at these levels and of these message types need an approver's
    # release (an Update by the level it changes to; a Cancel by default goes at once).
    levels: list[Level] = [Level.RED, Level.ORANGE]
    msg_types: list[MsgType] = [MsgType.ALERT, MsgType.UPDATE]
    # More than 0: a drafter may release alone, in an emergency, an alert that expires
    # within this many minutes (audited, flagged, reviewed afterwards); 0: never.
    emergency_release_minutes: int = Field(default=0, ge=0, le=24 * 60)


class Rule(_M):
    area: str
    timezone: str | None = Field(default=None, pattern=r"^[+-]\d\d:\d\d$")
    channels: dict[Level, list[Channel]] | None = None
    quiet_hours: QuietHours | None = None
    # Exercises and tests reach only endpoints/recipients marked `exercise` unless False.
    exercise_only_marked: bool | None = None
    targets: Targets | None = None
    # Channels added, in order, when a unit is (or is predicted to be) below target.
    escalation: list[str] | None = None
    coverage: CoverageModel | None = None
    approval: Approval | None = None

    @field_validator("area")
    @classmethod
    def _code(cls, value: str) -> str:
        return codes.normalize(str(value))

    @field_validator("escalation")
    @classmethod
    def _steps(cls, value: list[str] | None) -> list[str] | None:
        for step in value or []:
            if step not in ESCALATION_STEPS:
                raise ValueError(f"unknown escalation step {step!r}")
        return value


class UnitPolicy(_M):
    """The policy in force for one unit, all inherited keys filled in."""

    timezone: str = "+08:00"
    channels: dict[Level, list[Channel]] = {lvl: ALL_CHANNELS for lvl in Level}
    quiet_hours: QuietHours | None = None
    exercise_only_marked: bool = True
    targets: Targets = Targets()
    escalation: list[str] = ["messenger", "loudspeaker_repeat", "sms_officials"]
    coverage: CoverageModel = CoverageModel()
    approval: Approval = Approval()

    def tz(self) -> dt_timezone:
        sign = -1 if self.timezone.startswith("-") else 1
        hours, minutes = (int(x) for x in self.timezone[1:].split(":"))
        return dt_timezone(sign * timedelta(hours=hours, minutes=minutes))

    def channels_for(self, level: Level, at: datetime) -> list[Channel]:
        """Channels a level goes to at a moment, quiet hours applied."""
        chosen = list(self.channels.get(level, []))
        quiet = self.quiet_hours
        if quiet and quiet.active(at.astimezone(self.tz()).time()):
            skipped = set(quiet.skip.get(level, []))
            chosen = [c for c in chosen if c not in skipped]
        return chosen


def _deep_update(base: dict[str, Any], top: dict[str, Any]) -> None:
    """A more specific rule overrides key by key: its `channels` for one level leave the
    other levels as the rule above set them, and likewise within `targets`."""
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


class Policy:
    """Rules by area; `for_unit()` resolves the one in force, with inheritance."""

    FILE = "policy.yaml"

    def __init__(self, rules: list[Rule] | None = None) -> None:
        # Most general first, so that more specific rules override while folding.
        self.rules = sorted(rules or [], key=lambda r: len(codes.significant(r.area)))
        self._cache: dict[str, UnitPolicy] = {}

    def for_unit(self, unit: str) -> UnitPolicy:
        found = self._cache.get(unit)
        if found is None:
            merged: dict[str, Any] = {}
            for rule in self.rules:
                if codes.covers(rule.area, unit):
                    layer = rule.model_dump(exclude={"area"}, exclude_none=True, exclude_unset=True)
                    _deep_update(merged, layer)
            found = UnitPolicy.model_validate(merged)
            self._cache[unit] = found
        return found

    @classmethod
    def load(
        cls, directory: Path, dirx: Directory, report: Callable[[str, str, str], None]
    ) -> Policy:
        path = directory / cls.FILE
        if not path.exists():
            return cls()
        try:
            data = read_yaml(path) or {}
        except ConfigError as exc:
            for issue in exc.issues:
                report(issue.file, issue.key, issue.reason)
            return cls()
        rows = data.get("rules", []) if isinstance(data, dict) else None
        if not isinstance(rows, list):
            report(cls.FILE, "rules", "expected a list of rules")
            return cls()
        rules = []
        for i, row in enumerate(rows):
            try:
                rule = Rule.model_validate(row)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    loc = ".".join(str(p) for p in err["loc"])
                    report(cls.FILE, f"rules[{i}].{loc}", str(err["msg"]))
                continue
            if dirx.divisions and rule.area not in dirx.divisions:
                report(cls.FILE, f"rules[{i}].area", f"{rule.area} is not in divisions.yaml")
            rules.append(rule)
        return cls(rules)
