"""Schemathesis against the served OpenAPI document: no input answers 5xx, and every
answer is one the document declares (status, media type, headers, body schema — the
problem `code`s each operation lists included).

The gateway runs on a free loopback port in a thread with its own event loop (the
Schemathesis calls are synchronous), against the suite's real Redis and fake providers,
and holds a small world: two alerts sent (one fetched, played and partly confirmed by
DLR, one dead-lettered), one in another district, heartbeats, a relay task. Path
parameters are the world's (an alert, a loudspeaker, the provider of the route, the
relay code) and some query parameters are mostly drawn from it, so that the fuzzing
gets past "not found" and "wrong token" to the parameters and bodies (made-up ids are
the hostile corpus' part, tests/test_hostile_devices.py); generated alerts are also
grafted onto one the sample accepts, to reach the gateway's rules and the store.
Credentials are the sample's demo keys, device tokens and callback tokens, chosen per
operation by the security it declares; Schemathesis also sends cases without them.

The schema is loaded at import, from `document()`, so that each operation is a test of
its own (Schemathesis' lazy `from_fixture` loader does not run under pytest 9.2); the
first test checks that it is exactly the document the gateway serves. The world's ids
are fixed (an alert id is a hash of sender and identifier), so the run is configured
before anything is served.

Bounded and reproducible: a fixed seed, derandomized generation, no example database,
a fixed number of fuzzed examples per operation, a request timeout, one event read from
the event stream and the long-poll's wait capped at a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import strategies as st

from gateway.api.openapi import OPENAPI_PATH, document
from gateway.app import build_workers, create_app
from gateway.callbacks import relay_code
from gateway.config import Config
from gateway.keys import DESK, HUB, REDIS, STORE
from gateway.models import Channel
from gateway.plan import PUSH_CHANNELS
from gateway.samplegen import device_token
from gateway.settings import Settings
from gateway.store import alert_id, now_ms
from gateway.store.deliveries import PLAN_GROUP, SEND_GROUP
from tests import alerts as A
from tests.conftest import Gateway, with_providers
from tests.fakes import FakeProvider

T = TypeVar("T")

# A longer hunt, by hand: WARNGATE_SCHEMATHESIS_EXAMPLES=500 WARNGATE_SCHEMATHESIS_SEED=7
SEED = int(os.environ.get("WARNGATE_SCHEMATHESIS_SEED", "20260715"))
# Fuzzed cases per operation (the examples and coverage phases add theirs).
MAX_EXAMPLES = int(os.environ.get("WARNGATE_SCHEMATHESIS_EXAMPLES", "30"))
REQUEST_TIMEOUT_S = 5.0

UNIT = "652301001001"  # 27 SMS, 4 app, 2 messengers, 2 loudspeakers
OTHER_UNIT = "652301001002"
KANGBASHI_UNIT = "150603001001"
KANGBASHI_SENDER = "met.kangbashi@warngate.example"
SPEAKER, DEVICE = "ls-652301001001-1", "ls-652301001001-2"
ALERTS = {  # identifier → (sender, key, unit)
    "SCHEMATHESIS-1": (A.MET_SENDER, A.MET, UNIT),
    "SCHEMATHESIS-2": (A.MET_SENDER, A.MET, OTHER_UNIT),
    "SCHEMATHESIS-KB": (KANGBASHI_SENDER, "wgdemo-kangbashi-met", KANGBASHI_UNIT),
}
ALERT_IDS = [alert_id(sender, ident) for ident, (sender, _, _) in ALERTS.items()]
RELAY_CODE = relay_code(Settings().secret.get_secret_value(), ALERT_IDS[0], UNIT)
KEYS = {"agencyKey": A.MET, "operatorKey": A.OPERATOR}
PROVIDERS = ["sms-main", "push"]
# Sessions of sample accounts (config/accounts.yaml), made when the gateway is served:
# "main" for the person routes, "logout" for the one that ends its own session.
SESSIONS: dict[str, tuple[str, str]] = {}  # name → (cookie token, CSRF token)
PERSONS = {"main": "changji-chief", "logout": "changji-viewer"}


@dataclass
class Served:
    base_url: str
    tokens: dict[str, str]  # provider → callback token


class _Loop:
    """An event loop in a thread of its own, to run the gateway beside synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _start(config: Config) -> tuple[Gateway, list[TestServer]]:
    """The gateway of the `gateway` fixture (tests/conftest.py), on this loop."""
    fakes = {n: FakeProvider(n) for n in config.settings.providers}
    servers = []
    for fake in fakes.values():
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        fake.port = server.port
        servers.append(server)
    cfg = with_providers(config, {n: f.url for n, f in fakes.items()})
    endpoints = cfg.settings.endpoints.model_copy(update={"max_wait_s": 1.0})
    settings = cfg.settings.model_copy(update={"endpoints": endpoints})
    cfg = Config(settings, cfg.registry, cfg.hazards, cfg.directory, cfg.policy)
    app = create_app(cfg, background=False)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    workers = build_workers(app, "test")  # the consumer name Gateway.send_all reads as

    async def no_sleep(seconds: float) -> None:
        await asyncio.sleep(0)

    workers.sender.sleep = no_sleep
    for stream in workers.plan_streams():
        await app[STORE].ensure_group(stream, PLAN_GROUP)
    for channel in PUSH_CHANNELS:
        for stream in workers.send_streams(channel):
            await app[STORE].ensure_group(stream, SEND_GROUP)
    gw = Gateway(
        client, app, cfg, app[STORE], workers, fakes["sms-main"], fakes["sms-backup"],
        fakes["push"], [], [now_ms()], fakes,
    )  # fmt: skip
    return gw, servers


