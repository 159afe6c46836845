"""Refresh plans: how each table catches up with its input (full, append or unchanged), and why.

What silver has seen of bronze, so that silver, gold and the features can refresh only what is new:

* `silver.bronze_files_seen` (the watermark): the bronze file versions that silver holds, as
  `bronze.ingested_files` listed them (path, SHA-256, row count, ingestion time), and the silver
  load that brought each in.
* `silver.loads`: one row per silver load that changed silver: `full` (rebuilt from all of
  bronze) or `append` (new files only), why, and `ingested_through`, the latest bronze
  ingestion time silver holds after it. Gold remembers the last load it summarized and reads
  the loads after it.

Silver may append only when its rows are exactly bronze's rows minus those of new files, and
every new row sorts after every row silver has seen under the deduplication order (ingestion
time, file, row): then no new row can displace a kept one, and a rebuild would keep, type and
reject the old rows exactly as before. Everything else is a full rebuild, with the reason.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

import duckdb

from lakehouse_assets.lib import buckets
from lakehouse_assets.lib.metadata import scalar, table_exists
from lakehouse_assets.lib.tables import (
    BRONZE_FILES,
    BRONZE_TRANSACTIONS,
    SILVER_FILE_ACCEPTANCE,
    SILVER_FILES_SEEN,
    SILVER_LOADS,
)

FILES_NAMED = 5  # at most this many file names in a reason


class Refresh(StrEnum):
    """How a table is brought up to date with its input."""

    FULL = "full"  # rebuilt from all of its input
    APPEND = "append"  # only the new input (and, for a table per customer, its customers) read
    UNCHANGED = "unchanged"  # nothing to do


FULL, APPEND, UNCHANGED = Refresh.FULL, Refresh.APPEND, Refresh.UNCHANGED


class SilverLoad(NamedTuple):
    """One load of silver, as a table computed from silver remembers the last it read."""

    load_id: int
    loaded_at: datetime


class LoadRecord(NamedTuple):
    """A row of `silver.loads`."""

    load_id: int
    loaded_at: datetime
    mode: str
    reason: str
    ingested_through: datetime | None

    @property
    def load(self) -> SilverLoad:
        return SilverLoad(self.load_id, self.loaded_at)


class FeatureWatermark(NamedTuple):
    """What a feature table last read: the silver load, its cutoff and its definitions' hash."""

    load: SilverLoad
    cutoff: datetime
    definition: str


@dataclass(frozen=True)
class RefreshPlan:
    """What a refresh does and why. `since`: in an append, the input rows ingested after it are
    the new ones. `previous_cutoff`: a feature table's cutoff before this refresh. `remember`:
    the silver load to record once the table is written (None: record nothing)."""

    mode: Refresh
    reason: str
    since: datetime | None = None
    previous_cutoff: datetime | None = None
    remember: SilverLoad | None = None
    new_files: int = 0
    new_rows: int = 0

    def metadata(self, customers_recomputed: int | None = None) -> dict:
        """The refresh's metadata, as every layer shows it."""
        metadata: dict = {"refresh": self.mode.value, "refresh_reason": self.reason}
        if customers_recomputed is not None:
            metadata["customers_recomputed"] = customers_recomputed
        return metadata


def create_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SILVER_FILES_SEEN} (source_file VARCHAR, sha256 VARCHAR, "
        "row_count BIGINT, ingested_at TIMESTAMP, load_id BIGINT)"
    )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SILVER_LOADS} (load_id BIGINT, loaded_at TIMESTAMP, "
        "mode VARCHAR, reason VARCHAR, bronze_rows BIGINT, silver_rows BIGINT, "
        "rejected_rows BIGINT, ingested_through TIMESTAMP)"
    )


def _names(rows: list[tuple]) -> str:
    names = [r[0] for r in rows[:FILES_NAMED]]
    more = f" and {len(rows) - FILES_NAMED} more" if len(rows) > FILES_NAMED else ""
    return ", ".join(names) + more


