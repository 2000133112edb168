"""``millstream demo``: a simulated plant through the whole pipeline, then a summary.

Exit code 0 only when data flowed end to end: readings produced, windows in ClickHouse, and
Prometheus scraping every component.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import interrupted_by_signals
from infra.stack import StackSettings

EXAMPLE_SQL = [
    (
        "Latest window per machine and sensor",
        "SELECT machine_id, sensor, argMax(mean, window_end) AS mean, max(window_end) AS at "
        "FROM window_aggregates FINAL GROUP BY machine_id, sensor ORDER BY machine_id, sensor LIMIT 20",
    ),
    (
        "Hottest machines in the last hour",
        "SELECT machine_id, max(max) AS peak FROM window_aggregates FINAL "
        "WHERE sensor = 'temperature' AND window_end > now() - INTERVAL 1 HOUR GROUP BY machine_id "
        "ORDER BY peak DESC LIMIT 5",
    ),
    (
        "Least capable processes (Cpk, Ppk) against the spec limits the demo loaded into machines",
        "SELECT machine_id, sensor, period_start, windows, round(cpk, 2) AS cpk, round(ppk, 2) AS ppk "
        "FROM v_capability WHERE cpk IS NOT NULL ORDER BY cpk LIMIT 10",
    ),
]


def _results(pipe: LocalPipeline, since_ms: int) -> tuple[int, int]:
    """Loads the simulated plant's metadata (units, spec limits) into ``machines``; returns that row
    count and the windows written since ``since_ms``."""
    from sinks import metadata
    from sinks.clickhouse import ClickHouseSettings, connect

    client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
    try:
        loaded = metadata.load(client, pipe.metadata_path)
        rows = client.query(
            "SELECT count() FROM window_aggregates FINAL "
            "WHERE emitted_at >= fromUnixTimestamp64Milli({t:Int64})",
            parameters={"t": since_ms},
        ).result_rows
        return loaded, int(rows[0][0])
    finally:
        client.close()


def _prom_sum(pipe: LocalPipeline, selector: str) -> int:
    assert pipe.prometheus is not None
    result = pipe.prometheus.query(f"sum({selector})")
    return int(float(result[0]["value"][1])) if result else 0


CHARTED_SENSORS = "vibration_rms,temperature,pressure,current,noise"  # of the simulator's sensors


def run_demo(duration_s: float, machines: int, rate_hz: float, as_json: bool) -> int:
    console = Console(stderr=True, quiet=as_json)
    started_ms = int(time.time() * 1000)
    summary: dict[str, Any] = {"duration_s": duration_s}
    # Demo defaults show results within a minute; the user's window and SPC settings win. The plant
    # (--machines, --rate), the partitions and the lateness settings are the demo's own.
    opts = PipelineOptions(
        data_dir=StackSettings().data_dir,
        window=os.environ.get("MILLSTREAM_STREAM_WINDOW", "tumbling:5s"),
        extra_env={
            # The simulated process drifts (window means autocorrelated) and its machines stop and start:
            # the moving-centerline EWMA, only while running, from a 60 s baseline. The I chart of all
            # windows from a 30 s baseline gave 333-657 signals in 150 s on 4 machines, this 53-68
            # (README, Statistical process control).
            "MILLSTREAM_SPC_CHART": os.environ.get("MILLSTREAM_SPC_CHART", "mcewma"),
            "MILLSTREAM_SPC_PHASE1_COUNT": os.environ.get("MILLSTREAM_SPC_PHASE1_COUNT", "12"),
            "MILLSTREAM_SPC_IDLE_SENSOR": os.environ.get("MILLSTREAM_SPC_IDLE_SENSOR", "machine_state"),
            # Control charts for the process characteristics, not the counters and the machine state.
            "MILLSTREAM_SPC_SENSORS": os.environ.get("MILLSTREAM_SPC_SENSORS", CHARTED_SENSORS),
        },
    )
    with interrupted_by_signals(), LocalPipeline(opts) as pipe:
        console.print("[bold]Millstream demo[/] — starting broker, Prometheus, sink, stream worker, gateway")
        pipe.start_stack()
        assert pipe.prometheus is not None
        pipe.start_sink()
        pipe.start_worker()
        pipe.start_gateway(duration_s, machines, rate_hz)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        with progress:
            task = progress.add_task(f"plant running ({machines} machines)", total=duration_s)
            t0 = time.monotonic()
            seen_up: dict[str, bool] = {}
            next_check = 0.0
            while pipe.procs["gateway"].alive():
                pipe.check_alive("windows", "sink")
                progress.update(task, completed=min(duration_s, time.monotonic() - t0))
                if time.monotonic() >= next_check:  # every component must be scraped up while running
                    for comp, ok in pipe.prometheus.targets_up().items():
                        seen_up[comp] = seen_up.get(comp, False) or ok
                    next_check = time.monotonic() + 2.0
                time.sleep(0.5)
            drain = progress.add_task("closing the last windows", total=None)
            pipe.wait_quiet(pipe.topics.topic_windows, quiet_s=4.0, timeout=60.0)
            pipe.wait_drained("millstream-sink", pipe.topics.topic_windows, timeout=60.0)
            progress.update(drain, completed=1)
        now_up = pipe.prometheus.wait_for_scrape(timeout=15, components=["windows", "sink"])
        # The gateway has finished by now; it counts as up when it was scraped up while it ran.
        targets = {
            c: seen_up.get(c, False) and (c == "gateway" or now_up.get(c, False))
            for c in ("gateway", "windows", "sink")
        }
        summary["prometheus_targets"] = targets
        summary["prometheus_up"] = all(targets.values())
        summary["prometheus_url"] = pipe.prometheus.url
        gw = pipe.gateway_summary()
        summary["readings_produced"] = int(gw.get("values", gw.get("produced", 0)))
        summary["messages_acknowledged"] = int(gw.get("acknowledged", 0))
        time.sleep(2 * opts.scrape_interval_s)  # let Prometheus take the final counter values
        summary["dead_letters"] = _prom_sum(pipe, 'millstream_dead_letters_total{reason!="too_late"}')
        summary["late_readings"] = _prom_sum(pipe, 'millstream_dead_letters_total{reason="too_late"}')
        summary["windows_emitted"] = _prom_sum(pipe, 'millstream_records_out_total{component="windows"}')
        summary["spc_signals"] = _prom_sum(pipe, "millstream_spc_signals_total")
        pipe.stop("gateway")
        pipe.stop("windows")
        pipe.stop("sink")
        summary["machine_sensors_loaded"], summary["windows_in_clickhouse"] = _results(pipe, started_ms)
        summary["clickhouse"] = f"chdb://{pipe.clickhouse_path}"
        summary["logs"] = str(pipe.logs)
    ok = (
        summary["readings_produced"] > 0 and summary["windows_in_clickhouse"] > 0 and summary["prometheus_up"]
    )
    summary["ok"] = ok
    if as_json:
        print(json.dumps(summary))
    else:
        _print_human(summary)
    return 0 if ok else 1


def _print_human(s: dict[str, Any]) -> None:
    out = Console()
    status = (
        "[green]data flowed end to end[/]" if s["ok"] else "[red]the pipeline did not deliver end to end[/]"
    )
    out.print(f"\n[bold]Millstream demo finished[/]: {status}")
    out.print(f"  readings produced      {s['readings_produced']:>10,}")
    out.print(f"  windows emitted        {s['windows_emitted']:>10,}")
    out.print(f"  windows in ClickHouse  {s['windows_in_clickhouse']:>10,}")
    out.print(f"  dead letters           {s['dead_letters']:>10,}")
    out.print(f"  late readings          {s['late_readings']:>10,}")
    out.print(f"  SPC signals            {s['spc_signals']:>10,}")
    out.print(f"  machine metadata rows  {s['machine_sensors_loaded']:>10,}")
    targets = ", ".join(f"{k} {'up' if v else 'DOWN'}" for k, v in sorted(s["prometheus_targets"].items()))
    out.print(f"  Prometheus             {s['prometheus_url']} ({targets}); stopped with the demo")
    out.print(f"  logs                   {s['logs']}")
    out.print("\nThe results stay in the embedded ClickHouse. Try:")
    for title, sql in EXAMPLE_SQL:
        out.print(f'  # {title}\n  .venv/bin/millstream sql "{sql}"', soft_wrap=True)
    sys.stdout.flush()
