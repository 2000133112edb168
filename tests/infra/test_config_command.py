"""``millstream config``: every settings group, secrets masked, a pre-flight check of the environment.

Real processes with a controlled environment (no MILLSTREAM_* variable but the test's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.settings import SETTINGS

REPO = Path(__file__).resolve().parents[2]


def config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("MILLSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "config", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_every_settings_group_is_printed_by_variable_name() -> None:
    got = as_json(config("--json"))
    assert list(got) == [name for _, name in SETTINGS]
    assert got["KafkaSettings"]["MILLSTREAM_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert got["AnomalySettings"]["MILLSTREAM_ANOMALY_WARMUP"] == "150"
    assert "MILLSTREAM_FLINK_DELIVERY" in got["FlinkSettings"]


def test_secrets_are_masked_in_urls_maps_and_secret_fields() -> None:
    got = as_json(
        config(
            "--json",
            MILLSTREAM_CLICKHOUSE_URL="http://bob:hunter2@ch:8123/db",
            MILLSTREAM_CLICKHOUSE_PASSWORD="pw2",
            MILLSTREAM_SCHEMA_REGISTRY_URL="https://u:regpw@sr:8081",
            MILLSTREAM_PRODUCER_EXTRA='{"sasl.password": "xx", "linger.ms": "5"}',
        )
    )
    text = json.dumps(got)
    assert "hunter2" not in text and "regpw" not in text and '"xx"' not in text and "pw2" not in text
    assert got["ClickHouseSettings"]["MILLSTREAM_CLICKHOUSE_URL"] == "http://bob:***@ch:8123/db"
    assert got["ProducerSettings"]["MILLSTREAM_PRODUCER_EXTRA"] == {"sasl.password": "***", "linger.ms": "5"}


def test_a_bad_setting_fails_the_check_naming_the_variable_without_its_secret() -> None:
    proc = config(MILLSTREAM_ANOMALY_RED="abc", MILLSTREAM_CLICKHOUSE_URL="htps://bob:hunter2@ch/db")
    assert proc.returncode == 1
    assert "MILLSTREAM_ANOMALY_RED='abc': Input should be a valid number" in proc.stderr
    assert "MILLSTREAM_CLICKHOUSE_URL='htps://bob:***@ch/db'" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    proc = config(MILLSTREAM_PRODUCER_EXTRA="notjson")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "MILLSTREAM_PRODUCER_EXTRA: not valid JSON" in proc.stderr
    proc = config(MILLSTREAM_KAFKA_SASL_MECHANISM="SCRAM_SHA_512")  # underscores: librdkafka refuses it later
    assert proc.returncode == 1
    assert "MILLSTREAM_KAFKA_SASL_MECHANISM='SCRAM_SHA_512': Value error, must be one of PLAIN" in proc.stderr
    proc = config(MILLSTREAM_CLICKHOUSE_URL="chdb://rel/ch")
    assert proc.returncode == 1 and "chdb:///absolute/path (three slashes)" in proc.stderr


def test_settings_that_fail_together_are_each_named_on_a_line_of_their_own() -> None:
    proc = config(MILLSTREAM_SPC_SUBGROUP_SIZE="5", MILLSTREAM_SPC_LSL="1", MILLSTREAM_SPC_SENSORS="a,b")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert [line for line in lines if line.startswith("  MILLSTREAM_SPC_SUBGROUP_SIZE does not apply")]
    assert [line for line in lines if line.startswith("  MILLSTREAM_SPC_LSL describe one process")]
    assert "MILLSTREAM_SPC_=" not in proc.stderr and "{" not in proc.stderr  # no variable made up


def test_unknown_variables_fail_the_check_named_with_the_closest_setting() -> None:
    """A typo keeps the meant setting at its default: the pre-flight check fails on it, as the
    Kubernetes validation does, and names each variable once."""
    proc = config(MILLSTREAM_SIM_MACHINS="3", MILLSTREAM_NO_SUCH_THING="1")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines == [
        "millstream: error: invalid configuration:",
        "  MILLSTREAM_NO_SUCH_THING is not a Millstream setting",
        "  MILLSTREAM_SIM_MACHINS is not a Millstream setting (did you mean MILLSTREAM_SIM_MACHINES?)",
    ], proc.stderr
    assert "[SimulatorSettings]" in proc.stdout  # the values are still printed


def test_other_commands_only_warn_about_unknown_variables() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.cli", "schemas", "list"],
        cwd=REPO,
        env={**os.environ, "MILLSTREAM_SIM_MACHINS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    hint = "(did you mean MILLSTREAM_SIM_MACHINES?)"
    assert f"MILLSTREAM_SIM_MACHINS is not a Millstream setting and is ignored {hint}" in proc.stderr


def test_only_the_prefixed_data_dir_moves_the_embedded_database(tmp_path: Path) -> None:
    got = as_json(config("--json", DATA_DIR=str(tmp_path)))  # a common name in images and CI
    assert got["ClickHouseSettings"]["MILLSTREAM_DATA_DIR"] == ".millstream"
    got = as_json(config("--json", MILLSTREAM_DATA_DIR=str(tmp_path)))
    assert got["ClickHouseSettings"]["MILLSTREAM_DATA_DIR"] == str(tmp_path)


def _clean_env(monkeypatch: Any) -> None:
    for k in list(os.environ):
        if k.upper().startswith("MILLSTREAM_"):
            monkeypatch.delenv(k)


def test_no_float_setting_takes_infinity_or_nan(monkeypatch: Any) -> None:
    # `inf` passed the check and failed at start (a Kafka producer refusing linger inf), or ran a
    # simulator with a rate of inf; every float setting refuses it up front.
    from typing import get_args

    from pydantic import ValidationError

    from infra.settings import env_name, settings_classes

    _clean_env(monkeypatch)
    checked = 0
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            if float not in (field.annotation, *get_args(field.annotation)):
                continue
            var = env_name(cls, name, field)
            for bad in ("inf", "nan"):
                monkeypatch.setenv(var, bad)
                try:
                    cls()
                except ValidationError:
                    pass
                else:
                    raise AssertionError(f"{var}={bad} was accepted")
            monkeypatch.delenv(var)
            checked += 1
    assert checked >= 20  # the float settings of every package


def test_values_that_would_fail_or_mislead_later_are_refused(monkeypatch: Any) -> None:
    from infra.commands import effective_config

    bad = {
        "MILLSTREAM_TOPIC_READINGS": "",  # the gateway spooled everything and exited 0
        "MILLSTREAM_TOPIC_WINDOWS": "windows topic",
        "MILLSTREAM_KAFKA_BOOTSTRAP": "",
        "MILLSTREAM_TOPIC_RETENTION_MS": "-5",  # Kafka knows -1 (for ever) and >= 0
        "MILLSTREAM_FLINK_REST_PORT": "70000",
        "MILLSTREAM_FLINK_PROMETHEUS_PORT": "-5",
        "MILLSTREAM_SPOOL_DIR": "",  # read as '.': the spool in the working directory
        "MILLSTREAM_FLINK_CHECKPOINT_DIR": " ",
        "MILLSTREAM_SINK_GROUP_ID": "",
        "MILLSTREAM_STREAM_APP_ID": "",
    }
    for var, value in bad.items():
        _clean_env(monkeypatch)
        monkeypatch.setenv(var, value)
        _, errors = effective_config()
        assert any(line.strip().startswith(f"{var}=") for line in errors), (var, errors)
    _clean_env(monkeypatch)
    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", "kafka")  # no port
    assert any("host:port" in line for line in effective_config()[1])
    _clean_env(monkeypatch)
    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", "kafka-0:9092, kafka-1:9093")
    monkeypatch.setenv("MILLSTREAM_TOPIC_RETENTION_MS", "-1")
    assert effective_config()[1] == []


def test_sasl_without_credentials_is_named_before_any_client_tries(monkeypatch: Any) -> None:
    # librdkafka refused with its own words, aiokafka failed at connect, Flink logged in as "".
    from infra.commands import effective_config
    from schemas.config import KafkaSettings
    from schemas.exceptions import ConfigError
    from streams.flink.kafka import java_properties

    _clean_env(monkeypatch)
    monkeypatch.setenv("MILLSTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("MILLSTREAM_KAFKA_USERNAME", "millstream-sink")
    expected = "MILLSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs MILLSTREAM_KAFKA_PASSWORD"
    assert f"  {expected}" in effective_config()[1]
    kafka = KafkaSettings()
    for build in (kafka.librdkafka, lambda: java_properties(kafka)):
        try:
            build()
        except ConfigError as exc:
            assert str(exc) == expected
        else:
            raise AssertionError("built a client configuration without a password")
    monkeypatch.setenv("MILLSTREAM_KAFKA_PASSWORD", "s3cret")
    assert effective_config()[1] == []
    assert KafkaSettings().librdkafka()["sasl.password"] == "s3cret"
