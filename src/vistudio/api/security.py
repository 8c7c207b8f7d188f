"""Request checks for a server on a user's machine: API token, cross-site requests, Host header."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_cross_site(request: Request) -> bool:
    """A state-changing request that a browser sent on behalf of another site (CSRF).

    Without an API token (the default on 127.0.0.1) nothing else stops a page on any web site
    from submitting a form, or a multipart upload, to this server. Browsers send ``Origin`` (and
    ``Sec-Fetch-Site``) with such requests; clients that send neither (curl, scripts) pass.
    """
    if request.method in SAFE_METHODS:
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def host_allowed(request: Request, allowed: list[str]) -> bool:
    """Without a token the server only answers to its loopback names, so that a site whose DNS
    name is rebound to 127.0.0.1 cannot read from it."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return name.lower() in allowed


def token_matches(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    given = given or request.cookies.get("vistudio_token", "")
    return hmac.compare_digest(given.encode(), token.encode())
