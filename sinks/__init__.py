"""Where results go: the ClickHouse writer and the Prometheus exporter."""
