"""One app built twice, with ``FlyerRoute`` and with FastAPI's ``APIRoute``, and the same
requests sent to both: the harness of the route-class equivalence tests.

A *factory* declares routes on a ``FastAPI`` app and writes what they do on the side
(dependencies run, clean-ups, background tasks) to a log; an *answer* is the status, every
header but the two that differ per request, the body bytes and that log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from fastflyer.routing import FlyerRoute

IGNORED_HEADERS = {"x-request-id", "x-lasting-time"}  # differ from one request to the next
JSON = {"content-type": "application/json"}

Log = list[Any]
Factory = Callable[[FastAPI, Log], None]
Answer = tuple[Any, ...]
Probe = tuple[str, str, Any, bytes | None]  # method, URL, headers, body
Setup = Callable[[FastAPI, Log], None]  # run on each app before its factory
Between = Callable[[FastAPI, int], None]  # run before the request of that number


def make(factory: Factory, route_class: type[APIRoute],
         setup: Setup | None = None) -> tuple[FastAPI, Log]:
    """A ``FastAPI`` app whose routes use ``route_class``, built by ``factory``."""
    log: Log = []
    app = FastAPI()
    app.router.route_class = route_class
    if setup is not None:
        setup(app, log)
    factory(app, log)
    return app, log


def ask(client: TestClient, log: Log, method: str, url: str, headers: Any,
        body: bytes | None) -> Answer:
    log.clear()
    response = client.request(method, url, headers=headers, content=body)
    kept = [(name, value) for name, value in response.headers.multi_items()
            if name not in IGNORED_HEADERS]
    return response.status_code, kept, response.content, list(log)


def answers(factory: Factory, route_class: type[APIRoute], requests: list[Probe],
            between: Between | None = None, setup: Setup | None = None) -> list[Answer]:
    app, log = make(factory, route_class, setup)
    seen = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for number, request in enumerate(requests):
            if between is not None:
                between(app, number)
            seen.append(ask(client, log, *request))
    return seen


def assert_alike(factory: Factory, *requests: Probe, between: Between | None = None,
                 setup: Setup | None = None) -> list[Answer]:
    """Both apps answer every request alike; FastAPI's answers are returned."""
    flyer = answers(factory, FlyerRoute, list(requests), between, setup)
    plain = answers(factory, APIRoute, list(requests), between, setup)
    for request, on, off in zip(requests, flyer, plain, strict=True):
        assert on == off, request[:2]
    return plain
