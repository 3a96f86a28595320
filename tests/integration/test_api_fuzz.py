"""Schemathesis over the whole OpenAPI schema, against uvicorn serving phoenix.asgi.

Every operation of ``/api/v1/schema/`` is called with generated requests, valid ones
(positive) and invalid ones (negative), as a client (an API key) and as a data
scientist (a signed-in session with its CSRF token); each operation once with every
path parameter generated and once aimed at the objects that exist (the demo model
``credit-risk``, its versions, an experiment, a logged prediction), plus the schema's
own request examples. Each response must not be a server error and must match the
schema: a documented status, the documented content type and the documented body,
error responses included.

Bounded and deterministic: a fixed number of examples per operation, derandomized, no
shrinking and no example database, so a run makes the same requests in the same order.
The server is the real ASGI stack (data plane, Channels, Django) on a free loopback
port, so the predict path's lean handler is fuzzed too. The KServe v2 routes are not
in the OpenAPI schema (a Channels consumer), so they are not fuzzed here.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.asgi_server import LiveServer, asgi_server_running
from tests.registry_support import make_data_scientist

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Examples per (operation, role, generation mode, path parameters) run; raise it for a
# longer hunt (PHOENIX_FUZZ_EXAMPLES=200), the run stays deterministic.
MAX_EXAMPLES = int(os.environ.get("PHOENIX_FUZZ_EXAMPLES", "15"))
PASSWORD = "pw-fuzz-scientist"


@dataclass
class Findings:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[tuple[str, int]] = field(default_factory=Counter)
    # (run, failure, status) -> how often, and the first message.
    failures: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    messages: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def record(self, run: str, failure: str, status: int, message: str) -> None:
        key = (run, failure, status)
        self.failures[key] += 1
        self.messages.setdefault(key, message)


@pytest.fixture
def server(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[LiveServer]:
    with asgi_server_running(media_root=tmp_path / "media", settings=settings) as live:
        yield live


@pytest.fixture
def world(server: LiveServer) -> dict[str, Any]:
    """The demo models (credit-risk v1 production champion, v2 staging challenger), a
    draft experiment, a logged prediction, a client key for the model, a data scientist."""
    from django.core.management import call_command

    from inference.api_keys import api_key_create
    from inference.auth import api_key_cache_clear
    from inference.request_ids import request_id_new
    from inference.session_cache import session_cache
    from models_registry.models import ModelVersion
    from monitoring.services.experiments import experiment_create
    from monitoring.services.prediction_log import prediction_log_write_events
    from phoenix.demo.credit_risk import FEATURE_NAMES, MODEL_NAME

    session_cache.clear()
    api_key_cache_clear()
    call_command("train_demo_models", rows=800, reference_rows=200, stdout=io.StringIO())
    champion, challenger = ModelVersion.objects.filter(model__name=MODEL_NAME).order_by("pk")
    experiment = experiment_create(model=champion.model, challenger=challenger, mode="shadow")
    request_id = request_id_new()
    prediction_log_write_events(
        events=[
            {
                "event_id": "6d3f4e2a-0f0e-4b8e-9a53-8f2b8f0c1d01",
                "request_id": request_id,
                "row_index": 0,
                "model": MODEL_NAME,
                "version": champion.version,
                "routed_by": "single",
                "features": dict.fromkeys(FEATURE_NAMES, 1.0),
                "prediction": 1,
                "probabilities": [0.2, 0.8],
                "confidence": 0.8,
                "latency_ms": 0.25,
                "created_at": "2026-12-01T00:00:00+00:00",
            }
        ]
    )
    key = api_key_create(name="fuzz", model_names=[MODEL_NAME])[1]
    make_data_scientist(User, "dana", password=PASSWORD)
    session_cache.refresh(reason="test start")  # as preload() does at server start
    return {
        "key": key,
        "known": {
            "name": MODEL_NAME,
            "version": champion.version,
            "alias": "challenger",
            "experiment_id": experiment.pk,
            "request_id": request_id,
        },
    }


def _client_session(key: str) -> Any:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    return session


def _scientist_session(url: str) -> Any:
    """Signed in through the login form, as a person is; writes send the CSRF token."""
    import requests

    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=30).raise_for_status()
    token = session.cookies["csrftoken"]
    signed_in = session.post(
        f"{url}/accounts/login/",
        data={"username": "dana", "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{url}/accounts/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert signed_in.status_code == 302, signed_in.text[:500]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


# The roles' own credentials replace any that schemathesis generates for a security scheme.
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-csrftoken", "cookie")


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def _explore(
    strategy: Any, label: str, url: str, session: Any, found: Findings, examples: int
) -> None:
    """Call and check ``examples`` cases of ``strategy``; failures are recorded, not
    raised, so one finding neither stops the run nor costs a shrinking phase."""
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.core.failures import Failure, FailureGroup

    checks = _checks()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        for header in list(case.headers or {}):
            if header.lower() in _CREDENTIAL_HEADERS:
                del case.headers[header]
        case.cookies = {}
        found.cases += 1
        try:
            response = case.call(base_url=url, session=session, timeout=60)
        except Exception as exc:  # the server did not answer
            found.record(label, "no answer", 0, str(exc))
            return
        found.statuses[response.status_code] += 1
        found.by_operation[(case.operation.label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            failures: list[Failure] = list(group.exceptions)
        except Failure as failure:
            failures = [failure]
        else:
            return
        for failure in failures:
            message = f"{failure}\n{case.as_curl_command()}\n{response.text[:300]}"
            found.record(label, type(failure).__name__, response.status_code, message)

    run()


def _fuzz(schema: Any, url: str, session: Any, known: dict[str, Any], found: Findings) -> None:
    from schemathesis import GenerationMode

    for result in schema.get_all_operations():
        operation = result.ok()
        path_names = re.findall(r"{(\w+)}", operation.path)
        aims: list[dict[str, Any]] = [{}]
        if path_names:
            aims.append({name: known[name] for name in path_names})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for aim in aims:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=aim)
                label = f"{operation.label} [{mode.value}{', known path' if aim else ''}]"
                _explore(strategy, label, url, session, found, MAX_EXAMPLES)
        # The schema's own examples (valid bodies; one case each), at the objects that exist.
        for strategy in operation.get_strategies_from_examples(path_parameters=aims[-1]):
            _explore(strategy, f"{operation.label} [examples]", url, session, found, 1)


def test_the_whole_schema_holds_under_fuzzing(server: LiveServer, world: dict[str, Any]) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/schema/?format=json")
    roles = {
        "client": _client_session(world["key"]),
        "data scientist": _scientist_session(server.url),
    }
    found = {role: Findings() for role in roles}

    for role, session in roles.items():
        _fuzz(schema, server.url, session, world["known"], found[role])

    report = "\n".join(
        f"{role}: {f.cases} cases, statuses {dict(sorted(f.statuses.items()))}, "
        f"{sum(f.failures.values())} failed checks"
        for role, f in found.items()
    )
    print(report)
    for role, f in found.items():
        for (operation, status), count in sorted(f.by_operation.items()):
            print(f"  {role:14} {operation:55} {status}: {count}")
    details = [
        f"{role} {run} {failure} on {status}: {count}x\n{f.messages[(run, failure, status)]}"
        for role, f in found.items()
        for (run, failure, status), count in f.failures.items()
    ]
    assert not details, report + "\n\n" + "\n\n".join(details)
    # The roles really got in: a fuzz run that only ever met 401s would prove nothing.
    assert found["client"].by_operation[("POST /api/v1/models/{name}/predict", 200)] > 0
    assert found["client"].by_operation[("POST /api/v1/models/{name}/explain", 200)] > 0
    scientist = found["data scientist"].by_operation
    assert scientist[("POST /api/v1/models/{name}/versions/{version}/stage", 200)] > 0
    assert scientist[("GET /api/v1/experiments/{experiment_id}", 200)] > 0
