"""Issue 16 items 8 and 10 outside the edge: sign-in lockout, websocket edges, operator
endpoints, vendored API docs, Content-Security-Policy, password reset, 401 challenges."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import clear_url_caches

from monitoring.consumers import DashboardConsumer
from phoenix.websocket import CLOSE_NO_ROUTE, origin_allowed

OUTSIDE = "203.0.113.9"  # TEST-NET-3: not in the default operator networks


# --- item 8: sign-in lockout (django-axes) -------------------------------------------------


@pytest.fixture
def person(db: None) -> User:
    return User.objects.create_user("ana", password="right-pw-123", is_staff=True)


@pytest.mark.parametrize("login_url", ["/accounts/login/", "/admin/login/"])
def test_repeated_wrong_passwords_lock_the_sign_in(person: User, login_url: str) -> None:
    client = Client()
    for _ in range(4):
        failed = client.post(login_url, {"username": "ana", "password": "wrong"})
        assert failed.status_code == 200  # the form again, with its error
    fifth = client.post(login_url, {"username": "ana", "password": "wrong"})
    locked = client.post(login_url, {"username": "ana", "password": "right-pw-123"})

    assert fifth.status_code == 429  # the limit (PHOENIX_LOGIN_FAILURE_LIMIT=5) reached
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert "_auth_user_id" not in client.session
    # Another person from the same address is not locked out by ana's failures.
    User.objects.create_user("ben", password="ben-pw-12345", is_staff=True)
    other = Client().post(login_url, {"username": "ben", "password": "ben-pw-12345"})
    assert other.status_code == 302


def test_lockout_ends_when_reset(person: User) -> None:
    from axes.utils import reset

    client = Client()
    for _ in range(5):
        client.post("/accounts/login/", {"username": "ana", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "ana", "password": "x"}).status_code == 429

    reset(username="ana")  # what the cool-off does by itself (manage.py axes_reset by hand)

    signed_in = client.post("/accounts/login/", {"username": "ana", "password": "right-pw-123"})
    assert signed_in.status_code == 302


def test_a_success_before_the_limit_clears_the_failures(person: User) -> None:
    client = Client()
    for _ in range(4):
        client.post("/accounts/login/", {"username": "ana", "password": "wrong"})
    assert (
        client.post("/accounts/login/", {"username": "ana", "password": "right-pw-123"}).status_code
        == 302
    )
    client.logout()
    for _ in range(4):
        client.post("/accounts/login/", {"username": "ana", "password": "wrong"})
    assert (
        client.post("/accounts/login/", {"username": "ana", "password": "right-pw-123"}).status_code
        == 302
    )


# --- item 10: websockets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://testserver", "testserver", True),
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://localhost", "localhost", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # same host, other port
        ("http://localhost:8000", "127.0.0.1:8000", False),
        ("http://evil.example", "testserver", False),
        ("http://evil.example", "evil.example", False),  # not in ALLOWED_HOSTS
        (None, "testserver", False),
        ("null", "testserver", False),
    ],
)
def test_websocket_origin_must_match_host_and_port(
    origin: str | None, host: str, allowed: bool
) -> None:
    assert origin_allowed(origin, host) is allowed


def test_trusted_origins_are_accepted_exactly(settings: Any) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com"]
    settings.ALLOWED_HOSTS = ["phoenix.internal"]
    assert origin_allowed("https://dash.example.com", "phoenix.internal")
    assert not origin_allowed("https://dash.example.com:8443", "phoenix.internal")


@pytest.mark.django_db(transaction=True)
def test_unknown_websocket_path_closes_with_4404_and_other_ports_are_refused() -> None:
    from phoenix.asgi import application

    async def scenario() -> None:
        same = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
        unknown = WebsocketCommunicator(application, "/ws/nope/", headers=same)
        connected, _ = await unknown.connect()
        assert connected
        assert (await unknown.receive_output(timeout=2))["code"] == CLOSE_NO_ROUTE

        other_port = [(b"origin", b"http://127.0.0.1:9999"), (b"host", b"127.0.0.1:8000")]
        refused = WebsocketCommunicator(application, "/ws/dashboard/", headers=other_port)
        connected, _ = await refused.connect()
        assert not connected

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_non_json_websocket_frames_are_ignored() -> None:
    admin = User.objects.create_superuser("root", password="root-pw-123")

    async def scenario() -> None:
        comm = WebsocketCommunicator(DashboardConsumer.as_asgi(), "/ws/dashboard/")
        comm.scope["user"] = admin
        connected, _ = await comm.connect()
        assert connected
        await comm.send_to(text_data="this is not JSON {")
        await comm.send_to(bytes_data=b"\x00\xff")
        await comm.receive_nothing(timeout=0.2)
        assert not comm.future.done()  # the consumer did not raise
        await comm.send_to(text_data='{"fine": true}')  # re-raises a crash, if any
        await comm.disconnect()

    async_to_sync(scenario)()


# --- item 10: operator endpoints ---------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_are_for_allowed_networks_or_the_token(settings: Any) -> None:
    settings.PHOENIX_METRICS_TOKEN = "scrape-token-123"
    client = Client()

    inside = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    outside = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    token = client.get(
        "/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer scrape-token-123"
    )
    wrong = client.get("/metrics", REMOTE_ADDR=OUTSIDE, HTTP_AUTHORIZATION="Bearer nope")

    assert inside.status_code == 200
    assert b"phoenix_component_up" in inside.content or b"python_info" in inside.content
    assert outside.status_code == 403
    assert outside.json()["error"]["code"] == "permission_denied"
    assert token.status_code == 200
    assert wrong.status_code == 403


@pytest.mark.django_db
def test_metrics_networks_and_proxy_header_are_configurable(settings: Any) -> None:
    settings.PHOENIX_METRICS_ALLOWED_NETWORKS = ["192.0.2.0/24"]
    settings.PHOENIX_CLIENT_IP_HEADER = "X-Forwarded-For"
    client = Client()

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    via_proxy = client.get(
        "/metrics", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 192.0.2.7"
    )
    assert via_proxy.status_code == 200


@pytest.mark.django_db
def test_readyz_gives_anonymous_callers_the_summary_and_operators_the_detail(
    person: User,
) -> None:
    client = Client()

    summary = client.get("/readyz", REMOTE_ADDR=OUTSIDE)
    operator = client.get("/readyz", REMOTE_ADDR="127.0.0.1")
    client.force_login(person)  # staff, from outside
    staff = client.get("/readyz", REMOTE_ADDR=OUTSIDE)

    assert summary.status_code == operator.status_code
    assert set(summary.json()) == {"status", "degraded"}
    assert "components" in operator.json()
    assert "database" in operator.json()["components"]
    assert "components" in staff.json()
    assert summary.json()["status"] == operator.json()["status"]


# --- item 10: API docs vendored, CSP -------------------------------------------------------------


@pytest.mark.django_db
def test_api_docs_load_nothing_from_another_origin(person: User) -> None:
    client = Client()
    client.force_login(person)

    for url in ["/api/v1/docs/"]:
        page = client.get(url)
        assert page.status_code == 200, url
        html = page.content.decode()
        assert not re.search(r'(?:src|href)="(?:https?:)?//', html), url
        assert "cdn.jsdelivr" not in html
        assert "googleapis" not in html
        scripts = re.findall(r"<script([^>]*)>", html)
        assert scripts, url
        for attributes in scripts:
            # No inline script: each is a file of ours (the CSP allows no other).
            assert 'src="/' in attributes, attributes
            source = re.search(r'src="([^"]+)"', attributes)
            assert source is not None
            path = source.group(1).split("?")[0]
            if path.startswith("/static/"):
                assert finders.find(path.removeprefix("/static/")), path
            else:
                assert client.get(source.group(1)).status_code == 200, path


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy(person: User) -> None:
    client = Client()
    client.force_login(person)

    for url in ["/", "/accounts/login/", "/admin/", "/api/v1/docs/"]:
        policy = client.get(url)["Content-Security-Policy"]
        assert "default-src 'self'" in policy, url
        assert re.search(r"script-src 'self'(;|$)", policy), policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-eval" not in policy


# --- item 10: password reset only with mail -------------------------------------------------------


@pytest.fixture
def urls_with_mail(settings: Any) -> Iterator[None]:
    import phoenix.urls

    settings.EMAIL_HOST = "smtp.example.com"
    importlib.reload(phoenix.urls)
    clear_url_caches()
    yield
    settings.EMAIL_HOST = ""
    importlib.reload(phoenix.urls)
    clear_url_caches()


@pytest.mark.django_db
def test_password_reset_is_hidden_without_a_mail_server() -> None:
    assert Client().get("/accounts/password_reset/").status_code == 404
    assert Client().get("/accounts/login/").status_code == 200


@pytest.mark.django_db
@pytest.mark.usefixtures("urls_with_mail")
def test_password_reset_is_offered_with_a_mail_server() -> None:
    assert Client().get("/accounts/password_reset/").status_code == 200


# --- item 10: 401s carry the Bearer challenge -----------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/models/credit/predict"),
        ("post", "/api/v1/models/credit/explain"),
        ("get", "/api/v1/models"),
        ("get", "/v2/models/credit"),
        ("post", "/v2/models/credit/infer"),
    ],
)
def test_every_401_carries_www_authenticate_bearer(method: str, path: str) -> None:
    client = Client()
    if method == "post":
        response = client.post(
            path, data="{}", content_type="application/json", HTTP_X_API_KEY="wrong-key"
        )
    else:
        response = client.get(path, HTTP_X_API_KEY="wrong-key")
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer realm="phoenix"'
