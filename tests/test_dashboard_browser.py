"""The dashboard (``/ui``) end to end in a real browser.

Debian's chromium, driven by Playwright's Python package, against a real gateway process
(services/gateway.py, with a bearer token), real worker processes (tests.workers:make, at
most one delivery per dispatch) and a real redis-server: the page loads without a console
error, search finds a promise begun by the test, and a poison (dead) promise is requeued
from the page and then resolves; with the token required the page shows nothing before
it is given, and without one it says, visibly, that it is unprotected; the schedules table
shows each schedule with every column on screen. Screenshots go to
the test's tmp dir and to ``$REDPROMISE_SCREENS`` (default /work/screens when that
directory's parent exists).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from redpromise import Constant, Redpromise, Settings
from tests.procs import WorkerProcess
from tests.services import GatewayProcess

pytestmark = pytest.mark.real

CHROMIUM = os.environ.get("REDPROMISE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "ui-token"
HOUR = timedelta(hours=1)
DEADLINE = 30.0


def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


class Library:
    """The test's own redpromise client (blocking calls over asyncio.run)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url = url
        self.namespace = namespace

    def call(self, fn: Callable[[Redpromise], Any]) -> Any:
        async def go() -> Any:
            rp = Redpromise(self.url, group="ui-test", settings=Settings(namespace=self.namespace))
            try:
                await rp.start()
                return await fn(rp)
            finally:
                await rp.stop()

        # Its own thread: Playwright's sync API runs an event loop in this one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(lambda: asyncio.run(go())).result()

    def state(self, id: str) -> str:
        async def get(rp: Redpromise) -> str:
            return await (await rp.get(id)).state()

        return str(self.call(get))


