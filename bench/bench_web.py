"""Server throughput of FastFlyer against a raw ASGI app, bare Starlette and bare FastAPI.

Reproduce (Linux, 2+ cores; public tools only: ``taskset`` from util-linux, ``wrk`` 4.x,
uvicorn):

    pip install -e '.[dev]'               # fastapi, starlette, uvicorn[standard]
    apt-get install wrk
    python bench/bench_web.py             # full run: 3 rounds of 5 s loads, ~8 minutes
    python bench/bench_web.py --threads 1 --output bench/results/web_t1.json   # wrk -t1
    python bench/bench_web.py --quick     # smoke run: 1 round of 3 s loads
    python bench/bench_web.py --no-throughput   # only import time and idle RSS

One measurement by hand (the POST body and headers are sent with a wrk Lua script, see
``LUA_POST`` and ``lua_item``):

    taskset -c 1 python -m uvicorn web_fastapi:app --app-dir bench --port 8000 \
        --loop uvloop --http httptools --workers 1 --log-level error --no-access-log \
        --no-proxy-headers
    taskset -c 0 wrk -t2 -c100 -d5s --latency -s post.lua http://127.0.0.1:8000/flyer/items

Servers, all under uvicorn (uvloop, httptools, one in-process worker) pinned to core 1:
``raw`` (``bench/raw_asgi.py``), ``raw_loaded`` (the same app in a process that has also
built the FastFlyer app, ``raw_asgi_loaded.py``: the cost of the process size alone),
``starlette`` (``web_starlette.py``), ``fastapi`` (``web_fastapi.py``: ``FastAPI()`` with
its defaults), ``fastapi_notel`` (``web_fastapi_notelemetry.py``: the same routes with
``FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False})``), and FlyerAPI
on the bench project ``web_project`` (``web_flyer.py``): ``flyer`` (access log off),
``flyer_log`` (access log on, to ``<tmp>/access.log``), ``flyer_auth`` (``flyer_log`` with
``flyer_auth_enable=1``, ``flyer_auth_user``, ``flyer_auth_pass``) and ``flyer_cors``
(``flyer_log`` with ``flyer_cors_origins=https://a.example`` and
``flyer_gzip_min_size=500``). The flyer servers are skipped, with a note, while
``import fastflyer; fastflyer.FlyerAPI`` fails.
Endpoints: ``health`` = GET /health_check/async on every server but ``flyer_auth`` and
``flyer_cors`` (raw answers any path), ``business`` = POST /flyer/items with a JSON
``Item`` on all but those and raw, ``item`` = POST /flyer/items/42?q=hello (path + query
+ the same body, ``DataResponse`` envelope) on the FastAPI and flyer servers. Every
``item`` request, to every server, carries ``Authorization: Basic`` (the ``flyer_auth``
credentials), ``Origin: https://a.example`` and ``Accept-Encoding: gzip``; the answers are
smaller than 500 bytes, so GZip passes them through. Before timing, each start is checked:
200 from every endpoint it is measured on, 401 without credentials from ``flyer_auth``,
``access-control-allow-origin`` from ``flyer_cors``.

Load is ``wrk -t2 -c100 --latency`` pinned to core 0 (``--threads 1``: ``wrk -t1``), one
server at a time. Each round starts every server once, on a free 127.0.0.1 port, waits
until it answers, runs each of its endpoints (an untimed warm-up wrk run, then the timed
one) and stops it with SIGTERM; the order of servers and endpoints is reversed every
other round. Reported: median req/s and medians of wrk's p50/p99 latency over rounds, and
ratios of the medians against their targets (``RATIOS``).
A run is invalid if wrk reports non-2xx responses or socket errors; a start of a server
with the access log on is invalid if its access log holds fewer lines than the requests
wrk completed (warm-ups included). Lines are counted after the server stopped: uvicorn
re-raises SIGTERM after its lifespan shutdown, so atexit hooks do not run and a log tail
still buffered then (not flushed on lifespan shutdown) is lost and makes the run invalid.

Also measured: import time (wall time of ``python -c "<import>"`` subprocesses, runs of
each statement interleaved, interpreter start-up included and not subtracted; ``pass``
is shown for context) and idle worker RSS (VmRSS of the uvicorn process after 20
requests and 1 s idle; ``taskset`` execs, so the Popen pid is the python worker).
Results go to stdout and ``bench/results/web.json``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from listening import listening_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "web.json"
SERVER_CORE = 1
CLIENT_CORE = 0

HEALTH_PATH = "/health_check/async"
BUSINESS_PATH = "/flyer/items"
ITEM_PATH = "/flyer/items/42?q=hello"
ITEM_BODY = '{"name":"widget","price":9.5,"tags":["a","b"]}'
LUA_POST = (
    'wrk.method = "POST"\n'
    f"wrk.body = '{ITEM_BODY}'\n"
    'wrk.headers["Content-Type"] = "application/json"\n'
)
AUTH_USER, AUTH_PASS = "bench", "bench-pass"
ORIGIN = "https://a.example"
# Sent with every ``item`` request to every server (only flyer_auth / flyer_cors use them).
ITEM_HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASS}".encode()).decode(),
    "Origin": ORIGIN,
    "Accept-Encoding": "gzip",
}


def lua_item() -> str:
    """The wrk script of ``item``: ``LUA_POST`` plus ``ITEM_HEADERS``."""
    return LUA_POST + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in ITEM_HEADERS.items())


# server name -> uvicorn module (in bench/); the order is the round's forward order.
SERVERS: dict[str, str] = {
    "raw": "raw_asgi",
    "raw_loaded": "raw_asgi_loaded",
    "starlette": "web_starlette",
    "fastapi": "web_fastapi",
    "fastapi_notel": "web_fastapi_notelemetry",
    "flyer": "web_flyer",
    "flyer_log": "web_flyer",
    "flyer_auth": "web_flyer",
    "flyer_cors": "web_flyer",
}
FLYER_SERVERS = ("flyer", "flyer_log", "flyer_auth", "flyer_cors")
ACCESS_LOG_SERVERS = ("flyer_log", "flyer_auth", "flyer_cors")
ENDPOINTS: dict[str, tuple[str, str]] = {
    "health": ("GET", HEALTH_PATH),
    "business": ("POST", BUSINESS_PATH),
    "item": ("POST", ITEM_PATH),
}
SERVER_ENDPOINTS: dict[str, list[str]] = {
    "raw": ["health"], "raw_loaded": ["health"], "starlette": ["health", "business"],
    "fastapi": ["health", "business", "item"], "fastapi_notel": ["health", "business", "item"],
    "flyer": ["health", "business", "item"], "flyer_log": ["health", "business", "item"],
    "flyer_auth": ["item"], "flyer_cors": ["item"],
}
# (label, numerator, denominator, target: ratio must be >= (or <= for RSS) this, or None)
RATIOS: list[tuple[str, tuple[str, str], tuple[str, str], float | None]] = [
    ("flyer health / raw health", ("flyer", "health"), ("raw", "health"), 0.85),
    ("flyer_log item / fastapi item", ("flyer_log", "item"), ("fastapi", "item"), 1.5),
    ("flyer_log item / fastapi_notel item", ("flyer_log", "item"),
     ("fastapi_notel", "item"), 1.5),
    ("flyer_auth item / fastapi item", ("flyer_auth", "item"), ("fastapi", "item"), 1.5),
    ("flyer_auth item / fastapi_notel item", ("flyer_auth", "item"),
     ("fastapi_notel", "item"), 1.5),
    ("flyer_cors item / fastapi item", ("flyer_cors", "item"), ("fastapi", "item"), 1.3),
    ("flyer_cors item / fastapi_notel item", ("flyer_cors", "item"),
     ("fastapi_notel", "item"), 1.3),
    ("flyer_log business / fastapi business", ("flyer_log", "business"),
     ("fastapi", "business"), 1.2),
    ("flyer item / fastapi item", ("flyer", "item"), ("fastapi", "item"), None),
    ("flyer business / fastapi business", ("flyer", "business"), ("fastapi", "business"), None),
    ("fastapi_notel item / fastapi item", ("fastapi_notel", "item"), ("fastapi", "item"), None),
    ("flyer_auth item / flyer_log item", ("flyer_auth", "item"), ("flyer_log", "item"), None),
    ("flyer_cors item / flyer_log item", ("flyer_cors", "item"), ("flyer_log", "item"), None),
    ("flyer_log health / flyer health", ("flyer_log", "health"), ("flyer", "health"), None),
    ("fastapi business / starlette business", ("fastapi", "business"),
     ("starlette", "business"), None),
    ("starlette health / raw health", ("starlette", "health"), ("raw", "health"), None),
    ("raw_loaded health / raw health", ("raw_loaded", "health"), ("raw", "health"), None),
    ("flyer health / raw_loaded health", ("flyer", "health"), ("raw_loaded", "health"), None),
]
IMPORTS: dict[str, str] = {
    "pass": "pass",
    "import fastapi": "import fastapi",
    "import fastflyer": "import fastflyer",
    "from fastflyer import FlyerAPI": "from fastflyer import FlyerAPI",
}
FULL = {"rounds": 3, "duration": 5, "warmup": 1, "import_runs": 7, "rss_starts": 3}
QUICK = {"rounds": 1, "duration": 3, "warmup": 1, "import_runs": 3, "rss_starts": 1}
RSS_TARGET = 1.2  # flyer / fastapi idle RSS must be <= this
RSS_REQUESTS = 20  # 10 health GETs + 10 business POSTs before reading RSS


# --------------------------------------------------------------------------- server


def server_command(name: str) -> list[str]:
    return [
        "taskset", "-c", str(SERVER_CORE),
        sys.executable, "-m", "uvicorn", f"{SERVERS[name]}:app",
        "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", "0",  # any free port: see listening_port()
        "--loop", "uvloop", "--http", "httptools", "--workers", "1",
        "--log-level", "error", "--no-access-log", "--no-proxy-headers",
    ]


def server_env(name: str, log_dir: str) -> dict[str, str]:
    """No inherited ``flyer_*`` settings. The flyer servers log to ``log_dir``, console at
    ERROR; those of ``ACCESS_LOG_SERVERS`` add the access log, and auth or CORS + GZip."""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("flyer_")}
    if name in FLYER_SERVERS:
        env["flyer_log_path"] = log_dir
        env["flyer_console_log_level"] = "error"
        env["flyer_access_log"] = "1" if name in ACCESS_LOG_SERVERS else "0"
        if name in ACCESS_LOG_SERVERS:
            env["flyer_access_logfile"] = os.path.join(log_dir, "access.log")
    if name == "flyer_auth":
        env.update(flyer_auth_enable="1", flyer_auth_user=AUTH_USER, flyer_auth_pass=AUTH_PASS)
    if name == "flyer_cors":
        env.update(flyer_cors_origins=ORIGIN, flyer_gzip_min_size="500")
    return env


def request(url: str, body: str | None = None, timeout: float = 2.0,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    """One GET (or POST of a JSON ``body``) with the stdlib; (status, body, lower-cased
    headers), never raises HTTP."""
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


@dataclass
class Server:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log_dir: str


def wait_ready(server: Server, timeout: float = 30.0) -> None:
    """Poll the health route until 200; then check each measured endpoint once (fail fast):
    200, the CORS header from ``flyer_cors``, and 401 without credentials from ``flyer_auth``."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name}: server exited with code {server.proc.returncode}")
        with contextlib.suppress(OSError):
            if request(server.base + HEALTH_PATH, timeout=1.0)[0] == 200:
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: no 200 from {HEALTH_PATH} within {timeout:.0f}s")
        time.sleep(0.05)
    for endpoint in endpoints_of(server.name):
        method, path = ENDPOINTS[endpoint]
        body_sent = ITEM_BODY if method == "POST" else None
        headers = ITEM_HEADERS if endpoint == "item" else None
        code, body, answer_headers = request(server.base + path, body_sent, headers=headers)
        if code != 200:
            raise RuntimeError(f"{server.name}: {method} {path} -> {code} {body[:300]!r}")
        if server.name == "flyer_cors" and \
                answer_headers.get("access-control-allow-origin") != ORIGIN:
            raise RuntimeError(f"{server.name}: no CORS header on {path}: {answer_headers}")
        if server.name == "flyer_auth":
            anonymous = {k: v for k, v in ITEM_HEADERS.items() if k != "Authorization"}
            code, body, _ = request(server.base + path, body_sent, headers=anonymous)
            if code != 401:
                raise RuntimeError(f"{server.name}: {path} without credentials -> {code}")


