"""Grafana dashboards as code (grafana-foundation-sdk).

``python -m infra.grafana.dashboards`` writes the JSON files.
"""
