"""No Nagle stall: `fastflyer run --reload` and `fastflyer serve` against plain uvicorn.

Reproduce (Linux, 2+ cores; public tools only: ``taskset``, ``wrk`` 4.x):

    pip install -e '.[dev]'
    python bench/bench_launch.py              # 5 interleaved rounds, a few minutes
    python bench/bench_launch.py --rounds 1 --duration 3

The demo project is generated into a temporary directory (``fastflyer create_app``) and
served three ways, each pinned to core 1 with its load pinned to core 0:

* ``uvicorn``: ``python -m uvicorn main:app --loop uvloop --http httptools`` (the baseline);
* ``run-reload``: ``fastflyer run`` with ``flyer_reload=1`` (uvicorn's reloader and a child);
* ``serve-2``: ``fastflyer serve`` with ``flyer_workers=2`` (gunicorn, two uvicorn workers).

Two measurements on GET ``/flyer/demo?id=1`` (access log off):

* sequential latency: 1,000 requests one after another on one keep-alive connection
  (stdlib ``http.client``), median and p99. A response held back by Nagle's algorithm
  waiting for a delayed ACK costs ~40 ms on Linux, so a stall shows as p50 or p99 ≥ 40 ms;
* throughput: ``wrk -t2 -c100 -d<D>s``.

Rounds are interleaved (order reversed every other round); medians over rounds. Results:
stdout and ``bench/results/launch.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from listening import listening_port

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PATH = "/flyer/demo?id=1"


def command(kind: str, project: Path) -> tuple[list[str], dict[str, str]]:
    """The command serving ``project`` as ``kind``, on a port of its choice (port 0: see
    :func:`listening.listening_port`)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    env.update(flyer_access_log="0", flyer_console_log_level="error", flyer_host="127.0.0.1",
               flyer_log_path=str(project / "logs"))
    pin = ["taskset", "-c", "1"]
    if kind == "uvicorn":
        return [*pin, sys.executable, "-m", "uvicorn", "main:app", "--app-dir", str(project),
                "--host", "127.0.0.1", "--port", "0", "--loop", "uvloop", "--http", "httptools",
                "--no-access-log", "--no-proxy-headers", "--log-level", "error"], env
    if kind == "run-reload":
        env["flyer_reload"] = "1"
        return [*pin, str(BIN / "fastflyer"), "run", "--app-dir", str(project),
                "--port", "0"], env
    env["flyer_workers"] = "2"
    return [*pin, str(BIN / "fastflyer"), "serve", "--app-dir", str(project), "--port", "0"], env


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/health_check")
            if conn.getresponse().status == 200:
                conn.close()
                time.sleep(1.0)  # let every worker finish booting
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not answer within 60 s")


def sequential(port: int, count: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("GET", PATH)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def throughput(port: int, duration: int) -> float:
    out = subprocess.run(["taskset", "-c", "0", "wrk", "-t2", "-c100", f"-d{duration}s",
                          f"http://127.0.0.1:{port}{PATH}"],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk reported errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(out)
    return float(match.group(1))


def measure(kind: str, project: Path, requests: int, duration: int) -> dict[str, float]:
    args, env = command(kind, project)
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port = listening_port(process)
        wait_ready(port, process)
        sequential(port, 100)  # warm-up
        p50, p99 = sequential(port, requests)
        rps = throughput(port, duration)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    return {"p50_ms": p50, "p99_ms": p99, "rps": rps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--output", default=str(HERE / "results" / "launch.json"))
    args = parser.parse_args()
    kinds = ["uvicorn", "run-reload", "serve-2"]
    samples: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="bench-launch-") as scratch:
        project = Path(scratch)
        subprocess.run([str(BIN / "fastflyer"), "create_app", "--name", "bench"], cwd=project,
                       check=True, capture_output=True)
        for round_no in range(args.rounds):
            for kind in kinds if round_no % 2 == 0 else list(reversed(kinds)):
                result = measure(kind, project, args.requests, args.duration)
                samples[kind].append(result)
                print(f"  round {round_no + 1}/{args.rounds} {kind:<11} p50 "
                      f"{result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                      f"{result['rps']:9.1f} req/s", flush=True)
    summary = {kind: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for kind, rows in samples.items()}
    print(f"\nmedians of {args.rounds} rounds (sequential: {args.requests} requests on one "
          "keep-alive connection; throughput: wrk -t2 -c100)")
    print(f"  {'server':<11} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>10} {'vs uvicorn':>11}")
    for kind, row in summary.items():
        ratio = row["rps"] / summary["uvicorn"]["rps"]
        print(f"  {kind:<11} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['rps']:10.1f} "
              f"{ratio:10.2f}x")
    stalled = [kind for kind, row in summary.items() if row["p99_ms"] >= 40]
    print("no Nagle stall" if not stalled else f"STALL (p99 >= 40 ms): {', '.join(stalled)}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"samples": samples, "medians": summary}, indent=2))
    return 1 if stalled else 0


if __name__ == "__main__":
    raise SystemExit(main())
