"""Send real prediction requests (and feedback for a share of them) to a running server.

Rows are drawn from the demo model's generator (customers for ``credit-risk`` and any
other model name, houses for ``house-prices``, tickets for ``support-tickets``),
optionally shifted, so one can watch a drift check catch the shift and a retrained
challenger appear. Bounded: at most
``rps * duration`` requests, and it stops when the duration (plus a short grace) is up.
"""

from __future__ import annotations

import http.client
import itertools
import statistics
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np
import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from phoenix.demo import catalog
from phoenix.demo import credit_risk as demo

REQUEST_TIMEOUT_S = 10.0
GRACE_S = 5.0


def parse_drift(specs: list[str], names: list[str] | None = None) -> dict[str, float]:
    """``["income:0.5", "age:-1"]`` -> ``{"income": 0.5, "age": -1.0}``; ``names``: what
    may be shifted (the credit-risk features by default). Raises ValueError."""
    allowed = names or demo.FEATURE_NAMES
    shift: dict[str, float] = {}
    for spec in specs:
        feature, sep, amount = spec.partition(":")
        if not sep or feature not in allowed:
            raise ValueError(f"--drift {spec!r}: use FEATURE:SHIFT with FEATURE one of {allowed}")
        try:
            shift[feature] = float(amount)
        except ValueError:
            raise ValueError(
                f"--drift {spec!r}: SHIFT must be a number of standard deviations"
            ) from None
    return shift


def drift_names(model: str) -> list[str]:
    """What ``--drift`` may name for ``model``: features, or a ticket model's teams."""
    if model == catalog.HOUSE_PRICES:
        from phoenix.demo import house_prices

        return list(house_prices.FEATURE_NAMES)
    if model == catalog.SUPPORT_TICKETS:
        from phoenix.demo import support_tickets

        return list(support_tickets.CLASSES)
    return list(demo.FEATURE_NAMES)


def traffic(
    model: str, *, n: int, seed: int, shift: dict[str, float], flip: bool
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``n`` request rows for ``model`` and the ground truth of each.

    Shifts move a feature by that many standard deviations; for the ticket model they
    multiply a team's share instead (``billing:4``). ``flip`` sends wrong truth: the
    other class, the next team, or a price half as high again.
    """
    if model == catalog.SUPPORT_TICKETS:
        from phoenix.demo import support_tickets

        weights = [shift.get(team, 1.0) for team in support_tickets.CLASSES]
        texts, teams, _ = support_tickets.generate_tickets(n=n, seed=seed, class_weights=weights)
        classes = support_tickets.CLASSES
        labels: list[Any] = [
            classes[(classes.index(t) + 1) % len(classes)] if flip else t for t in teams
        ]
        return [{"text": t} for t in texts], labels
    if model == catalog.HOUSE_PRICES:
        from phoenix.demo import house_prices

        X, prices, names = house_prices.generate_houses(n=n, seed=seed, shift=shift or None)
        labels = [round(float(p) * (1.5 if flip else 1.0), 3) for p in prices]
    else:
        X, y, names = demo.generate_customers(n=n, seed=seed, shift=shift or None)
        labels = [int(1 - v if flip else v) for v in y]
    rows = [{k: round(float(v), 6) for k, v in zip(names, row, strict=True)} for row in X]
    return rows, labels


class Client:
    """One keep-alive HTTP/1.1 connection, reopened after a failure."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--url {base_url!r} must be an http(s) URL")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body); status 0 when the server could not be reached."""
        if self.connection is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            self.connection = cls(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            self.connection.request("POST", self.prefix + path, orjson.dumps(body), self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, {}
        try:
            payload = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            payload = {}
        return response.status, payload if isinstance(payload, dict) else {}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class _Tally:
    """What the workers saw, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.feedbacks: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.first_error = ""

    def prediction(self, status: int, latency_ms: float, body: dict[str, Any]) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append(latency_ms)
            if status != 200 and not self.first_error:
                self.first_error = f"{status}: {body.get('error', body) or 'no response'}"

    def feedback(self, status: int) -> None:
        with self.lock:
            self.feedbacks[status] += 1


