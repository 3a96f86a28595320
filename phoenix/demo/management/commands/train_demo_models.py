"""Train the demo models and register them (champion in production, challenger in
staging), with reference data and holdout metrics."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from models_registry.exceptions import DuplicateModel
from models_registry.services import model_version_register
from phoenix.demo import catalog


@dataclass(frozen=True)
class Candidate:
    alias: str
    stage: str
    algorithm: str
    train: Callable[..., Any]


@dataclass(frozen=True)
class DemoModel:
    """One demo: its seeded table (X, y, feature names), how to convert and evaluate a
    fitted estimator, its reference file, and the metrics the summary line shows."""

    name: str
    recipe: str
    what: str
    table: Callable[[int, int], tuple[Any, Any, list[str]]]
    convert: Callable[[Any, list[str]], bytes]
    evaluate: Callable[[bytes, Any, Any], dict[str, float]]
    reference: Callable[[Any, list[str]], bytes]
    candidates: tuple[Candidate, Candidate]
    shown: tuple[str, ...]


def demo_models() -> list[DemoModel]:
    """The bundled demos (training modules imported here, not at app start)."""
    from phoenix.demo import credit_risk, house_prices, support_tickets

    return [
        DemoModel(
            name=catalog.CREDIT_RISK,
            recipe=catalog.CREDIT_RISK_RECIPE,
            what="synthetic customers",
            table=lambda n, seed: credit_risk.generate_customers(n=n, seed=seed),
            convert=credit_risk.to_onnx_bytes,
            evaluate=credit_risk.evaluate_onnx,
            reference=credit_risk.reference_csv,
            candidates=(
                Candidate(
                    "champion", "production", "logistic_regression", credit_risk.train_champion
                ),
                Candidate(
                    "challenger", "staging", "gradient_boosting", credit_risk.train_challenger
                ),
            ),
            shown=("accuracy", "roc_auc"),
        ),
        DemoModel(
            name=catalog.HOUSE_PRICES,
            recipe=catalog.HOUSE_PRICES_RECIPE,
            what="synthetic houses",
            table=lambda n, seed: house_prices.generate_houses(n=n, seed=seed),
            convert=house_prices.to_onnx_bytes,
            evaluate=house_prices.evaluate_onnx,
            reference=credit_risk.reference_csv,
            candidates=(
                Candidate(
                    "champion", "production", "ridge_regression", house_prices.train_champion
                ),
                Candidate(
                    "challenger", "staging", "gradient_boosting", house_prices.train_challenger
                ),
            ),
            shown=("mae", "rmse", "r2"),
        ),
        DemoModel(
            name=catalog.SUPPORT_TICKETS,
            recipe=catalog.SUPPORT_TICKETS_RECIPE,
            what="synthetic support tickets",
            table=lambda n, seed: support_tickets.generate_tickets(n=n, seed=seed),
            convert=support_tickets.to_onnx_bytes,
            evaluate=support_tickets.evaluate_onnx,
            reference=lambda texts, _names: support_tickets.reference_csv(texts),
            candidates=(
                Candidate(
                    "champion",
                    "production",
                    "tfidf_logistic_regression",
                    support_tickets.train_champion,
                ),
                Candidate(
                    "challenger",
                    "staging",
                    "tfidf_bigrams_logistic_regression",
                    support_tickets.train_challenger,
                ),
            ),
            shown=("accuracy", "macro_f1"),
        ),
    ]


class Command(BaseCommand):
    help = (
        "Train the demo models on seeded synthetic tables, convert them to ONNX and register "
        "each with a champion (production) and a challenger (staging), reference data and "
        "holdout metrics: 'credit-risk' (logistic regression / gradient boosting), "
        "'house-prices' (ridge / gradient-boosted regression) and 'support-tickets' (tf-idf + "
        "logistic regression over raw text). Running it again with the same seed registers "
        "nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--rows", type=int, default=10_000, help="rows to draw per demo")
        parser.add_argument(
            "--reference-rows", type=int, default=5_000, help="training rows kept as reference"
        )
        parser.add_argument(
            "--model", action="append", dest="models", help="train only this demo (repeatable)"
        )

    def handle(
        self,
        *args: Any,
        seed: int,
        rows: int,
        reference_rows: int,
        models: list[str] | None = None,
        **options: Any,
    ) -> None:
        for demo in demo_models():
            if models and demo.name not in models:
                continue
            self._train(demo, seed=seed, rows=rows, reference_rows=reference_rows)

    def _train(self, demo: DemoModel, *, seed: int, rows: int, reference_rows: int) -> None:
        X, y, features = demo.table(rows, seed)
        split = int(rows * 0.8)
        X_train, y_train, X_test, y_test = X[:split], y[:split], X[split:], y[split:]
        reference = demo.reference(X_train[:reference_rows], features)
        for candidate in demo.candidates:
            model_bytes = demo.convert(candidate.train(X_train, y_train, seed=seed), features)
            metrics = demo.evaluate(model_bytes, X_test, y_test)
            try:
                version = model_version_register(
                    model_name=demo.name,
                    file=io.BytesIO(model_bytes),
                    filename=f"{candidate.algorithm}.onnx",
                    stage=candidate.stage,
                    alias=candidate.alias,
                    reference=io.BytesIO(reference),
                    reference_filename="reference.csv",
                    metrics=metrics,
                    tags={"algorithm": candidate.algorithm, "seed": str(seed), "demo": "true"},
                    description=f"Demo {candidate.algorithm} trained on {split} {demo.what}.",
                    retraining_recipe=demo.recipe,
                )
            except DuplicateModel:
                self.stdout.write(
                    f"{demo.name} {candidate.alias}: already registered (same weights)."
                )
                continue
            scores = ", ".join(f"{key} {metrics[key]:.3f}" for key in demo.shown)
            self.stdout.write(
                self.style.SUCCESS(
                    f"{demo.name} v{version.version} ({candidate.algorithm}) -> {candidate.stage}, "
                    f"@{candidate.alias}: {scores}"
                )
            )
