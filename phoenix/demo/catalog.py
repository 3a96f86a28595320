"""The demo's names, importable at no cost: no scikit-learn, no numpy.

The web processes import this (through ``DemoConfig.ready``) but never the training
modules: each recipe is registered by its dotted path and imported by the retraining
worker the first time it runs (scikit-learn and skl2onnx cost ~90 MB per process).
"""

from __future__ import annotations

CREDIT_RISK = "credit-risk"
HOUSE_PRICES = "house-prices"
SUPPORT_TICKETS = "support-tickets"

# The names train_demo_models stores on each model (RegisteredModel.retraining_recipe).
CREDIT_RISK_RECIPE = "demo.credit_risk"
HOUSE_PRICES_RECIPE = "demo.house_prices"
SUPPORT_TICKETS_RECIPE = "demo.support_tickets"

# recipe name -> the callable's dotted path
RECIPES = {
    CREDIT_RISK_RECIPE: "phoenix.demo.recipes.retrain",
    HOUSE_PRICES_RECIPE: "phoenix.demo.recipes.retrain_house_prices",
    SUPPORT_TICKETS_RECIPE: "phoenix.demo.recipes.retrain_support_tickets",
}
