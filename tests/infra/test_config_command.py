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


def test_unknown_variables_are_named_with_the_closest_setting() -> None:
    proc = config(MILLSTREAM_SIM_MACHINS="3", MILLSTREAM_NO_SUCH_THING="1")
    assert proc.returncode == 0
    hint = "(did you mean MILLSTREAM_SIM_MACHINES?)"
    assert f"MILLSTREAM_SIM_MACHINS is not a Millstream setting and is ignored {hint}" in proc.stderr
    assert "MILLSTREAM_NO_SUCH_THING is not a Millstream setting and is ignored\n" in proc.stderr


def test_only_the_prefixed_data_dir_moves_the_embedded_database(tmp_path: Path) -> None:
    got = as_json(config("--json", DATA_DIR=str(tmp_path)))  # a common name in images and CI
    assert got["ClickHouseSettings"]["MILLSTREAM_DATA_DIR"] == ".millstream"
    got = as_json(config("--json", MILLSTREAM_DATA_DIR=str(tmp_path)))
    assert got["ClickHouseSettings"]["MILLSTREAM_DATA_DIR"] == str(tmp_path)