def plan_silver(
    conn: duckdb.DuckDBPyConnection,
    silver_tables: tuple[str, str],
    expired_future_sql: str,
    now: datetime,
    full_refresh: bool,
    bucketing: buckets.Bucketing,
) -> RefreshPlan:
    """Compare bronze's file versions with silver's watermark and decide how to refresh.
    A change of `bucketing` (the bucket count, or DuckDB's hash) rebuilds in full.

    `expired_future_sql` counts rows rejected as future events that are no longer in the future
    at `$now` (a rebuild would type them again).
    """
    if full_refresh:
        return RefreshPlan(FULL, "full_refresh was requested in the run config")
    if not all(table_exists(conn, t) for t in silver_tables):
        return RefreshPlan(FULL, "silver has not been built yet")
    if not table_exists(conn, SILVER_FILE_ACCEPTANCE):  # a lakehouse built before it existed
        return RefreshPlan(FULL, f"{SILVER_FILE_ACCEPTANCE} has not been built yet")
    bucket_change = buckets.change(buckets.stored(conn), bucketing)
    if bucket_change:
        return RefreshPlan(FULL, bucket_change)
    seen_rows, seen_files, seen_through = conn.execute(
        f"SELECT coalesce(sum(row_count), 0), count(*), max(ingested_at) FROM {SILVER_FILES_SEEN}"
    ).fetchall()[0]
    if seen_files == 0:
        return RefreshPlan(
            FULL, f"{SILVER_FILES_SEEN} is empty: silver's bronze watermark is unknown"
        )
    silver_rows = sum(scalar(conn, f"SELECT count(*) FROM {t}") for t in silver_tables)
    if silver_rows != seen_rows:
        return RefreshPlan(
            FULL,
            f"silver holds {silver_rows:,} rows (kept + rejected) but its watermark accounts "
            f"for {seen_rows:,} bronze rows",
        )
    bronze_rows = scalar(conn, f"SELECT count(*) FROM {BRONZE_TRANSACTIONS}")
    listed_rows = scalar(conn, f"SELECT coalesce(sum(row_count), 0) FROM {BRONZE_FILES}")
    if bronze_rows != listed_rows:
        return RefreshPlan(
            FULL,
            f"{BRONZE_TRANSACTIONS} holds {bronze_rows:,} rows but {BRONZE_FILES} lists {listed_rows:,}",
        )
    changed = conn.execute(
        f"SELECT s.source_file FROM {SILVER_FILES_SEEN} s LEFT JOIN {BRONZE_FILES} b USING (source_file) "
        "WHERE b.sha256 IS DISTINCT FROM s.sha256 OR b.ingested_at IS DISTINCT FROM s.ingested_at "
        "OR b.row_count IS DISTINCT FROM s.row_count ORDER BY 1"
    ).fetchall()
    if changed:
        return RefreshPlan(
            FULL,
            f"{len(changed)} file(s) were replaced in bronze since silver saw them: "
            f"{_names(changed)}; rows of theirs that silver kept may be gone, so earlier "
            "duplicates of them may now be kept",
        )
    expired = scalar(conn, expired_future_sql, {"now": now})
    if expired:
        return RefreshPlan(
            FULL,
            f"{expired:,} row(s) rejected as future_event_time are no longer in the future",
        )
    new = conn.execute(
        f"SELECT source_file, ingested_at, row_count FROM {BRONZE_FILES} ANTI JOIN {SILVER_FILES_SEEN} "
        "USING (source_file) ORDER BY ingested_at, source_file"
    ).fetchall()
    if not new:
        return RefreshPlan(UNCHANGED, "bronze has no file that silver has not seen")
    early = [row for row in new if row[1] <= seen_through]
    if early:
        return RefreshPlan(
            FULL,
            f"new file(s) {_names(early)} were ingested at or before {seen_through}, the latest "
            "ingestion time silver has seen, so their rows may sort before rows silver kept",
        )
    new_rows = sum(row[2] for row in new)
    found = scalar(
        conn,
        f"SELECT count(*) FROM {BRONZE_TRANSACTIONS} WHERE _ingested_at > $since",
        {"since": seen_through},
    )
    if found != new_rows:
        return RefreshPlan(
            FULL,
            f"{BRONZE_TRANSACTIONS} holds {found:,} rows ingested after {seen_through}, but the new files "
            f"list {new_rows:,}",
        )
    return RefreshPlan(
        APPEND,
        f"{len(new)} new file(s) ({_names(new)}), {new_rows:,} rows",
        since=seen_through,
        new_files=len(new),
        new_rows=new_rows,
    )


def record_load(
    conn: duckdb.DuckDBPyConnection,
    plan: RefreshPlan,
    loaded_at: datetime,
    silver_rows: int,
    rejected_rows: int,
    bronze_files: str = BRONZE_FILES,
) -> int:
    """Update the watermark to the files of `bronze_files` (bronze's list as the load read it)
    and log the load (in the caller's transaction); returns the load's id."""
    load_id = scalar(conn, f"SELECT coalesce(max(load_id), 0) + 1 FROM {SILVER_LOADS}")
    if plan.mode == FULL:
        conn.execute(f"DELETE FROM {SILVER_FILES_SEEN}")
    conn.execute(
        f"INSERT INTO {SILVER_FILES_SEEN} SELECT source_file, sha256, row_count, ingested_at, $load "
        f"FROM {bronze_files} ANTI JOIN {SILVER_FILES_SEEN} USING (source_file)",
        {"load": load_id},
    )
    conn.execute(
        f"INSERT INTO {SILVER_LOADS} SELECT $load, $at, $mode, $reason, $bronze, $silver, "
        f"$rejected, (SELECT max(ingested_at) FROM {SILVER_FILES_SEEN})",
        {
            "load": load_id,
            "at": loaded_at,
            "mode": plan.mode.value,
            "reason": plan.reason,
            "bronze": silver_rows + rejected_rows,
            "silver": silver_rows,
            "rejected": rejected_rows,
        },
    )
    return load_id


