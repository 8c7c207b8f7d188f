"""The request body limit stops reading a streamed body as soon as it passes the limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.exceptions import HTTPException

from vistudio.api.body_limit import SLACK, BodyLimit

CHUNK = 65_536


def run(limit: int, chunks: int, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """Send ``chunks`` body messages through the middleware to an app that reads them all."""
    pulled = 0
    sent: list[dict[str, Any]] = []
    seen_by_app = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, rcv: Any, snd: Any) -> None:
        nonlocal seen_by_app
        while True:
            msg = await rcv()
            seen_by_app += len(msg.get("body", b""))
            if not msg.get("more_body"):
                break

    scope = {"type": "http", "method": "POST", "path": "/api/v1/search/image", "headers": headers or []}
    middleware = BodyLimit(app, lambda path: (limit, "SETTING"))
    error = None
    try:
        asyncio.run(middleware(scope, receive, send))
    except HTTPException as exc:
        error = exc
    return {"pulled": pulled, "sent": sent, "error": error, "seen": seen_by_app}


def test_a_body_within_the_limit_passes_whole() -> None:
    out = run(limit=10 * CHUNK, chunks=5)
    assert out["error"] is None and out["seen"] == 5 * CHUNK


def test_a_streamed_body_is_cut_off_once_past_the_limit() -> None:
    out = run(limit=2 * CHUNK, chunks=10_000)
    assert out["error"] is not None and out["error"].status_code == 413 and "SETTING" in out["error"].detail
    assert out["pulled"] == (2 * CHUNK + SLACK) // CHUNK + 1  # not one chunk more than needed


@pytest.mark.parametrize("declared", [b"99999999999", str(3 * CHUNK + SLACK + 1).encode()])
def test_a_declared_length_over_the_limit_is_refused_before_reading(declared: bytes) -> None:
    out = run(limit=3 * CHUNK, chunks=10, headers=[(b"content-length", declared)])
    assert out["pulled"] == 0 and out["sent"][0]["status"] == 413
