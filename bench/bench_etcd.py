"""The config center's read at start, and a call through discovery against a fixed URL.

Against a private etcd (Debian's ``etcd-server``, started here on loopback ports with a
temporary data directory) and a local HTTP server (``http.server`` on 127.0.0.1, port 0):

* ``config read at start``: ``load_settings()`` with the config center on (one range read
  of ``--keys`` keys, written into ``os.environ``), against ``load_settings()`` with it off;
* ``call through discovery``: a GET with ``fastkit.httpx.Client`` whose transport is
  ``ServiceTransport`` (the service's instances followed in memory, picked round-robin),
  against the same GET with a plain ``fastkit.httpx.Client`` on the instance's fixed URL.

Each pair runs interleaved, one sample of each in turn; medians in ms and their ratio::

    python bench/bench_etcd.py [--rounds 300] [--calls 2000] [--keys 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fastflyer.settings import load_settings
from fastkit.etcd import EtcdClient
from fastkit.httpx import Client
from fastkit.registry import Instance, Registration, ServiceDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from etcd_server import EtcdServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # the head and the body in one write (flushed after each request)
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def bench_config(url: str, rounds: int, keys: int) -> tuple[float, float]:
    etcd = EtcdClient(url)
    for i in range(keys):
        etcd.put(f"/bench/prod/default/VARIABLE_{i}", f"value {i}")
    on = {"flyer_config_enabled": "1", "flyer_config_endpoints": url,
          "flyer_config_app_id": "bench", "flyer_config_env_name": "prod",
          "flyer_config_group_name": "default"}
    before = dict(os.environ)
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for enabled in (True, False):
            os.environ.clear()
            os.environ.update(before)
            if enabled:
                os.environ.update(on)
            began = time.perf_counter()
            load_settings(warn_unknown=False)
            timings[enabled].append(time.perf_counter() - began)
    os.environ.clear()
    os.environ.update(before)
    return _median_ms(timings[True]), _median_ms(timings[False])


def bench_calls(url: str, calls: int) -> tuple[float, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    etcd = EtcdClient(url)
    registration = Registration(etcd, Instance("bench", "127.0.0.1", port), heartbeat=30)
    registration.beat()
    directory = ServiceDirectory(etcd)
    timings: dict[str, list[float]] = {"discovery": [], "fixed": []}
    with directory.client("bench") as through, Client(base_url=f"http://127.0.0.1:{port}") \
            as fixed:
        for client in (through, fixed):  # warm: connections, the followed list
            for _ in range(50):
                client.get("/item").raise_for_status()
        for _ in range(calls):
            for name, client in (("discovery", through), ("fixed", fixed)):
                began = time.perf_counter()
                client.get("/item")
                timings[name].append(time.perf_counter() - began)
    registration.withdraw()
    directory.close()
    server.shutdown()
    return _median_ms(timings["discovery"]), _median_ms(timings["fixed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=50)
    args = parser.parse_args()
    import logging

    from fastkit.logging import logger

    logger.remove()  # the config center's lines are not the figure
    logging.disable(logging.CRITICAL)
    server = EtcdServer()
    server.start()
    try:
        with_center, without = bench_config(server.url, args.rounds, args.keys)
        through, fixed = bench_calls(server.url, args.calls)
    finally:
        server.close()
    print(f"config read at start, {args.keys} keys, {args.rounds} rounds (ms, median)")
    print(f"  load_settings, config center on   {with_center:7.3f}")
    print(f"  load_settings, config center off  {without:7.3f}")
    print(f"  cost of the read                  {with_center - without:7.3f}")
    print(f"GET through discovery, {args.calls} calls each, interleaved (ms, median)")
    print(f"  Client + ServiceTransport         {through:7.3f}")
    print(f"  Client on the fixed URL           {fixed:7.3f}")
    print(f"  ratio                             {through / fixed:7.2f}x")


if __name__ == "__main__":
    main()