async def _world(gw: Gateway) -> None:
    """Alerts sent and dead-lettered, devices that fetched and reported, a DLR, a relay
    acknowledgement: every read route has something to show."""
    gw.app[DESK].verify_wait_s = 0.05
    first, *others = ALERTS.items()

    async def post(identifier: str, sender: str, key: str, unit: str) -> None:
        await gw.post(A.alert(identifier=identifier, sender=sender, geocodes=[unit]), key=key)

    await post(first[0], *first[1])
    await gw.run()
    gw.sms.default = gw.backup.default = "400"  # permanent: straight to dead letters
    for identifier, (sender, key, unit) in others:
        await post(identifier, sender, key, unit)
    await gw.run()
    gw.sms.default = gw.backup.default = "ok"
    for endpoint in (SPEAKER, DEVICE):
        headers = {"Authorization": f"Bearer {device_token(endpoint)}"}
        assert (await gw.client.get(f"/api/v1/endpoints/{endpoint}/messages", headers=headers)).ok
        beat = await gw.client.post(
            f"/api/v1/endpoints/{endpoint}/heartbeat", data=b'{"volume": 70}', headers=headers
        )
        assert beat.ok
    played = await gw.client.post(
        f"/api/v1/endpoints/{SPEAKER}/receipts",
        data=orjson.dumps({"alert": ALERT_IDS[0], "status": "played"}),
        headers={"Authorization": f"Bearer {device_token(SPEAKER)}"},
    )
    assert played.ok, await played.text()
    sms_ids = [i for i in gw.sms.accepted_ids if ":sms:" in i]
    dlr = await gw.client.post(
        "/api/v1/callbacks/sms/sms-main",
        data=orjson.dumps([{"id": i, "status": "DELIVRD"} for i in sms_ids[:3]]),
        headers={"X-Callback-Token": "demo-callback-sms-main"},
    )
    assert (await dlr.json())["changed"] == 3
    cols = gw.config.directory.recipients_of(UNIT, Channel.MESSENGER)
    assert cols is not None
    ack = await gw.client.post(
        f"/api/v1/relay/{RELAY_CODE}",
        data=orjson.dumps({"phone": cols.addresses[0], "status": "received"}),
    )
    assert ack.ok, await ack.text()
    await gw.app[HUB].flush()


async def _stop(gw: Gateway, servers: list[TestServer], prefix: str) -> None:
    redis = gw.app[REDIS]
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])
    await gw.client.close()
    for server in servers:
        await server.close()


@pytest.fixture(scope="module")
def served(sample_config_cached: Config) -> Iterator[Served]:
    """One gateway and world for every operation of the run, under a key prefix of its
    own (removed after)."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    base = sample_config_cached
    redis_settings = base.settings.redis.model_copy(update={"prefix": prefix})
    settings = base.settings.model_copy(update={"redis": redis_settings})
    config = Config(settings, base.registry, base.hazards, base.directory, base.policy)
    assert settings.secret.get_secret_value() == Settings().secret.get_secret_value()
    loop = _Loop()
    try:
        gw, servers = loop.run(_start(config))
        try:
            loop.run(_world(gw))
            tokens = {
                name: p.callback_token.get_secret_value()
                for name, p in gw.config.settings.providers.items()
                if p.callback_token is not None
            }
            base_url = f"http://127.0.0.1:{gw.client.port}"
            for name, account in PERSONS.items():
                login = requests.post(
                    base_url + "/api/v1/session",
                    json={"account": account, "password": f"wgdemo-{account}"},
                    timeout=10,
                )
                assert login.status_code == 200, login.text
                SESSIONS[name] = (login.cookies["wgsession"], login.json()["csrf_token"])
            yield Served(base_url, tokens)
        finally:
            for label, seen in sorted(SEEN.items()):
                print(f"{label}: {sum(seen.values())} calls: {dict(sorted(seen.items()))}")
            loop.run(_stop(gw, servers, prefix))
    finally:
        loop.close()


def _drawn(dictionary: str, probability: float = 0.7) -> dict[str, Any]:
    """A parameter drawn from a dictionary this often, else generated."""
    return {"dictionary": dictionary, "probability": probability}


def _only(path_regex: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters of the operations whose path matches."""
    return {"include-path-regex": path_regex, "parameters": parameters}


CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "suppress-health-check": ["all"],
        "request-timeout": REQUEST_TIMEOUT_S,
        "max-stream-events": 1,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
        },
        "dictionaries": {
            "alerts": {"values": ALERT_IDS},
            "units": {"values": [UNIT, "652301", "652300", "150603"]},
        },
        # Path parameters are the world's: a made-up id only ever meets "not found" or
        # "wrong token" (the hostile corpus of tests/test_hostile_devices.py sends those).
        "operations": [
            _only(r"^/api/v1/alerts/\{id\}", {"path.id": ALERT_IDS[0]}),
            _only(r"^/api/v1/endpoints/\{id\}", {"path.id": SPEAKER}),
            _only(r"^/api/v1/callbacks/sms/", {"path.provider": "sms-main"}),
            _only(r"^/api/v1/callbacks/app/", {"path.provider": "push"}),
            _only(r"^/api/v1/relay/", {"path.code": RELAY_CODE}),
            _only(r"^/api/v1/dead-letters$", {"query.alert": _drawn("alerts")}),
            _only(
                r"^/api/v1/(coverage/broadcast|alerts/\{id\}/messages)$",
                {"query.unit": _drawn("units")},
            ),
        ],
    }
)
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)

# operation → answers seen, by status and problem code (printed with -s at the end).
SEEN: dict[str, Counter[str]] = {}


# What a generated alert keeps when it is grafted onto one the sample gateway accepts:
# its texts, or its texts, times and resources as well.
_ALERT_TEXTS = ("source", "note", "incidents", "code")
_INFO_TEXTS = ("audience", "senderName", "headline", "description", "instruction", "web")
_INFO_MORE = ("effective", "onset", "expires", "resource", "responseType", "contact")


def _graft(body: dict[str, Any], info_fields: tuple[str, ...]) -> dict[str, Any]:
    # json, not orjson: a generated body may hold integers beyond 64 bits
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).hexdigest()
    valid = A.alert(identifier=f"FUZZ-{digest[:16]}", geocodes=[UNIT])
    grafted = {**valid, **{k: body[k] for k in _ALERT_TEXTS if k in body}}
    infos = body.get("info")
    first = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else {}
    grafted["info"] = [{**valid["info"][0], **{k: first[k] for k in info_fields if k in first}}]
    return grafted


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
    """A generated CAP alert, or (two times in three) parts of it grafted onto an alert
    the sample accepts otherwise (known sender, hazard and area, sent now), so that the
    fuzzing also reaches the gateway's own rules, the store and the 202 and 200."""
    assert context.operation is not None
    if context.operation.label != "POST /api/v1/alerts" or not isinstance(body, dict):
        return st.just(body)
    texts = _graft(body, _INFO_TEXTS)
    return st.sampled_from([body, texts, _graft(body, _INFO_TEXTS + _INFO_MORE)])


@schema.hook
def after_call(context: schemathesis.HookContext, case: schemathesis.Case, response: Any) -> None:
    code = ""
    if response.headers.get("content-type", [""])[0].startswith("application/problem+json"):
        code = " " + str(response.json().get("code"))
    SEEN.setdefault(case.operation.label, Counter())[f"{response.status_code}{code}"] += 1


@schema.auth()
class Credentials:
    """The sample's credentials, by the security each operation declares."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> dict[str, str]:
        return {"push": "demo-callback-push", "sms-main": "demo-callback-sms-main"}

    def set(
        self, case: schemathesis.Case, data: dict[str, str], ctx: schemathesis.AuthContext
    ) -> None:
        security = case.operation.definition.raw.get("security") or []
        names = [name for alt in security for name in alt]
        params = case.path_parameters or {}
        headers = case.headers if case.headers is not None else {}
        if "sessionCookie" in names:
            which = "logout" if case.operation.label == "DELETE /api/v1/session" else "main"
            token, csrf = SESSIONS.get(which, ("", ""))  # none yet at collection
            headers["Cookie"] = f"wgsession={token}"
            headers["X-CSRF-Token"] = csrf
        elif "deviceToken" in names:
            headers["Authorization"] = f"Bearer {device_token(str(params.get('id', '')))}"
        elif "callbackToken" in names:
            headers["X-Callback-Token"] = data.get(str(params.get("provider")), "not-a-token")
        elif names:
            headers["Authorization"] = f"Bearer {KEYS[names[-1]]}"
        case.headers = headers


def test_the_run_uses_the_served_document(served: Served) -> None:
    """Schemathesis reads the document at import time, before anything is served: it is
    the one the gateway serves, and the credentials are the sample's."""
    served_doc = requests.get(served.base_url + OPENAPI_PATH, timeout=10).json()
    assert served_doc == schema.raw_schema
    assert {p: served.tokens[p] for p in PROVIDERS} == Credentials().get(None, None)  # type: ignore[arg-type]


@schema.parametrize()
def test_no_server_error_and_every_answer_as_documented(
    case: schemathesis.Case, served: Served
) -> None:
    case.call_and_validate(base_url=served.base_url)
