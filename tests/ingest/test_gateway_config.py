"""Gateway configuration errors: found when the configuration loads, before anything starts, one
line per problem naming where the bad value came from (file and key, environment variable, flag)."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from infra.procs import free_port
from ingest import cli
from ingest.config import SpoolSettings
from ingest.mqtt import MqttConfig, PayloadFormat, TopicMapping
from ingest.mqtt_config import MqttTls
from ingest.opcua import NodeMapping, OpcUaConfig
from ingest.opcua_security import OpcUaSecurity
from ingest.settings_sources import Problems, spool_for
from ingest.validation import RangeRule, ValidationConfig
from schemas.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
PATTERN = "plant/{plant}/line/{line}/machine/{machine}/{sensor}"

Gateway = Callable[..., ConfigError]


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No gateway setting from the environment; a broker address nothing listens on; short waits,
    so that a gateway which (wrongly) starts ends soon."""
    for name in list(os.environ):
        if name.upper().startswith(("MILLSTREAM_SPOOL_", "MILLSTREAM_PRODUCER_", "MILLSTREAM_FORWARD_")):
            monkeypatch.delenv(name)
        if name.upper().startswith("MILLSTREAM_SIM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("MILLSTREAM_PRODUCER_FLUSH_TIMEOUT_S", "1")
    monkeypatch.setenv("MILLSTREAM_FORWARD_CLOSE_TIMEOUT_S", "1")
    return monkeypatch


@pytest.fixture()
def gateway(clean_env: pytest.MonkeyPatch) -> Gateway:
    """``gateway(argv)``: run ``millstream gateway ARGV`` through the parser ``register`` builds and
    return the ConfigError it must raise."""

    def run(argv: list[str]) -> ConfigError:
        parser = argparse.ArgumentParser()
        cli.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["gateway", *argv])
        with pytest.raises(ConfigError) as info:
            args.func(args)
        return info.value

    return run


def mqtt(**extra: Any) -> dict[str, Any]:
    return {"gateway_id": "mqtt-t", "port": free_port(), "topics": [{"pattern": PATTERN}], **extra}


def opcua(**extra: Any) -> dict[str, Any]:
    node = {
        "node_id": "ns={plc};s=Press1.Temperature",
        "machine": "m001",
        "sensor": "temperature",
        "unit": "degF",
    }
    return {
        "gateway_id": "opcua-t",
        "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
        "namespaces": {"plc": "urn:acme:plc"},
        "plant": "p1",
        "line": "l1",
        "nodes": [node],
        **extra,
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data) if path.suffix == ".yaml" else json.dumps(data))
    return path


def bridge_args(kind: str, cfg: Path, tmp_path: Path, *more: str) -> list[str]:
    return [kind, "--config", str(cfg), "--spool-dir", str(tmp_path / "spool"), "--duration", "1", *more]


def one_line(err: ConfigError) -> str:
    text = str(err)
    assert "\n" not in text and "errors.pydantic.dev" not in text, text
    return text


# ------------------------------------------------------------------------ B6: unknown file keys
@pytest.mark.parametrize(
    ("section", "key", "meant"),
    [("spool", "max_byte", "max_bytes"), ("producer", "linger", "linger_ms"), ("forwarder", "speed", None)],
)
def test_an_unknown_key_in_a_file_section_names_the_key_and_the_file(
    gateway: Gateway, tmp_path: Path, section: str, key: str, meant: str | None
) -> None:
    cfg = write(tmp_path / "gw.yaml", mqtt(**{section: {key: 5000}}))
    err = gateway(bridge_args("mqtt", cfg, tmp_path))
    hint = f" (did you mean {meant!r}?)" if meant else ""
    assert one_line(err) == f"{cfg}: {section}.{key}: unknown key{hint}"
    assert not (tmp_path / "spool").exists(), "nothing started"


def test_an_unknown_key_in_a_simulate_file_is_an_error(gateway: Gateway, tmp_path: Path) -> None:
    cfg = write(tmp_path / "sim.yaml", {"machins": 3, "rate_hz": 2})
    err = gateway(["simulate", "--config", str(cfg), "--max-scans", "1", "--fast-forward"])
    assert one_line(err) == f"{cfg}: machins: unknown key (did you mean 'machines'?)"


