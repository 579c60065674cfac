"""Coverage: post-alert surveys — grid workers and duty desks say what sampled
households knew, and the answers feed the persons-informed posterior (coverage v2).

A survey answer names one household of the alert's targeted units: how many of its
residents knew of the warning, how (loudspeaker, display, sms, app, messenger, told,
other) and roughly when (minutes after acceptance). Duty desks post them
(`POST /api/v1/alerts/{id}/surveys`), messengers through their relay task
(`POST /api/v1/relay/{code}/survey`, or an SMS reply `CODE 3 <household> <informed>`).
Every answer of a request is checked before any is kept: one bad answer changes
nothing. A later answer for a household replaces the earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.config import Config
from gateway.errors import NotFound, Unprocessable
from gateway.jsonbody import fields_of, read_json
from gateway.models import AlertRecord
from gateway.store import Store

__all__ = ["SURVEY_CHANNELS", "SurveyAnswer", "SurveyDesk"]

SURVEY_CHANNELS = ("loudspeaker", "display", "sms", "app", "messenger", "told", "other")
MAX_ANSWERS = 1000


class SurveyAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    household: str = Field(min_length=1, max_length=64)
    informed: int = Field(ge=0, le=1000)  # residents who knew of the warning
    at_home: int | None = Field(default=None, ge=0, le=1000)
    channels: list[str] = Field(default=[], max_length=len(SURVEY_CHANNELS))
    minute: int | None = Field(default=None, ge=0, le=7 * 24 * 60)  # roughly when


class SurveyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    households: list[SurveyAnswer] = Field(min_length=1, max_length=MAX_ANSWERS)


class MessengerSurvey(SurveyBody):
    phone: str = Field(min_length=5, max_length=20)


class SurveyDesk:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store

    def _check(self, answers: Sequence[SurveyAnswer], units: set[str]) -> dict[str, Any]:
        """Every answer names a household of `units`, with no more informed (or at home)
        than it has residents, and known channels; else 422 naming the answer."""
        h = self.config.directory.households
        if h is None:
            raise Unprocessable(
                "this directory has no households: surveys need coverage definition v2",
                code="no-households",
            )
        out: dict[str, Any] = {}
        for i, a in enumerate(answers):
            where = f"households[{i}]"
            k = h.index.get(a.household)
            if k is None or h.units[k] not in units:
                raise Unprocessable(
                    f"{where}: household {a.household!r} is not in this alert's area",
                    code="unknown-household",
                )
            residents = int(h.residents[k])
            for name, value in (("informed", a.informed), ("at_home", a.at_home)):
                if value is not None and value > residents:
                    raise Unprocessable(
                        f"{where}.{name}: {value} is more than the household's"
                        f" {residents} residents",
                        code="invalid-survey",
                    )
            unknown = sorted(set(a.channels) - set(SURVEY_CHANNELS))
            if unknown:
                raise Unprocessable(
                    f"{where}.channels: unknown {', '.join(unknown)}"
                    f" (one of {', '.join(SURVEY_CHANNELS)})",
                    code="invalid-survey",
                )
            out[a.household] = a.model_dump(exclude_none=True)
        return out

    async def _keep(self, record: AlertRecord, answers: dict[str, Any], by: str) -> dict[str, Any]:
        for a in answers.values():
            a["by"] = by
        await self.store.save_survey(record.id, answers, int(record.expires.timestamp() * 1000))
        total = len(await self.store.surveys(record.id))
        return {"alert": record.id, "accepted": len(answers), "households_surveyed": total}

    async def from_desk(self, record: AlertRecord, body: bytes, units: set[str], by: str
                        ) -> dict[str, Any]:  # fmt: skip
        """A duty desk's survey of an alert; `units`: the alert's units it may survey."""
        parsed = _parse(SurveyBody, body)
        return await self._keep(record, self._check(parsed.households, units), by)

    async def from_messenger(
        self, record: AlertRecord, unit: str, body: bytes, is_messenger: Any
    ) -> dict[str, Any]:
        """A messenger's survey of households of its relay task's unit."""
        parsed = _parse(MessengerSurvey, body)
        if not is_messenger(parsed.phone):
            raise NotFound("this phone is not a messenger of the task's unit", code="not-messenger")
        return await self._keep(record, self._check(parsed.households, {unit}), parsed.phone)

    async def from_sms(
        self, record: AlertRecord, unit: str, phone: str, household: str, informed: int
    ) -> dict[str, Any]:
        answer = SurveyAnswer(household=household, informed=informed)
        return await self._keep(record, self._check([answer], {unit}), phone)


def _parse(model: type[SurveyBody], body: bytes) -> Any:
    data = read_json(body, invalid_code="invalid-survey")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Unprocessable(
            "invalid survey", code="invalid-survey", errors=fields_of(exc)
        ) from None
