"""Simulator: the world file — what a simulated county is really like, as YAML.

A world file holds a list of worlds (`worlds: [...]`); each names what the gateway
cannot see: where households and loudspeakers really are, how far a loudspeaker really
carries, who is away, who hears, reads and tells, which devices lie, which receipts are
lost. Ranges `[min, max]` are drawn uniformly per alert (behaviour: away, hear, see,
read, tell, visit) or once per world (structure: radii, devices per unit, as noted
below); a single number is a range of one value. Unknown keys are an error; missing
keys take the defaults written here (and in docs/coverage.md).

    worlds:
      - name: spread-honest
        seed: 1
        loudspeaker_placement: spread        # spread | dense | random
        audible_radius_m: [150, 400]         # true radius; the registry keeps its own value
        registry_footprint_error: 0.0        # share of households wrongly in or out
        away_share: [0.05, 0.25]
        hear_probability: [0.6, 0.95]
        read_probability: [0.8, 0.98]
        tell_probability: [0.5, 0.9]
        phones_per_household: 1.2
        receipt_loss: {sms: 0.05, app: 0.10, loudspeaker: 0.02}
        lying_devices: 0.02
        survey_households: 0
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from gateway import codes
from gateway.errors import ConfigError, ConfigIssue
from gateway.settings import read_yaml

__all__ = ["Range", "ReceiptLoss", "WorldSpec", "load_worlds"]


def _range(value: Any) -> Any:
    """A number is the range of that one value; a list must be [min, max]."""
    if isinstance(value, bool):
        raise ValueError("expected a number or [min, max]")
    if isinstance(value, int | float):
        return (float(value), float(value))
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError("a range is [min, max]")
        low, high = (float(v) for v in value)
        if low > high:
            raise ValueError(f"range [{low}, {high}]: min is above max")
        return (low, high)
    raise ValueError("expected a number or [min, max]")


Range = Annotated[tuple[float, float], BeforeValidator(_range)]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReceiptLoss(_M):
    """Share of receipts that never come back, per channel (outcome-independent)."""

    sms: float = Field(default=0.05, ge=0, le=1)
    app: float = Field(default=0.10, ge=0, le=1)
    loudspeaker: float = Field(default=0.02, ge=0, le=1)
    display: float = Field(default=0.02, ge=0, le=1)
    messenger: float = Field(default=0.0, ge=0, le=1)


class Undelivered(_M):
    """Share of push messages that never arrive (phone off, app uninstalled)."""

    sms: float = Field(default=0.03, ge=0, le=1)
    app: float = Field(default=0.15, ge=0, le=1)


def _probability_range(value: tuple[float, float]) -> tuple[float, float]:
    if not (0.0 <= value[0] <= value[1] <= 1.0):
        raise ValueError("probabilities lie in [0, 1]")
    return value


Probability = Annotated[
    tuple[float, float], BeforeValidator(lambda v: _probability_range(_range(v)))
]


class WorldSpec(_M):
    """One simulated county. Per-alert draws are marked (alert); per-world (world)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    seed: int = 1
    # The sample county whose units (codes, populations, outlines) the world fills in.
    county: str = "652301"
    # What each alert targets: the whole county, one township, or either (half each).
    alert_area: Literal["county", "township", "mixed"] = "mixed"
    evaluate_at_min: int = Field(default=60, ge=1, le=24 * 60)

    # -- households (world) ------------------------------------------------------------
    phones_per_household: float = Field(default=1.2, ge=0, le=10)  # mean, Poisson
    app_share: float = Field(default=0.25, ge=0, le=1)  # phones reached by app, not SMS
    household_size: Literal["sample"] = "sample"  # 1-6 persons, mean 2.8

    # -- loudspeakers and screens (world) -------------------------------------------------
    loudspeaker_placement: Literal["spread", "dense", "random"] = "spread"
    loudspeakers_per_1000: Range = (0.4, 1.2)  # per 1,000 residents of a unit (world)
    units_without_loudspeakers: float = Field(default=0.04, ge=0, le=1)
    audible_radius_m: Range = (150.0, 400.0)  # true radius of each loudspeaker (world)
    # How the registry knows footprints: `walked` (an audibility walk: the true footprint
    # with registry_footprint_error) or `radius` (position + registered_radius_m).
    registry_footprints: Literal["walked", "radius"] = "walked"
    registered_radius_m: float = Field(default=300.0, gt=0, le=5000)
    registry_footprint_error: float = Field(default=0.0, ge=0, le=1)
    # Over a configuration's own registry (warngate simulate --world, the demo): the
    # registered radius is the true one (true), or the true one is drawn (false).
    registered_radius_is_true: bool = False
    screens_per_community: Range = (1.0, 3.0)  # (world)
    visible_radius_m: Range = (30.0, 80.0)  # (world)
    offline_devices: float = Field(default=0.05, ge=0, le=1)  # never fetch
    broken_devices: float = Field(default=0.02, ge=0, le=1)  # fetch, stay silent, say so
    lying_devices: float = Field(default=0.02, ge=0, le=1)  # report played, did not play

    # -- people (alert) ---------------------------------------------------------------
    away_share: Probability = (0.05, 0.25)
    hear_probability: Probability = (0.6, 0.95)  # at home, in a playing loudspeaker's footprint
    see_probability: Probability = (0.2, 0.5)  # at home, in a screen's visible footprint
    read_probability: Probability = (0.8, 0.98)  # owner of a phone whose message arrived
    tell_probability: Probability = (0.5, 0.9)  # an informed household member tells the others
    visit_probability: Probability = (0.85, 1.0)  # at home when a messenger calls: learns
    read_delay_min: float = Field(default=2.0, ge=0)  # mean, exponential
    tell_delay_min: Range = (1.0, 15.0)

    # -- providers and receipts (world) -------------------------------------------------
    undelivered: Undelivered = Undelivered()
    receipt_loss: ReceiptLoss = ReceiptLoss()
    send_spread_min: Range = (0.1, 2.0)  # when the provider hands each message on
    receipt_delay_min: Range = (0.1, 3.0)
    fetch_delay_min: Range = (0.05, 1.0)  # a device's long-poll returns, it plays

    # -- messengers (world; delays per task) ---------------------------------------------
    messengers_per_unit: Range = (1.0, 3.0)
    messenger_responsive: float = Field(default=0.9, ge=0, le=1)
    messenger_start_min: Range = (5.0, 30.0)  # after the task arrives
    messenger_minutes_per_household: Range = (0.5, 2.0)
    messenger_households: Range = (20.0, 80.0)  # households one messenger calls on
    # The acknowledgement names the households (a grid worker's app); else only a count.
    messenger_names_households: bool = True

    # -- surveys (alert) ------------------------------------------------------------------
    survey_households: int = Field(default=0, ge=0, le=100_000)
    survey_minute: int = Field(default=120, ge=1)  # when the survey is taken