def test_unrelated_environment_variables_stay_allowed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MILLSTREAM_SPOOL_SOMETHING_ELSE", "1")
    problems = Problems(None)
    assert problems.settings(SpoolSettings, "spool", {}, {}) is not None
    problems.check()  # nothing to report


# ----------------------------------------------------------------- E1: errors name their source
def test_an_environment_error_names_the_variable_not_the_file(
    gateway: Gateway, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("MILLSTREAM_SPOOL_FSYNC", "sometimes")
    cfg = write(tmp_path / "gw.yaml", mqtt())
    err = gateway(bridge_args("mqtt", cfg, tmp_path))
    assert (
        one_line(err) == "MILLSTREAM_SPOOL_FSYNC='sometimes': Input should be 'always', 'interval' or 'never'"
    )


def test_a_file_error_names_the_file_section_and_key(gateway: Gateway, tmp_path: Path) -> None:
    cfg = write(tmp_path / "gw.yaml", mqtt(spool={"fsync": "sometimes"}))
    err = gateway(bridge_args("mqtt", cfg, tmp_path))
    assert one_line(err) == f"{cfg}: spool.fsync: Input should be 'always', 'interval' or 'never'"


def test_a_bridge_file_error_is_one_line_naming_the_key(gateway: Gateway, tmp_path: Path) -> None:
    data = mqtt()
    del data["topics"]
    cfg = write(tmp_path / "gw.json", data)
    assert one_line(gateway(bridge_args("mqtt", cfg, tmp_path))) == f"{cfg}: topics: Field required"
    cfg = write(tmp_path / "gw2.yaml", mqtt(hots="x"))
    assert one_line(gateway(bridge_args("mqtt", cfg, tmp_path))) == f"{cfg}: hots: unknown key"


def test_a_flag_error_names_the_flag(gateway: Gateway) -> None:
    err = gateway(["simulate", "--machines", "0", "--max-scans", "1", "--fast-forward"])
    assert one_line(err) == "--machines 0: Input should be greater than or equal to 1"


def test_a_bad_value_in_a_simulate_file_names_the_file(gateway: Gateway, tmp_path: Path) -> None:
    cfg = write(tmp_path / "sim.yaml", {"machines": "three"})
    err = gateway(["simulate", "--config", str(cfg), "--max-scans", "1", "--fast-forward"])
    assert one_line(err).startswith(f"{cfg}: machines: Input should be a valid integer")


def test_several_problems_give_one_line_each(
    gateway: Gateway, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("MILLSTREAM_FORWARD_REPLAY_WINDOW", "0")
    cfg = write(tmp_path / "gw.yaml", mqtt(spool={"overflow": "drop-all"}, producer={"linger_ms": -1}))
    lines = str(gateway(bridge_args("mqtt", cfg, tmp_path))).splitlines()
    assert lines[0] == "invalid configuration:"
    assert sorted(x.strip().split(": ")[0:2][0] for x in lines[1:]) == [
        f"{cfg}",
        f"{cfg}",
        "MILLSTREAM_FORWARD_REPLAY_WINDOW='0'",
    ]
    assert any(x.strip().startswith(f"{cfg}: spool.overflow: ") for x in lines)
    assert any(x.strip().startswith(f"{cfg}: producer.linger_ms: ") for x in lines)


def test_a_bad_duration_is_refused_by_the_parser_naming_the_flag(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path / "gw.yaml", mqtt())
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["gateway", "mqtt", "--config", str(cfg), "--duration", "-5"])
    assert "argument --duration: must be a number greater than 0, not '-5'" in capsys.readouterr().err


def test_a_json_variable_that_does_not_parse_is_named(
    gateway: Gateway, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("MILLSTREAM_PRODUCER_EXTRA", "notjson")
    err = gateway(["simulate", "--max-scans", "1", "--fast-forward"])
    assert one_line(err).startswith("MILLSTREAM_PRODUCER_EXTRA: not valid JSON")
    assert "notjson" not in str(err), "the value may hold credentials: not echoed"


# ------------------------------------------------------------ E6: spool flags need a spool folder
def test_spool_flags_without_a_spool_folder_are_an_error(gateway: Gateway) -> None:
    err = gateway(
        ["simulate", "--max-scans", "1", "--fast-forward", "--fsync", "never", "--overflow", "block"]
    )
    assert one_line(err).startswith("--fsync, --overflow need --spool-dir")


# --------------------------------------------------------------------- B7: MQTT topic patterns
@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("plant/{plant}/line/{line}/#", "'#' (multi-level wildcard) is not supported"),
        ("plant/{plant}/line/{line}/machine/{machin}/{sensor}", "unknown placeholder {machin}"),
        ("plant/{plant}/line/{line}/machine/{machine}", "captures no {sensor}"),
        ("plant/{plant}/line/{line}/m{machine}/{sensor}", "level 'm{machine}' mixes text"),
        ("{plant}/{line}/{machine}/{sensor}/{machine}", "placeholder {machine} appears twice"),
    ],
)
def test_a_bad_topic_pattern_is_a_config_error_before_anything_starts(
    gateway: Gateway, tmp_path: Path, pattern: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        TopicMapping(pattern=pattern)
    cfg = write(tmp_path / "gw.yaml", mqtt(topics=[{"pattern": pattern}]))
    err = gateway(bridge_args("mqtt", cfg, tmp_path))
    assert one_line(err).startswith(f"{cfg}: topics[0]: pattern {pattern!r}") and problem in str(err)
    assert not (tmp_path / "spool").exists(), "nothing started"


# ------------------------------------------------------------- B8, E3, N1: OPC UA addresses
def test_an_undeclared_namespace_alias_names_the_node(gateway: Gateway, tmp_path: Path) -> None:
    data = opcua()
    data["nodes"][0]["node_id"] = "ns={plx};s=Press1.Temperature"
    cfg = write(tmp_path / "gw.json", data)
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err) == (
        f"{cfg}: nodes[0] (m001/temperature): node id 'ns={{plx}};s=Press1.Temperature': "
        "namespace alias {plx} is not declared in namespaces (declared: plc)"
    )
    data["nodes"][0] = {
        "browse_path": "0:Objects/plx:Press1",
        "machine": "m001",
        "sensor": "temperature",
        "unit": "Cel",
    }
    with pytest.raises(ValidationError, match="'plx' is neither a namespace index nor an alias declared"):
        OpcUaConfig.model_validate(data)


