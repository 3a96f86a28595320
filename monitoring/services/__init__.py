"""Monitoring writes, one module per concern.

Prediction log, drift reports, retraining, alerts and live pushes each have their own module.
"""