def load_worlds(path: Path | str) -> list[WorldSpec]:
    """Read a world file; ConfigError listing every problem (file, key, reason)."""
    file = Path(path)
    data = read_yaml(file)
    name = file.name
    if not isinstance(data, dict) or not isinstance(data.get("worlds"), list):
        raise ConfigError([ConfigIssue(name, "worlds", "expected a mapping with a list 'worlds'")])
    unknown = sorted(set(data) - {"worlds"})
    issues = [ConfigIssue(name, k, "unknown key") for k in unknown]
    worlds: list[WorldSpec] = []
    seen: set[str] = set()
    for i, row in enumerate(data["worlds"]):
        name_of = row.get("name") if isinstance(row, dict) else None
        label = f"worlds[{name_of if name_of is not None else i}]"
        if name_of is not None and name_of in seen:
            issues.append(ConfigIssue(name, f"{label}.name", "name is used twice"))
        seen.add(str(name_of))
        try:
            world = WorldSpec.model_validate(row)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ".".join(str(p) for p in err["loc"])
                issues.append(ConfigIssue(name, f"{label}.{loc}", str(err["msg"])))
            continue
        try:
            codes.normalize(world.county)
        except ValueError as exc:
            issues.append(ConfigIssue(name, f"{label}.county", str(exc)))
        worlds.append(world)
    if issues:
        raise ConfigError(issues)
    return worlds