@pytest.mark.parametrize("node_id", ["ns=2;q=bogus", "ns=2;i=x", "Press1.Temperature", "ns={plc};s=a{b"])
def test_node_id_syntax_is_checked_when_the_configuration_loads(node_id: str) -> None:
    data = opcua()
    data["nodes"][0]["node_id"] = node_id
    with pytest.raises(ValidationError, match=r"nodes\[0\] \(m001/temperature\): node id "):
        OpcUaConfig.model_validate(data)


@pytest.mark.parametrize(
    "node_id",
    [
        "i=85",
        "ns=2;s=Press1.Temperature",
        "ns={plc};i=42",
        "ns={plc};g=09087e75-8e5e-499b-954f-f2a9603db28a",
        "ns={plc};b=aGVsbG8=",
        "ns={plc};s=Tag{{1}}",
    ],
)
def test_valid_node_ids_are_accepted(node_id: str) -> None:
    data = opcua()
    data["nodes"][0]["node_id"] = node_id
    assert OpcUaConfig.model_validate(data).nodes[0].node_id == node_id


def test_the_endpoint_must_be_opc_tcp(gateway: Gateway, tmp_path: Path) -> None:
    cfg = write(tmp_path / "gw.yaml", opcua(endpoint="http://10.0.0.5:4840/"))
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err).startswith(f"{cfg}: endpoint: 'http://10.0.0.5:4840/' is not an opc.tcp:// URL")


