"""Headless Debian Chromium driven by Playwright, for tests/test_browser.py.

Playwright's own browser download is never used: the tests launch
/usr/bin/chromium (installed by `make test` through scripts/system-deps.sh).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from django.conf import settings
from django.db.backends.signals import connection_created

from tests import support

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's
# hosts, which this sandbox refuses; none of them change what a page does.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 15_000


@pytest.fixture
def chromium(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium for one test.

    Playwright's sync API parks its own event loop in this thread, and Django
    then refuses ORM calls, taking the idle loop for an async context. Nothing
    runs on that loop while the test's ORM calls do, so they are allowed for
    this test only, and Playwright is stopped before the database is flushed.
    """
    path = support.need_tool("chromium", CHROMIUM)
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "1")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - requirements-dev.txt has it
        support.need(False, "playwright is not installed (pip install -r requirements-dev.txt)")
        raise
    # Django keeps a connection per contextvars context, and each greenlet
    # Playwright switches through has its own: connections opened during the
    # test are invisible to the teardown's close_all, and an open one stops
    # PostgreSQL dropping the test database. Close exactly those.
    opened: list[Any] = []

    def remember(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(connection)

    connection_created.connect(remember)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        connection_created.disconnect(remember)
        for connection in opened:
            connection.close()


class Tab:
    """One page plus what it did that a test must see: dialogs and script errors."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("websocket", lambda ws: self.sockets.append(ws.url))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def status(self) -> Any:
        return self.page.locator("#conn-status")

    def wait_state(self, state: str, timeout: int = WAIT_MS) -> None:
        self.page.wait_for_selector(f'#connection[data-state="{state}"]', timeout=timeout)

    def say(self, text: str) -> None:
        self.page.fill("#body", text)
        self.page.press("#body", "Enter")

    def seqs(self) -> list[int]:
        return self.page.eval_on_selector_all("#messages li[data-seq]", "els => els.map(e => Number(e.dataset.seq))")

    def bodies(self) -> list[str]:
        return self.page.eval_on_selector_all("#messages li[data-seq] .body", "els => els.map(e => e.textContent)")

    def authors(self) -> list[str]:
        return self.page.eval_on_selector_all("#messages li[data-seq] .author", "els => els.map(e => e.textContent)")

    def wait_body(self, text: str, timeout: int = WAIT_MS) -> None:
        self.page.wait_for_function(
            "text => [...document.querySelectorAll('#messages li[data-seq] .body')].some(e => e.textContent === text)",
            arg=text,
            timeout=timeout,
        )

    def screenshot(self, name: str) -> None:
        support.OUTPUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(support.OUTPUT / name), full_page=False)


def open_tab(browser: Any, server: support.Server, path: str, *, user: Any = None, viewport: dict | None = None) -> Tab:
    """A fresh browser context (its own cookies), signed in as `user` if given."""
    context = browser.new_context(viewport=viewport or DESKTOP, base_url=server.url)
    if user is not None:
        cookie = support.session_cookie(user).decode()
        _, value = cookie.split("=", 1)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": value, "url": server.url}])
    tab = Tab(context.new_page())
    tab.goto(path)
    return tab
