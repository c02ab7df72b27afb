"""CPU per request of each app with no server and no network: the framework's own cost.

Reproduce (public tools only: ``taskset`` from util-linux):

    pip install -e '.[dev]'
    python bench/bench_asgi_cpu.py            # 5 interleaved rounds, ~1 minute
    python bench/bench_asgi_cpu.py --rounds 3 --requests 5000

``wrk`` against a server (``bench_web.py``) measures what clients see, but on a shared
machine its figures swing by a third from run to run, and the server's own work (parsing,
sockets, the event loop: about 45 µs a request here) dilutes the framework's share. This
script calls each ASGI app directly, in a fresh process pinned to one core, the way a
server would: lifespan start-up, then N requests, each a new scope, a ``receive`` that
hands over the body and a ``send`` that keeps the messages; it reports the median µs per
request over interleaved rounds, per app and endpoint:

* ``health``: GET /health_check/async (the raw app answers any path);
* ``business``: POST /flyer/items with ``{"name":"widget","price":9.5,"tags":["a","b"]}``
  (pydantic request model, ``DataResponse`` envelope).

Apps: ``raw`` (``raw_asgi.py``), ``starlette``, ``fastapi`` (bare, the same business route),
``flyer`` (FastFlyer, access log off) and ``flyer_log`` (access log on, to a temp file).
Every answer is checked (status 200) before timing. Results: stdout and
``bench/results/asgi_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BODY = b'{"name":"widget","price":9.5,"tags":["a","b"]}'
APPS = {"raw": "raw_asgi", "starlette": "web_starlette", "fastapi": "web_fastapi",
        "flyer": "web_flyer", "flyer_log": "web_flyer"}
ENDPOINTS = {"health": ("GET", "/health_check/async"), "business": ("POST", "/flyer/items")}

CHILD = r'''
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[1])
module, method, path, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
body = sys.argv[6].encode()
app = __import__(module).app

def scope():
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000), "state": {},
            "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}

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
    for _ in range(500):
        out.clear()
        await app(scope(), receive, send)
        assert out[0]["status"] == 200, out
    begin = time.process_time()
    for _ in range(n):
        out.clear()
        await app(scope(), receive, send)
    spent = time.process_time() - begin
    assert out[0]["status"] == 200, out
    await queue.put({"type": "lifespan.shutdown"})
    await life
    print(json.dumps({"us": spent / n * 1e6}))

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
'''


def measure(app: str, endpoint: str, requests: int, log_dir: str) -> float:
    method, path = ENDPOINTS[endpoint]
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    env.update(flyer_console_log_level="error", flyer_log_path=log_dir,
               flyer_access_log="1" if app == "flyer_log" else "0",
               flyer_access_logfile=os.path.join(log_dir, "access.log"))
    result = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", CHILD, str(HERE), APPS[app], method, path,
         str(requests), BODY.decode()],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{app} {endpoint} failed:\n{result.stderr[-2000:]}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["us"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--output", default=str(HERE / "results" / "asgi_cpu.json"))
    args = parser.parse_args()
    runs = [(app, ep) for app in APPS for ep in ENDPOINTS
            if not (app == "raw" and ep == "business")]
    samples: dict[str, list[float]] = {f"{a} {e}": [] for a, e in runs}
    with tempfile.TemporaryDirectory(prefix="asgi-cpu-") as log_dir:
        for round_no in range(args.rounds):
            order = runs if round_no % 2 == 0 else list(reversed(runs))
            for app, endpoint in order:
                us = measure(app, endpoint, args.requests, log_dir)
                samples[f"{app} {endpoint}"].append(us)
                print(f"  round {round_no + 1}/{args.rounds} {app:<10}{endpoint:<9} {us:8.1f} µs")
    medians = {key: statistics.median(values) for key, values in samples.items()}
    print(f"\nCPU µs per request, median of {args.rounds} rounds ({args.requests} requests each)")
    for key, value in medians.items():
        print(f"  {key:<22}{value:8.1f}")
    ratios = {
        "flyer business / fastapi business": medians["fastapi business"]
        / medians["flyer business"],
        "flyer_log business / fastapi business": medians["fastapi business"]
        / medians["flyer_log business"],
        "flyer health overhead over raw (µs)": medians["flyer health"] - medians["raw health"],
    }
    print("speed-ups (higher is faster for ours):")
    for key, value in ratios.items():
        print(f"  {key:<40}{value:8.2f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"samples": samples, "medians": medians,
                                             "ratios": ratios}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
