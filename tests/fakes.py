"""Fake channel providers on loopback ports, told by the tests how to behave.

An SMS gateway and a push service speaking the HTTP APIs of `channels.sms` and
`channels.app`. Each call consumes the next scripted behaviour (default `ok`):

    ok                     every recipient accepted
    500 / 503              HTTP error (retryable)
    429[:seconds]          throttled, with Retry-After when seconds are given
    400                    HTTP 400 (permanent)
    slow:seconds           answer after a delay (longer than the client timeout: timeout);
                           the recipients are taken all the same (a late answer)
    401 / 403              credentials refused
    error200:code[:retry]  HTTP 200 with an error object inside (retryable when `:retry`)
    reject:n               the first n recipients rejected, the rest accepted
    retry:n                the first n recipients to retry, the rest accepted
    garbage                HTTP 200 with a body that is not JSON (the batch is taken)
    soon                   HTTP 200, a "throttled" error whose retry_after is "soon"
    listid                 HTTP 200, results whose ids are lists
    partial:n              HTTP 200, results for all but the first n recipients (which
                           the provider took all the same)

With `dedupe` set, the provider never sends twice a delivery id it took before (an
idempotent provider); `accepted_ids` then lists each taken id once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

TAKES_ALL = ("ok", "garbage", "listid")  # behaviours after which every recipient was taken


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    behaviour: str
    fresh: list[str] = field(default_factory=list)  # ids not taken before (with dedupe)
    answered: bool = False  # the provider has answered (set as the answer leaves)

    @property
    def ids(self) -> list[str]:
        rows = self.body.get("recipients") or self.body.get("tokens") or []
        return [r["id"] for r in rows]

    @property
    def text(self) -> str:
        if "text" in self.body:
            return str(self.body["text"])
        return str(self.body.get("notification", {}).get("body", ""))


@dataclass
class FakeProvider:
    name: str = "fake"
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    calls: list[Call] = field(default_factory=list)
    port: int = 0
    gate: asyncio.Event | None = None  # when set up, calls wait for it before answering
    dedupe: bool = False  # an idempotent provider: a delivery id it took is not sent again
    taken: set[str] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set at every call

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/send", self.handle)
        app.router.add_post("/push", self.handle)
        return app

    @property
    def accepted_ids(self) -> list[str]:
        """Delivery ids this provider accepted, in order (repeats included). A slow
        answer accepts too: the provider sends whether or not the client still waits."""
        out = []
        for call in self.calls:
            out += call.fresh if call.behaviour in TAKES_ALL or call.behaviour.startswith(
                ("slow:", "partial:")) else []  # fmt: skip
            if call.behaviour.startswith(("reject:", "retry:")):
                n = int(call.behaviour.split(":")[1])
                out += [i for i in call.ids[n:] if i in call.fresh]
        return out

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        behaviour = self.script.pop(0) if self.script else self.default
        call = Call(request.path, body, dict(request.headers), behaviour)
        if self.dedupe:
            call.fresh = [i for i in call.ids if i not in self.taken]
            self.taken.update(call.ids)
        else:
            call.fresh = call.ids
        self.calls.append(call)
        try:
            return await self._answer(request, call, behaviour)
        finally:
            call.answered = True

    async def _answer(self, request: web.Request, call: Call, behaviour: str) -> web.Response:
        self.arrived.set()
        if self.gate is not None:
            await self.gate.wait()
        kind, _, arg = behaviour.partition(":")
        ids = call.ids
        push = request.path == "/push"
        if kind == "ok":
            return _results(ids, [], push=push)
        if kind in ("500", "503", "400", "401", "403"):
            return web.Response(status=int(kind), text=f"fake {kind}")
        if kind == "429":
            headers = {"Retry-After": arg} if arg else {}
            return web.Response(status=429, text="slow down", headers=headers)
        if kind == "slow":
            await asyncio.sleep(float(arg))
            return _results(ids, [], push=push)
        if kind == "error200":
            code, _, retry = arg.partition(":")
            err = {"code": code, "message": f"fake {code}", "retryable": retry == "retry"}
            return web.json_response({"error": err})
        if kind == "reject":
            n = int(arg)
            return _results(ids[n:], ids[:n], "rejected", push=push)
        if kind == "retry":
            n = int(arg)
            return _results(ids[n:], ids[:n], "retry", push=push)
        if kind == "garbage":
            return web.Response(text="<html>oops</html>")
        if kind == "soon":
            err = {"code": "throttled", "message": "later", "retry_after": "soon"}
            return web.json_response({"error": err})
        if kind == "listid":
            return web.json_response({"results": [{"id": [i], "status": "accepted"} for i in ids]})
        if kind == "partial":
            return _results(ids[int(arg) :], [], push=push)
        raise AssertionError(f"unknown behaviour {behaviour}")


def _results(
    ok: list[str], other: list[str], other_status: str = "rejected", *, push: bool = False
) -> web.Response:
    if push:  # FCM-like words
        error = "Unavailable" if other_status == "retry" else "NotRegistered"
        rows = [{"id": i, "status": "ok"} for i in ok]
        rows += [{"id": i, "status": "error", "error": error} for i in other]
    else:
        rows = [{"id": i, "status": "accepted", "message_id": f"m-{i}"} for i in ok]
        rows += [{"id": i, "status": other_status, "error": "fake"} for i in other]
    return web.json_response({"results": rows})