def playwright_or_skip() -> Any:
    """Playwright's sync API; skips the test when it or Debian's chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    return sync_api


@contextlib.contextmanager
def chromium_page(sync_api: Any, height: int, errors: list[str]) -> Iterator[Any]:
    """A 1280 x ``height`` page of a headless chromium; every console error and page
    error it reports is appended to ``errors``. The browser is closed on leaving."""
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page
        finally:
            browser.close()


@pytest.fixture
def screens(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "screens"
    out.mkdir()
    yield out
    stable = os.environ.get("REDPROMISE_SCREENS") or (
        "/work/screens" if Path("/work").is_dir() else ""
    )
    if stable:
        Path(stable).mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy(png, Path(stable) / png.name)


def test_dashboard_search_and_requeue_a_dead_promise_in_a_real_browser(
    real_url: str, tmp_path: Path, screens: Path
) -> None:
    sync_api = playwright_or_skip()
    namespace = f"ui{uuid.uuid4().hex[:10]}"
    case = uuid.uuid4().hex[:8]
    trap = tmp_path / "trap"
    lib = Library(real_url, namespace)
    gateway = GatewayProcess(real_url, namespace, tmp_path, env={"REDPROMISE_GATEWAY_TOKEN": TOKEN})
    workers = [
        WorkerProcess(real_url, namespace, tmp_path, env={"REDPROMISE_MAX_DELIVERIES": "1"})
        for _ in range(2)
    ]
    errors: list[str] = []
    try:
        gateway.start()
        for w in workers:
            w.start()
        # A promise to find, and a poison one: its worker dies, the other reclaims it
        # after the lease and, past max_deliveries, rejects it into the dead stream.
        found_id = f"find-{case}"
        dead_id = f"dead-{case}"
        failing_id = f"failing-{case}"
        canceled_id = f"canceled-{case}"
        trap.touch()

        async def begin(rp: Redpromise) -> None:
            await rp.begin_rpc(found_id, "echo", {"hello": case}, tags={"case": case})
            await rp.begin_rpc(dead_id, "fragile", dead_id, str(trap), tags={"case": case})
            # Fails, and is retried only in an hour: pending with its last error on record.
            await rp.begin_rpc(
                failing_id, "fails", case, retry=Constant(delay=HOUR), tags={"case": case}
            )
            await rp.begin_rpc(canceled_id, "echo", 1, target="poll://any@nobody")
            await rp.cancel(canceled_id)

        lib.call(begin)
        eventually(lambda: lib.state(found_id) == "resolved", "the echo promise resolves")
        eventually(lambda: lib.state(dead_id) == "rejected", "the poison promise is rejected")
        trap.unlink()  # the operator fixed the cause: a new attempt can succeed

        with chromium_page(sync_api, 900, errors) as page:
            # With a token the page shows nothing before it is given: only the form.
            page.goto(f"{gateway.base}/ui")
            page.wait_for_selector("#locked", state="visible")
            assert page.is_visible("#token-form") and not page.is_visible("main")
            assert page.query_selector("#groups tbody tr") is None
            page.screenshot(path=str(screens / "1-locked.png"), full_page=True)
            page.fill("#token", TOKEN)
            page.click("#unlock")
            page.wait_for_selector("#groups tbody tr[data-group='worker']")
            assert page.is_visible("#mode") and not page.is_visible("#unprotected")
            # Canceled is counted apart from rejected (the dead promise's rejection).
            nobody = "#groups tr[data-group='nobody']"
            assert page.text_content(f"{nobody} td[data-state='rejected_canceled']") == "1"
            assert page.text_content(f"{nobody} td[data-state='rejected']") == "0"

            # Search by tag finds the promise begun above; its detail shows the result.
            page.fill("#f-tag", f"case={case}")
            page.click("#search-button")
            page.wait_for_selector(f"#promises tr[data-id='{found_id}']")
            page.click(f"#promises a[data-id='{found_id}']")
            page.wait_for_selector("#d-state.resolved")
            page.wait_for_function(
                "document.querySelector('#d-fields').textContent.includes('hello')"
            )
            page.screenshot(path=str(screens / "2-search-and-detail.png"), full_page=True)

            # The dead record is requeued from the page: a new promise with the same
            # function and arguments, which now resolves. The original stays rejected.
            page.click("button[data-tab='dead']")
            row = f"#dead tr:has(a[data-id='{dead_id}'])"
            page.wait_for_selector(f"{row} button.requeue")
            page.screenshot(path=str(screens / "3-dead.png"), full_page=True)
            page.click(f"{row} button.requeue")
            page.wait_for_selector(f"{row} >> text=requeued as")
            new_id = page.get_attribute(f"{row} span a", "data-id")
            assert new_id and new_id != dead_id
            eventually(lambda: lib.state(new_id) == "resolved", "the requeued promise resolves")

            def shows_resolved() -> bool:
                page.click(f"{row} span a")
                page.wait_for_selector("#d-state")
                return page.get_attribute("#d-state", "class") == "state resolved"

            eventually(shows_resolved, "the page shows the requeued promise resolved")
            assert f"{dead_id} ok" in (page.text_content("#d-fields") or "")
            page.screenshot(path=str(screens / "4-requeued-resolved.png"), full_page=True)
            assert lib.state(dead_id) == "rejected"  # the first completion still stands

            # Requeueing the same record again begins nothing new.
            resp = page.request.post(
                f"{gateway.base}/ui/api/requeue?key=" + (page.get_attribute(row, "data-key") or ""),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert resp.json() == {"action": "begun", "id": new_id}

            # The Failing tab lists the promise that fails and waits for its retry, with
            # its last error; times name their zone (UTC, "Z").
            page.click("button[data-tab='failing']")
            failing_row = f"#promises tr[data-id='{failing_id}']"
            page.wait_for_selector(failing_row)
            assert page.text_content(f"{failing_row} .state") == "failing"
            last = page.text_content(f"{failing_row} td:last-child") or ""
            assert last.startswith("ValueError: attempt 0 failed (attempt 0, ")
            assert (page.text_content(f"{failing_row} td:nth-child(5)") or "").endswith("Z")
            page.click(f"{failing_row} a")
            page.wait_for_selector("#d-state.failing")
            assert "next retry" in (page.text_content("#d-fields") or "")
            page.screenshot(path=str(screens / "6-failing.png"), full_page=True)
            # The detail has its own address: a reload (or a shared link) opens it again.
            assert page.url.endswith(f"/ui#/promise/{failing_id}")
            page.reload()
            page.wait_for_selector("#d-state.failing")
            assert page.text_content("#d-id") == failing_id
        assert errors == []
    finally:
        gateway.close()
        for w in workers:
            w.close()


def test_without_a_token_the_page_says_it_is_unprotected_in_a_real_browser(
    real_url: str, tmp_path: Path, screens: Path
) -> None:
    sync_api = playwright_or_skip()
    gateway = GatewayProcess(real_url, f"ui{uuid.uuid4().hex[:10]}", tmp_path)
    errors: list[str] = []
    try:
        gateway.start()
        with chromium_page(sync_api, 600, errors) as page:
            page.goto(f"{gateway.base}/ui")
            page.wait_for_selector("#unprotected", state="visible")
            assert "anyone who can reach this address" in (page.text_content("#unprotected") or "")
            assert not page.is_visible("#token-form") and not page.is_visible("#locked")
            page.wait_for_selector("#groups tbody tr[data-group='worker']")
            page.screenshot(path=str(screens / "5-unprotected.png"), full_page=True)
        assert errors == []
    finally:
        gateway.close()


def test_the_schedules_table_shows_each_schedule_and_its_next_run_in_a_real_browser(
    real_url: str, tmp_path: Path, screens: Path
) -> None:
    sync_api = playwright_or_skip()
    namespace = f"ui{uuid.uuid4().hex[:10]}"
    lib = Library(real_url, namespace)
    # No worker runs: the schedules keep their first next run, so the page must show it.
    made = lib.call(
        lambda rp: asyncio.gather(
            rp.schedule("nightly-report", "0 3 * * *", "report", "eu", target="reports"),
            rp.schedule("every-minute", "* * * * *", "ping"),
        )
    )
    gateway = GatewayProcess(real_url, namespace, tmp_path)
    errors: list[str] = []
    try:
        gateway.start()
        with chromium_page(sync_api, 800, errors) as page:
            page.goto(f"{gateway.base}/ui")
            page.wait_for_selector("#schedules tbody tr[data-id='nightly-report']")
            rows = {
                row.get_attribute("data-id"): [c.inner_text() for c in row.query_selector_all("td")]
                for row in page.query_selector_all("#schedules tbody tr")
            }
            assert set(rows) == {"nightly-report", "every-minute"}
            nightly = rows["nightly-report"]
            assert nightly[2:5] == ["0 3 * * *", "report", "reports"], nightly
            assert nightly[6] == "", nightly  # never ran
            # The next run as the page writes it: the record's time in UTC, zone shown.
            next_run = made[0]["next_run_at"]
            at = datetime.fromtimestamp(next_run / 1000, UTC)
            assert at.hour == 3 and at.minute == 0, at
            assert nightly[5] == f"{at:%Y-%m-%d %H:%M:%S}.{next_run % 1000:03d}Z", nightly
            # Every column is on screen, not scrolled out of its section.
            box = page.locator("#schedules-section").bounding_box()
            last = page.locator("#schedules thead th").last.bounding_box()
            assert box is not None and last is not None
            assert last["x"] + last["width"] <= box["x"] + box["width"], (last, box)
            page.screenshot(path=str(screens / "7-schedules.png"), full_page=True)
        assert errors == []
    finally:
        gateway.close()
