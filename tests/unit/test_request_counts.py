"""Reading the experiments' request counts from a Prometheus reply."""

from __future__ import annotations

import pytest

from monitoring.services.request_counts import (
    RequestCountsUnavailable,
    counts_from_prometheus_reply,
    promql_requests_since,
)


def test_query_quotes_the_model_name_and_spans_the_phase() -> None:
    query = promql_requests_since('credit"} or vector(1) or {x="', 90)

    assert query == (
        "sum by (version, route, status) (increase(phoenix_inference_requests_total"
        '{model="credit\\"} or vector(1) or {x=\\""}[90s]))'
    )


def test_reply_sums_requests_and_failures_per_version_and_route() -> None:
    def series(version: str, route: str, status: str, value: str) -> dict[str, object]:
        return {
            "metric": {"version": version, "route": route, "status": status},
            "value": [1.0, value],
        }

    reply = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                series("1", "canary:champion", "200", "100.5"),
                series("2", "canary:challenger", "200", "20"),
                series("2", "canary:challenger", "503", "30"),
                series("2", "canary:challenger", "422", "NaN"),
            ],
        },
    }

    assert counts_from_prometheus_reply(reply) == {
        "1|canary:champion": [100.5, 0.0],
        "2|canary:challenger": [50.0, 30.0],
    }


@pytest.mark.parametrize(
    "reply",
    [
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
        {"status": "success", "data": {"resultType": "matrix", "result": []}},
    ],
)
def test_an_error_or_unexpected_reply_is_unavailable(reply: dict[str, object]) -> None:
    with pytest.raises(RequestCountsUnavailable):
        counts_from_prometheus_reply(reply)
