"""Champion vs challenger from the command line: start, evaluate, stop, promote, roll back,
status. The same services the beat task, the REST API and the page call."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from models_registry.selectors import model_version_get, registered_model_get
from monitoring.models import Experiment, ExperimentMode
from monitoring.services import experiments as service
from phoenix.exceptions import ApplicationError


def _steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--steps wants percentages like 5,25,50,100, not {text!r}") from None


def experiment_document(experiment: Experiment) -> dict[str, Any]:
    return {
        "id": experiment.pk,
        "model": experiment.model.name,
        "champion": experiment.champion.version,
        "challenger": experiment.challenger.version,
        "mode": experiment.mode,
        "status": experiment.status,
        "canary_step": experiment.canary_step,
        "canary_steps": experiment.canary_steps,
        "decision": experiment.decision,
        "reason": experiment.reason,
        "statistics": experiment.statistics,
    }


class Command(BaseCommand):
    help = (
        "Run champion-vs-challenger experiments: start MODEL --challenger V --mode "
        "shadow|canary|ab; evaluate ID (one look: tests, guards, canary step, decision); "
        "stop ID; promote ID; rollback ID --reason; status [ID]. Prints JSON."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        start = sub.add_parser("start", help="create and start an experiment")
        start.add_argument("model")
        start.add_argument("--challenger", required=True, help="the challenger's version")
        start.add_argument("--mode", choices=ExperimentMode.values, default="shadow")
        start.add_argument("--percent", type=float, default=50.0, help="A/B challenger share")
        start.add_argument("--steps", default="5,25,50,100", help="canary plan, in percent")
        start.add_argument("--no-canary", action="store_true", help="shadow: no canary after")
        start.add_argument("--interval", type=int, default=300, help="seconds per canary step")
        start.add_argument("--step-samples", type=int, default=100)
        start.add_argument("--min-samples", type=int, default=200)
        start.add_argument("--alpha", type=float, default=0.05)
        start.add_argument("--guards-only", action="store_true", help="no labelled metric")
        start.add_argument("--auto-promote", action="store_true")
        for name in ("evaluate", "stop", "promote", "rollback"):
            command = sub.add_parser(name)
            command.add_argument("id", type=int)
            command.add_argument("--reason", default="")
        status = sub.add_parser("status", help="one experiment, or every running one")
        status.add_argument("id", type=int, nargs="?")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            result = getattr(self, f"_{action}")(**options)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(result, indent=2, default=str))

    def _start(self, **o: Any) -> dict[str, Any]:
        model = registered_model_get(name=o["model"])
        challenger = model_version_get(model_name=model.name, version=o["challenger"])
        steps = [] if o["no_canary"] and o["mode"] == "shadow" else _steps(o["steps"])
        experiment = service.experiment_create(
            model=model,
            challenger=challenger,
            mode=o["mode"],
            traffic_percent=o["percent"],
            canary_steps=steps,
            step_interval_s=o["interval"],
            step_min_samples=o["step_samples"],
            min_samples=o["min_samples"],
            alpha=o["alpha"],
            primary_metric="guards_only" if o["guards_only"] else "accuracy",
            auto_promote=o["auto_promote"],
        )
        return experiment_document(service.experiment_start(experiment_id=experiment.pk))

    def _evaluate(self, **o: Any) -> dict[str, Any]:
        evaluation = service.experiment_evaluate(experiment_id=o["id"])
        return experiment_document(evaluation.experiment)

    def _stop(self, **o: Any) -> dict[str, Any]:
        return experiment_document(
            service.experiment_stop(experiment_id=o["id"], reason=o["reason"])
        )

    def _promote(self, **o: Any) -> dict[str, Any]:
        return experiment_document(
            service.experiment_promote(experiment_id=o["id"], reason=o["reason"])
        )

    def _rollback(self, **o: Any) -> dict[str, Any]:
        if not o["reason"]:
            raise CommandError("rollback needs --reason")
        return experiment_document(
            service.experiment_rollback(experiment_id=o["id"], reason=o["reason"])
        )

    def _status(self, **o: Any) -> Any:
        query = Experiment.objects.select_related("model", "champion", "challenger")
        if o["id"] is None:
            return [experiment_document(e) for e in query.filter(status="running")]
        found = query.filter(pk=o["id"]).first()
        if found is None:
            raise CommandError(f"No experiment {o['id']}.")
        return experiment_document(found)