class Command(BaseCommand):
    help = (
        "Send prediction requests with demo rows (customers; houses for house-prices; "
        "tickets for support-tickets) to POST /api/v1/models/<model>/predict at a steady "
        "rate, and ground truth to /api/v1/predictions/<id>/feedback for a share of them; "
        "--drift FEATURE:SHIFT moves a feature by SHIFT standard deviations (for "
        "support-tickets TEAM:FACTOR multiplies a team's share)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=demo.MODEL_NAME)
        parser.add_argument("--rps", type=float, default=20.0, help="requests per second")
        parser.add_argument("--duration", type=float, default=30.0, help="seconds")
        parser.add_argument(
            "--drift", action="append", default=[], metavar="FEATURE:SHIFT", help="repeatable"
        )
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--api-key", default=None)
        parser.add_argument("--feedback-share", type=float, default=0.3)
        parser.add_argument(
            "--flip-labels",
            action="store_true",
            help="send the opposite label as ground truth (a changed world, or bad feedback)",
        )
        parser.add_argument("--seed", type=int, default=None, help="default: a new one each run")
        parser.add_argument(
            "--concurrency", type=int, default=4, help="connections sending in parallel"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        rps, duration, share = options["rps"], options["duration"], options["feedback_share"]
        if not 0 < rps <= 10_000 or not 0 < duration <= 24 * 3600:
            raise CommandError("--rps must be in (0, 10000] and --duration in (0, 86400].")
        if not 0 <= share <= 1:
            raise CommandError("--feedback-share must be between 0 and 1.")
        try:
            shift = parse_drift(options["drift"], drift_names(options["model"]))
            Client(options["url"], options["api_key"])  # validates the URL
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        concurrency = options["concurrency"]
        if not 1 <= concurrency <= 64:
            raise CommandError("--concurrency must be between 1 and 64.")

        total = max(1, int(rps * duration))
        seed = options["seed"] if options["seed"] is not None else int(time.time())
        rows, labels = traffic(
            options["model"], n=total, seed=seed, shift=shift, flip=bool(options["flip_labels"])
        )
        rng = np.random.default_rng(seed + 1)
        gives_feedback = rng.uniform(size=total) < share
        predict_path = f"/api/v1/models/{quote(options['model'], safe='')}/predict"

        tally = _Tally()
        next_index = itertools.count()
        stop = threading.Event()
        started = time.monotonic()
        deadline = started + duration + GRACE_S

        def worker() -> None:
            # Each worker keeps its own keep-alive connection and takes the next due row.
            client = Client(options["url"], options["api_key"])
            try:
                while not stop.is_set():
                    i = next(next_index)
                    if i >= total:
                        return
                    due, now = started + i / rps, time.monotonic()
                    if now > deadline:
                        return
                    if due > now:
                        time.sleep(due - now)
                    sent = time.perf_counter()
                    status, body = client.post(predict_path, {"features": rows[i]})
                    tally.prediction(status, (time.perf_counter() - sent) * 1000, body)
                    request_id = body.get("request_id") if status == 200 else None
                    if gives_feedback[i] and request_id:
                        fb_status, _ = client.post(
                            f"/api/v1/predictions/{quote(str(request_id), safe='')}/feedback",
                            {"actual": labels[i]},
                        )
                        tally.feedback(fb_status)
            finally:
                client.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except KeyboardInterrupt:
            stop.set()
            self.stdout.write("interrupted")
        self._summary(tally, time.monotonic() - started, shift)

    def _summary(self, tally: _Tally, elapsed: float, shift: dict[str, float]) -> None:
        statuses, feedback, latencies = tally.statuses, tally.feedbacks, tally.latencies
        first_error = tally.first_error
        sent = sum(statuses.values())
        ok = statuses.get(200, 0)
        self.stdout.write(
            f"sent {sent} predictions in {elapsed:.1f} s ({sent / max(elapsed, 1e-9):.1f}/s): "
            f"{ok} ok, {sent - ok} failed {dict(statuses)}"
        )
        if latencies:
            ordered = sorted(latencies)
            p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
            self.stdout.write(
                f"latency ms: p50 {statistics.median(ordered):.1f}, p99 {p99:.1f}, "
                f"max {ordered[-1]:.1f}"
            )
        fb_ok = feedback.get(200, 0) + feedback.get(202, 0)
        self.stdout.write(f"feedback: {sum(feedback.values())} sent, {fb_ok} accepted")
        self.stdout.write(f"drift: {shift or 'none'}")
        if first_error:
            self.stdout.write(self.style.WARNING(f"first error: {first_error}"))
        if sent and not ok:
            raise CommandError("No prediction succeeded; is the server running at --url?")