@contextlib.contextmanager
def serve(name: str) -> Iterator[Server]:
    """Start one server pinned to ``SERVER_CORE`` with its own temp log dir; SIGTERM it after."""
    log_dir = tempfile.mkdtemp(prefix=f"flyer-bench-{name}-")
    proc = subprocess.Popen(server_command(name), env=server_env(name, log_dir),
                            stdin=subprocess.DEVNULL)
    try:
        server = Server(name, f"http://127.0.0.1:{listening_port(proc)}", proc, log_dir)
        wait_ready(server)
        yield server
    finally:
        stop(proc)
        shutil.rmtree(log_dir, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn shuts down gracefully, logs are flushed); SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def endpoints_of(name: str) -> list[str]:
    return SERVER_ENDPOINTS[name]


def count_access_lines(log_dir: str) -> int:
    """Lines in ``access*`` files of ``log_dir`` (the access log and any rotated copy)."""
    total = 0
    for path in glob.glob(os.path.join(log_dir, "access*")):
        with open(path, "rb") as handle:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def flyer_available() -> tuple[bool, str]:
    """Whether ``import fastflyer; fastflyer.FlyerAPI`` works (in a subprocess: keep us clean)."""
    proc = subprocess.run([sys.executable, "-c", "import fastflyer; fastflyer.FlyerAPI"],
                          capture_output=True, text=True, check=False)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode == 0, lines[-1] if lines else ""


