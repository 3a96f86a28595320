"""The model page's performance chart and "why this prediction" panel in a real browser:
the chart draws the stored reports and takes a pushed one; Explain shows the logged
row's attributions from the explain service."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from tests.asgi_server import LiveServer, asgi_server_running
from tests.e2e.test_dashboard_browser import PASSWORD, browser_page, screenshot, sign_in
from tests.inference_support import FEATURES, onnx_classifier

pytestmark = [pytest.mark.browser, pytest.mark.slow]

__all__ = ["browser_page"]  # the fixture, shared with the dashboard browser tests


@pytest.fixture
def asgi_server(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[LiveServer]:
    with asgi_server_running(media_root=tmp_path / "media", settings=settings) as server:
        yield server


@pytest.fixture
def checked(asgi_server: LiveServer, tmp_path: Path) -> dict[str, Any]:
    """credit v1 in production with reference data and holdout metrics, 120 logged rows
    of which 100 are labelled (70 % right), and one performance check of them."""
    from inference.session_cache import session_cache
    from models_registry.services import model_version_register
    from monitoring.models import PredictionLog
    from monitoring.services.performance import performance_check

    session_cache.clear()
    reference = np.random.default_rng(4).normal(size=(200, 3))
    lines = [",".join(FEATURES)] + [",".join(f"{v:.6f}" for v in row) for row in reference]
    version = model_version_register(
        model_name="credit",
        file=onnx_classifier(tmp_path / "a.onnx"),
        stage="production",
        alias="champion",
        metrics={"accuracy": 0.9, "roc_auc": 0.9},
        reference=io.BytesIO(("\n".join(lines) + "\n").encode()),
        reference_filename="reference.csv",
    )
    rng = np.random.default_rng(1)
    at = timezone.now() - timedelta(minutes=10)
    rows = PredictionLog.objects.bulk_create(
        PredictionLog(
            event_id=uuid.uuid4(),
            request_id=uuid.uuid4().hex,
            model_name="credit",
            version="1",
            routed_by="single:champion",
            features=dict(zip(FEATURES, map(float, rng.normal(size=3)), strict=True)),
            prediction=i % 2,
            probabilities=[0.3, 0.7] if i % 2 else [0.7, 0.3],
            confidence=0.7,
            latency_ms=1.0,
            created_at=at + timedelta(seconds=i),
            actual=(i % 2 if i % 10 < 7 else 1 - i % 2) if i < 100 else None,
            actual_at=at + timedelta(seconds=i + 60) if i < 100 else None,
        )
        for i in range(120)
    )
    report = performance_check(version=version, window=timedelta(hours=1))
    user = User.objects.create_user("olivia", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name="Operators")[0])
    return {"version": version, "report": report, "newest": rows[-1]}


def test_chart_takes_a_pushed_report_and_the_panel_explains_a_row(
    asgi_server: LiveServer, checked: dict[str, Any], browser_page: Any
) -> None:
    from monitoring.selectors.performance import performance_event
    from monitoring.services.dashboard_push import dashboard_event_push
    from monitoring.services.performance import performance_report_compute

    page = browser_page
    sign_in(page, asgi_server, "/models/credit/")
    assert page.get_attribute("#chart-performance", "data-points") == "1"
    assert page.evaluate("() => window.phoenixPerformance.series[0].points[0].accuracy") == 0.7
    assert page.is_visible("#chart-performance canvas")

    # A later check, pushed as the Celery task pushes it, becomes the chart's next point.
    # (On a thread of its own: Playwright's sync API runs an event loop on this one, and
    # the ORM refuses to run inside one.)
    def later_check() -> dict[str, Any]:
        report = performance_report_compute(
            version=checked["version"],
            window=timedelta(hours=1),
            now=timezone.now() + timedelta(minutes=5),
        )
        return performance_event(report)

    with ThreadPoolExecutor(max_workers=1) as pool:
        event = pool.submit(later_check).result(timeout=30)
    dashboard_event_push("performance", event)
    page.wait_for_function(
        "() => document.getElementById('chart-performance').dataset.points === '2'"
    )
    page.wait_for_selector("#events li.event-performance")

    newest = checked["newest"]
    page.click(f'#recent-predictions button.explain[data-row-id="{newest.pk}"]')
    page.wait_for_selector("#explanation .attributions li")
    assert page.locator("#explanation .attributions li").count() == len(FEATURES)
    answer = page.evaluate("() => window.phoenixExplain.last")
    total = sum(a["attribution"] for a in answer["attributions"])
    assert abs(total - (answer["value"] - answer["baseline"])) <= answer["tolerance"]
    assert page.locator(f'#recent-predictions tr.selected[data-row-id="{newest.pk}"]').count() == 1
    screenshot(page, "model-performance.png")
