"""Metric overhead benchmark: per-request latency of the same app with and without the request
instrumentation (request id, route-template counter and latency histogram), in the same run.

    .venv/bin/python benchmarks/metrics_overhead.py [--requests 3000] [--rounds 7] [--out FILE]

Both apps are built by ``create_app`` on one temporary workspace; the baseline is the same app
with the ``Instrument`` middleware taken out of its stack (everything else — the auth guard, the
body limit, routing — is identical). Requests are driven straight through ASGI (no sockets, no
HTTP client), so the difference is the middleware itself. Two routes: a trivial JSON route added
for the benchmark (the worst case: nothing else to hide the cost) and ``/health`` (a real route
with one database round trip). Rounds alternate with and without, and the median round is kept.
Then the middleware alone around a bare ASGI app (its absolute cost per request, CPU time).
Also timed: one ``/metrics`` scrape (the exposition, merged with worker files and database gauges).
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vistudio.api.app import create_app
from vistudio.api.instrument import Instrument
from vistudio.config import Settings
from vistudio.studio import Studio, open_studio

PING = "/bench/ping"


def build(studio: Studio, *, instrumented: bool) -> Any:
    app = create_app(studio)

    @app.get(PING)
    async def ping() -> dict[str, bool]:  # async: no thread hand-off to blur the difference
        return {"ok": True}

    if not instrumented:
        # the stack is built on the first request: removing the entry now leaves it out entirely
        app.user_middleware = [m for m in app.user_middleware if m.cls is not Instrument]
    return app


async def call(app: Any, path: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"accept", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def per_request_us(app: Any, path: str, n: int) -> tuple[float, float]:
    """Wall and CPU (this process, all threads) microseconds per request."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        await call(app, path)
    return (time.perf_counter() - t) / n * 1e6, (time.process_time() - c) / n * 1e6


async def run(args: argparse.Namespace, studio: Studio) -> dict[str, Any]:
    apps = {"with": build(studio, instrumented=True), "without": build(studio, instrumented=False)}
    for app in apps.values():  # warm up: the middleware stack, the route table, the DB pool
        for path in (PING, "/health"):
            assert await call(app, path) == 200
            await per_request_us(app, path, 50)
    routes: dict[str, Any] = {}
    for path, n in ((PING, args.requests), ("/health", max(1, args.requests // 3))):
        wall: dict[str, list[float]] = {"with": [], "without": []}
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        for r in range(args.rounds):
            order = ("with", "without") if r % 2 == 0 else ("without", "with")
            for name in order:
                w_us, c_us = await per_request_us(apps[name], path, n)
                wall[name].append(w_us)
                cpu[name].append(c_us)
        w, wo = statistics.median(wall["with"]), statistics.median(wall["without"])
        cw, cwo = statistics.median(cpu["with"]), statistics.median(cpu["without"])
        routes[path] = {
            "requests_per_round": n,
            "with_us": round(w, 1),
            "without_us": round(wo, 1),
            "overhead_us": round(w - wo, 1),
            "ratio": round(w / wo, 3),
            # CPU time is steadier than wall time on a busy machine
            "cpu_with_us": round(cw, 1),
            "cpu_without_us": round(cwo, 1),
            "cpu_overhead_us": round(cw - cwo, 1),
            "cpu_ratio": round(cw / cwo, 3),
        }
        print(f"{path}: {routes[path]}", file=sys.stderr)

    # the middleware alone, around a bare ASGI app that answers at once: its own cost, absolute
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    wrapped = Instrument(bare, metrics=studio.metrics, home=studio.home)
    n = args.requests * 10
    only: dict[str, list[float]] = {"with": [], "without": []}
    for r in range(args.rounds):
        for name, target in (
            (("with", wrapped), ("without", bare)) if r % 2 == 0 else (("without", bare), ("with", wrapped))
        ):
            only[name].append((await per_request_us(target, "/bare", n))[1])
    mw, mwo = statistics.median(only["with"]), statistics.median(only["without"])
    routes["middleware_alone"] = {
        "requests_per_round": n,
        "cpu_with_us": round(mw, 2),
        "cpu_without_us": round(mwo, 2),
        "cpu_overhead_us": round(mw - mwo, 2),
    }
    print(f"middleware alone: {routes['middleware_alone']}", file=sys.stderr)
    scrape = []
    for _ in range(20):
        t = time.perf_counter()
        assert await call(apps["with"], "/metrics") == 200
        scrape.append((time.perf_counter() - t) * 1e3)
    return {"routes": routes, "metrics_scrape_ms": round(statistics.median(scrape), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000, help="requests per round to the trivial route")
    ap.add_argument("--rounds", type=int, default=7, help="rounds per variant (alternating)")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as ws:
        studio = open_studio(Settings(home=Path(ws), offline=True))
        try:
            result = asyncio.run(run(args, studio))
        finally:
            studio.close()
    doc = {
        "benchmark": "metrics_overhead",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "requests": args.requests,
        "rounds": args.rounds,
        **result,
        "ratio": result["routes"][PING]["ratio"],
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
