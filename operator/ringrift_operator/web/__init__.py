"""Health, readiness, status and Prometheus metrics endpoints."""
