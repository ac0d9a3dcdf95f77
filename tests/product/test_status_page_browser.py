"""The status server as users and Prometheus see it: the page in headless Chromium, basic auth,
``/metrics`` and ``/health``, on a BridgeApp polling simulated meters.

Chromium and its driver are Debian's (``tests/setup_system.sh`` installs them); selenium talks to
``/usr/bin/chromedriver``. Every WebDriver call runs in a worker thread: the page fetches
``/api/status`` from the server on this test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from bridge.app import BridgeApp
from bridge.config.loader import load_mapping
from bridge.config.model import StatusSettings
from bridge.status.passwords import hash_password
from bridge.status.server import StatusServer
from bridge.tags import Quality, TagStore

from .conftest import SitePorts, get_json, write_site

pytestmark = pytest.mark.timeout(90)
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip
METERS = {"m307", "m107", "gw307"}
T = TypeVar("T")


def all_good(store: TagStore, mapping_keys: list[str]) -> bool:
    values = [store.get(k) for k in mapping_keys]
    return all(v is not None and v.quality is Quality.Good for v in values)


async def started_site(
    tmp_path: Path, free_port: Callable[[], int], **kw: Any
) -> tuple[BridgeApp, SitePorts]:
    ports = SitePorts.pick(free_port)
    path = write_site(tmp_path, ports, opcua=False, modbus=False, **kw)
    app = BridgeApp(load_mapping(path), mapping_path=path)
    await app.start()
    return app, ports


@pytest.fixture
async def site(
    tmp_path: Path, free_port, no_leftovers, wait_until
) -> AsyncIterator[tuple[BridgeApp, SitePorts]]:
    app, ports = await started_site(tmp_path, free_port)
    try:
        keys = [t.key for t in app.mapping.tags]
        await wait_until(lambda: all_good(app.store, keys), within=20, what="every tag Good")
        yield app, ports
    finally:
        await app.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[WebDriver]:
    """Headless Chromium; started and quit on a thread of its own (tests shut the loop's default
    executor down before this fixture's teardown runs)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromium-driver are not installed (tests/setup_system.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1, thread_name_prefix="chromium") as pool:
        driver = await loop.run_in_executor(pool, lambda: webdriver.Chrome(options=options, service=service))
        try:
            yield driver
        finally:
            await loop.run_in_executor(pool, driver.quit)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


def cells(driver: WebDriver, selector: str) -> list[str]:
    """The cell texts of one row, read in one script call: the page replaces its rows every 2 s,
    so an element found in one WebDriver call may be stale in the next."""
    script = "return Array.from(document.querySelectorAll(arguments[0]), td => td.textContent);"
    return [str(text) for text in driver.execute_script(script, selector + " td")]


def attributes(driver: WebDriver, selector: str, name: str) -> list[str]:
    """One attribute of every element matching ``selector``, read in one script call."""
    script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.getAttribute(arguments[1]));"
    return [str(value) for value in driver.execute_script(script, selector, name)]


def wait_for(
    driver: WebDriver, what: str, predicate: Callable[[WebDriver], object], within: float = 15
) -> Any:
    try:
        return WebDriverWait(driver, within, poll_frequency=0.2).until(predicate)
    except TimeoutException:
        raise AssertionError(f"page: {what} not within {within} s") from None


# --------------------------------------------------------------------------- the page
def meter_rows_shown(driver: WebDriver) -> bool:
    return len(attributes(driver, "#meters tr[data-meter]", "data-meter")) == len(METERS)


def check_page(driver: WebDriver, url: str) -> str:
    """Loads the page, checks channels, meters and tags; returns the text of one value cell."""
    driver.get(url)
    assert driver.title == "milur-bridge status"
    wait_for(driver, "meter rows", meter_rows_shown)
    assert set(attributes(driver, "#meters tr[data-meter]", "data-meter")) == METERS
    meter = cells(driver, '#meters tr[data-meter="gw307"]')
    assert meter[:5] == ["gw307", "line", "307", "49932", "ok"], meter
    channel = cells(driver, '#channels tr[data-channel="line"]')
    assert channel[:3] == ["line", "tcp-client", "yes"] and int(channel[5]) > 0, channel
    tag = cells(driver, '#tags tr[data-tag="m307.Ua"]')
    assert tag[0:2] == ["m307", "Ua"] and tag[3:5] == ["V", "Good"], tag
    assert 200 < float(tag[2]) < 260, tag
    assert re.fullmatch(r"\d+\.\d{3}", tag[2])  # the page shows 3 decimals
    freq = cells(driver, '#tags tr[data-tag="m107.frequency"]')
    assert freq[3:5] == ["Hz", "Good"] and 49 < float(freq[2]) < 51, freq
    assert driver.find_element(By.ID, "updated").text.startswith("updated ")
    return cells(driver, '#tags tr[data-tag="m107.voltage"]')[2]


