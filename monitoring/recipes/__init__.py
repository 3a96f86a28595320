"""Retraining recipes: entry points named on RegisteredModel.retraining_recipe."""