# --------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RE_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.M)
_RE_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_RE_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_RE_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_RE_PCT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)", re.M)


@dataclass
class WrkRun:
    server: str
    endpoint: str
    round: int
    rps: float
    requests: int
    latency_ms: dict[str, float]  # "p50", "p75", "p90", "p99"
    non_2xx: int
    socket_errors: int
    valid: bool = True
    problems: list[str] = field(default_factory=list)


def parse_wrk(text: str, server: str, endpoint: str, round_: int) -> WrkRun:
    reqs, rps = _RE_REQUESTS.search(text), _RE_RPS.search(text)
    if reqs is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    non2xx = _RE_NON2XX.search(text)
    sock = _RE_SOCKET.search(text)
    run = WrkRun(
        server=server, endpoint=endpoint, round=round_,
        rps=float(rps.group(1)), requests=int(reqs.group(1)),
        latency_ms={f"p{p}": float(v) * _UNIT_MS[u] for p, v, u in _RE_PCT.findall(text)},
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(map(int, sock.groups())) if sock else 0,
    )
    if run.non_2xx:
        run.problems.append(f"{run.non_2xx} non-2xx responses")
    if run.socket_errors:
        run.problems.append(sock.group(0) if sock else "socket errors")
    run.valid = not run.problems
    return run


