"""Local stack (broker, embedded ClickHouse, Prometheus), the CLI, DDL, rules and dashboards."""
