"""Monitoring reads, one module per concern."""
