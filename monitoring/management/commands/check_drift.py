"""Run the drift check now (the same task beat runs) and print what it found."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.models import DriftReport
from monitoring.selectors.drift_reports import drift_report_get, production_version_ids
from monitoring.tasks import check_drift_version

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> timedelta:
    """``90``, ``90s``, ``30m``, ``1h``, ``2d`` -> timedelta. Raises ValueError."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 1h or 2d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_S[match.group(2)])


class Command(BaseCommand):
    help = (
        "Test recent traffic of production model versions against their reference data "
        "now, store DriftReports, alert and request retraining on drift, and print a table."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="only this model (default: every production model)")
        parser.add_argument(
            "--window",
            default=f"{settings.PHOENIX_DRIFT_WINDOW_S}s",
            help="how far back to look, e.g. 30m, 1h, 2d (default: PHOENIX_DRIFT_WINDOW_S)",
        )

    def handle(self, *args: Any, model: str | None, window: str, **options: Any) -> None:
        try:
            span = parse_window(window)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        ids = production_version_ids(model_name=model)
        if not ids:
            raise CommandError(
                f"No production version of {model!r}." if model else "No production versions."
            )
        for version_id in ids:
            outcome = check_drift_version(version_id, window_s=int(span.total_seconds()))
            if outcome["report_id"] is None:
                self.stdout.write(f"version id {version_id}: {outcome['status']} (skipped)")
                continue
            self._print_report(drift_report_get(report_id=outcome["report_id"]))

    def _print_report(self, report: DriftReport) -> None:
        version = report.model_version
        style = {"drift": self.style.ERROR, "ok": self.style.SUCCESS}.get(
            report.status, self.style.WARNING
        )
        self.stdout.write(
            style(
                f"{version.model.name} v{version.version}: {report.status.upper()} "
                f"({report.rows} rows in window vs {report.reference_rows} reference rows, "
                f"{report.correction} correction, alpha {report.alpha})"
            )
        )
        if report.status == "duplicates":
            key = report.duplicate_api_key_id
            self.stdout.write(
                f"  {report.duplicate_share or 0.0:.0%} of the rows repeat other rows"
                + (f" (most from API key id {key})" if key is not None else "")
                + ": no drift verdict, nothing retrained"
            )
        if not report.features:
            if report.status == "insufficient_data":
                self.stdout.write(
                    f"  needs at least {settings.PHOENIX_DRIFT_MIN_ROWS} rows and reference data"
                )
            return
        header = f"  {'feature':<24} {'test':<7} {'stat':>9} {'p':>10} {'p adj':>10} "
        header += f"{'psi':>8} {'wasserstein':>12}  drift"
        self.stdout.write(header)
        outputs = {f"output:{name}": f for name, f in report.predictions.items()}
        for name, f in {**report.features, **outputs}.items():
            self.stdout.write(
                f"  {name:<24} {f['test']:<7} {_num(f['statistic']):>9} {_num(f['p_value']):>10} "
                f"{_num(f['p_adjusted']):>10} {_num(f['psi']):>8} {_num(f['wasserstein']):>12}  "
                f"{'YES' if f['drift'] else 'no'}"
            )


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
