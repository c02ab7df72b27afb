"""Swagger UI and ReDoc, rendered by a real browser cut off from everything but this machine.

Debian's Chromium (``apt-get install chromium``), driven by Playwright, loads the pages from
the real server (``live``). Its host resolver answers "not found" for every name and every
address but 127.0.0.1, and whatever is not for 127.0.0.1 goes to a proxy on the discard port
that refuses it: a page that needs a CDN breaks here, and no request can leave the machine.
Screenshots are kept in ``$FASTFLYER_ARTIFACTS`` (default ``tests/artifacts/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from conftest import LiveServer

ARTIFACTS = Path(os.environ.get("FASTFLYER_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")

OFFLINE_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1",
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-pings",
]

DEMO_OPERATIONS = [("GET", "/flyer/demo", "Demo接口"), ("POST", "/flyer/users", "Create a user"),
                   ("GET", "/flyer/users", "List users")]

# A failure that the page itself decided on: the request never went to the network.
STOPPED_BY_THE_PAGE = {"csp", "net::ERR_BLOCKED_BY_CSP", "net::ERR_BLOCKED_BY_CLIENT"}


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail("Chromium is missing: apt-get install chromium", pytrace=False)
    return path


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives the browser a fresh temporary profile and removes it on close.
    browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                         args=OFFLINE_ARGS)
    yield browser
    browser.close()


@dataclass
class Traffic:
    requests: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def outside(self, live: LiveServer) -> list[str]:
        """Requests for anything but the live server (same-origin blob: and data: are local)."""
        return [url for url in self.requests
                if not url.removeprefix("blob:").startswith((f"{live.url}/", "data:"))]


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, Traffic]]:
    context = browser.new_context(viewport={"width": 1280, "height": 2000}, locale="en-US")
    traffic = Traffic()
    # On the context: requests of every page opened in it are recorded.
    context.on("request", lambda request: traffic.requests.append(request.url))
    context.on("requestfailed",
               lambda request: traffic.failures.__setitem__(request.url, request.failure or ""))
    context.on("weberror", lambda error: traffic.errors.append(str(error.error)))
    yield context.new_page(), traffic
    context.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def open_swagger_ui(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/flyer/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=15_000)
    page.wait_for_load_state("networkidle")


def open_redoc(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/flyer/redoc")
    expect(page.locator("h2", has_text="Demo接口")).to_be_visible(timeout=15_000)
    page.wait_for_load_state("networkidle")


def test_the_browser_cannot_leave_the_machine(live, page):
    browser_page, traffic = page
    context = browser_page.context
    # What a page that needs a CDN would load: refused by the proxy, nothing sent out.
    with pytest.raises(PlaywrightError, match="ERR_PROXY_CONNECTION_FAILED"):
        context.new_page().goto("https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css")
    # No name resolves, not even localhost: only the 127.0.0.1 address is reached.
    port = live.url.rsplit(":", 1)[1]
    with pytest.raises(PlaywrightError, match="ERR_NAME_NOT_RESOLVED"):
        context.new_page().goto(f"http://localhost:{port}/flyer/docs")
    response = browser_page.goto(f"{live.url}/health_check")
    assert response is not None
    assert response.ok
    assert traffic.failures == {
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css":
            "net::ERR_PROXY_CONNECTION_FAILED",
        f"http://localhost:{port}/flyer/docs": "net::ERR_NAME_NOT_RESOLVED"}


def test_swagger_ui_lists_the_demo_operations(live, page):
    browser_page, traffic = page
    open_swagger_ui(browser_page, live)
    screenshot(browser_page, "docs.png")
    expect(browser_page.locator(".info .title")).to_contain_text("Demo API")
    shown = browser_page.eval_on_selector_all(".opblock-summary", """blocks => blocks.map(b => [
        b.querySelector('.opblock-summary-method')?.textContent.trim(),
        b.querySelector('.opblock-summary-path')?.getAttribute('data-path'),
        b.querySelector('.opblock-summary-description')?.textContent.trim()])""")
    for operation in DEMO_OPERATIONS:
        assert list(operation) in shown, shown
    assert not traffic.errors
    assert not traffic.failures


def test_redoc_shows_the_title_and_the_demo_operation(live, page):
    browser_page, traffic = page
    open_redoc(browser_page, live)
    screenshot(browser_page, "redoc.png")
    expect(browser_page.locator("h1")).to_contain_text("Demo API")
    for _, _, summary in DEMO_OPERATIONS:
        expect(browser_page.locator("h2", has_text=summary)).to_be_visible()
    assert not traffic.errors


@pytest.mark.parametrize("open_page", [open_swagger_ui, open_redoc], ids=["docs", "redoc"])
def test_the_docs_ask_nothing_from_outside(live, page, open_page):
    """Every request is for the server; one for elsewhere must be stopped by the page itself.

    A request stopped only by this test's offline browser would go out on a real user's.
    """
    browser_page, traffic = page
    open_page(browser_page, live)
    sent_out = {url: traffic.failures.get(url, "answered")
                for url in traffic.outside(live)
                if traffic.failures.get(url) not in STOPPED_BY_THE_PAGE}
    assert not sent_out, f"requests a browser with internet would send out: {sent_out}"
    assert any(url.endswith("/flyer/openapi.json") for url in traffic.requests)
