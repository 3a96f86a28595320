"""Dashboard pages: sign-in, who may see them, what they show, stage moves from the page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from models_registry.models import AuditEvent, ModelVersion
from monitoring.models import DriftReport, DriftStatus
from tests.inference_support import onnx_classifier, register
from tests.registry_support import DATA_SCIENTISTS, data_scientists_group_ensure

PAGES = ["/", "/models/credit/", "/drift/", "/experiments/", "/pipeline/"]


@pytest.fixture
def credit(db: None, tmp_path: Path, settings: Any) -> dict[str, ModelVersion]:
    """credit v1 in production with a drift report, v2 a staging challenger."""
    settings.MEDIA_ROOT = tmp_path / "media"
    champion = register("credit", onnx_classifier(tmp_path / "a.onnx"), stage="production")
    challenger = register(
        "credit",
        onnx_classifier(tmp_path / "b.onnx", flip=True),
        stage="staging",
        alias="challenger",
    )
    now = timezone.now()
    DriftReport.objects.create(
        model_version=champion,
        window_start=now - timedelta(hours=1),
        window_end=now,
        rows=500,
        reference_rows=2000,
        status=DriftStatus.DRIFT,
        alpha=0.05,
        correction="bh",
        features={
            "x1": {"test": "ks", "statistic": 0.31, "p_value": 1.2e-9, "p_adjusted": 3.6e-9,
                   "psi": 0.412, "drift": True},
            "x2": {"test": "ks", "statistic": 0.02, "p_value": 0.71, "p_adjusted": 0.71,
                   "psi": 0.003, "drift": False},
        },
    )  # fmt: skip
    return {"champion": champion, "challenger": challenger}


def user_in(group: str | None, username: str = "u", **extra: Any) -> User:
    user = User.objects.create_user(username, password="pw-1-phoenix", **extra)
    if group == DATA_SCIENTISTS:
        # Stage moves need the group's permissions, which a flushed database has lost.
        data_scientists_group_ensure()
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_anonymous_visitors_to_sign_in(credit: Any, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={path}")


@pytest.mark.parametrize("path", PAGES)
def test_pages_refuse_users_outside_the_dashboard_groups(credit: Any, path: str) -> None:
    response = client_for(user_in(None)).get(path)
    assert response.status_code == 403


def test_login_page_signs_an_operator_in_and_returns_to_the_page(credit: Any) -> None:
    user_in("Operators", "olivia")
    client = Client()
    page = client.get("/accounts/login/?next=/drift/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    response = client.post(
        "/accounts/login/", {"username": "olivia", "password": "pw-1-phoenix", "next": "/drift/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/drift/"
    assert client.get("/drift/").status_code == 200


def test_overview_lists_served_models_with_stage_drift_and_routing(credit: Any) -> None:
    response = client_for(user_in("Operators")).get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-model="credit"' in html
    assert "production" in html
    assert "vs v2" in html  # the challenger
    assert "Drift detected" in html
    assert 'data-ws-path="/ws/dashboard/"' in html
    assert "vendor/uplot/uPlot.iife.min.js" in html
    assert "cdn" not in html.lower()


def test_model_page_shows_drift_per_feature_history_and_arms(credit: Any) -> None:
    response = client_for(user_in("Operators")).get("/models/credit/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-arm="champion" data-version="1"' in html
    assert 'data-arm="challenger" data-version="2"' in html
    assert "3.6e-09" in html
    assert "0.412" in html
    assert "Stage history" in html
    # Operators watch; only data scientists get the stage buttons.
    assert 'name="stage"' not in html
    assert "data scientists only" in html


def test_model_page_of_an_unknown_model_is_404(credit: Any) -> None:
    assert client_for(user_in("Operators")).get("/models/nope/").status_code == 404


def test_data_scientist_sees_only_allowed_moves(credit: Any) -> None:
    html = client_for(user_in("Data scientists")).get("/models/credit/").content.decode()
    # v2 is in staging: dev, production and archived are allowed, staging is not.
    row = html[html.index('<tr data-version="2">') :]
    row = row[: row.index("</tr>")]
    assert [t for t in ("dev", "staging", "production", "archived") if f'value="{t}"' in row] == [
        "dev",
        "production",
        "archived",
    ]


def test_stage_move_button_promotes_and_records_who(credit: Any) -> None:
    scientist = user_in("Data scientists", "dana")
    client = Client(enforce_csrf_checks=True)
    client.force_login(scientist)
    page = client.get("/models/credit/")
    token = page.context["csrf_token"]
    response = client.post(
        "/models/credit/versions/2/stage/", {"stage": "production", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert response["Location"] == "/models/credit/"
    credit["challenger"].refresh_from_db()
    credit["champion"].refresh_from_db()
    assert credit["challenger"].stage == "production"
    assert credit["champion"].stage == "archived"
    audit = AuditEvent.objects.filter(version="2", to_value="production").get()
    assert audit.actor_name == "dana"
    follow = client.get("/models/credit/")
    assert "is now in production" in follow.content.decode()


def test_stage_move_without_csrf_token_is_refused(credit: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_in("Data scientists"))
    response = client.post("/models/credit/versions/2/stage/", {"stage": "production"})
    assert response.status_code == 403
    credit["challenger"].refresh_from_db()
    assert credit["challenger"].stage == "staging"


def test_stage_move_is_refused_to_operators_and_on_get(credit: Any) -> None:
    operator = client_for(user_in("Operators"))
    assert (
        operator.post("/models/credit/versions/2/stage/", {"stage": "production"}).status_code
        == 403
    )
    scientist = client_for(user_in("Data scientists", "d2"))
    assert scientist.get("/models/credit/versions/2/stage/").status_code == 405
    credit["challenger"].refresh_from_db()
    assert credit["challenger"].stage == "staging"


def test_disallowed_move_is_a_message_not_an_error(credit: Any) -> None:
    client = client_for(user_in(None, "root", is_superuser=True))
    response = client.post("/models/credit/versions/1/stage/", {"stage": "dev"}, follow=True)
    assert response.status_code == 200
    assert "cannot move from production to dev" in response.content.decode()
    credit["champion"].refresh_from_db()
    assert credit["champion"].stage == "production"
    unknown = client.post("/models/credit/versions/9/stage/", {"stage": "staging"})
    assert unknown.status_code == 404


def test_drift_history_filters_by_model(credit: Any, tmp_path: Path) -> None:
    other = register("churn", onnx_classifier(tmp_path / "c.onnx", seed=3), stage="production")
    now = timezone.now()
    DriftReport.objects.create(
        model_version=other, window_start=now, window_end=now, rows=10, status="ok",
        alpha=0.05, correction="bh", features={},
    )  # fmt: skip
    client = client_for(user_in("Operators"))
    everything = client.get("/drift/").content.decode()
    assert everything.count("<td>v1</td>") == 2
    only_credit = client.get("/drift/?model=credit").content.decode()
    assert only_credit.count("<td>v1</td>") == 1
    assert "1 / 2" in only_credit  # one of two features drifted


def test_experiments_show_both_arms_and_policy(credit: Any) -> None:
    from inference.models import RoutingPolicy

    RoutingPolicy.objects.create(
        model=credit["champion"].model, strategy="canary", challenger_percent=10, seed="s1"
    )
    html = client_for(user_in("Operators")).get("/experiments/").content.decode()
    assert 'data-model="credit"' in html
    assert "Canary" in html
    assert "challenger 10%" in html
    assert '<tr data-version="1"><td>champion</td>' in html
    assert '<tr data-version="2"><td>challenger</td>' in html


def test_pipeline_page_lists_event_metrics(credit: Any) -> None:
    import inference.events  # noqa: F401 - defines the pipeline's metrics

    html = client_for(user_in("Operators")).get("/pipeline/").content.decode()
    assert "phoenix_events_buffer_depth" in html
    assert "Logged predictions" in html


def test_admin_shows_drift_reports_read_only(credit: Any) -> None:
    admin = client_for(user_in(None, "root", is_superuser=True, is_staff=True))
    listing = admin.get("/admin/monitoring/driftreport/")
    assert listing.status_code == 200
    assert "x1" in listing.content.decode()  # the drifted feature
    report = DriftReport.objects.get()
    detail = admin.get(f"/admin/monitoring/driftreport/{report.pk}/change/").content.decode()
    assert "3.6e-09" in detail
    assert admin.get("/admin/monitoring/driftreport/add/").status_code == 403
    assert admin.get("/admin/monitoring/predictionlog/").status_code == 200