def wrk(url: str, seconds: int, args: argparse.Namespace, lua: str | None) -> str:
    cmd = ["taskset", "-c", str(CLIENT_CORE), "wrk", f"-t{args.threads}",
           f"-c{args.connections}", f"-d{seconds}s", "--latency"]
    if lua:
        cmd += ["-s", lua]
    return subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout


# --------------------------------------------------------------------------- throughput


def bench_throughput(servers: list[str], args: argparse.Namespace,
                     lua: dict[str, str]) -> list[WrkRun]:
    """``lua``: endpoint -> wrk script (endpoints without one are plain GETs)."""
    runs: list[WrkRun] = []
    for r in range(args.rounds):
        order = servers if r % 2 == 0 else servers[::-1]  # alternate the order every round
        for name in order:
            endpoints = endpoints_of(name) if r % 2 == 0 else endpoints_of(name)[::-1]
            done: list[WrkRun] = []
            completed = 0  # requests wrk completed on this start, warm-ups included
            with serve(name) as server:
                for endpoint in endpoints:
                    path = ENDPOINTS[endpoint][1]
                    script = lua.get(endpoint)
                    warm = wrk(server.base + path, args.warmup, args, script)
                    completed += parse_wrk(warm, name, endpoint, r + 1).requests
                    run = parse_wrk(wrk(server.base + path, args.duration, args, script),
                                    name, endpoint, r + 1)
                    completed += run.requests
                    done.append(run)
                stop(server.proc)  # count once the log is flushed, before the dir is removed
                lines = count_access_lines(server.log_dir)
            if name in ACCESS_LOG_SERVERS and lines < completed:
                for run in done:
                    run.valid = False
                    run.problems.append(f"access log has {lines} lines < {completed} requests")
            for run in done:
                note = "" if run.valid else "  INVALID: " + "; ".join(run.problems)
                print(f"  round {r + 1}/{args.rounds} {name:<14}{run.endpoint:<9}"
                      f"{run.rps:>10.1f} req/s  p50 {run.latency_ms.get('p50', 0):6.2f} ms  "
                      f"p99 {run.latency_ms.get('p99', 0):6.2f} ms{note}", flush=True)
            if name in FLYER_SERVERS:
                print(f"  round {r + 1}/{args.rounds} {name:<14}access log lines {lines} "
                      f"(requests completed {completed})", flush=True)
            runs.extend(done)
    return runs


