"""Prometheus and Grafana as code: promtool accepts them and they name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import service_unavailable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
METRIC = re.compile(r"\b(phoenix_[a-z_]+)\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        service_unavailable("promtool not installed (apt-get install -y prometheus)")
    return str(path)


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_the_scrape_config(promtool: str) -> None:
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_drift_latency_and_errors(promtool: str) -> None:
    # alerts_test.yml feeds series to the rules and states which alerts must fire.
    result = run(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_covers_api_consumer_and_worker() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["phoenix-api"] == ["api:8000"]
    assert targets["phoenix-consumer"] == ["consumer:9101"]
    assert targets["phoenix-worker"] == ["worker:9102"]


def exposed_metric_names() -> set[str]:
    """Every sample name the project's metrics expose (definitions are imported)."""
    from prometheus_client import REGISTRY

    import inference.events
    import inference.metrics  # noqa: F401
    import monitoring.services.drift_reports
    import monitoring.services.event_consumer
    import monitoring.services.performance  # noqa: F401

    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
        }.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def referenced_metrics(text: str) -> set[str]:
    return set(METRIC.findall(text))


def test_alert_rules_and_dashboard_only_name_metrics_the_code_defines() -> None:
    exposed = exposed_metric_names()
    alerts = referenced_metrics((PROMETHEUS / "alerts.yml").read_text())
    dashboard_json = (GRAFANA / "dashboards" / "phoenix.json").read_text()
    dashboard = referenced_metrics(dashboard_json)
    assert {
        "phoenix_drift_detected",
        "phoenix_performance_degraded",
        "phoenix_inference_latency_seconds_bucket",
    } <= alerts
    assert alerts - exposed == set()
    assert dashboard - exposed == set()


def test_grafana_dashboard_is_provisioned_from_the_prometheus_datasource() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/phoenix.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((GRAFANA / "dashboards" / "phoenix.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("requests/s", "latency", "error", "confidence", "drift p-values", "consumer lag"):
        assert topic in titles
    for p in panels:
        assert p["datasource"]["uid"] == uid
        assert p["targets"], p["title"]
        assert all(t["datasource"]["uid"] == uid and t["expr"] for t in p["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
