"""The OpenAPI document (gateway/api/openapi.py) against the code it describes: the live
routes, OpenAPI 3.1 itself, the problem codes the code base raises, the ranges the
handlers enforce, and the models the handlers validate with. tests/test_schemathesis.py
fuzzes the served gateway with it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import OpenAPIV31SpecValidator

from gateway.api.common import _HTTP_CODES
from gateway.api.openapi import OPENAPI_PATH, document
from gateway.callbacks import RelayAck
from gateway.endpoints import Heartbeat
from gateway.errors import ProblemError
from gateway.models import Alert
from gateway.samplegen import device_token
from tests import alerts as A
from tests.conftest import Gateway

ROOT = Path(__file__).resolve().parent.parent
PROBLEM = "application/problem+json"
SPEAKER = "ls-652301001001-1"
UNIT = "652301001001"


async def served(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get(OPENAPI_PATH)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


def live_routes(app: web.Application) -> set[tuple[str, str]]:
    """Every method and path the router answers, but HEAD (aiohttp adds one per GET),
    static files and the console's pages (HTML for people under /console/, whose every
    action is an API route of its own, documented here)."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not isinstance(route.resource, web.StaticResource)
        and not route.resource.canonical.startswith("/console")
    }


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield method, path, op


async def test_the_document_lists_exactly_the_live_routes(
    client: TestClient[Any, Any],
) -> None:
    doc = await served(client)
    live = live_routes(client.app)
    documented = documented_routes(doc)
    assert live - documented == set(), "routes the document leaves out"
    assert documented - live == set(), "documented routes the app does not have"
    assert len(live) == 38


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    errors = [str(e) for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


def test_request_bodies_are_the_models_the_handlers_validate_with() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    post = doc["paths"]["/api/v1/alerts"]["post"]["requestBody"]["content"]
    assert post["application/json"]["schema"] == {"$ref": "#/components/schemas/Alert"}
    assert post["application/cap+xml"]["schema"]["type"] == "string"
    assert post["application/xml"]["schema"]["type"] == "string"
    for model in (Alert, RelayAck, Heartbeat):
        assert set(schemas[model.__name__]["properties"]) == set(model.model_fields)
    # The limits of the models come along: a receipt list of at most 100, a volume 0-100.
    assert schemas["Receipts"]["properties"]["receipts"]["maxItems"] == 100
    assert schemas["Heartbeat"]["properties"]["volume"]["anyOf"][0]["maximum"] == 100
    assert schemas["Alert"]["additionalProperties"] is False


def test_every_operation_declares_credentials_and_problem_answers() -> None:
    doc = document()
    schemes = set(doc["components"]["securitySchemes"])
    assert schemes == {"agencyKey", "operatorKey", "deviceToken", "callbackToken", "sessionCookie"}
    for method, path, op in operations(doc):
        for alternative in op["security"]:
            assert set(alternative) <= schemes, (method, path)
        for status, answer in op["responses"].items():
            if status.startswith(("4", "5")) and "content" in answer:
                assert list(answer["content"]) == [PROBLEM], (method, path, status)
        if op["security"]:
            assert "401" in op["responses"], (method, path)


# -- problem codes ----------------------------------------------------------------------


def documented_codes(doc: dict[str, Any]) -> dict[str, set[str]]:
    """Problem code → where the document lists it."""
    found: dict[str, set[str]] = {}

    def collect(where: str, answer: dict[str, Any]) -> None:
        schema = answer.get("content", {}).get(PROBLEM, {}).get("schema")
        if schema is not None:
            for code in schema["allOf"][1]["properties"]["code"]["enum"]:
                found.setdefault(code, set()).add(where)

    for method, path, op in operations(doc):
        for status, answer in op["responses"].items():
            collect(f"{method.upper()} {path} {status}", answer)
    for name, answer in doc["components"]["responses"].items():
        collect(name, answer)
    return found


def _problem_classes() -> dict[str, type[ProblemError]]:
    out: dict[str, type[ProblemError]] = {"ProblemError": ProblemError}
    todo: list[type[ProblemError]] = [ProblemError]
    while todo:
        for sub in todo.pop().__subclasses__():
            out[sub.__name__] = sub
            todo.append(sub)
    return out


def raised_codes() -> dict[str, set[str]]:
    """Problem code → where the gateway's code answers it: the `code=` of every
    ProblemError it constructs, the default code of those constructed without one, the
    `invalid_code=` of JSON bodies, and the middleware's codes for aiohttp's errors."""
    classes = _problem_classes()
    found: dict[str, set[str]] = {c: {"gateway/api/common.py"} for c in _HTTP_CODES.values()}
    for file in sorted((ROOT / "gateway").rglob("*.py")):
        where = str(file.relative_to(ROOT))
        for node in ast.walk(ast.parse(file.read_text(), where)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            words = {k.arg: k.value for k in node.keywords}
            if name in classes or name == "read_json":
                key = "invalid_code" if name == "read_json" else "code"
                value = words.get(key)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.setdefault(value.value, set()).add(f"{where}:{node.lineno}")
                elif value is None and name in classes:
                    code = classes[name].default_code
                    found.setdefault(code, set()).add(f"{where}:{node.lineno}")
    return found


def test_every_documented_problem_code_is_raised_in_the_code_base() -> None:
    documented = documented_codes(document())
    raised = raised_codes()
    assert {c: sorted(w) for c, w in documented.items() if c not in raised} == {}
    assert len(documented) >= 36  # other codes may come; none may go unraised


def test_every_problem_code_the_code_base_raises_is_documented() -> None:
    """A code added anywhere (on any branch) must be listed for the routes that answer it
    in gateway/api/operations.py before it lands."""
    documented = documented_codes(document())
    raised = raised_codes()
    assert {c: sorted(w) for c, w in raised.items() if c not in documented} == {}


# -- ranges ------------------------------------------------------------------------------


def _credentials(op: dict[str, Any], endpoint: str) -> dict[str, str]:
    names = [n for alt in op["security"] for n in alt]
    if "deviceToken" in names:
        return {"Authorization": f"Bearer {device_token(endpoint)}"}
    if names:
        return A.auth(A.OPERATOR)
    return {}


async def test_documented_numeric_ranges_are_the_ones_enforced(gateway: Gateway) -> None:
    """Every numeric query parameter with a documented range is accepted at both ends and
    refused just outside them, with 400 `bad-query` naming it."""
    body = await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.run()  # the loudspeaker's unit has a warning: a long-poll answers at once
    doc = document()
    probed = []
    for method, path, op in operations(doc):
        for param in op.get("parameters", []):
            schema = param["schema"]
            if param["in"] != "query" or "maximum" not in schema:
                continue
            url = path.replace("{id}", SPEAKER if "/endpoints/" in path else body["id"])
            low, high = schema["minimum"], schema["maximum"]
            step = 1 if schema["type"] == "integer" else 0.5
            headers = _credentials(op, SPEAKER)
            for value in (low, high):
                resp = await gateway.client.request(
                    method, url, params={param["name"]: str(value)}, headers=headers
                )
                assert resp.status == 200, (path, param["name"], value, await resp.text())
            for value in (low - step, high + step):
                resp = await gateway.client.request(
                    method, url, params={param["name"]: str(value)}, headers=headers
                )
                problem = await resp.json()
                assert resp.status == 400, (path, param["name"], value, problem)
                assert (problem["code"], problem["parameter"]) == ("bad-query", param["name"])
            probed.append(f"{path}?{param['name']}")
    assert sorted(probed) == [
        "/api/v1/alerts/{id}/coverage?at",
        "/api/v1/alerts/{id}/deliveries?count",
        "/api/v1/alerts/{id}/deliveries?cursor",
        "/api/v1/alerts?limit",
        "/api/v1/endpoints/{id}/messages?wait",
    ]


@pytest.mark.parametrize("path", ["/healthz", OPENAPI_PATH])
async def test_routes_without_credentials_declare_none(path: str) -> None:
    doc = document()
    assert doc["paths"][path]["get"]["security"] == []


# -- answers the fuzzing cannot reach ------------------------------------------------------


def conforms(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """`body` is valid against the schema the document gives for this answer."""
    answer = doc["paths"][path][method]["responses"][str(status)]
    media = next(iter(answer["content"].values()))
    # The document as the root, so that its #/components/... references resolve.
    jsonschema.validate(body, {**doc, **media["schema"]}, cls=jsonschema.Draft202012Validator)


async def test_answers_to_posts_are_as_documented(gateway: Gateway) -> None:
    """Schemathesis cannot make a CAP alert the sample gateway accepts (a known sender,
    hazard and area, a future expiry); these are checked by hand."""
    doc = document()
    alert = A.alert(geocodes=[UNIT])
    for status in (202, 200):
        resp = await gateway.client.post(
            "/api/v1/alerts", data=orjson.dumps(alert), headers=A.json_headers()
        )
        assert resp.status == status
        assert resp.headers["Location"].startswith("/api/v1/alerts/")
        conforms(doc, "/api/v1/alerts", "post", status, await resp.json())
    reused = {**alert, "info": [A.info(geocodes=[UNIT], level="orange")]}
    resp = await gateway.client.post(
        "/api/v1/alerts", data=orjson.dumps(reused), headers=A.json_headers()
    )
    assert resp.status == 409
    conforms(doc, "/api/v1/alerts", "post", 409, await resp.json())
    with pytest.raises(jsonschema.ValidationError):
        conforms(doc, "/api/v1/alerts", "post", 409, {**(await resp.json()), "code": "other"})
    await gateway.run()
    first = await (await gateway.client.get("/api/v1/alerts", headers=A.auth())).json()
    conforms(doc, "/api/v1/alerts", "get", 200, first)
    assert first["alerts"]