def summarize(runs: list[WrkRun]) -> dict[str, dict[str, Any]]:
    """Per ``server/endpoint``: medians over rounds of req/s, p50 and p99."""
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys((r.server, r.endpoint) for r in runs):
        sel = [r for r in runs if (r.server, r.endpoint) == key]
        rps = [r.rps for r in sel]
        med = statistics.median(rps)
        out["/".join(key)] = {
            "rps": rps,
            "median_rps": round(med, 1),
            "median_p50_ms": round(statistics.median(r.latency_ms["p50"] for r in sel), 3),
            "median_p99_ms": round(statistics.median(r.latency_ms["p99"] for r in sel), 3),
            "spread_pct": round((max(rps) - min(rps)) / med * 100, 1),
            "non_2xx": sum(r.non_2xx for r in sel),
            "socket_errors": sum(r.socket_errors for r in sel),
            "valid": all(r.valid for r in sel),
        }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, num, den, target in RATIOS:
        a, b = summary.get("/".join(num)), summary.get("/".join(den))
        if a is None or b is None:
            continue
        value = a["median_rps"] / b["median_rps"]
        valid = a["valid"] and b["valid"]
        met = None if target is None else valid and value >= target
        out.append({"ratio": label, "value": round(value, 3), "target_min": target,
                    "valid": valid, "met": met})
    return out


# --------------------------------------------------------------------------- import, RSS


