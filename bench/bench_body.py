"""CPU to read a large request body sent in small chunks: reading must be linear in its size.

Reproduce (public tools only):

    pip install -e '.[dev]'
    python bench/bench_body.py                 # 5 interleaved rounds, ~1 minute
    python bench/bench_body.py --rounds 3 --mib 4

Each app is called directly (no server, no sockets), in a fresh process per measurement,
with one POST whose JSON body (``{"text": "xxxx..."}``, ``--mib`` MiB) arrives in ``--chunk``
byte messages, as a slow client's would; the route validates it into a model with one ``str``
field. The figure is the CPU time (``time.process_time``) of that one request, after a
warm-up request of 1 KiB. A reader that copies what it has so far on every chunk (``body +=
chunk``) is quadratic: 9.5 MB in 1 KiB chunks cost an earlier version 0.79 s against
FastAPI's 0.16 s. Apps:

* ``fastapi``: bare FastAPI, the same route;
* ``flyer``: FlyerAPI, its planned route handler (``flyer_fast_path=1``);
* ``flyer_slow``: FlyerAPI with ``flyer_fast_path=0`` (FastAPI's handler on every route).

Besides the medians, the script reports each app's ratio to bare FastAPI and the growth
factor from ``--mib`` to twice that, which is about 2 for a linear reader and about 4 for a
quadratic one. Results: stdout and ``bench/results/body.json``.
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

CHILD = r'''
import asyncio, json, os, sys, time
kind, size, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
from pydantic import BaseModel

class Text(BaseModel):
    text: str

if kind == "fastapi":
    from fastapi import FastAPI
    app = FastAPI()
else:
    from fastflyer import FlyerAPI
    from fastflyer.settings import load_settings
    app = FlyerAPI(settings=load_settings(fast_path=kind == "flyer", access_log=False,
                                          max_body_size=0))

@app.post("/flyer/text")
async def take(body: Text) -> dict:
    return {"length": len(body.text)}

def payload(n):
    return b'{"text":"' + b"x" * max(n - 11, 0) + b'"}'

async def call(body):
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages = iter([{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                     for i, p in enumerate(pieces)])
    out = []
    async def receive():
        return next(messages)
    async def send(message):
        out.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/flyer/text",
             "raw_path": b"/flyer/text", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    await app(scope, receive, send)
    assert out[0]["status"] == 200, out
    return out

async def main():
    await call(payload(1024))
    body = payload(size)
    start = time.process_time()
    await call(body)
    print(json.dumps({"cpu_s": time.process_time() - start}))

asyncio.run(main())
'''


def measure(kind: str, size: int, chunk: int) -> float:
    env = dict(os.environ, flyer_console_log_level="error", flyer_log_to_file="0",
               PYTHONPATH=str(HERE.parent / "src"))
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([sys.executable, "-c", CHILD, kind, str(size), str(chunk)],
                             capture_output=True, text=True, check=True, env=env, cwd=cwd,
                             timeout=300)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=float, default=9.5)
    parser.add_argument("--chunk", type=int, default=1024)
    args = parser.parse_args(argv)
    apps = ["fastapi", "flyer", "flyer_slow"]
    sizes = [int(args.mib * 2**20), int(args.mib * 2**21)]
    runs: dict[str, dict[int, list[float]]] = {a: {s: [] for s in sizes} for a in apps}
    for round_ in range(args.rounds):
        for size in sizes:
            for app in apps:  # interleaved: each round measures every app at every size
                runs[app][size].append(measure(app, size, args.chunk))
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)
    result: dict[str, object] = {"chunk": args.chunk, "sizes": sizes, "rounds": args.rounds,
                                 "apps": {}}
    small, large = sizes
    base = statistics.median(runs["fastapi"][small])
    print(f"{'app':<12}{'CPU s, ' + str(args.mib) + ' MiB':>18}{'x2 size':>10}"
          f"{'growth':>8}{'vs FastAPI':>12}")
    for app in apps:
        one, two = statistics.median(runs[app][small]), statistics.median(runs[app][large])
        row = {"median_s": one, "median_double_s": two, "growth": two / one,
               "vs_fastapi": one / base, "runs": runs[app]}
        result["apps"][app] = row  # type: ignore[index]
        print(f"{app:<12}{one:>18.3f}{two:>10.3f}{two / one:>8.2f}{one / base:>11.2f}x")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "body.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
