"""Throughput of ``fastkit.httpx`` clients (logging on) against plain httpx clients.

Reproduce (Linux, 2+ cores; public tools only: ``taskset`` from util-linux, uvicorn):

    pip install -e '.[dev]'            # httpx, loguru, uvicorn[standard] (uvloop, httptools)
    python bench/bench_httpx.py        # full run, a few minutes
    python bench/bench_httpx.py --quick
    python bench/bench_httpx.py --profile   # cProfile of 2,000 sync calls with fastkit's Client

One invocation starts ``bench/raw_asgi.py`` under uvicorn on a free 127.0.0.1 port,
pinned to core 1 (``taskset -c 1 python -m uvicorn raw_asgi:app --loop uvloop
--http httptools --log-level error --no-access-log``), pins itself to core 0, and
stops the server at the end. Real sockets, no mocks.

* sync: N sequential GETs with ``fastkit.httpx.Client()`` ("ours"), a plain
  ``httpx.Client()`` ("plain") and a plain ``httpx.Client(transport=RetryTransport())``
  ("transport": FastKit's retries and call log under a client of httpx's own);
* async: N GETs at C concurrency (C worker tasks sharing a counter) with
  ``fastkit.httpx.AsyncClient(limits=...)``, ``httpx.AsyncClient(limits=...)`` and
  ``httpx.AsyncClient(transport=AsyncRetryTransport(AsyncHTTPTransport(limits=...)))``,
  all ``max_connections=max_keepalive_connections=C``.

Each client is created once and warmed up. Rounds are interleaved and the order
rotates (round i starts with client i mod 3); the figure is the median requests/s
over rounds, and each ratio is that client's median over plain's (the median of the
per-round ratios is reported too). Before every timed run a few untimed requests reopen the
connections: uvicorn closes keep-alive connections idle for 5 s, which a client's
pool is while the other client runs, and reconnecting 100 of them cost the first
async run after a pause ~30% on the reference machine.
FastKit logs every call at INFO to ``<tmp>/bench.log`` (console at ERROR); the run
checks the file holds one ``"direction": "out"`` line per call of ours and of the
transport client, otherwise
the measurement did not include logging and is reported invalid.
Results go to stdout and ``bench/results/httpx.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import glob
import io
import json
import os
import platform
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from listening import listening_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "httpx.json"
SERVER_CORE = 1
CLIENT_CORE = 0
LOG_NAME = "bench"
MARKER = '"direction": "out"'
SYNC_PRIME = 20  # untimed requests before each timed run
ASYNC_PRIME_PER_WORKER = 3


# --------------------------------------------------------------------------- server


def server_command() -> list[str]:
    return [
        "taskset", "-c", str(SERVER_CORE),
        sys.executable, "-m", "uvicorn", "raw_asgi:app",
        "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", "0",  # any free port: see listening_port()
        "--loop", "uvloop", "--http", "httptools",
        "--log-level", "error", "--no-access-log",
    ]


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as probe:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with code {proc.returncode}")
            try:
                if probe.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise RuntimeError(f"server did not answer {url} within {timeout:.0f}s")


@contextlib.contextmanager
def raw_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is required")
    proc = subprocess.Popen(server_command(), stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{listening_port(proc)}/ping"
        wait_ready(proc, url)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- helpers


def setup_logging(log_dir: str) -> Path:
    """INFO call-log lines to ``<log_dir>/bench.log``, only errors to the console."""
    from fastkit.logging import get_logger

    get_logger(LOG_NAME, console_log_level="error", log_path=log_dir)
    return Path(log_dir) / f"{LOG_NAME}.log"


def count_log_lines(log_dir: str) -> int:
    """``"direction": "out"`` lines in ``bench.log`` and any rotated ``bench.*.log``."""
    total = 0
    for path in glob.glob(os.path.join(log_dir, f"{LOG_NAME}*.log")):
        if path.endswith(".error.log"):
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            total += sum(1 for line in handle if MARKER in line)
    return total


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info(server_pid: int) -> dict[str, Any]:
    import loguru
    import uvicorn

    import fastkit

    try:
        server_affinity = sorted(os.sched_getaffinity(server_pid))
    except OSError:
        server_affinity = None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "httpx": httpx.__version__,
        "uvicorn": uvicorn.__version__,
        "loguru": loguru.__version__,
        "fastkit": fastkit.__version__,
        "client_affinity": sorted(os.sched_getaffinity(0)),
        "server_affinity": server_affinity,
    }


@dataclass
class Series:
    """Requests/s of each round, per client."""

    plain: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    transport: list[float] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    # The client process's CPU µs per call, per client: what each client costs, which a
    # busy machine blurs far less than requests/s.
    cpu_us: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        plain = statistics.median(self.plain)
        out: dict[str, Any] = {"plain_rps": [round(x, 1) for x in self.plain],
                               "order": self.order,
                               "median_plain_rps": round(plain, 1),
                               "spread_plain_pct": round(_spread(self.plain), 1)}
        for name in ("ours", "transport"):
            values: list[float] = getattr(self, name)
            median = statistics.median(values)
            ratios = [o / p for p, o in zip(self.plain, values, strict=True)]
            round_ratio = round(statistics.median(ratios), 4)
            suffix = "" if name == "ours" else "_transport"
            out.update({
                f"{name}_rps": [round(x, 1) for x in values],
                f"median_{name}_rps": round(median, 1),
                f"ratio_{name}_over_plain": round(median / plain, 4),
                f"round_ratios{suffix}": [round(r, 4) for r in ratios],
                f"median_round_ratio{suffix}": round_ratio,
                f"spread_{name}_pct": round(_spread(values), 1),
            })
        cpu = {name: statistics.median(values) for name, values in self.cpu_us.items()}
        out["median_cpu_us_per_call"] = {name: round(value, 1) for name, value in cpu.items()}
        out["cpu_ratio_plain_over"] = {name: round(cpu["plain"] / value, 4)
                                       for name, value in cpu.items() if name != "plain"}
        out["non_200"] = self.errors
        return out


NAMES = ("plain", "ours", "transport")


def rotation(i: int) -> list[str]:
    """The order of round ``i``: each client starts a round in turn."""
    return [NAMES[(i + k) % len(NAMES)] for k in range(len(NAMES))]


def _spread(values: list[float]) -> float:
    """(max - min) / median, in percent."""
    return (max(values) - min(values)) / statistics.median(values) * 100


# --------------------------------------------------------------------------- sync


def run_sync(client: httpx.Client, url: str, n: int,
             prime: int = 0) -> tuple[float, int, float]:
    """``n`` timed sequential GETs, after ``prime`` untimed ones (reopen a dropped connection):
    requests/s, non-200 answers, and this process's CPU µs per call."""
    bad = 0
    get = client.get
    for _ in range(prime):
        get(url)
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    for _ in range(n):
        if get(url).status_code != 200:
            bad += 1
    elapsed = time.perf_counter() - start
    return n / elapsed, bad, (time.process_time() - cpu) / n * 1e6


