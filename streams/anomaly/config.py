"""Settings of the anomaly detector: one global configuration for every machine and sensor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AnomalySettings(BaseSettings):
    """Detector, calibration and alerting settings. Env vars ``MILLSTREAM_ANOMALY_*``."""

    # inf and nan are refused (an hour count of inf crashed the monitor), and so are absurdly large times
    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_ANOMALY_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    # ---- features
    window: int = Field(
        8, ge=2, description="MILLSTREAM_ANOMALY_WINDOW: readings in the short window of a sensor."
    )
    segments: int = Field(
        4,
        ge=1,
        description="MILLSTREAM_ANOMALY_SEGMENTS: the window is summarised as this many segment means.",
    )
    long_window: int = Field(
        32,
        ge=0,
        description="MILLSTREAM_ANOMALY_LONG_WINDOW: a second, longer window summarised the same way "
        "(0 = none).",
    )
    profile_bins: int = Field(
        24,
        ge=1,
        description="MILLSTREAM_ANOMALY_PROFILE_BINS: time-of-day bins of the daily profile (1 = none).",
    )
    profile_alpha: float = Field(
        0.02, gt=0, le=1, description="MILLSTREAM_ANOMALY_PROFILE_ALPHA: learning rate of a profile bin."
    )
    profile_squash: float = Field(
        5.0, gt=0, description="MILLSTREAM_ANOMALY_PROFILE_SQUASH: residual (in spreads) that scores 0.5."
    )
    profile_power: float = Field(
        2.0,
        gt=0,
        description="MILLSTREAM_ANOMALY_PROFILE_POWER: sharpness of that squashing (see detector.py).",
    )
    profile_clip: float = Field(
        0.0,
        ge=0,
        description="MILLSTREAM_ANOMALY_PROFILE_CLIP: profile updates are clipped at this many spreads "
        "(0 = no clipping), so an unflagged fault is learnt slowly.",
    )
    profile_ready: int = Field(
        3,
        ge=1,
        description="MILLSTREAM_ANOMALY_PROFILE_READY: readings a time-of-day bin needs before it is used "
        "(until then the sensor's overall mean and spread are).",
    )
    profile_interval: float = Field(
        60.0,
        ge=0,
        le=1e9,
        description="MILLSTREAM_ANOMALY_PROFILE_INTERVAL: seconds. PROFILE_ALPHA is per reading for readings "
        "at least this far apart, and per this much event time for faster ones, so a sensor read every "
        "second keeps a time-of-day normal of hours, not of its last minute (0 = per reading at any pace).",
    )
    sequence_length: int = Field(
        5,
        ge=0,
        description="MILLSTREAM_ANOMALY_SEQUENCE_LENGTH: readings per context of the sequence detector "
        "(0 = no sequence detector).",
    )
    sequence_levels: int = Field(
        16,
        ge=2,
        description="MILLSTREAM_ANOMALY_SEQUENCE_LEVELS: quantisation levels of the sequence detector.",
    )
    sequence_table: int = Field(
        4096,
        ge=64,
        description="MILLSTREAM_ANOMALY_SEQUENCE_TABLE: context counters per sensor (2 bytes each).",
    )
    transition_min_levels: int = Field(
        0,
        ge=0,
        description="MILLSTREAM_ANOMALY_TRANSITION_MIN_LEVELS: coarsest grid (bands of the range) of the "
        "transition detector; 0 = no transition detector (the default), 5 = grids of 5 to MAX_LEVELS "
        "bands. For cyclic, structured signals: on noisy sensors it raises about one false alarm per "
        "9,000 readings (docs/anomaly.md).",
    )
    transition_max_levels: int = Field(
        12,
        ge=2,
        description="MILLSTREAM_ANOMALY_TRANSITION_MAX_LEVELS: finest grid of the transition detector.",
    )
    transition_headroom: float = Field(
        0.1,
        ge=0,
        description="MILLSTREAM_ANOMALY_TRANSITION_HEADROOM: when a value leaves the transition detector's "
        "range, the range grows past it by this fraction of its span.",
    )
    transition_rest: int = Field(
        30,
        ge=0,
        description="MILLSTREAM_ANOMALY_TRANSITION_REST: a new transition scores only if none was new in "
        "this many readings before (a new regime alerts once).",
    )
    # ---- multivariate detector (half-space trees over the machine's window features)
    relation_alpha: float = Field(
        0.001,
        ge=0,
        le=1,
        description="MILLSTREAM_ANOMALY_RELATION_ALPHA: learning rate of the relation detector, which "
        "judges each sensor against what the machine's other sensors predict (0 = off).",
    )
    relation_min_r2: float = Field(
        0.3,
        ge=0,
        le=1,
        description="MILLSTREAM_ANOMALY_RELATION_MIN_R2: a sensor is judged by the relation detector only if "
        "the other sensors explain at least this share of its variance.",
    )
    hst_trees: int = Field(10, ge=1, description="MILLSTREAM_ANOMALY_HST_TREES: number of half-space trees.")
    hst_height: int = Field(8, ge=1, le=14, description="MILLSTREAM_ANOMALY_HST_HEIGHT: height of each tree.")
    hst_window: int = Field(
        250, ge=10, description="MILLSTREAM_ANOMALY_HST_WINDOW: readings per reference window of the trees."
    )
    hst_backend: Literal["compact", "river"] = Field(
        "compact",
        description="MILLSTREAM_ANOMALY_HST_BACKEND: 'compact' (same scores as river's HalfSpaceTrees, "
        "shared tree structure, ~40 KB per model) or 'river' (river.anomaly.HalfSpaceTrees itself, "
        "~1.25 MB).",
    )
    seed: int = Field(
        42, description="MILLSTREAM_ANOMALY_SEED: random seed of the trees (same for all machines)."
    )
    # ---- calibration
    likelihood_window: int = Field(
        10, ge=1, description="MILLSTREAM_ANOMALY_LIKELIHOOD_WINDOW: raw scores averaged before calibration."
    )
    likelihood_window_s: float = Field(
        0.0,
        ge=0,
        le=1e9,
        description="MILLSTREAM_ANOMALY_LIKELIHOOD_WINDOW_S: the calibrators average at least this many "
        "seconds of readings: once a machine's sampling interval is known (the mean gap over its first "
        "20 judged readings), their window becomes max(LIKELIHOOD_WINDOW, this / interval) readings, at "
        "most 3600. For fast scans, whose residuals barely change within 10 readings (0 = off, the "
        "default; the plant settings use 60).",
    )
    likelihood_alpha: float = Field(
        1 / 4000,
        gt=0,
        le=1,
        description="MILLSTREAM_ANOMALY_LIKELIHOOD_ALPHA: forgetting rate of the raw score "
        "distribution (1/readings of memory).",
    )
    likelihood_var_floor: float = Field(
        0.0003,
        gt=0,
        description="MILLSTREAM_ANOMALY_LIKELIHOOD_VAR_FLOOR: smallest variance assumed for the averaged raw "
        "score (a detector that is always equally surprised is not trusted with tiny changes).",
    )
    range_tolerance: float = Field(
        0.01,
        ge=0,
        description="MILLSTREAM_ANOMALY_RANGE_TOLERANCE: a value beyond the range seen so far by more "
        "than this fraction of it scores at least 0.5.",
    )
    range_steps: float = Field(
        0.0,
        ge=0,
        description="MILLSTREAM_ANOMALY_RANGE_STEPS: the excess beyond the range counts only past this "
        "many of the sensor's resolution (its smallest change between readings): a coarsely quantised "
        "sensor one step past its range has made its smallest possible move. 1 for fewer false alarms "
        "from coarse sensors, at some cost in recall; 0 (default): off.",
    )
    range_persist: int = Field(
        2,
        ge=1,
        description="MILLSTREAM_ANOMALY_RANGE_PERSIST: readings in a row a sensor must be beyond its range "
        "before that opens an event (the score shows the first at once). A lone spike past the range "
        "is a record of the noise's tail more often than a fault; 1: every such reading opens one.",
    )
    red: float = Field(
        0.5,
        gt=0,
        le=1,
        description="MILLSTREAM_ANOMALY_RED: score of a tail probability of 1e-5; consecutive "
        "scores above it after the first are lowered to MILLSTREAM_ANOMALY_YELLOW (one alert per burst).",
    )
    yellow: float = Field(
        0.3, ge=0, le=1, description="MILLSTREAM_ANOMALY_YELLOW: see MILLSTREAM_ANOMALY_RED."
    )
    # ---- alerting
    warmup: int = Field(
        150, ge=0, description="MILLSTREAM_ANOMALY_WARMUP: readings of a machine before any score or alert."
    )
    warmup_hours: float = Field(
        0.1,
        ge=0,
        description="MILLSTREAM_ANOMALY_WARMUP_HOURS: besides WARMUP readings, no alert before this many "
        "hours of event time since a machine's first reading (0.1: six minutes, which only matters for a "
        "sensor read faster than every 2.4 s, whose 150 readings show little of its normal wander; 24: the "
        "daily profile has seen every hour and the range every operating point, recommended for plant "
        "telemetry).",
    )
    ignore_sensors: str = Field(
        "",
        description="MILLSTREAM_ANOMALY_IGNORE_SENSORS: comma-separated sensors the monitor does not model "
        "(e.g. monotone counters such as energy,part_count, which set a new record at every reading).",
    )
    idle_sensor: str = Field(
        "",
        description="MILLSTREAM_ANOMALY_IDLE_SENSOR: a state sensor (e.g. machine_state); a scan in which "
        "it reads IDLE_VALUE comes from a stopped machine and is neither scored nor learnt ('': none).",
    )
    idle_value: float = Field(
        0.0, description="MILLSTREAM_ANOMALY_IDLE_VALUE: the value of IDLE_SENSOR that means stopped."
    )
    flatline: int = Field(
        0,
        ge=0,
        description="MILLSTREAM_ANOMALY_FLATLINE: this many readings in a row with exactly the same value "
        "mark a sensor as stuck, if it never repeated a value half that long in normal operation "
        "(0 = off).",
    )
    enter: float = Field(
        0.6,
        gt=0,
        le=1,
        description="MILLSTREAM_ANOMALY_ENTER: score that opens an event (0.6: tail probability 1e-6, or a "
        "value beyond the range seen so far by 20% of it).",
    )
    exit: float = Field(
        0.3,
        ge=0,
        le=1,
        description="MILLSTREAM_ANOMALY_EXIT: an open event closes when the score drops below this.",
    )
    hold: float = Field(
        3.0,
        ge=0,
        description="MILLSTREAM_ANOMALY_HOLD: an open event also stays open while the sensor that raised "
        "it reads at least this many spreads from its time-of-day normal (or standard deviations from what "
        "the relation detector expects from the other sensors), so a lasting fault is one event "
        "as long as it lasts (up to MAX_DURATION) rather than an event that closes when the calibrated "
        "score settles; 0 = the score alone closes events.",
    )
    min_duration: int = Field(
        1,
        ge=1,
        description="MILLSTREAM_ANOMALY_MIN_DURATION: readings at or above ENTER before an event opens.",
    )
    exit_duration: int = Field(
        10,
        ge=1,
        description="MILLSTREAM_ANOMALY_EXIT_DURATION: readings in a row below EXIT before an open event "
        "closes.",
    )
    cooldown: int = Field(
        50,
        ge=0,
        description="MILLSTREAM_ANOMALY_COOLDOWN: readings after an event closes before another may open.",
    )
    max_duration: int = Field(
        500,
        ge=1,
        description="MILLSTREAM_ANOMALY_MAX_DURATION: an event open this many readings (and at least "
        "MAX_DURATION_HOURS) is closed and the models learn the new behaviour (a lasting change becomes "
        "the new normal).",
    )
    max_duration_hours: float = Field(
        1.0,
        ge=0,
        le=1e6,
        description="MILLSTREAM_ANOMALY_MAX_DURATION_HOURS: an event is not closed by MAX_DURATION before "
        "it has lasted this much event time (1: a sensor read every second does not make a fault the new "
        "normal after 8 minutes; 500 readings a minute or more apart already last longer).",
    )
    flagged_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="MILLSTREAM_ANOMALY_FLAGGED_WEIGHT: learning weight of readings inside an "
        "event (0: the models do not learn what they flag).",
    )

    @property
    def ignored(self) -> frozenset[str]:
        """The sensors of IGNORE_SENSORS."""
        return frozenset(x.strip() for x in self.ignore_sensors.split(",") if x.strip())

    @model_validator(mode="after")
    def _check(self) -> AnomalySettings:
        if self.window % self.segments or self.long_window % self.segments:
            msg = "window must be a multiple of segments"
            raise ValueError(msg)
        if self.transition_min_levels and not 2 <= self.transition_min_levels <= self.transition_max_levels:
            msg = "transition_min_levels must be 0 (off) or between 2 and transition_max_levels"
            raise ValueError(msg)
        if self.exit > self.enter:
            msg = "exit threshold must not exceed the enter threshold"
            raise ValueError(msg)
        return self