def silver_loads(conn: duckdb.DuckDBPyConnection) -> list[LoadRecord]:
    """Every silver load, oldest first (none before silver's first run)."""
    if not table_exists(conn, SILVER_LOADS):
        return []
    rows = conn.execute(
        f"SELECT load_id, loaded_at, mode, reason, ingested_through FROM {SILVER_LOADS} "
        "ORDER BY load_id"
    ).fetchall()
    return [LoadRecord(*row) for row in rows]


def plan_after_load(
    loads: Sequence[LoadRecord],
    seen: SilverLoad | None,
    target: str,
    target_exists: bool,
    full_refresh: bool,
) -> RefreshPlan:
    """How `target`, a table computed from silver, catches up with the silver `loads`, having
    last read the load `seen` (None if unknown): `full`; `append` when silver only appended rows
    since, which are those ingested after `since`; or `unchanged`. Remembers the latest load."""
    latest = loads[-1].load if loads else None
    if full_refresh:
        return RefreshPlan(FULL, "full_refresh was requested in the run config", remember=latest)
    if not loads:
        return RefreshPlan(FULL, f"{SILVER_LOADS} records no silver load", remember=latest)
    if seen is None or not target_exists:
        return RefreshPlan(FULL, f"{target} has not been built yet", remember=latest)
    by_key = {load.load: i for i, load in enumerate(loads)}
    if SilverLoad(*seen) not in by_key:
        return RefreshPlan(
            FULL,
            f"{SILVER_LOADS} no longer holds silver load {seen[0]}, the one {target} last read "
            "(silver was recreated)",
            remember=latest,
        )
    last = by_key[SilverLoad(*seen)]
    pending = loads[last + 1 :]
    if not pending:
        return RefreshPlan(UNCHANGED, f"silver has not changed since load {seen[0]}")
    full = [load for load in pending if load.mode == FULL]
    if full:
        reason = f"silver was rebuilt in full (load {full[-1].load_id}: {full[-1].reason})"
        return RefreshPlan(FULL, reason, remember=latest)
    since = loads[last].ingested_through
    if since is None:
        return RefreshPlan(FULL, f"silver load {seen[0]} held no bronze rows", remember=latest)
    ids = ", ".join(str(load.load_id) for load in pending)
    return RefreshPlan(
        APPEND, f"silver appended rows in load(s) {ids}", since=since, remember=latest
    )


def plan_features(
    after_load: RefreshPlan,
    seen: FeatureWatermark | None,
    stored: str,
    stored_exists: bool,
    cutoff: datetime,
    definition: str,
) -> RefreshPlan:
    """How a feature table reaches `cutoff`, given how silver moved (`after_load`) and what it
    last read (`seen`): `full`; `append` (recompute the customers that can have changed); or
    `unchanged` when neither silver nor the cutoff moved."""
    if after_load.mode == FULL:
        return after_load
    assert seen is not None  # plan_after_load plans `full` without a watermark
    latest = seen.load if after_load.remember is None else after_load.remember
    if not stored_exists:
        return RefreshPlan(FULL, f"{stored} does not exist", remember=latest)
    if seen.definition != definition:
        return RefreshPlan(FULL, "the feature definitions changed", remember=latest)
    if cutoff < seen.cutoff:
        return RefreshPlan(FULL, f"the cutoff moved back from {seen.cutoff}", remember=latest)
    if after_load.mode == UNCHANGED and cutoff == seen.cutoff:
        return RefreshPlan(UNCHANGED, f"{after_load.reason}, and the cutoff is still {cutoff}")
    return RefreshPlan(
        APPEND,
        f"{after_load.reason}; the cutoff moved from {seen.cutoff} to {cutoff}",
        since=after_load.since,
        previous_cutoff=seen.cutoff,
        remember=latest,
    )


def read_watermark(conn: duckdb.DuckDBPyConnection, table: str) -> tuple | None:
    """The one row of `table`, a table's memory of what it last read: the silver load
    (`silver_load_id`, `silver_loaded_at`), then its own columns; None before the first write."""
    if not table_exists(conn, table):
        return None
    return conn.execute(f"SELECT * FROM {table}").fetchone()


def read_load_watermark(conn: duckdb.DuckDBPyConnection, table: str) -> SilverLoad | None:
    """The silver load that the table whose watermark is `table` last read, if any."""
    row = read_watermark(conn, table)
    return SilverLoad(*row[:2]) if row else None


def read_feature_watermark(conn: duckdb.DuckDBPyConnection, table: str) -> FeatureWatermark | None:
    """What the feature table whose watermark is `table` last read, if anything."""
    row = read_watermark(conn, table)
    return FeatureWatermark(SilverLoad(*row[:2]), row[2], row[3]) if row else None


def remember(
    conn: duckdb.DuckDBPyConnection, table: str, values: tuple | None, extra: str = ""
) -> None:
    """Replace the row of the watermark `table` (created with the `extra` columns, "name TYPE,
    ...", after the silver load's) with `values` (none: forget, so that the next run rebuilds in
    full); in the caller's transaction."""
    columns = ", ".join(
        ["silver_load_id BIGINT", "silver_loaded_at TIMESTAMP", *filter(None, [extra])]
    )
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    conn.execute(f"DELETE FROM {table}")
    if values is not None:
        conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values))})", list(values))