def bench_sync(url: str, n: int, rounds: int, warmup: int, prime: int) -> Series:
    from fastkit.httpx import Client, RetryTransport

    series = Series()
    with httpx.Client() as plain, Client() as ours, \
            httpx.Client(transport=RetryTransport()) as transport:
        clients: dict[str, httpx.Client] = {"plain": plain, "ours": ours,
                                            "transport": transport}
        for client in clients.values():
            run_sync(client, url, warmup)
        for i in range(rounds):
            names = rotation(i)
            series.order.append("/".join(names))
            for name in names:
                rps, bad, cpu = run_sync(clients[name], url, n, prime)
                getattr(series, name).append(rps)
                series.cpu_us.setdefault(name, []).append(cpu)
                series.errors += bad
            print(f"  sync  round {i + 1}/{rounds}: plain {series.plain[-1]:8.1f}  "
                  f"ours {series.ours[-1]:8.1f}  transport {series.transport[-1]:8.1f} req/s",
                  flush=True)
    return series


# --------------------------------------------------------------------------- async


async def run_async(client: httpx.AsyncClient, url: str, n: int, concurrency: int,
                    prime: int = 0) -> tuple[float, int, float]:
    """``n`` timed GETs by ``concurrency`` workers, after ``prime`` untimed ones:
    requests/s, non-200 answers, and this process's CPU µs per call."""
    if prime:
        await run_async(client, url, prime, concurrency)
    remaining = n
    bad = 0

    async def worker() -> None:
        nonlocal remaining, bad
        get = client.get
        while remaining > 0:
            remaining -= 1
            if (await get(url)).status_code != 200:
                bad += 1

    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return n / elapsed, bad, (time.process_time() - cpu) / n * 1e6


