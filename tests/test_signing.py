"""Signed messages to devices: the signature scheme (Ed25519 and SM2/SM3, checked with
OpenSSL as a device maker's C code would), the key ring and its CLI, signatures on
long-polls and event streams, and the reference client refusing forged, replayed and
expired messages and reporting each refusal."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.cli import main as cli_main
from gateway.config import Config
from gateway.endpoints import keyring
from gateway.endpoints.http import poll_scope, stream_scope
from gateway.endpoints.signing import (
    ED25519,
    HEADER,
    SM2,
    Refused,
    Signer,
    Verifier,
    canonical,
    example_vectors,
    new_key,
    parse_line,
)
from gateway.errors import ConfigError
from gateway.keys import HUB, METRICS
from gateway.samplegen import device_token
from gateway.sim.fleet import EndpointClient
from tests import alerts as A
from tests.conftest import ROOT, Gateway, need_program
from tests.test_dispatch import UNIT
from tests.test_endpoints import SPEAKER, device

# SubjectPublicKeyInfo of an SM2 key, up to the point (id-ecPublicKey, curve SM2).
SM2_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def signer(alg: str = ED25519, kid: str = "k1", validity_ms: int = 60_000) -> Signer:
    return Signer(new_key(kid, alg), validity_ms)


@pytest.mark.parametrize("alg", [ED25519, SM2])
def test_a_signed_payload_verifies_and_any_change_is_refused(alg: str) -> None:
    s = signer(alg)
    payload = '{"action":"play","text":"红色预警"}'.encode()
    scope = "unit/652301001001/loudspeaker"
    line = s.sign(payload, scope, "1795496517769-0")
    v = Verifier({"k1": s.key.public()})
    fields = v.verify(line, payload, {scope})
    assert (fields.alg, fields.kid, fields.seq) == (alg, "k1", "1795496517769-0")
    for forged in (payload.replace(b"play", b"stop"), payload + b" ", payload[:-1]):
        with pytest.raises(Refused) as err:
            Verifier({"k1": s.key.public()}).verify(line, forged, {scope})
        assert err.value.reason == "bad-signature"
    # Another field of the line changed: the canonical bytes change, the signature fails.
    tampered = line.replace("seq=1795496517769-0", "seq=1795496517770-0")
    with pytest.raises(Refused, match="bad-signature"):
        Verifier({"k1": s.key.public()}).verify(tampered, payload, {scope})


def test_each_refusal_has_its_reason() -> None:
    s, other = signer(), signer(kid="k2")
    scope = "endpoint/ls-1"
    payload = b'{"cursor":"5-0"}'
    trusted = {"k1": s.key.public()}
    cases = {
        "unsigned": (None, payload, scope),
        "malformed": ("wg1;alg=ed25519;kid=k1", payload, scope),
        "unknown-key": (other.sign(payload, scope, "5-0"), payload, scope),
        "wrong-scope": (s.sign(payload, "endpoint/ls-2", "5-0"), payload, scope),
        "expired": (s.sign(payload, scope, "5-0", exp_ms=1000), payload, scope),
    }
    for reason, (line, body, sc) in cases.items():
        with pytest.raises(Refused) as err:
            Verifier(trusted).verify(line, body, {sc})
        assert err.value.reason == reason, reason
    v = Verifier(trusted)
    v.verify(s.sign(payload, scope, "7-0"), payload, {scope})
    v.verify(s.sign(payload, scope, "7-0"), payload, {scope})  # the same seq again: fine
    with pytest.raises(Refused, match="replayed"):
        v.verify(s.sign(payload, scope, "6-3"), payload, {scope})
    v.verify(s.sign(payload, scope, "10-0"), payload, {scope})  # compared as numbers


@pytest.mark.parametrize("alg", [ED25519, SM2])
def test_openssl_verifies_the_signature_over_the_canonical_bytes(alg: str, tmp_path: Path) -> None:
    """What a device maker does in C: rebuild the canonical bytes from the line and the
    payload, and verify with a standard library (here OpenSSL 3's command line)."""
    openssl = need_program("openssl", "openssl")
    s = signer(alg)
    payload = orjson.dumps({"id": "a1", "seq": "1-0", "action": "play", "text": "暴雨"})
    line = s.sign(payload, "unit/652301001001/display", "1-0")
    fields, signature = parse_line(line)
    (tmp_path / "data").write_bytes(canonical(fields, payload))
    (tmp_path / "sig").write_bytes(signature)
    raw = s.key.public().raw()
    spki = (ED25519_SPKI_PREFIX if alg == ED25519 else SM2_SPKI_PREFIX) + raw
    (tmp_path / "pub.der").write_bytes(spki)
    if alg == ED25519:
        cmd = [openssl, "pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", "pub.der",
               "-rawin", "-in", "data", "-sigfile", "sig"]  # fmt: skip
    else:
        cmd = [openssl, "dgst", "-sm3", "-verify", "pub.der", "-keyform", "DER", "-signature",
               "sig", "-sigopt", "distid:1234567812345678", "data"]  # fmt: skip
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "Verified" in ok.stdout + ok.stderr
    (tmp_path / "data").write_bytes(canonical(fields, payload + b"x"))
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_the_documented_test_vectors_are_what_the_code_makes() -> None:
    doc = (ROOT / "docs" / "endpoint-protocol.md").read_text(encoding="utf-8")
    [vector] = example_vectors()
    for key in ("private_key_seed", "public_key", "payload", "canonical_hex", "line"):
        value = vector[key]
        assert value in doc, f"docs/endpoint-protocol.md lacks the test vector's {key}"
    data = bytes.fromhex(vector["canonical_hex"])
    assert data.startswith(b"warngate-signature-v1\nalg=ed25519\nkid=example-2026\n")
    fields, _ = parse_line(vector["line"])
    assert canonical(fields, vector["payload"].encode()) == data


# -- the key ring and `warngate keys` -------------------------------------------------


def test_keys_generate_list_activate_retire(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("WARNGATE_ENDPOINTS__SIGNING__KEYS_DIR", str(tmp_path / "keys"))
    assert cli_main(["keys", "generate", "--config", str(ROOT / "config")]) == 0
    assert cli_main(["keys", "generate", "--algorithm", "sm2-sm3", "--config", "config"]) == 0
    capsys.readouterr()
    assert cli_main(["keys", "list", "--format", "json", "--config", "config"]) == 0
    first, second = orjson.loads(capsys.readouterr().out)
    assert (first["alg"], first["active"]) == ("ed25519", True)
    assert (second["alg"], second["active"]) == ("sm2-sm3", False)  # standby: the overlap
    for path in (tmp_path / "keys").glob("*.key"):
        assert path.stat().st_mode & 0o777 == 0o600
    ring = keyring.KeyRing.load(tmp_path / "keys", generate_missing=False, alg=ED25519)
    assert ring.active.kid == first["kid"]
    assert set(ring.trusted()) == {first["kid"], second["kid"]}
    assert cli_main(["keys", "retire", first["kid"], "--config", "config"]) == 2
    assert "is active: activate another first" in capsys.readouterr().err
    assert cli_main(["keys", "activate", second["kid"], "--config", "config"]) == 0
    assert cli_main(["keys", "retire", first["kid"], "--config", "config"]) == 0
    ring = keyring.KeyRing.load(tmp_path / "keys", generate_missing=False, alg=ED25519)
    assert ring.active.kid == second["kid"]
    assert ring.active.alg == SM2
    assert set(ring.trusted()) == {second["kid"]}


async def test_a_private_key_open_to_others_fails_the_start_with_its_name(
    config: Config, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    kid = keyring.generate(keys)
    (keys / f"{kid}.key").chmod(0o644)
    settings = config.settings.model_copy(
        update={"endpoints": config.settings.endpoints.model_copy(
            update={"signing": config.settings.endpoints.signing.model_copy(
                update={"keys_dir": keys})})}
    )  # fmt: skip
    app = create_app(Config(settings, config.registry, config.hazards, config.directory,
                            config.policy), background=False)  # fmt: skip
    runner = web.AppRunner(app)
    with pytest.raises(ConfigError) as err:
        await runner.setup()
    await runner.cleanup()
    issue = str(err.value.issues[0])
    assert kid in issue
    assert "chmod 600" in issue


def test_no_key_and_no_generation_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="warngate keys generate"):
        keyring.KeyRing.load(tmp_path / "none", generate_missing=False, alg=ED25519)


# -- signatures on the HTTP transports ---------------------------------------------------


async def test_long_poll_answers_and_stream_events_are_signed(gateway: Gateway) -> None:
    hub = gateway.app[HUB]
    endpoint = gateway.config.directory.endpoints[SPEAKER]
    verifier = Verifier({hub.signer.key.kid: hub.signer.key.public()})
    await gateway.post(A.alert(geocodes=[UNIT]))
    await gateway.plan_all()
    resp = await gateway.client.get(
        f"/api/v1/endpoints/{SPEAKER}/messages", headers=device(SPEAKER)
    )
    raw = await resp.read()
    fields = verifier.verify(resp.headers[HEADER], raw, {poll_scope(endpoint)})
    body = orjson.loads(raw)
    assert fields.seq == body["cursor"]
    assert body["messages"]
    assert fields.exp - fields.iat == gateway.config.settings.endpoints.signing.validity_s * 1000
    async with gateway.client.get(f"/api/v1/endpoints/{SPEAKER}/stream",
                                  headers=device(SPEAKER)) as stream:  # fmt: skip
        text = b""
        while b"\ndata: " not in text or not text.endswith(b"\n\n"):
            text += await asyncio.wait_for(stream.content.readany(), 5)
    event = text.split(b"\n\n")[1]
    signature = re.search(rb"^signature: (.*)$", event, re.M)
    data = re.search(rb"^data: (.*)$", event, re.M)
    assert signature
    assert data
    got = Verifier(verifier.trusted).verify(
        signature[1].decode(), data[1], {stream_scope(endpoint)}
    )
    assert got.seq == orjson.loads(data[1])["seq"]


async def test_a_refusal_reported_in_a_heartbeat_is_counted_once(gateway: Gateway) -> None:
    refused = {"reason": "bad-signature", "transport": "poll", "count": 1, "at": 1}
    beat = {"status": "degraded", "refused": refused}
    for _ in range(2):  # the same refusal repeated by the next heartbeat: counted once
        resp = await gateway.client.post(
            f"/api/v1/endpoints/{SPEAKER}/heartbeat",
            data=orjson.dumps(beat),
            headers=device(SPEAKER),
        )
        assert resp.status == 200
    metric = gateway.app[METRICS].endpoint_refusals.labels("bad-signature", "poll")
    assert metric._value.get() == 1
    health = await gateway.store.endpoint_health(SPEAKER)
    assert health["health"]["refused"] == refused


# -- the reference client refuses -------------------------------------------------------


class Impostor:
    """A server on the device's network path: it answers long-polls with what the test
    gives it, signed as the test says, and records the device's heartbeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[bytes, str | None]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        async def messages(request: web.Request) -> web.Response:
            body, line = self.answers.pop(0)
            return web.Response(body=body, content_type="application/json",
                                headers={HEADER: line} if line else {})  # fmt: skip

        async def heartbeat(request: web.Request) -> web.Response:
            self.heartbeats.append(await request.json())
            return web.json_response({})

        async def receipts(request: web.Request) -> web.Response:
            self.receipts.append(await request.json())
            return web.json_response({"accepted": 1, "changed": 1})

        app = web.Application()
        app.router.add_get("/api/v1/endpoints/{id}/messages", messages)
        app.router.add_post("/api/v1/endpoints/{id}/heartbeat", heartbeat)
        app.router.add_post("/api/v1/endpoints/{id}/receipts", receipts)
        return app


def _answer(endpoint: str, cursor: str, alert: str) -> bytes:
    message = {"id": alert, "seq": cursor, "action": "play", "supersedes": [], "level": "red",
               "content": [{"language": "zh", "text": "撤离！", "seconds": 2.0}]}  # fmt: skip
    return orjson.dumps({"endpoint": endpoint, "unit": UNIT, "cursor": cursor,
                         "messages": [message], "server_time": 0})  # fmt: skip


async def test_the_reference_client_refuses_forged_replayed_and_expired_answers(
    config: Config,
) -> None:
    endpoint = config.directory.endpoints[SPEAKER]
    real, impostor_key = signer(kid="gw"), signer(kid="gw")  # same id, another key
    scope = poll_scope(endpoint)
    fake = Impostor()
    body = _answer(SPEAKER, "9-0", "genuine")
    fake.answers = [
        (body, real.sign(body, scope, "9-0")),  # genuine: played
        (_answer(SPEAKER, "10-0", "forged"), impostor_key.sign(body, scope, "10-0")),
        (b := _answer(SPEAKER, "11-0", "no-sig"), None),
        (b := _answer(SPEAKER, "3-0", "replayed"), real.sign(b, scope, "3-0")),
        (b := _answer(SPEAKER, "12-0", "expired"), real.sign(b, scope, "12-0", exp_ms=5)),
        (b := _answer(SPEAKER, "12-0", "elsewhere"), real.sign(b, "endpoint/other", "12-0")),
    ]
    server = TestServer(fake.app())
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            client = EndpointClient(http, str(server.make_url("")), endpoint,
                                    device_token(SPEAKER),
                                    verifier=Verifier({"gw": real.key.public()}))  # fmt: skip
            await client.poll(0)
            for _ in range(5):
                with pytest.raises(Refused):
                    await client.poll(0)
    finally:
        await server.close()
    assert [m["id"] for m in client.played] == ["genuine"]
    assert client.cursor == "9-0"  # nothing of a refused answer is used
    reasons = ["bad-signature", "unsigned", "replayed", "expired", "wrong-scope"]
    assert [r["reason"] for r in client.refused] == reasons
    assert [h.get("refused", {}).get("reason") for h in fake.heartbeats] == reasons
    assert all(h["status"] == "degraded" for h in fake.heartbeats)
    assert [r["alert"] for r in fake.receipts] == ["genuine"]
