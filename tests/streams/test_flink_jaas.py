"""The Flink job's SASL credentials survive the Java client's JAAS parser unchanged.

Parsed by the real kafka-clients jar the job ships (``python -m infra.flink_jars``), with the JDK
the Flink job runs on; librdkafka and aiokafka take the same credentials verbatim.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyflink
from pydantic import SecretStr

from infra.flink_jars import jar_paths
from schemas.config import KafkaSettings
from streams.flink.kafka import java_properties

PARSE = """
import java.nio.file.*;
import java.util.Map;
import org.apache.kafka.common.config.types.Password;
import org.apache.kafka.common.security.JaasContext;
public class Parse {
  public static void main(String[] a) throws Exception {
    for (String line : Files.readAllLines(Path.of(a[0]))) {
      var ctx = JaasContext.loadClientContext(Map.of("sasl.jaas.config", new Password(line)));
      var options = ctx.configurationEntries().get(0).getOptions();
      System.out.println(options.get("username") + "\\t" + options.get("password"));
    }
  }
}
"""

CREDENTIALS = [("millstream-windows", "plain123"), ('q"uote', 'p"q'), ("u", "back\\slash"), ("u", "ends\\")]


def test_credentials_reach_the_java_client_verbatim(tmp_path: Path) -> None:
    lines = [
        java_properties(
            KafkaSettings(
                kafka_security_protocol="SASL_SSL", kafka_username=user, kafka_password=SecretStr(pw)
            )
        )["sasl.jaas.config"]
        for user, pw in CREDENTIALS
    ]
    (tmp_path / "jaas.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "Parse.java").write_text(PARSE, encoding="utf-8")
    flink_lib = Path(pyflink.__file__).parent / "lib"
    classpath = [*map(str, jar_paths()), str(flink_lib / "*")]  # Flink's own jars: logging for the client
    out = subprocess.run(  # noqa: S603 - fixed command
        ["java", "-cp", ":".join(classpath), str(tmp_path / "Parse.java"), str(tmp_path / "jaas.txt")],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert [tuple(line.split("\t")) for line in out.splitlines()] == CREDENTIALS
