"""The FlinkDeployment carries the job's checkpoint defaults: in application mode the cluster's
configuration wins over the job's, and without checkpoints the exactly-once Kafka sink would never
commit a transaction (read_committed consumers, the ClickHouse sink among them, would see nothing)."""

from __future__ import annotations

from typing import Any

from schemas.config import KafkaSettings, TopicSettings
from streams.config import StreamSettings
from streams.flink.config import FlinkSettings
from streams.flink.job import JobSpec, configuration
from streams.spc.config import SpcSettings
from tests.k8s.conftest import of_kind


def test_the_flink_deployment_checkpoints_as_the_local_job_does(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    local = JobSpec(
        StreamSettings(), SpcSettings(), KafkaSettings(), TopicSettings(), FlinkSettings(), local=True
    )
    wanted = {
        k: v
        for k, v in configuration(local).items()
        if k.startswith("execution.checkpointing.") and k != "execution.checkpointing.dir"
    }
    assert "execution.checkpointing.interval" in wanted and local.exactly_once
    deployments = of_kind(rendered["prod"], "FlinkDeployment")
    assert deployments, "the prod overlay runs the stream job on Flink"
    for fd in deployments:
        conf = fd["spec"]["flinkConfiguration"]
        assert {k: str(conf.get(k)) for k in wanted} == wanted
