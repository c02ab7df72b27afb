"""CPU per request of each app with no server and no network: the framework's own cost.

Reproduce (public tools only: ``taskset`` from util-linux):

    pip install -e '.[dev]'
    python bench/bench_asgi_cpu.py            # 5 interleaved rounds of 20,000, ~15 minutes
    python bench/bench_asgi_cpu.py --rounds 3 --requests 3000     # ~5 minutes

``wrk`` against a server (``bench_web.py``) measures what clients see, but on a shared
machine its figures swing by a third from run to run, and the server's own work (parsing,
sockets, the event loop: about 45 µs a request here) dilutes the framework's share. This
script calls each ASGI app directly, in a fresh process pinned to one core, the way a
server would: lifespan start-up, then N requests, each a new scope, a ``receive`` that
hands over the body and a ``send`` that keeps the messages; it reports the median µs of
CPU (``time.process_time``) per request over interleaved rounds, per app and endpoint.
Each run is timed in ten batches; the µs of its cheapest batch is reported too (as
``timeit`` advises: on a shared machine the other processes only ever add time).

Endpoints (the routes of ``web_fastapi.py`` and of the FastFlyer project ``web_project``):

* ``health``: GET /health_check/async (the raw app answers any path);
* ``business``: POST /flyer/items with ``{"name":"widget","price":9.5,"tags":["a","b"]}``
  (pydantic request model, ``DataResponse`` envelope);
* ``item``: POST /flyer/items/42?q=hello, the same body: path + query + body; sent with
  ``Authorization`` (Basic), ``Origin`` and ``Accept-Encoding: gzip`` headers to every app,
  so the auth and CORS apps below get the request they are measured with;
* ``params``: GET /flyer/things/7?q=widget&limit=5 with an ``X-Token`` header parameter;
* ``deps``: GET /flyer/deps, an async dependency with a sync sub-dependency (run in the
  thread pool), both used by the endpoint (the second use is cached);
* ``yield``: GET /flyer/yield, a dependency with ``yield``;
* ``ctx``: GET /flyer/ctx, ``Request`` and ``BackgroundTasks`` parameters (one no-op task);
* ``exclude``: GET /flyer/profile, ``response_model`` with ``response_model_exclude_none``.

Apps: ``raw`` (``raw_asgi.py``), ``starlette`` (health and business only), ``fastapi``
(bare FastAPI, its defaults), ``fastapi_notel`` (the same with
``FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})``,
``web_fastapi_notelemetry.py``), and FastFlyer (``web_flyer.py``): ``flyer`` (access log
off), ``flyer_slow`` (access log off, ``flyer_fast_path=0``: FastAPI's handler on every
route, so ``flyer_slow`` / ``flyer`` is the route class's own effect), ``flyer_log``
(access log on, to a temp file), ``flyer_auth`` (access log on, ``flyer_auth_enable=1``)
and ``flyer_cors`` (access log on, ``flyer_cors_origins=https://a.example``,
``flyer_gzip_min_size=500``; the answers are smaller, so GZip passes them through).
Before timing, every one of 500 warm-up answers is checked (status 200, and the CORS
header from ``flyer_cors``; ``flyer_auth`` must also answer 401 without credentials),
and the last timed answer too. Results: stdout and ``bench/results/asgi_cpu.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BODY = '{"name":"widget","price":9.5,"tags":["a","b"]}'
AUTH_USER, AUTH_PASS = "bench", "bench-pass"
ORIGIN = "https://a.example"
ITEM_HEADERS = [
    ("authorization", "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASS}".encode()).decode()),
    ("origin", ORIGIN),
    ("accept-encoding", "gzip"),
]
APPS = {"raw": "raw_asgi", "starlette": "web_starlette", "fastapi": "web_fastapi",
        "fastapi_notel": "web_fastapi_notelemetry", "flyer": "web_flyer",
        "flyer_slow": "web_flyer", "flyer_log": "web_flyer", "flyer_auth": "web_flyer",
        "flyer_cors": "web_flyer"}
# name -> (method, path, query string, extra headers, body)
ENDPOINTS: dict[str, tuple[str, str, str, list[tuple[str, str]], str]] = {
    "health": ("GET", "/health_check/async", "", [], ""),
    "business": ("POST", "/flyer/items", "", [], BODY),
    "item": ("POST", "/flyer/items/42", "q=hello", ITEM_HEADERS, BODY),
    "params": ("GET", "/flyer/things/7", "q=widget&limit=5", [("x-token", "secret")], ""),
    "deps": ("GET", "/flyer/deps", "", [], ""),
    "yield": ("GET", "/flyer/yield", "", [], ""),
    "ctx": ("GET", "/flyer/ctx", "", [], ""),
    "exclude": ("GET", "/flyer/profile", "", [], ""),
}
SHAPES = ["health", "business", "item", "params", "deps", "yield", "ctx", "exclude"]
APP_ENDPOINTS = {
    "raw": ["health"], "starlette": ["health", "business"],
    "fastapi": SHAPES, "fastapi_notel": SHAPES, "flyer": SHAPES, "flyer_slow": SHAPES,
    "flyer_log": ["health", "business", "item"], "flyer_auth": ["item"], "flyer_cors": ["item"],
}
# (label, slower app, faster app): value = slower / faster, for every endpoint both run.
SPEEDUPS = [("fastapi / flyer", "fastapi", "flyer"),
            ("fastapi_notel / flyer", "fastapi_notel", "flyer"),
            ("flyer_slow / flyer", "flyer_slow", "flyer"),
            ("fastapi_notel / flyer_slow", "fastapi_notel", "flyer_slow"),
            ("fastapi / fastapi_notel", "fastapi", "fastapi_notel"),
            ("fastapi / flyer_log", "fastapi", "flyer_log"),
            ("fastapi_notel / flyer_log", "fastapi_notel", "flyer_log"),
            ("fastapi / flyer_auth", "fastapi", "flyer_auth"),
            ("fastapi_notel / flyer_auth", "fastapi_notel", "flyer_auth"),
            ("fastapi / flyer_cors", "fastapi", "flyer_cors"),
            ("fastapi_notel / flyer_cors", "fastapi_notel", "flyer_cors")]

CHILD = r'''
import asyncio, json, os, sys, time
BATCHES = 10
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["dir"])
app = __import__(spec["module"]).app
method, path, n = spec["method"], spec["path"], spec["requests"]
body = spec["body"].encode()
headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
if body:
    headers += [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]
headers += [(k.encode(), v.encode()) for k, v in spec["headers"]]
expect_header = spec["expect_header"].encode() if spec["expect_header"] else None

def scope(with_headers=headers):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": spec["query"].encode(), "root_path": "",
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
            "headers": list(with_headers)}

def check(out, status):
    assert out and out[0]["type"] == "http.response.start", out
    assert out[0]["status"] == status, out
    if status == 200 and expect_header is not None:
        assert any(k == expect_header for k, _ in out[0]["headers"]), out[0]

async def main():
    queue = asyncio.Queue()
    started = asyncio.Event()
    async def lreceive():
        return await queue.get()
    async def lsend(message):
        if message["type"].startswith("lifespan.startup"):
            started.set()
    await queue.put({"type": "lifespan.startup"})
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                    "state": {}}, lreceive, lsend))
    await asyncio.wait_for(started.wait(), 30)
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    out = []
    async def send(message):
        out.append(message)
    if spec["unauth_status"]:
        await app(scope([h for h in headers if h[0] != b"authorization"]), receive, send)
        check(out, spec["unauth_status"])
    for _ in range(500):
        out.clear()
        await app(scope(), receive, send)
        check(out, 200)
    batch = max(1, n // BATCHES)
    spent, best, done = 0.0, float("inf"), 0
    while done < n:
        size = min(batch, n - done)
        begin = time.process_time()
        for _ in range(size):
            out.clear()
            await app(scope(), receive, send)
        took = time.process_time() - begin
        spent += took
        done += size
        if size == batch:
            best = min(best, took / size)
    check(out, 200)
    await queue.put({"type": "lifespan.shutdown"})
    await life
    print(json.dumps({"us": spent / n * 1e6, "best_us": best * 1e6}))

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
'''


def app_env(app: str, log_dir: str) -> dict[str, str]:
    """The environment of ``app``'s child: no inherited ``flyer_*``, then the app's own."""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    env.update(flyer_console_log_level="error", flyer_log_path=log_dir,
               flyer_access_log="1" if app in ("flyer_log", "flyer_auth", "flyer_cors") else "0",
               flyer_access_logfile=os.path.join(log_dir, "access.log"))
    if app == "flyer_slow":
        env["flyer_fast_path"] = "0"
    if app == "flyer_auth":
        env.update(flyer_auth_enable="1", flyer_auth_user=AUTH_USER, flyer_auth_pass=AUTH_PASS)
    if app == "flyer_cors":
        env.update(flyer_cors_origins=ORIGIN, flyer_gzip_min_size="500")
    return env


def measure(app: str, endpoint: str, requests: int, log_dir: str) -> tuple[float, float]:
    """(µs per request over all ``requests``, µs per request of the cheapest tenth)."""
    method, path, query, headers, body = ENDPOINTS[endpoint]
    spec: dict[str, Any] = {
        "dir": str(HERE), "module": APPS[app], "method": method, "path": path,
        "query": query, "headers": headers, "body": body, "requests": requests,
        "expect_header": "access-control-allow-origin" if app == "flyer_cors" else "",
        "unauth_status": 401 if app == "flyer_auth" else 0,
    }
    result = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", CHILD, json.dumps(spec)],
        env=app_env(app, log_dir), capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{app} {endpoint} failed:\n{result.stderr[-2000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return float(answer["us"]), float(answer["best_us"])


def speedups(medians: dict[str, float], title: str) -> dict[str, float]:
    """``SPEEDUPS`` of ``medians`` per endpoint (printed), and flyer's health overhead."""
    ratios: dict[str, float] = {}
    for label, slow, fast in SPEEDUPS:
        for ep in SHAPES:
            a, b = medians.get(f"{slow} {ep}"), medians.get(f"{fast} {ep}")
            if a is not None and b is not None:
                ratios[f"{label} {ep}"] = round(a / b, 3)
    if "flyer health" in medians and "raw health" in medians:
        ratios["flyer health overhead over raw (µs)"] = round(
            medians["flyer health"] - medians["raw health"], 2)
    print(f"{title}, slower / faster µs (higher is faster for the second):")
    print(f"  {'':<27}" + "".join(f"{ep:>9}" for ep in SHAPES))
    for label, _, _ in SPEEDUPS:
        cells = [f"{ratios[f'{label} {ep}']:9.2f}" if f"{label} {ep}" in ratios
                 else f"{'-':>9}" for ep in SHAPES]
        if any(c.strip() != "-" for c in cells):
            print(f"  {label:<27}" + "".join(cells))
    for key, value in ratios.items():
        if key.endswith("(µs)"):
            print(f"  {key:<40}{value:8.2f}")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--apps", default=",".join(APPS),
                        help="comma-separated subset of: " + ", ".join(APPS))
    parser.add_argument("--output", default=str(HERE / "results" / "asgi_cpu.json"))
    args = parser.parse_args()
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    unknown = set(apps) - set(APPS)
    if unknown:
        parser.error(f"unknown apps: {', '.join(sorted(unknown))}")
    runs = [(app, ep) for app in apps for ep in APP_ENDPOINTS[app]]
    samples: dict[str, list[float]] = {f"{a} {e}": [] for a, e in runs}
    best: dict[str, list[float]] = {f"{a} {e}": [] for a, e in runs}
    with tempfile.TemporaryDirectory(prefix="asgi-cpu-") as log_dir:
        for round_no in range(args.rounds):
            order = runs if round_no % 2 == 0 else list(reversed(runs))
            for app, endpoint in order:
                us, best_us = measure(app, endpoint, args.requests, log_dir)
                samples[f"{app} {endpoint}"].append(us)
                best[f"{app} {endpoint}"].append(best_us)
                print(f"  round {round_no + 1}/{args.rounds} {app:<14}{endpoint:<9} {us:8.1f} µs"
                      f"  (cheapest tenth {best_us:6.1f})", flush=True)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    medians_best = {key: statistics.median(values) for key, values in best.items()}
    for title, table in (("", medians), (", cheapest tenth of each run", medians_best)):
        print(f"\nCPU µs per request{title}, median of {args.rounds} rounds "
              f"({args.requests} requests each)")
        print(f"  {'app':<14}" + "".join(f"{ep:>9}" for ep in SHAPES))
        for app in apps:
            cells = [f"{table[f'{app} {ep}']:9.1f}" if f"{app} {ep}" in table
                     else f"{'-':>9}" for ep in SHAPES]
            print(f"  {app:<14}" + "".join(cells))
    ratios = speedups(medians, "speed-ups of the medians")
    ratios_best = speedups(medians_best, "speed-ups of the cheapest tenths")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({
        "command": " ".join([sys.executable, *sys.argv]), "rounds": args.rounds,
        "requests": args.requests, "endpoints": {k: list(v[:3]) for k, v in ENDPOINTS.items()},
        "samples": samples, "medians": medians, "ratios": ratios,
        "samples_cheapest_tenth": best, "medians_cheapest_tenth": medians_best,
        "ratios_cheapest_tenth": ratios_best}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
