"""Run the performance check now (the same task beat runs) and print what it found."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.management.commands.check_drift import parse_window
from monitoring.models import PerformanceReport
from monitoring.selectors.performance import performance_report_get, performance_version_ids
from monitoring.tasks import check_performance_version


class Command(BaseCommand):
    help = (
        "Measure served model versions on their labelled predictions (accuracy, ROC AUC "
        "and calibration error for classifiers, MAE and RMSE for regressors) now, store "
        "PerformanceReports, alert and request retraining on a drop, and print them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="only this model (default: every served model)")
        parser.add_argument(
            "--window",
            default=f"{settings.PHOENIX_PERFORMANCE_WINDOW_S}s",
            help="predictions this recent, e.g. 30m, 1h, 2d (default: "
            "PHOENIX_PERFORMANCE_WINDOW_S)",
        )

    def handle(self, *args: Any, model: str | None, window: str, **options: Any) -> None:
        try:
            span = parse_window(window)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        ids = performance_version_ids(model_name=model)
        if not ids:
            raise CommandError(
                f"No served version of {model!r}." if model else "No served versions."
            )
        for version_id in ids:
            outcome = check_performance_version(version_id, window_s=int(span.total_seconds()))
            if outcome["report_id"] is None:
                self.stdout.write(f"version id {version_id}: {outcome['status']} (skipped)")
                continue
            self._print_report(performance_report_get(report_id=outcome["report_id"]))

    def _print_report(self, report: PerformanceReport) -> None:
        version = report.model_version
        style = {"degraded": self.style.ERROR, "ok": self.style.SUCCESS}.get(
            report.status, self.style.WARNING
        )
        share = "-" if report.labelled_share is None else f"{report.labelled_share:.1%}"
        delay = "-" if report.label_delay_p50_s is None else f"{report.label_delay_p50_s:.0f}s"
        self.stdout.write(
            style(
                f"{version.model.name} v{version.version} ({report.task}): "
                f"{report.status.upper()} ({report.labelled} of {report.rows} predictions "
                f"labelled, {share}; label delay p50 {delay})"
            )
        )
        if report.status == "insufficient_data":
            self.stdout.write(
                f"  needs at least {settings.PHOENIX_PERFORMANCE_MIN_LABELS} labelled predictions"
            )
        compared = {c["metric"]: c for c in report.comparisons}
        for metric, value in report.metrics.items():
            shown = "-" if value is None else f"{value:.4f}"
            line = f"  {metric:<10} {shown:>8}"
            if metric in compared:
                c = compared[metric]
                line += f"  holdout {c['holdout']:.4f}  {'DROP' if c['degraded'] else 'ok'}"
                if c.get("p_value") is not None:
                    line += f"  (p {c['p_value']:.3g})"
            self.stdout.write(line)
