"""SPC signals across the upgrade to migration 0012, on the real embedded ClickHouse.

A database of the previous release (migrations 0001-0011) holds signals; the upgrade gives them
point_start 1970-01-01; some are inserted again by today's sink (a batch it re-reads, a group reset).
docs/clickhouse.md's queries for that case (the ```sql upgrade-0012 blocks) must find the pairs,
count each signal once, and the cleanup must leave one row per signal and lose none.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from sink_data import MINUTE, T0, spc_signal

from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.migrations import default_directory, migrate, split_statements
from sinks.tables import SPC_SIGNALS, Source
from sinks.writer import BatchWriter

DOC = Path(__file__).resolve().parents[2] / "docs" / "clickhouse.md"
PAIRS, ONCE, CLEANUP = re.findall(
    r"^```sql upgrade-0012\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M
)
LAST_OF_PREVIOUS_RELEASE = 11


def _signals() -> list[dict[str, Any]]:
    """Points 1-6 of two charts and a signal without a window."""
    out = []
    for chart in ("i", "mr"):
        for point in range(1, 7):
            start = T0 + point * MINUTE
            end = start + MINUTE
            out.append(
                spc_signal(
                    chart=chart, point_index=point, window_start=start, window_end=end, value=float(point)
                )
            )
    out.append(spc_signal(rule="LIMIT", point_index=9, window_start=None, window_end=None, emitted_at=T0 + 9))
    return out


def _identities(client: Any) -> set[tuple[Any, ...]]:
    rows = client.query(
        "SELECT chart, rule, point_index, window_start, value FROM spc_signals FINAL"
    ).result_rows
    return {tuple(r) for r in rows}


def test_signals_inserted_again_after_the_upgrade_are_found_read_once_and_cleaned(
    ch_settings: ClickHouseSettings, tmp_path: Path
) -> None:
    previous = tmp_path / "migrations-ba2c8c1"
    previous.mkdir()
    for f in sorted(default_directory().glob("*.sql"))[:LAST_OF_PREVIOUS_RELEASE]:
        shutil.copy(f, previous / f.name)
    no_views = tmp_path / "views"
    no_views.mkdir()
    signals = _signals()
    client = connect(ch_settings)
    try:
        migrate(client, previous, no_views)
        # the previous release's sink: every column but point_start
        keep = [i for i, c in enumerate(SPC_SIGNALS.columns) if c != "point_start"]
        old_rows = [[SPC_SIGNALS.to_row(s)[i] for i in keep] for s in signals]
        client.insert("spc_signals", old_rows, column_names=[SPC_SIGNALS.columns[i] for i in keep])
        before = _identities(client)
        assert len(before) == len(signals)

        migrate(client)
        # today's sink writes three of them again (and one that is new)
        again = [{**signals[i], "emitted_at": signals[i]["emitted_at"] + 60_000} for i in (0, 2, 6)]
        new = spc_signal(
            point_index=7, window_start=T0 + 7 * MINUTE, window_end=T0 + 8 * MINUTE, emitted_at=T0
        )
        writer = BatchWriter(client, ch_settings)
        for n, rec in enumerate([*again, new]):
            assert writer.add(SPC_SIGNALS, rec, Source("millstream.spc-signals.v1", 0, n, b"m1", b"x"))
        writer.flush()
        client.command("OPTIMIZE TABLE spc_signals FINAL")

        final = client.query("SELECT count() FROM spc_signals FINAL").result_rows[0][0]
        assert final == len(signals) + len(again) + 1  # the limitation the docs describe
        pairs = client.query(PAIRS).result_rows
        assert sorted((r[2], r[4], r[6]) for r in pairs) == [("i", 1, 2), ("i", 3, 2), ("mr", 1, 2)]
        assert len(client.query(ONCE).result_rows) == len(signals) + 1

        for _ in range(2):  # run twice: a second run changes nothing
            for statement in split_statements(CLEANUP):
                client.command(statement)
        client.command("OPTIMIZE TABLE spc_signals FINAL")
        after = client.query(
            "SELECT count(), countIf(point_start = 0), countIf(point_start = 0 AND window_start IS NULL) "
            "FROM spc_signals FINAL"
        ).result_rows[0]
        assert tuple(after) == (len(signals) + 1, 1, 1)  # one row each; only the windowless keeps 1970
        assert _identities(client) >= before  # nothing lost
        assert client.query(PAIRS).result_rows == []
    finally:
        client.close()