async def bench_async(url: str, n: int, concurrency: int, rounds: int, warmup: int,
                      prime: int) -> Series:
    from fastkit.httpx import AsyncClient, AsyncRetryTransport

    def limits() -> httpx.Limits:
        return httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    series = Series()
    retrying = AsyncRetryTransport(httpx.AsyncHTTPTransport(limits=limits()))
    async with httpx.AsyncClient(limits=limits()) as plain, AsyncClient(limits=limits()) as ours, \
            httpx.AsyncClient(transport=retrying) as transport:
        clients: dict[str, httpx.AsyncClient] = {"plain": plain, "ours": ours,
                                                 "transport": transport}
        for client in clients.values():
            await run_async(client, url, warmup, concurrency)
        for i in range(rounds):
            names = rotation(i)
            series.order.append("/".join(names))
            for name in names:
                rps, bad, cpu = await run_async(clients[name], url, n, concurrency, prime)
                getattr(series, name).append(rps)
                series.cpu_us.setdefault(name, []).append(cpu)
                series.errors += bad
            print(f"  async round {i + 1}/{rounds}: plain {series.plain[-1]:8.1f}  "
                  f"ours {series.ours[-1]:8.1f}  transport {series.transport[-1]:8.1f} req/s",
                  flush=True)
    return series


# --------------------------------------------------------------------------- profile


