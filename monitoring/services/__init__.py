"""Monitoring writes, one module per concern (prediction log, drift reports, retraining, alerts, live pushes)."""