def bench_imports(statements: dict[str, str], runs: int) -> dict[str, Any]:
    """Wall time of ``python -c <stmt>``; one untimed run each (bytecode cache), then ``runs``
    interleaved rounds, order reversed every other round."""
    names = list(statements)
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:
        subprocess.run([sys.executable, "-c", statements[n]], check=True)
    for i in range(runs):
        for n in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", statements[n]], check=True)
            times[n].append((time.perf_counter() - start) * 1e3)
    med = {n: round(statistics.median(t), 1) for n, t in times.items()}
    result: dict[str, Any] = {"runs_ms": times, "median_ms": med}
    for n in ("import fastflyer", "from fastflyer import FlyerAPI"):
        if n in med:
            result[f"{n} / import fastapi"] = round(med[n] / med["import fastapi"], 3)
    return result


def read_rss_kib(pid: int) -> int:
    """VmRSS of ``pid``, after checking it is the python uvicorn process (taskset exec'd)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    if b"uvicorn" not in cmdline or b"python" not in os.path.basename(cmdline[0]):
        raise RuntimeError(f"pid {pid} is not the uvicorn worker: {cmdline!r}")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bench_rss(servers: list[str], starts: int) -> dict[str, Any]:
    rss: dict[str, list[float]] = {n: [] for n in servers}
    for i in range(starts):
        for name in servers if i % 2 == 0 else servers[::-1]:
            with serve(name) as server:
                for k in range(RSS_REQUESTS):
                    if k % 2:
                        request(server.base + BUSINESS_PATH, ITEM_BODY)
                    else:
                        request(server.base + HEALTH_PATH)
                time.sleep(1.0)
                rss[name].append(round(read_rss_kib(server.proc.pid) / 1024, 2))
    med = {n: round(statistics.median(v), 2) for n, v in rss.items()}
    result: dict[str, Any] = {"rss_mib": rss, "median_mib": med}
    if "flyer" in med and "fastapi" in med:
        value = med["flyer"] / med["fastapi"]
        result["flyer / fastapi"] = {"value": round(value, 3), "target_max": RSS_TARGET,
                                     "met": value <= RSS_TARGET}
    return result


# --------------------------------------------------------------------------- report


def _version(module: str) -> str | None:
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        return version(module)
    return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": (wrk_version.stdout or wrk_version.stderr).split("Copyright")[0].strip(),
        **{pkg: _version(pkg) for pkg in
           ("fastflyer", "fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools")},
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def print_report(result: dict[str, Any]) -> None:
    if "throughput" in result:
        t = result["throughput"]
        print(f"\n{'server':<15}{'endpoint':<10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'spread %':>10}  valid")
        for key, s in t["summary"].items():
            server, endpoint = key.split("/")
            print(f"{server:<15}{endpoint:<10}{s['median_rps']:>10.1f}{s['median_p50_ms']:>9.2f}"
                  f"{s['median_p99_ms']:>9.2f}{s['spread_pct']:>10.1f}  "
                  f"{'yes' if s['valid'] else 'NO'}")
        print(f"(medians of {result['config']['rounds']} rounds; spread = (max-min)/median)")
        for r in t["ratios"]:
            target = "" if r["target_min"] is None else (
                f"  target >= {r['target_min']}: {'met' if r['met'] else 'NOT met'}")
            print(f"  {r['ratio']:<42}{r['value']:>7.3f}{target}"
                  f"{'' if r['valid'] else '  (INVALID input)'}")
    imp = result["imports"]
    print("\nimport time, median ms (python -c, start-up included):")
    for name, ms in imp["median_ms"].items():
        print(f"  {name:<54}{ms:>8.1f}")
    for key, value in imp.items():
        if key.endswith("/ import fastapi"):
            print(f"  {'ratio ' + key:<54}{value:>8.3f}")
    rss = result["rss"]
    print("\nidle worker RSS, median MiB:")
    for name, mib in rss["median_mib"].items():
        print(f"  {name:<54}{mib:>8.2f}")
    if "flyer / fastapi" in rss:
        r = rss["flyer / fastapi"]
        print(f"  {'ratio flyer / fastapi':<54}{r['value']:>8.3f}  target <= {r['target_max']}: "
              f"{'met' if r['met'] else 'NOT met'}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, help="seconds per timed wrk run (5; quick 3)")
    parser.add_argument("--warmup", type=int,
                        help="seconds of the warm-up wrk run (1; quick 1)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=100, help="wrk connections")
    parser.add_argument("--import-runs", type=int, help="runs per import statement (7; quick 3)")
    parser.add_argument("--rss-starts", type=int, help="starts per server for RSS (3; quick 1)")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help="comma-separated subset of: " + ", ".join(SERVERS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: defaults of the quick figures above")
    parser.add_argument("--no-throughput", action="store_true",
                        help="only measure import time and idle RSS")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    # Options left unset take the full or the --quick default; explicit ones win.
    for name, default in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    for name in ("duration", "warmup", "rounds", "import_runs", "rss_starts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (util-linux / wrk)")
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 cores: server on core 1, wrk on core 0")
    # SIGTERM must unwind through the ``finally`` that stops a running server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, {CLIENT_CORE})  # this script (and the import runs) stay off core 1

    has_flyer, why = flyer_available()
    servers = [s for s in args.servers if has_flyer or s not in FLYER_SERVERS]
    if not has_flyer:
        print(f"NOTE: skipping the flyer servers and fastflyer imports: "
              f"`import fastflyer; fastflyer.FlyerAPI` fails ({why})")
    info = machine_info()
    print(f"python {info['python']}, nproc {info['nproc']}, {info['cpu']}, {info['wrk']}, "
          f"load {' '.join(info['loadavg_start'])}")

    result: dict[str, Any] = {
        "benchmark": "server throughput: raw ASGI, Starlette, FastAPI, FastFlyer under uvicorn",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([sys.executable, *sys.argv]),
        "server_command": " ".join(server_command("fastapi")),
        "machine": info,
        "config": {
            "servers": servers, "rounds": args.rounds, "duration_s": args.duration,
            "warmup_s": args.warmup, "wrk_threads": args.threads,
            "wrk_connections": args.connections, "import_runs": args.import_runs,
            "rss_starts": args.rss_starts, "quick": args.quick,
            "flyer_available": has_flyer, "post_body": ITEM_BODY,
            "endpoints": {k: list(v) for k, v in ENDPOINTS.items()},
            "item_headers": {k: v for k, v in ITEM_HEADERS.items() if k != "Authorization"},
            "lifecycle": "each server started once per round, loaded alone",
        },
    }

    statements = {k: v for k, v in IMPORTS.items() if has_flyer or "fastflyer" not in v}
    print(f"\nimport time: {args.import_runs} interleaved runs of {len(statements)} statements")
    result["imports"] = bench_imports(statements, args.import_runs)
    rss_servers = ["fastapi", "flyer"] if has_flyer else ["fastapi"]
    print(f"idle RSS: {args.rss_starts} start(s) of {', '.join(rss_servers)}")
    result["rss"] = bench_rss(rss_servers, args.rss_starts)

    valid = True
    if not args.no_throughput:
        print(f"\nthroughput: {args.rounds} round(s), {args.warmup} s warm-up + "
              f"{args.duration} s wrk -t{args.threads} -c{args.connections} per run")
        with tempfile.TemporaryDirectory(prefix="flyer-bench-lua-") as lua_dir:
            scripts = {}
            for endpoint, text in (("business", LUA_POST), ("item", lua_item())):
                scripts[endpoint] = os.path.join(lua_dir, f"{endpoint}.lua")
                Path(scripts[endpoint]).write_text(text)
            runs = bench_throughput(servers, args, scripts)
        summary = summarize(runs)
        result["throughput"] = {"summary": summary, "ratios": ratios(summary),
                                "runs": [asdict(r) for r in runs]}
        valid = all(s["valid"] for s in summary.values())
    result["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    result["valid"] = valid

    print_report(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {args.output}")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
