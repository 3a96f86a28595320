"""Train the demo credit-risk models and register them (champion in production,
challenger in staging), with reference data and holdout metrics."""

from __future__ import annotations

import io
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from models_registry.exceptions import DuplicateModel
from models_registry.services import model_version_register
from phoenix.demo import credit_risk as demo
from phoenix.demo.recipes import CREDIT_RISK_RECIPE


class Command(BaseCommand):
    help = (
        "Train the demo credit-risk classifiers on a seeded synthetic customer table, "
        "convert them to ONNX and register them as 'credit-risk': a logistic regression "
        "champion (production) and a gradient-boosting challenger (staging). Running it "
        "again with the same seed registers nothing new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=demo.DEFAULT_SEED)
        parser.add_argument("--rows", type=int, default=10_000, help="customers to draw")
        parser.add_argument(
            "--reference-rows", type=int, default=5_000, help="training rows kept as reference"
        )

    def handle(self, *args: Any, seed: int, rows: int, reference_rows: int, **options: Any) -> None:
        X, y, features = demo.generate_customers(n=rows, seed=seed)
        split = int(rows * 0.8)
        X_train, y_train, X_test, y_test = X[:split], y[:split], X[split:], y[split:]
        reference = demo.reference_csv(X_train[:reference_rows], features)

        candidates = [
            ("champion", "production", "logistic_regression", demo.train_champion),
            ("challenger", "staging", "gradient_boosting", demo.train_challenger),
        ]
        for alias, stage, algorithm, train in candidates:
            model_bytes = demo.to_onnx_bytes(train(X_train, y_train, seed=seed), features)
            metrics = demo.evaluate_onnx(model_bytes, X_test, y_test)
            try:
                version = model_version_register(
                    model_name=demo.MODEL_NAME,
                    file=io.BytesIO(model_bytes),
                    filename=f"{algorithm}.onnx",
                    stage=stage,
                    alias=alias,
                    reference=io.BytesIO(reference),
                    reference_filename="reference.csv",
                    metrics=metrics,
                    tags={"algorithm": algorithm, "seed": str(seed), "demo": "true"},
                    description=f"Demo {algorithm} trained on {split} synthetic customers.",
                    retraining_recipe=CREDIT_RISK_RECIPE,
                )
            except DuplicateModel:
                self.stdout.write(f"{demo.MODEL_NAME} {alias}: already registered (same weights).")
                continue
            self.stdout.write(
                self.style.SUCCESS(
                    f"{demo.MODEL_NAME} v{version.version} ({algorithm}) -> {stage}, @{alias}: "
                    f"accuracy {metrics['accuracy']:.3f}, ROC AUC {metrics['roc_auc']:.3f}"
                )
            )