def test_half_set_opcua_security_is_one_line_naming_the_section(gateway: Gateway, tmp_path: Path) -> None:
    cfg = write(tmp_path / "gw.yaml", opcua(security={"policy": "Basic256Sha256", "cert_file": "gw.der"}))
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err).startswith(
        f"{cfg}: security: policy Basic256Sha256 needs key_file, server_certificate ("
    )
    cfg = write(tmp_path / "gw.yaml", opcua(security={"mode": "SignAndEncrypt"}))
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err).startswith(f"{cfg}: security: mode without a policy (policy None: no signing")
    assert not (tmp_path / "spool").exists(), "nothing started"


# ----------------------------------------------------------- E4: static units, reversed ranges
def test_an_unknown_static_unit_is_refused_at_load_unless_unknown_units_pass(
    gateway: Gateway, tmp_path: Path
) -> None:
    data = opcua()
    data["nodes"][0]["unit"] = "degX"
    cfg = write(tmp_path / "gw.json", data)
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err).startswith(
        f"{cfg}: nodes[0] (m001/temperature): unknown unit 'degX' (did you mean 'degF'?)"
    )
    data["validation"] = {"unknown_units": "pass"}
    assert OpcUaConfig.model_validate(data).nodes[0].unit == "degX"
    data["validation"] = {"expected_units": {"temperature": "bar"}}
    data["nodes"][0]["unit"] = "degF"
    with pytest.raises(ValidationError, match="unit 'degF' is not convertible to 'bar'"):
        OpcUaConfig.model_validate(data)
    with pytest.raises(ValidationError, match=r"topics\[0\]\.units\.temperature: unknown unit 'degX'"):
        MqttConfig.model_validate(mqtt(topics=[{"pattern": PATTERN, "units": {"temperature": "degX"}}]))


def test_a_reversed_range_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    for rule in ({"uncertain_outside": [120, 0]}, {"bad_outside": [5, -5]}, {"bad_outside": ["nan", 1]}):
        with pytest.raises(ValidationError, match="the low end is above the high end"):
            RangeRule.model_validate(rule)
    assert RangeRule(uncertain_outside=(0, 0)).uncertain_outside == (0, 0)
    data = opcua(validation={"ranges": {"temperature": {"uncertain_outside": [120, 0]}}})
    cfg = write(tmp_path / "gw.json", data)
    err = gateway(bridge_args("opcua", cfg, tmp_path))
    assert one_line(err).startswith(f"{cfg}: validation.ranges.temperature: uncertain_outside [120, 0]: ")
    assert ValidationConfig.model_validate({"ranges": {"t": {"bad_outside": [-40, 400]}}}).ranges["t"]


# ------------------------------------------------------------------ D4: the spool folder default
def test_the_spool_folder_defaults_to_one_per_gateway(clean_env: pytest.MonkeyPatch) -> None:
    assert SpoolSettings().dir is None, "unset: the gateway decides"
    assert spool_for(SpoolSettings(), "press-hall").dir == Path(".millstream") / "spool" / "press-hall"
    clean_env.setenv("MILLSTREAM_SPOOL_DIR", "/var/lib/millstream/spool")
    assert spool_for(SpoolSettings(), "press-hall").dir == Path("/var/lib/millstream/spool")
    readme = (REPO / "README.md").read_text()
    row = next(x for x in readme.splitlines() if x.startswith("| `MILLSTREAM_SPOOL_DIR` |"))
    assert row.startswith("| `MILLSTREAM_SPOOL_DIR` | |") and ".millstream/spool/<gateway_id>" in row
    assert ".millstream/spool/<gateway_id>" in (REPO / "docs" / "gateways.md").read_text()


# ------------------------------------------------------------------- N9: every key is documented
@pytest.mark.parametrize(
    "model",
    [
        OpcUaConfig,
        NodeMapping,
        OpcUaSecurity,
        MqttConfig,
        TopicMapping,
        MqttTls,
        PayloadFormat,
        ValidationConfig,
        RangeRule,
    ],
)
def test_every_configuration_key_is_documented(model: type[Any]) -> None:
    doc = (REPO / "docs" / "gateways.md").read_text()
    missing = [name for name in model.model_fields if not re.search(rf"\b{name}\b", doc)]
    assert not missing, f"docs/gateways.md does not mention {missing}"
