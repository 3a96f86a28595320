"""The live dashboards in a real browser (Debian's Chromium through Playwright).

The server is uvicorn running the project's ASGI application (HTTP and websockets) in
a thread of the test process, on a free port, against the test database. Predictions
go through the real inference API, so the numbers on the page come from the same
metrics the predict path records.

Set PHOENIX_SCREENSHOT_DIR to keep the screenshots (docs/screenshots is where the
README's come from).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from tests.asgi_server import LiveServer, asgi_server_running
from tests.conftest import service_unavailable
from tests.inference_support import onnx_classifier, register
from tests.registry_support import data_scientists_group_ensure

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "pw-olivia-dashboards"


@pytest.fixture
def asgi_server(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[LiveServer]:
    with asgi_server_running(media_root=tmp_path / "media", settings=settings) as server:
        yield server


@pytest.fixture
def browser_page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        service_unavailable("Debian's Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        # The pages run under a Content-Security-Policy: anything it blocks is a bug.
        refused: list[str] = []
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        yield page
        context.close()
        browser.close()
        assert refused == [], refused


@pytest.fixture
def served(tmp_path: Path) -> dict[str, Any]:
    """credit: v1 production champion, v2 staging challenger under a 20% canary; an API key."""
    from inference import api_keys
    from inference.auth import api_key_cache_clear
    from inference.models import RoutingPolicy
    from inference.session_cache import session_cache
    from monitoring.models import DriftReport

    session_cache.clear()
    api_key_cache_clear()
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), alias="champion")
    register(
        "credit", onnx_classifier(tmp_path / "b.onnx", seed=11), stage="staging", alias="challenger"
    )
    RoutingPolicy.objects.create(
        model=champion.model, strategy="canary", challenger_percent=20, seed="e2e"
    )
    now = timezone.now()
    DriftReport.objects.create(
        model_version=champion,
        window_start=now - timedelta(hours=1),
        window_end=now,
        rows=1200,
        reference_rows=5000,
        status="drift",
        alpha=0.05,
        correction="benjamini-hochberg",
        features={
            "x1": {"test": "ks", "statistic": 0.214, "p_value": 2.1e-12, "p_adjusted": 6.3e-12,
                   "psi": 0.287, "drift": True},
            "x2": {"test": "ks", "statistic": 0.031, "p_value": 0.18, "p_adjusted": 0.27,
                   "psi": 0.011, "drift": False},
            "x3": {"test": "ks", "statistic": 0.022, "p_value": 0.52, "p_adjusted": 0.52,
                   "psi": 0.006, "drift": False},
        },
    )  # fmt: skip
    user = User.objects.create_user("olivia", password=PASSWORD)
    # A transactional test before this one may have flushed the group's permissions.
    data_scientists_group_ensure()
    # On call: watches as an operator and may move stages as a data scientist.
    for group in ("Operators", "Data scientists"):
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return {"key": api_keys.api_key_create(name="e2e", all_models=True)[1], "champion": champion}


def predict(server: LiveServer, key: str, n: int, *, offset: int = 0) -> None:
    for i in range(n):
        x = ((i + offset) % 17) / 4.0 - 2.0
        body = json.dumps(
            {"entity_id": f"cust_{i + offset}", "features": {"x1": x, "x2": -x / 2, "x3": 0.3}}
        ).encode()
        request = urllib.request.Request(
            f"{server.url}/api/v1/models/credit/predict",
            data=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200


def sign_in(page: Any, server: LiveServer, next_path: str = "/") -> None:
    page.goto(f"{server.url}{next_path}")
    assert "/accounts/login/" in page.url  # not signed in yet
    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}{next_path}")
    page.wait_for_selector('#live-status[data-state="open"]')


TOTAL = (
    "Number(document.querySelector('[data-total=\"requests_total\"]')"
    ".textContent.replace(/\\D/g, ''))"
)
# What the page shows for "no value yet".
NO_VALUE = "\u2013"


def shown_total(page: Any) -> int:
    """The overview's request count (metrics are per process, so earlier tests count too)."""
    return int(page.evaluate(TOTAL))


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("PHOENIX_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def traffic_in_background(server: LiveServer, key: str, seconds: float) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + seconds
        offset = 1000
        while time.monotonic() < deadline:
            predict(server, key, 5, offset=offset)
            offset += 5
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_overview_updates_live_when_predictions_arrive(
    asgi_server: LiveServer, served: dict[str, Any], browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, asgi_server)
    page.wait_for_function("() => window.phoenixLive.snapshots >= 1")
    before = shown_total(page)
    points_before = int(page.get_attribute("#chart-rps", "data-points") or 0)
    page.evaluate("window.__sameDocument = true")

    predict(asgi_server, served["key"], 25)

    # The count grows by 25 without a reload, and the chart gains points with traffic in them.
    page.wait_for_function(f"() => {TOTAL} === {before + 25}")
    row = page.locator('tr[data-model="credit"]')
    assert row.locator('[data-field="rps"]').text_content() not in (NO_VALUE, "0")
    assert row.locator('[data-field="p50"]').text_content() != NO_VALUE
    assert row.locator('[data-field="provider"]').text_content() == "CPU"
    page.wait_for_function(
        f"() => Number(document.getElementById('chart-rps').dataset.points) > {points_before + 1}"
    )
    assert page.evaluate("window.phoenixCharts['chart-rps'].data[1].some(v => v > 0)")
    assert page.evaluate("window.__sameDocument") is True
    assert page.evaluate("window.phoenixLive.connects") == 1

    # Screenshots with a few seconds of steady traffic behind them.
    traffic = traffic_in_background(asgi_server, served["key"], seconds=6)
    traffic.join()
    page.wait_for_timeout(1200)
    screenshot(page, "overview.png")

    page.goto(f"{asgi_server.url}/models/credit/")
    page.wait_for_selector('#live-status[data-state="open"]')
    traffic = traffic_in_background(asgi_server, served["key"], seconds=8)
    page.wait_for_function(
        "() => Number(document.getElementById('chart-latency').dataset.points) > 5"
    )
    traffic.join()
    page.wait_for_function(
        '() => document.querySelector(\'.arm[data-arm="champion"] [data-field="p99"]\')'
        f".textContent !== '{NO_VALUE}'"
    )
    assert int(page.get_attribute("#chart-confidence", "data-points") or 0) > 0

    # A drift report pushed from outside the server's event loop (as a Celery task
    # would) appears at once.
    from monitoring.services.dashboard_push import dashboard_event_push

    dashboard_event_push(
        "drift",
        {"model": "credit", "version": "1", "status": "drift", "drifted_features": ["x1"]},
    )
    page.wait_for_selector("#events li.event-drift")
    page.wait_for_timeout(1200)
    screenshot(page, "model.png")

    # The stage button posts the form (with its CSRF token) and the page says what moved.
    page.click('#versions-table tr[data-version="2"] button[data-target="production"]')
    page.wait_for_selector(".message.success")
    assert "v2 is now in production" in (page.text_content(".messages") or "")
    assert page.text_content('#versions-table tr[data-version="1"] [data-field="stage"]') == (
        "archived"
    )


def test_socket_reconnects_after_the_server_closes_it(
    asgi_server: LiveServer, served: dict[str, Any], browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, asgi_server)
    page.wait_for_function("() => window.phoenixLive.snapshots >= 1")
    assert page.evaluate("window.phoenixLive.connects") == 1

    asgi_server.stop()  # closes every websocket, as a deploy or crash would

    page.wait_for_selector('#live-status[data-state="reconnecting"]')
    assert "reconnecting" in (page.text_content("#live-status") or "")

    asgi_server.start()  # same port
    page.wait_for_selector('#live-status[data-state="open"]', timeout=30_000)
    assert page.evaluate("window.phoenixLive.connects") == 2
    snapshots = page.evaluate("window.phoenixLive.snapshots")
    before = shown_total(page)
    predict(asgi_server, served["key"], 3)
    page.wait_for_function(f"() => {TOTAL} === {before + 3}")
    assert page.evaluate("window.phoenixLive.snapshots") > snapshots


def test_api_docs_render_from_vendored_files_under_the_csp(
    asgi_server: LiveServer, served: dict[str, Any], browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, asgi_server)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{asgi_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Phoenix ML API" in (page.text_content(".swagger-ui .info .title") or "")
    page.wait_for_selector(".swagger-ui .opblock-tag")  # the operations, from our schema

    # Everything came from this server: no CDN at run time.
    assert requested
    assert all(url.startswith(asgi_server.url) or url.startswith("data:") for url in requested), [
        url for url in requested if not url.startswith(asgi_server.url)
    ]
