"""Settings of the streaming SPC operator. Env vars ``MILLSTREAM_SPC_*``."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.spc.exceptions import SpcConfigError
from streams.spc.monitor import MonitorConfig


class SpcSettings(BaseSettings):
    """Default chart of every (machine, sensor) monitor."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_SPC_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    chart: str = Field(
        "imr",
        description="MILLSTREAM_SPC_CHART: imr, xbar-r, xbar-s, ewma, cusum or mcewma (moving-centerline "
        "EWMA, for window means that drift; the stream job charts "
        "window means; the attribute charts p, np, c and u are for `millstream spc` on count data).",
    )
    rules: str = Field("we", description="MILLSTREAM_SPC_RULES: we (Western Electric), nelson or none.")
    phase1_count: int = Field(
        25,
        ge=0,
        description="MILLSTREAM_SPC_PHASE1_COUNT: windows per key that form the phase I baseline (20-25 is "
        "the textbook advice; at least 2 for imr, ewma and cusum without SIGMA).",
    )
    subgroup_size: int | None = Field(
        None,
        ge=1,
        description="MILLSTREAM_SPC_SUBGROUP_SIZE: not for the stream job, whose subgroups are its windows "
        "(refused when set).",
    )
    target: float | None = Field(
        None,
        description="MILLSTREAM_SPC_TARGET: known process mean (skips estimation); needs "
        "MILLSTREAM_SPC_SENSORS to name one sensor.",
    )
    sigma: float | None = Field(
        None,
        gt=0,
        description="MILLSTREAM_SPC_SIGMA: known process sigma (of a window mean for imr, of a reading for "
        "the other charts); needs MILLSTREAM_SPC_SENSORS to name one sensor.",
    )
    lam: float = Field(0.2, gt=0, le=1, description="MILLSTREAM_SPC_LAM: EWMA weight lambda.")
    width: float = Field(3.0, gt=0, description="MILLSTREAM_SPC_WIDTH: EWMA limit width L.")
    k: float = Field(0.5, ge=0, description="MILLSTREAM_SPC_K: CUSUM reference value (sigma units).")
    h: float = Field(5.0, gt=0, description="MILLSTREAM_SPC_H: CUSUM decision interval (sigma units).")
    lsl: float | None = Field(
        None,
        description="MILLSTREAM_SPC_LSL: lower specification limit; kept with the monitor, not published "
        "(capability: `millstream spc --lsl`, or `v_capability` with the spec limits of `machines`); "
        "needs one SENSORS.",
    )
    usl: float | None = Field(
        None, description="MILLSTREAM_SPC_USL: upper specification limit; as MILLSTREAM_SPC_LSL."
    )

    sensors: str = Field(
        "",
        description="MILLSTREAM_SPC_SENSORS: comma-separated sensors that get a control chart ('' = every "
        "sensor). Chart process characteristics; counters (energy, part counts) and machine states "
        "drift or jump by design and would only signal.",
    )

    idle_sensor: str = Field(
        "",
        description="MILLSTREAM_SPC_IDLE_SENSOR: a state sensor (e.g. machine_state) of the same machine; a "
        "window in which it reads IDLE_VALUE is not charted, so a stopped machine's readings neither set "
        "nor break the limits of the running process ('': every window is charted).",
    )
    idle_value: float = Field(
        0.0, description="MILLSTREAM_SPC_IDLE_VALUE: the value of IDLE_SENSOR that means stopped."
    )

    @field_validator("chart")
    @classmethod
    def _known_chart(cls, v: str) -> str:
        from streams.spc.charts import chart_types

        measurement = [k for k, c in chart_types().items() if c.data == "variables"]
        if v not in measurement:
            msg = f"not a chart of measurements; choose one of {', '.join(sorted(measurement))}"
            raise ValueError(msg)
        return v

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, v: str) -> str:
        from streams.spc.rules import RULE_SETS

        if v not in RULE_SETS:
            msg = f"unknown rule set; choose one of {', '.join(RULE_SETS)}"
            raise ValueError(msg)
        return v

    @field_validator("sensors")
    @classmethod
    def _sensor_list(cls, v: str) -> str:
        names = [x.strip() for x in v.split(",")]
        if v.strip() and not all(names):
            msg = f"empty sensor name in {v!r}: expected e.g. temperature,pressure"
            raise ValueError(msg)
        return ",".join(n for n in names if n)

    @model_validator(mode="after")
    def _consistent(self) -> SpcSettings:
        """Settings that only fail together (phase I too short for the chart, LSL >= USL) are refused
        when read, not by the first window of every key in a running job; every problem, one a line."""
        problems = []
        if self.subgroup_size is not None:
            problems.append(
                "MILLSTREAM_SPC_SUBGROUP_SIZE does not apply to the stream job: its subgroups are its "
                "windows (one window = one subgroup of all its readings; choose the window with "
                "MILLSTREAM_STREAM_WINDOW and chart xbar-r or xbar-s)"
            )
        per_process = [name for name in ("target", "sigma", "lsl", "usl") if getattr(self, name) is not None]
        charted = self.charted
        if per_process and (charted is None or len(charted) != 1):
            names = ", ".join(f"MILLSTREAM_SPC_{n.upper()}" for n in per_process)
            problems.append(
                f"{names} describe one process characteristic, but the stream job would apply them to "
                f"{'every sensor' if charted is None else 'each of ' + ', '.join(sorted(charted))}: "
                "set MILLSTREAM_SPC_SENSORS to the one sensor they describe"
            )
        if self.subgroup_size is None:  # monitor_config() refuses it too, less clearly
            try:
                self.monitor_config()
            except SpcConfigError as exc:
                problems.append(f"MILLSTREAM_SPC_* settings: {exc}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def charted(self) -> frozenset[str] | None:
        """The sensors of SENSORS; None: every sensor."""
        return frozenset(self.sensors.split(",")) if self.sensors else None

    def monitor_config(self) -> MonitorConfig:
        return MonitorConfig(**self.model_dump(exclude={"sensors", "idle_sensor", "idle_value"}))
