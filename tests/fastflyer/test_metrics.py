"""The HTTP server's Prometheus metrics, in process: what each request records (route
templates, never raw paths; statuses; methods; durations to the end of the response; the
requests in flight), what is left out (health checks, scrapes), and ``GET /metrics``
itself (formats, auth, the switch, the path setting).

Every app of the process records into the same default registry, so each test compares
two scrapes of ``/metrics`` taken around its requests: the series that changed, and by
how much, are exactly the ones its requests make.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import StreamingResponse
from starlette.testclient import TestClient

from fastflyer import FlyerAPI
from fastflyer.launch import multiprocess_metrics
from fastflyer.metrics import ACTIVE_REQUESTS, REQUEST_DURATION, REQUESTS
from fastflyer.settings import SettingsError, load_settings
from waiting import wait_for

Series = tuple[str, tuple[tuple[str, str], ...]]
AUTH = {"auth_enable": "1", "auth_user": "ann", "auth_pass": "s3cret"}


def scrape(client: TestClient, path: str = "/metrics", **kwargs: Any) -> dict[Series, float]:
    """Every sample ``GET path`` serves, by name and labels."""
    response = client.get(path, **kwargs)
    assert response.status_code == 200, response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def changes(before: dict[Series, float], after: dict[Series, float],
            name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """How much each series of sample ``name`` went up between two scrapes (those that
    did not change left out)."""
    return {labels: value - before.get((sample, labels), 0.0)
            for (sample, labels), value in after.items()
            if sample == name and value != before.get((sample, labels), 0.0)}


def requests(method: str, route: str, status: int) -> tuple[tuple[str, str], ...]:
    return (("method", method), ("route", route), ("status", str(status)))


class Counted:
    """The requests counted while the block runs: ``with Counted(client) as counted:``,
    then ``counted.requests`` ({labels: increase}) and ``counted.durations`` (the
    histogram's ``_count`` increases by (method, route) labels)."""

    def __init__(self, client: TestClient, path: str = "/metrics", **kwargs: Any) -> None:
        self.client, self.path, self.kwargs = client, path, kwargs

    def __enter__(self) -> Counted:
        self.before = scrape(self.client, self.path, **self.kwargs)
        return self

    def __exit__(self, *exc: object) -> None:
        after = scrape(self.client, self.path, **self.kwargs)
        self.requests = changes(self.before, after, REQUESTS)
        self.durations = changes(self.before, after, f"{REQUEST_DURATION}_count")
        self.duration_sums = changes(self.before, after, f"{REQUEST_DURATION}_sum")
        self.after = after


def shop_router() -> APIRouter:
    """Routes of every kind: a path parameter (sync), async, failing, streaming."""
    router = APIRouter(prefix="/items")

    @router.get("/{item_id}")
    def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @router.get("/{item_id}/price")
    async def price(item_id: int) -> dict[str, int]:
        return {"price": item_id * 2}

    @router.get("/{item_id}/crash")
    async def crash(item_id: int) -> None:
        raise RuntimeError("boom")

    return router


@pytest.fixture
def shop(build: Callable[..., FlyerAPI]) -> Iterator[TestClient]:
    app = build(None)
    app.include_app("shop", shop_router())
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_a_path_parameter_route_is_counted_under_its_template(shop: TestClient) -> None:
    with Counted(shop) as counted:
        for item_id in range(1, 8):
            assert shop.get(f"/flyer/items/{item_id}").json() == {"item_id": item_id}
    assert counted.requests == {requests("GET", "/flyer/items/{item_id}", 200): 7}
    assert counted.durations == {(("method", "GET"), ("route", "/flyer/items/{item_id}")): 7}
    assert not [series for series in counted.after if "/flyer/items/3" in str(series)]


def test_sync_async_failing_and_invalid_requests_each_have_their_status(
        shop: TestClient) -> None:
    with Counted(shop) as counted:
        assert shop.get("/flyer/items/1").status_code == 200  # def, in the thread pool
        assert shop.get("/flyer/items/2/price").status_code == 200  # async def
        assert shop.get("/flyer/items/3/crash").status_code == 500
        assert shop.get("/flyer/items/abc").status_code == 422
        assert shop.get("/flyer/nothing/here").status_code == 404
        assert shop.get("/flyer/items/4/price/more").status_code == 404
    assert counted.requests == {
        requests("GET", "/flyer/items/{item_id}", 200): 1,
        requests("GET", "/flyer/items/{item_id}/price", 200): 1,
        requests("GET", "/flyer/items/{item_id}/crash", 500): 1,
        requests("GET", "/flyer/items/{item_id}", 422): 1,
        requests("GET", "", 404): 2,  # no route took them: never the raw path
    }
    assert all(value > 0 for value in counted.duration_sums.values())


def test_head_and_other_methods_are_labelled_within_a_bounded_set(shop: TestClient) -> None:
    with Counted(shop) as counted:
        head = shop.head("/flyer/items/5")  # answered as GET, without the body
        assert (head.status_code, head.content) == (200, b"")
        assert shop.post("/flyer/items/5").status_code == 405
        assert shop.request("PURGE", "/flyer/items/5").status_code == 405
        assert shop.request("X-MADE-UP-1", "/flyer/items/6").status_code == 405
        assert shop.options("/flyer/items/5").status_code == 204
    assert counted.requests == {
        requests("HEAD", "/flyer/items/{item_id}", 200): 1,
        requests("POST", "/flyer/items/{item_id}", 405): 1,
        requests("_OTHER", "/flyer/items/{item_id}", 405): 2,
        requests("OPTIONS", "/flyer/items/{item_id}", 204): 1,
    }


def test_nested_routers_and_one_router_under_two_prefixes(build: Callable[..., FlyerAPI]
                                                          ) -> None:
    inner = APIRouter(prefix="/inner")

    @inner.get("/things/{thing_id}")
    def thing(thing_id: str) -> dict[str, str]:
        return {"thing": thing_id}

    outer = APIRouter(prefix="/outer")
    outer.include_router(inner)
    app = build(None)
    app.include_app("nested", outer)  # under /flyer
    app.include_router(inner, prefix="/v2")  # the same route object again
    with TestClient(app) as client, Counted(client) as counted:
        for thing_id in ("a", "b", "c"):
            assert client.get(f"/flyer/outer/inner/things/{thing_id}").status_code == 200
        assert client.get("/v2/inner/things/d").status_code == 200
    assert counted.requests == {
        requests("GET", "/flyer/outer/inner/things/{thing_id}", 200): 3,
        requests("GET", "/v2/inner/things/{thing_id}", 200): 1,
    }


def test_mounts_plain_routes_and_routes_added_after_the_first_request(
        build: Callable[..., FlyerAPI]) -> None:
    sub = FastAPI()

    @sub.get("/reports/{year}")
    def report(year: int) -> dict[str, int]:
        return {"year": year}

    app = build(None)
    app.mount("/legacy", sub)
    with TestClient(app) as client:
        with Counted(client) as counted:
            assert client.get("/legacy/reports/2024").json() == {"year": 2024}
            assert client.get("/legacy/reports/2025").json() == {"year": 2025}
            assert client.get("/flyer/docs").status_code == 200  # a plain Starlette route
            assert client.get("/flyer/static/swagger-ui.css").status_code == 200  # a mount
        assert counted.requests == {
            requests("GET", "/legacy/reports/{year}", 200): 2,
            requests("GET", "/flyer/docs", 200): 1,
            requests("GET", "/flyer/static/{path}", 200): 1,
        }

        late = APIRouter()

        @late.get("/late/{n}")
        def late_route(n: int) -> dict[str, int]:
            return {"n": n}

        app.include_router(late, prefix="/flyer")  # after the table was built
        with Counted(client) as counted:
            assert client.get("/flyer/late/1").status_code == 200
        assert counted.requests == {requests("GET", "/flyer/late/{n}", 200): 1}


def test_health_checks_and_scrapes_are_not_counted(shop: TestClient) -> None:
    with Counted(shop) as counted:
        for path in ("/health_check", "/health_check/async", "/flyer/health_check",
                     "/health_check/ready", "/flyer/health_check/ready", "/metrics"):
            assert shop.get(path).status_code == 200
            assert shop.head(path).status_code == 200
        assert shop.post("/health_check").status_code == 405
    assert counted.requests == {}
    assert counted.durations == {}


def test_the_in_flight_gauge_counts_a_request_while_it_is_held(
        build: Callable[..., FlyerAPI]) -> None:
    entered, release = threading.Event(), threading.Event()
    router = APIRouter()

    @router.get("/hold/{n}")
    async def hold(n: int) -> dict[str, int]:
        entered.set()
        await anyio.to_thread.run_sync(release.wait, 10)
        return {"n": n}

    app = build(None)
    app.include_app("hold", router)
    gauge = (ACTIVE_REQUESTS, (("method", "GET"),))
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        before = scrape(client)
        held = pool.submit(client.get, "/flyer/hold/1")
        try:
            assert entered.wait(10)
            during = scrape(client)
            assert during[gauge] == before.get(gauge, 0) + 1
            # Recorded once answered, not before.
            assert changes(before, during, REQUESTS) == {}
        finally:
            release.set()
        assert held.result(10).status_code == 200
        after = scrape(client)
    assert after[gauge] == before.get(gauge, 0)
    assert changes(before, after, REQUESTS) == {requests("GET", "/flyer/hold/{n}", 200): 1}


def test_a_streamed_response_is_measured_to_its_last_byte(build: Callable[..., FlyerAPI]
                                                          ) -> None:
    first_sent, release = threading.Event(), threading.Event()
    router = APIRouter()

    @router.get("/stream/{n}")
    async def stream(n: int) -> StreamingResponse:
        async def parts() -> Any:
            yield b"first,"
            first_sent.set()  # asked for the next part: the first went out
            await anyio.to_thread.run_sync(release.wait, 10)
            yield b"last"

        return StreamingResponse(parts(), media_type="text/plain")

    app = build(None)
    app.include_app("stream", router)
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        before = scrape(client)
        streamed = pool.submit(client.get, "/flyer/stream/1")
        try:
            assert first_sent.wait(10)
            held_from = time.perf_counter()
            during = scrape(client)
            # The status went out with the first part; the request still counts as in
            # flight and is not recorded yet.
            assert changes(before, during, REQUESTS) == {}
            assert during[(ACTIVE_REQUESTS, (("method", "GET"),))] >= 1
            wait_for(lambda: time.perf_counter() - held_from > 0.05, 5, "a measurable hold")
            held = time.perf_counter() - held_from
        finally:
            release.set()
        assert streamed.result(10).text == "first,last"
        after = scrape(client)
    assert changes(before, after, REQUESTS) == {requests("GET", "/flyer/stream/{n}", 200): 1}
    (spent,) = changes(before, after, f"{REQUEST_DURATION}_sum").values()
    assert spent >= held


def test_answers_before_routing_are_counted_without_a_route(build: Callable[..., FlyerAPI]
                                                            ) -> None:
    app = build(None, **AUTH)
    app.include_app("shop", shop_router())
    credentials = {"auth": ("ann", "s3cret")}
    with TestClient(app) as client, Counted(client, **credentials) as counted:
        assert client.get("/flyer/items/1").status_code == 401
        assert client.get("/flyer/items/1", **credentials).status_code == 200
    assert counted.requests == {requests("GET", "", 401): 1,
                                requests("GET", "/flyer/items/{item_id}", 200): 1}


def test_metrics_are_behind_auth_when_auth_is_on(build: Callable[..., FlyerAPI]) -> None:
    with TestClient(build(None, **AUTH)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert "http_server" not in refused.text
        assert client.get("/metrics", auth=("ann", "wrong")).status_code == 401
        allowed = client.get("/metrics", auth=("ann", "s3cret"))
        assert allowed.status_code == 200
        assert "# TYPE http_server_requests_total counter" in allowed.text


def test_the_formats_and_types_served(shop: TestClient) -> None:
    assert shop.get("/flyer/items/1").status_code == 200
    text = shop.get("/metrics")
    assert text.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE http_server_requests_total counter" in text.text
    assert "# TYPE http_server_request_duration_seconds histogram" in text.text
    assert "# TYPE http_server_active_requests gauge" in text.text
    assert ('http_server_request_duration_seconds_bucket{le="0.005",method="GET",'
            'route="/flyer/items/{item_id}"}') in text.text
    openmetrics = shop.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"})
    assert openmetrics.headers["content-type"].startswith(
        "application/openmetrics-text; version=1.0.0")
    assert openmetrics.text.endswith("# EOF\n")
    assert "# TYPE http_server_requests counter" in openmetrics.text
    head = shop.head("/metrics")
    assert (head.status_code, head.content) == (200, b"")
    assert shop.post("/metrics").status_code == 405
    schema = shop.get("/flyer/openapi.json").json()
    assert "/metrics" not in schema["paths"]
    assert "/flyer/items/{item_id}" in schema["paths"]


def test_another_path_and_a_root_path(build: Callable[..., FlyerAPI]) -> None:
    app = build(None, metrics_path="/internal/prom")
    app.include_app("shop", shop_router())
    with TestClient(app, root_path="/api") as client:
        assert client.get("/api/metrics").status_code == 404
        with Counted(client, "/api/internal/prom") as counted:
            assert client.get("/api/flyer/items/9").status_code == 200
    assert counted.requests == {requests("GET", "/flyer/items/{item_id}", 200): 1}


def test_switched_off_there_is_no_route_and_nothing_is_recorded(
        build: Callable[..., FlyerAPI]) -> None:
    on = build(None)
    off = build(None, metrics_enabled="0")
    off.include_app("shop", shop_router())
    with TestClient(on) as watcher, TestClient(off) as client:
        before = scrape(watcher)  # the process's registry, through an app that serves it
        assert client.get("/flyer/items/1").status_code == 200
        assert client.get("/metrics").status_code == 404
        assert client.get("/flyer/nothing").status_code == 404
        assert changes(before, scrape(watcher), REQUESTS) == {}


def test_switched_off_in_a_fresh_process_nothing_is_registered_or_enabled(tmp_path) -> None:
    code = textwrap.dedent("""
        import os
        os.environ["flyer_metrics_enabled"] = "0"
        os.environ["flyer_log_to_file"] = "0"
        from fastapi import APIRouter
        from starlette.testclient import TestClient
        from fastflyer import FlyerAPI
        from fastkit import metrics

        router = APIRouter()
        router.get("/items/{n}")(lambda n: {"n": n})
        app = FlyerAPI()
        app.include_app("shop", router)
        with TestClient(app) as client:
            statuses = [client.get("/flyer/items/1").status_code,
                        client.get("/metrics").status_code]
        import prometheus_client
        text = prometheus_client.generate_latest().decode()
        print(statuses, metrics.enabled(), "http_server" in text)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[200, 404] False False"


@pytest.mark.parametrize(("value", "reason"), [
    ("metrics", "a path starting with '/'"),
    ("/metrics/", "no trailing '/'"),
    ("/me trics", "a path starting with '/'"),
    ("/health_check/metrics", "the health checks'"),
])
def test_a_bad_metrics_path_stops_the_build_in_one_line(
        build: Callable[..., FlyerAPI], value: str, reason: str) -> None:
    with pytest.raises(SettingsError) as caught:
        build(None, metrics_path=value)
    message = str(caught.value)
    assert message.count("\n") == 0
    assert message.startswith(f"flyer_metrics_path={value!r} is not allowed: ")
    assert reason in message


@pytest.mark.parametrize("value", ["/flyer/health_check/metrics", "/flyer/static/metrics"])
def test_a_metrics_path_the_framework_serves_is_refused(build: Callable[..., FlyerAPI],
                                                        value: str) -> None:
    with pytest.raises(SettingsError, match=r"^flyer_metrics_path='/flyer/[a-z_]+/metrics' is "
                                            r"not allowed: a path outside /flyer/"):
        build(None, metrics_path=value)


def test_an_app_route_on_the_metrics_path_is_named_at_build(
        build: Callable[..., FlyerAPI], tmp_path: Path) -> None:
    from fastflyer import DuplicateRouteError

    app_dir = tmp_path / "app" / "mine"
    app_dir.mkdir(parents=True)
    (tmp_path / "app" / "__init__.py").write_text("")
    (app_dir / "__init__.py").write_text(textwrap.dedent("""
        from fastflyer import APIRouter

        router = APIRouter()
        router.get("/metrics")(lambda: {"mine": True})
    """))
    with pytest.raises(DuplicateRouteError, match="GET /flyer/metrics is declared by both "
                                                  "app 'mine' and app 'fastflyer'"):
        build(tmp_path, metrics_path="/flyer/metrics")
    app = build(tmp_path, metrics_path="/flyer/prometheus")  # the way out: another path
    with TestClient(app) as client:
        assert client.get("/flyer/metrics").json() == {"mine": True}
        assert "http_server" in client.get("/flyer/prometheus").text


def test_concurrent_requests_are_all_counted(shop: TestClient) -> None:
    with Counted(shop) as counted, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda n: shop.get(f"/flyer/items/{n}/price").status_code,
                                 range(40)))
    assert statuses == [200] * 40
    assert counted.requests == {requests("GET", "/flyer/items/{item_id}/price", 200): 40}


# --- the multiprocess directory of fastflyer serve (served for real in
# test_metrics_prometheus.py) -----------------------------------------------------------------

def test_serve_makes_a_private_directory_and_removes_it(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with multiprocess_metrics(load_settings()) as directory:
        assert directory is not None and Path(directory).parent == tmp_path
        assert Path(directory).is_dir() and not any(Path(directory).iterdir())
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == directory
    assert not Path(directory).exists()
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_serve_uses_the_callers_directory_and_keeps_it(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    given = tmp_path / "prom" / "multiproc"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    with multiprocess_metrics(load_settings()) as directory:
        assert directory == str(given) and given.is_dir()  # made: it did not exist
        (given / "counter_1.db").write_bytes(b"")
    assert (given / "counter_1.db").exists()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(given)


def test_serve_refuses_a_directory_it_cannot_make(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "a-file" / "below"))
    with pytest.raises(SettingsError) as caught, multiprocess_metrics(load_settings()):
        pytest.fail("entered")
    assert str(caught.value).count("\n") == 0
    assert str(caught.value).startswith(
        f"PROMETHEUS_MULTIPROC_DIR='{tmp_path}/a-file/below' is not allowed: a directory")


def test_switched_off_serve_sets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("flyer_metrics_enabled", "0")
    with multiprocess_metrics(load_settings()) as directory:
        assert directory is None
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
