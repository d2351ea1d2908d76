"""Operational metrics for Prometheus (issue 8, "Operability"): selectors, text exposition, the /metrics view."""