def value_changes(driver: WebDriver, before: str) -> str:
    """Waits (bounded) until the page shows another value for m107.voltage without a reload."""

    def new_text(d: WebDriver) -> str | None:
        row = cells(d, '#tags tr[data-tag="m107.voltage"]')
        return row[2] if row and row[2] and row[2] != before else None

    return str(wait_for(driver, "a new voltage", new_text, within=20))


async def test_page_shows_meters_and_values_and_updates_them(site, browser) -> None:
    app, ports = site
    first = await in_thread(check_page, browser, ports.status_url + "/")
    assert 200 < float(first) < 260
    second = await in_thread(value_changes, browser, first)
    assert 200 < float(second) < 260 and second != first


# --------------------------------------------------------------------------- basic auth
def http_status(url: str, user: str | None = None, password: str = "") -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_login_page(driver: WebDriver, base: str, user: str, password: str) -> None:
    driver.get(base + "/")
    # headless Chromium shows an empty page where a desktop one would ask for the login
    assert not driver.find_elements(By.CSS_SELECTOR, "#meters")
    host = base.removeprefix("http://")
    driver.get(f"http://{user}:{password}@{host}/")  # the browser keeps the login for api/status
    wait_for(driver, "meter rows", meter_rows_shown)
    assert cells(driver, '#tags tr[data-tag="m307.Ua"]')[4] == "Good"


async def test_basic_auth_on_the_page_api_and_metrics_but_not_health(
    tmp_path: Path, free_port, no_leftovers, wait_until, browser
) -> None:
    app, ports = await started_site(tmp_path, free_port, status_auth=("ops", hash_password("pa55-word")))
    try:
        await wait_until(lambda: all_good(app.store, ["m307.Ua"]), within=20)
        base = ports.status_url
        for path in ("/", "/api/status", "/metrics"):
            assert await in_thread(http_status, base + path) == 401, path
            assert await in_thread(http_status, base + path, "ops", "wrong") == 401, path
            assert await in_thread(http_status, base + path, "ops", "pa55-word") == 200, path
        assert await in_thread(http_status, base + "/health") == 200
        await in_thread(check_login_page, browser, base, "ops", "pa55-word")
    finally:
        await app.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


# --------------------------------------------------------------------------- /metrics, /health
def metric(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{label_text}}}" if labels else name) + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{name} {labels} not in /metrics"
    return float(found.group(1))


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_metrics_and_health(site, wait_until) -> None:
    app, ports = site
    text = await in_thread(fetch_text, ports.status_url + "/metrics")
    assert metric(text, "milur_channel_requests_total", channel="line") > 0
    assert metric(text, "milur_channel_timeouts_total", channel="line") == 0
    assert metric(text, "milur_channel_connected", channel="line") == 1
    assert metric(text, "milur_meters", state="ok") == 3
    assert metric(text, "milur_meters", state="failing") == 0
    assert metric(text, "milur_meter_requests_total", meter="gw307") > 0
    assert metric(text, "milur_round_trip_seconds_count", channel="line") > 0
    assert metric(text, "milur_round_trip_seconds_bucket", channel="line", le="+Inf") > 0
    assert metric(text, "milur_tag_updates_total") > 0

    # a meter that stops answering shows up in the counters and the states
    app.simulator[0].bus.find(2, 1).faults.silent = True
    await wait_until(lambda: app.collector is not None and app.collector.meter_state("m107") != "ok",
                     within=20, what="m107 no longer ok")  # fmt: skip
    text = await in_thread(fetch_text, ports.status_url + "/metrics")
    assert metric(text, "milur_meters", state="ok") == 2
    assert metric(text, "milur_channel_timeouts_total", channel="line") > 0

    health = await in_thread(get_json, ports.status_url + "/health")
    assert health["ok"] is True and health["meters"] == 3 and health["tags"] == len(app.mapping.tags)
    assert sum(health["meter_states"].values()) == 3


async def test_health_is_503_once_the_bridge_stopped(tmp_path: Path, free_port, no_leftovers) -> None:
    app, ports = await started_site(tmp_path, free_port)
    try:
        assert (await in_thread(get_json, ports.status_url + "/health"))["ok"] is True
    finally:
        await app.stop()
    # the app's own status server has gone with it; a status server still asking a stopped
    # app (as during shutdown) answers 503
    assert await in_thread(http_status_or_refused, ports.status_url + "/health") == "refused"
    settings = StatusSettings(host="127.0.0.1", port=0)
    server = StatusServer(settings, lambda: app.mapping, app.store, app.metrics, app.health)
    await server.start()
    try:
        assert await in_thread(http_status, f"http://127.0.0.1:{server.port}/health") == 503
    finally:
        await server.stop()
        await asyncio.get_running_loop().shutdown_default_executor()


def http_status_or_refused(url: str) -> int | str:
    try:
        return http_status(url)
    except urllib.error.URLError:
        return "refused"
