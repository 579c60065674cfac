"""API: the OpenAPI 3.1 document, generated at start-up and served at /api/v1/openapi.json.

Built from the operation table (`gateway.api.operations`) and the pydantic models the
handlers validate request bodies with, so that it follows the code: a field added to
`models.Alert` or to a device receipt is in the next start's document. pydantic writes
JSON Schema 2020-12, which is the schema dialect of OpenAPI 3.1, so its schemas go in
as they are. The document is the same for every deployment (no configuration in it):
provider names, endpoint ids and keys are the deployment's own.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.api.answers import Problem
from gateway.api.operations import (
    OPERATIONS,
    REFERENCED,
    SCHEMAS,
    Answer,
    Body,
    Operation,
    Param,
)

__all__ = ["OPENAPI_PATH", "document", "routes"]

OPENAPI_PATH = "/api/v1/openapi.json"
PROBLEM_MEDIA = "application/problem+json"

DESCRIPTION = """\
A public warning dissemination gateway: agencies post CAP 1.2 alerts (XML or JSON);
warngate authorizes them, plans and renders a message per village, channel and
language, fans them out, collects receipts and measures coverage.

Every error is `application/problem+json` (RFC 9457) with a stable `code`; the codes
each operation can answer are listed under its 4xx answers. Any route may also answer
404 `not-found` (no such path), 405 `method-not-allowed` (with `Allow`) and 500
`internal` (a bug: it has been logged; retry with backoff).

Guides: docs/api.md (agencies), docs/endpoint-protocol.md (device makers).
"""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "agencyKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An issuing agency's API key (`agencies.yaml` holds its hash): posts"
        " alerts and reads its own.",
    },
    "operatorKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A duty desk's API key: reads the alerts, deliveries and devices of its"
        " jurisdiction; never posts.",
    },
    "deviceToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A loudspeaker's or screen's own token (`endpoints.csv` holds its"
        " hash), valid only on the routes of its own `{id}`.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "wgsession",
        "description": "A person's session (`POST /api/v1/session` with an account of"
        " `accounts.yaml`): the console's people, their roles and jurisdiction. Unsafe"
        " requests also send the session's `X-CSRF-Token`.",
    },
    "callbackToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Callback-Token",
        "description": "The provider's shared secret (`callback_token` in `gateway.yaml`),"
        " valid only on the routes of its own `{provider}`.",
    },
}

TAGS = [
    {"name": "alerts", "description": "Posting and reading alerts (agencies, duty desks)"},
    {"name": "coverage", "description": "Population reached"},
    {"name": "devices", "description": "Loudspeakers and screens (docs/endpoint-protocol.md)"},
    {"name": "providers", "description": "Delivery receipts of SMS and push providers"},
    {"name": "messengers", "description": "Acknowledgements of grid workers' relay tasks"},
    {"name": "people", "description": "Duty officers: log in, submit, approve (docs/console.md)"},
    {"name": "health", "description": "Health, readiness, metrics and this document"},
]


def _problem_schema(status: int, codes: tuple[str, ...]) -> dict[str, Any]:
    return {
        "allOf": [
            {"$ref": SCHEMAS + Problem.__name__},
            {
                "type": "object",
                "properties": {"status": {"const": status}, "code": {"enum": list(codes)}},
            },
        ]
    }


def _problem_answer(
    status: int, codes: tuple[str, ...], headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": ", ".join(f"`{c}`" for c in codes),
        "content": {PROBLEM_MEDIA: {"schema": _problem_schema(status, codes)}},
    }
    if headers:
        answer["headers"] = headers
    return answer


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


SHARED_ANSWERS: dict[str, dict[str, Any]] = {
    "Internal": _problem_answer(500, ("internal",)),
    "NoRoute": _problem_answer(404, ("not-found",)),
    "MethodNotAllowed": _problem_answer(
        405, ("method-not-allowed",), {"Allow": _header("the methods the path takes")}
    ),
}


def _schema(value: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {"$ref": SCHEMAS + value.__name__}


def _parameter(p: Param) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "required": p.required,
        "description": p.description,
        "schema": p.schema,
    }


def _body(body: Body) -> dict[str, Any]:
    return {
        "description": body.description,
        "required": body.required,
        "content": {media: {"schema": _schema(s)} for media, s in body.content.items()},
    }


def _answer(a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": a.description}
    if a.schema is not None:
        out["content"] = {a.media: {"schema": _schema(a.schema)}}
    if a.headers:
        out["headers"] = {name: _header(text or name) for name, text in a.headers.items()}
    return out


def _answers(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {str(a.status): _answer(a) for a in op.answers}
    for status, codes in op.problems.items():
        headers = None
        if status == 401:
            headers = {"WWW-Authenticate": _header('the scheme to use: `Bearer realm="warngate"`')}
        out[str(status)] = _problem_answer(status, codes, headers)
    out["500"] = {"$ref": "#/components/responses/Internal"}
    return out


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "tags": [op.tag],
        "summary": op.summary,
    }
    if op.description:
        out["description"] = op.description
    out["security"] = [{name: [] for name in alt} for alt in op.security if alt]
    if op.parameters:
        out["parameters"] = [_parameter(p) for p in op.parameters]
    if op.body is not None:
        out["requestBody"] = _body(op.body)
    out["responses"] = _answers(op)
    return out


def _models() -> list[type[BaseModel]]:
    """Every model the table names, each once, in a stable order."""
    found: dict[str, type[BaseModel]] = {}

    def add(value: object) -> None:
        if isinstance(value, type) and issubclass(value, BaseModel):
            found.setdefault(value.__name__, value)

    for op in OPERATIONS:
        for a in op.answers:
            add(a.schema)
        for value in op.body.content.values() if op.body else ():
            add(value)
    for model in (*REFERENCED, Problem):
        add(model)
    return [found[name] for name in sorted(found)]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    models = _models()
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template=SCHEMAS + "{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warngate",
            "version": __version__,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": top.get("$defs", {}),
            "responses": SHARED_ANSWERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@functools.cache
def _served() -> bytes:
    return orjson.dumps(document())


def routes() -> list[web.RouteDef]:
    """The document's route; builds the document (once per process) when the app is made."""
    body = _served()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return [web.get(OPENAPI_PATH, openapi)]
