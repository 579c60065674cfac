"""Helpers for the console's tests: people logged in, their headers, the approval API."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]

DRAFTER = "changji-drafter"
APPROVER = "changji-approver"
CHIEF = "changji-chief"  # drafter and approver
VIEWER = "changji-viewer"
MORI_APPROVER = "mori-approver"


def password(account: str) -> str:
    return f"wgdemo-{account}"  # the sample's demo passwords (config/accounts.yaml)


async def login(client: Client, account: str) -> dict[str, str]:
    """Headers of a logged-in person: the session cookie and the CSRF token, sent
    explicitly (the test client's cookie jar is emptied: each test person has their own
    session, and one client serves them all)."""
    resp = await client.post(
        "/api/v1/session", json={"account": account, "password": password(account)}
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    client.session.cookie_jar.clear()
    return {
        "Cookie": f"wgsession={resp.cookies['wgsession'].value}",
        "X-CSRF-Token": body["csrf_token"],
    }


async def move(
    client: Client, alert: str, verb: str, person: dict[str, str], status: int = 200, **body: Any
) -> dict[str, Any]:
    resp = await client.post(f"/api/v1/alerts/{alert}/{verb}", json=body, headers=person)
    answer: dict[str, Any] = await resp.json()
    assert resp.status == status, answer
    return answer