def profile_sync(url: str, n: int, warmup: int, top: int = 25) -> str:
    from fastkit.httpx import Client

    with Client() as ours:
        run_sync(ours, url, warmup)
        profiler = cProfile.Profile()
        profiler.enable()
        run_sync(ours, url, n)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sync-requests", type=int, default=2000)
    parser.add_argument("--async-requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8,
                        help="interleaved rounds for both parts (default 8; the order "
                             "rotates, so a multiple of 3 starts each client equally often)")
    parser.add_argument("--warmup", type=int, default=200, help="warm-up requests per client")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 sync, 1000 async, 20 concurrency, 2 rounds")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the benchmark, cProfile --sync-requests sync calls "
                             "of fastkit's Client (top 25 by tottime)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sync_requests, args.async_requests = 200, 1000
        args.concurrency, args.rounds, args.warmup = 20, 2, 50
    for name in ("sync_requests", "async_requests", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def check_log(label: str, got: int, expected: int) -> dict[str, Any]:
    ok = got == expected
    verdict = "ok" if ok else "INVALID: logging did not run for every call"
    print(f"log check {label}: {got} lines with {MARKER} (expected {expected}) -> {verdict}")
    return {"lines": got, "expected": expected, "valid": ok}


def print_table(sync: dict[str, Any], aio: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [
        (f"sync  {args.sync_requests} seq", sync),
        (f"async {args.async_requests} @{args.concurrency}", aio),
    ]
    print()
    print(f"{'part':<20}{'plain req/s':>13}{'ours req/s':>13}{'ours/plain':>12}"
          f"{'transport req/s':>17}{'transport/plain':>17}{'spread p/o/t %':>20}")
    for label, s in rows:
        spread = (f"{s['spread_plain_pct']:.1f}/{s['spread_ours_pct']:.1f}/"
                  f"{s['spread_transport_pct']:.1f}")
        print(f"{label:<20}{s['median_plain_rps']:>13.1f}{s['median_ours_rps']:>13.1f}"
              f"{s['ratio_ours_over_plain']:>12.3f}{s['median_transport_rps']:>17.1f}"
              f"{s['ratio_transport_over_plain']:>17.3f}{spread:>20}")
    for label, s in rows:
        cpu, ratio = s["median_cpu_us_per_call"], s["cpu_ratio_plain_over"]
        print(f"{label:<20}client CPU µs/call: plain {cpu['plain']:.1f}, ours {cpu['ours']:.1f}, "
              f"transport {cpu['transport']:.1f} (plain/ours {ratio['ours']:.3f}, "
              f"plain/transport {ratio['transport']:.3f})")
    print(f"(medians of {args.rounds} interleaved rounds; spread = (max-min)/median; "
          f"median per-round ratio ours sync {sync['median_round_ratio']:.3f}, "
          f"async {aio['median_round_ratio']:.3f}; transport sync "
          f"{sync['median_round_ratio_transport']:.3f}, "
          f"async {aio['median_round_ratio_transport']:.3f})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = tempfile.mkdtemp(prefix="fastkit-bench-")
    # SIGTERM must unwind through the ``finally`` that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with raw_server() as (url, proc):
            os.sched_setaffinity(0, {CLIENT_CORE})
            log_file = setup_logging(log_dir)
            info = machine_info(proc.pid)
            print(f"server {url} pid {proc.pid} on cores {info['server_affinity']}; "
                  f"client on {info['client_affinity']}; log {log_file}")
            print(f"python {info['python']}, httpx {info['httpx']}, nproc {info['nproc']}, "
                  f"{info['cpu']}")

            if args.profile:
                print(profile_sync(url, args.sync_requests, args.warmup))
                print(f"log lines: {count_log_lines(log_dir)}")
                return 0

            sync_prime, async_prime = SYNC_PRIME, ASYNC_PRIME_PER_WORKER * args.concurrency
            sync = bench_sync(url, args.sync_requests, args.rounds, args.warmup, sync_prime)
            sync_lines = count_log_lines(log_dir)
            async_warmup = max(args.warmup, 2 * args.concurrency)
            aio = asyncio.run(bench_async(url, args.async_requests, args.concurrency,
                                          args.rounds, async_warmup, async_prime))
            all_lines = count_log_lines(log_dir)

        sync_s, aio_s = sync.summary(), aio.summary()
        print_table(sync_s, aio_s, args)
        # Two of the three clients log each call: ours and the transport client.
        sync_check = check_log("sync", sync_lines,
                               2 * (args.warmup
                                    + args.rounds * (args.sync_requests + sync_prime)))
        aio_check = check_log("async", all_lines - sync_lines,
                              2 * (async_warmup
                                   + args.rounds * (args.async_requests + async_prime)))
        if sync.errors or aio.errors:
            print(f"WARNING: non-200 responses: sync {sync.errors}, async {aio.errors}")

        result = {
            "benchmark": "fastkit.httpx vs httpx, raw ASGI uvicorn server",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join([sys.executable, *sys.argv]),
            "server_command": " ".join(server_command()),
            "machine": info,
            "config": {
                "sync_requests": args.sync_requests,
                "async_requests": args.async_requests,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "warmup_sync": args.warmup,
                "warmup_async": async_warmup,
                "untimed_prime_per_run_sync": sync_prime,
                "untimed_prime_per_run_async": async_prime,
                "quick": args.quick,
                "logging": f"INFO to file {LOG_NAME}.log, console ERROR",
            },
            "sync": {**sync_s, "log_check": sync_check},
            "async": {**aio_s, "log_check": aio_check},
            "valid": sync_check["valid"] and aio_check["valid"],
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.output}")
        return 0 if result["valid"] else 1
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
