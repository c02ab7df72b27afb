"""What observability costs: FastFlyer's requests per second with Prometheus metrics, log
shipping and OpenTelemetry traces each on, against all of them off, in one run.

Reproduce (Linux, 2+ cores; public tools only: ``taskset``, ``wrk`` 4.x, Debian's
``rsyslog``):

    pip install -e '.[dev]'
    apt-get install wrk rsyslog
    python bench/bench_observability.py            # 5 rounds of 5 s loads, ~10 minutes
    python bench/bench_observability.py --quick    # 1 round of 3 s loads

Every server is FlyerAPI on the bench project (``web_flyer.py``, as in ``bench_web.py``)
under uvicorn (uvloop, httptools, one worker) pinned to core 1, with the access log on (to
a file) and the console at ERROR; wrk (``-t2 -c100``) is pinned to core 0. Servers:

- ``off``: ``flyer_metrics_enabled=0``, no shipping, no tracing (the baseline);
- ``metrics``: ``flyer_metrics_enabled=1`` (the default);
- ``shipping``: ``flyer_log_ship_enabled=1`` over UDP to a real rsyslogd on 127.0.0.1 (the
  collector is up; every access line is shipped), metrics off; rsyslogd is pinned to the
  client's core 0 (``taskset -a -p``), as a collector runs on another machine;
- ``tracing``: ``flyer_opentelemetry_enabled=1`` with ``OTEL_TRACES_EXPORTER=none`` (spans
  are made, ids logged, ``traceparent`` read; none is exported), metrics off;
- ``all``: the three on.

Endpoints: ``business`` = POST /flyer/items with a JSON body, ``item`` = POST
/flyer/items/42?q=hello (path parameter, query, the ``DataResponse`` envelope). Each round
starts every server once, runs an untimed warm-up then the timed load on each endpoint,
and stops it; the order of servers is reversed every other round. Reported: median req/s
over rounds and the ratios of medians against ``off``; targets: metrics and shipping each
keep at least 90% of ``off``'s req/s. Checks that make a run invalid: non-2xx answers or
socket errors; ``metrics`` whose ``/metrics`` does not count the business route; a
``shipping`` start whose collector received no line. Results: stdout and
``bench/results/observability.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench_web import (
    BENCH_DIR,
    BUSINESS_PATH,
    CLIENT_CORE,
    HEALTH_PATH,
    ITEM_BODY,
    ITEM_PATH,
    LUA_POST,
    SERVER_CORE,
    WrkRun,
    machine_info,
    parse_wrk,
    request,
    stop,
    summarize,
    wrk,
)
from listening import listening_port

sys.path.insert(0, str(BENCH_DIR.parent / "tests"))
from rsyslog_server import RsyslogServer  # the tests' real collector

RESULTS = BENCH_DIR / "results" / "observability.json"
SERVERS = ("off", "metrics", "shipping", "tracing", "all")
ENDPOINTS = {"business": BUSINESS_PATH, "item": ITEM_PATH}
# (server, target: its median req/s over off's must be >= this, or None: reported)
TARGETS: dict[str, float | None] = {"metrics": 0.90, "shipping": 0.90, "tracing": None,
                                    "all": None}
FULL = {"rounds": 5, "duration": 5, "warmup": 1}
QUICK = {"rounds": 1, "duration": 3, "warmup": 1}


def server_env(name: str, log_dir: str, udp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.lower().startswith(("flyer_", "otel_"))}
    env.update(flyer_log_path=log_dir, flyer_console_log_level="error", flyer_access_log="1",
               flyer_access_logfile=os.path.join(log_dir, "access.log"),
               flyer_metrics_enabled="1" if name in ("metrics", "all") else "0")
    if name in ("shipping", "all"):
        env.update(flyer_log_ship_enabled="1", flyer_log_ship_proto="udp",
                   flyer_log_ship_host="127.0.0.1", flyer_log_ship_port=str(udp_port),
                   flyer_log_ship_topic="bench")
    if name in ("tracing", "all"):
        env.update(flyer_opentelemetry_enabled="1", OTEL_TRACES_EXPORTER="none",
                   OTEL_SERVICE_NAME="bench")
    return env


@contextlib.contextmanager
def serve(name: str, udp_port: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log_dir = tempfile.mkdtemp(prefix=f"flyer-obs-{name}-")
    command = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "uvicorn",
               "web_flyer:app", "--app-dir", str(BENCH_DIR), "--host", "127.0.0.1",
               "--port", "0", "--loop", "uvloop", "--http", "httptools", "--workers", "1",
               "--log-level", "error", "--no-access-log", "--no-proxy-headers"]
    proc = subprocess.Popen(command, env=server_env(name, log_dir, udp_port),
                            stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{listening_port(proc)}"
        deadline = time.monotonic() + 30
        while True:  # polls the server's start, to a deadline
            with contextlib.suppress(OSError):
                if request(base + HEALTH_PATH, timeout=1.0)[0] == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name}: no 200 from {HEALTH_PATH}")
            time.sleep(0.05)
        for path in ENDPOINTS.values():
            code, body, _ = request(base + path, ITEM_BODY)
            if code != 200:
                raise RuntimeError(f"{name}: POST {path} -> {code} {body[:200]!r}")
        yield base, proc
    finally:
        stop(proc)
        shutil.rmtree(log_dir, ignore_errors=True)


def counted_by_metrics(base: str) -> float:
    """The business route's count in the server's own ``/metrics``."""
    code, body, _ = request(base + "/metrics")
    if code != 200:
        raise RuntimeError(f"/metrics -> {code}")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("http_server_requests_total{") and \
                f'route="{BUSINESS_PATH}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class Collector:
    """Where shipped lines go: ``rsyslog``, a real rsyslogd (the tests' own) pinned to the
    client's core beside wrk, as a collector runs on another machine; or ``sink``, a UDP
    socket of this process that is never read (the kernel takes each datagram and drops it
    once the socket's buffer is full): the server's own cost, with no collector process
    competing for either core."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.rsyslog: RsyslogServer | None = None
        self.sink: socket.socket | None = None
        if kind == "rsyslog":
            self.rsyslog = RsyslogServer()
            self.rsyslog.start()
            assert self.rsyslog.process is not None
            subprocess.run(["taskset", "-a", "-p", "-c", str(CLIENT_CORE),
                            str(self.rsyslog.process.pid)], check=True, capture_output=True)
            self.udp_port = self.rsyslog.udp_port
        else:
            self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sink.bind(("127.0.0.1", 0))
            self.udp_port = self.sink.getsockname()[1]

    def received(self) -> int:
        """Lines the collector received so far (the sink: 1 once its buffer holds any,
        after :meth:`clear`)."""
        if self.rsyslog is not None:
            return len(self.rsyslog.messages())
        return int(self._pending())

    def _pending(self) -> bool:
        import select

        assert self.sink is not None
        return bool(select.select([self.sink], [], [], 0)[0])

    def clear(self) -> None:
        """Empty the sink's buffer (the rsyslog collector keeps its file)."""
        if self.sink is not None:
            while self._pending():
                self.sink.recv(65536)

    def close(self) -> None:
        if self.rsyslog is not None:
            self.rsyslog.close()
        if self.sink is not None:
            self.sink.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    lua_path = Path(tempfile.mkdtemp(prefix="flyer-obs-lua-")) / "post.lua"
    lua_path.write_text(LUA_POST)
    collector = Collector(args.collector)
    runs: list[WrkRun] = []
    try:
        for r in range(args.rounds):
            chosen = tuple(args.servers)
            order = chosen if r % 2 == 0 else chosen[::-1]
            for name in order:
                collector.clear()
                shipped_before = collector.received()
                with serve(name, collector.udp_port) as (base, _proc):
                    done = []
                    for endpoint, path in ENDPOINTS.items():
                        wrk(base + path, args.warmup, args, str(lua_path))
                        done.append(parse_wrk(wrk(base + path, args.duration, args,
                                                  str(lua_path)), name, endpoint, r + 1))
                    if name in ("metrics", "all") and counted_by_metrics(base) <= 0:
                        for item in done:
                            item.valid = False
                            item.problems.append("/metrics does not count the business route")
                if name in ("shipping", "all"):
                    shipped = collector.received() - shipped_before
                    if shipped <= 0:
                        for item in done:
                            item.valid = False
                            item.problems.append("the collector received no line")
                    print(f"  round {r + 1} {name:<9} collector received "
                          f"{shipped if args.collector == 'rsyslog' else 'some'} lines",
                          flush=True)
                for item in done:
                    note = "" if item.valid else "  INVALID: " + "; ".join(item.problems)
                    print(f"  round {r + 1}/{args.rounds} {name:<9}{item.endpoint:<9}"
                          f"{item.rps:>10.1f} req/s  p50 {item.latency_ms.get('p50', 0):6.2f} ms"
                          f"  p99 {item.latency_ms.get('p99', 0):6.2f} ms{note}", flush=True)
                runs.extend(done)
    finally:
        collector.close()
        shutil.rmtree(lua_path.parent, ignore_errors=True)
    summary = summarize(runs)
    ratios = []
    for name, target in TARGETS.items():
        for endpoint in ENDPOINTS:
            a, b = summary.get(f"{name}/{endpoint}"), summary.get(f"off/{endpoint}")
            if a is None or b is None:
                continue
            value = a["median_rps"] / b["median_rps"]
            valid = a["valid"] and b["valid"]
            ratios.append({"ratio": f"{name} {endpoint} / off {endpoint}",
                           "value": round(value, 3), "target_min": target, "valid": valid,
                           "met": None if target is None else valid and value >= target})
    return {"machine": machine_info(), "settings": vars(args), "summary": summary,
            "ratios": ratios, "runs": [asdict(item) for item in runs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s loads")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=int, help="seconds per timed load")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--connections", type=int, default=100, help="wrk -c")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--collector", choices=("sink", "rsyslog"), default="sink",
                        help="where shipped lines go (see Collector)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS),
                        help="which servers (off is the baseline of every ratio)")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.rounds = args.rounds or preset["rounds"]
    args.duration = args.duration or preset["duration"]
    args.warmup = preset["warmup"]
    result = run(args)
    print("\nserver/endpoint           median req/s   p50 ms   p99 ms  spread")
    for key, row in result["summary"].items():
        print(f"{key:<25}{row['median_rps']:>12.1f}{row['median_p50_ms']:>9.2f}"
              f"{row['median_p99_ms']:>9.2f}{row['spread_pct']:>7.1f}%")
    print()
    for ratio in result["ratios"]:
        target = "" if ratio["target_min"] is None else f"  (target >= {ratio['target_min']})"
        verdict = {True: "  met", False: "  NOT MET", None: ""}[ratio["met"]]
        print(f"{ratio['ratio']:<32}{ratio['value']:>7.3f}{target}{verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in result["settings"].items()}
    args.output.write_text(json.dumps({**result, "settings": settings}, indent=2) + "\n")
    print(f"\nresults: {args.output}")
    targeted = [r for r in result["ratios"] if r["target_min"] is not None]
    return 0 if targeted and all(r["met"] for r in targeted) else 1


if __name__ == "__main__":
    sys.exit(main())
