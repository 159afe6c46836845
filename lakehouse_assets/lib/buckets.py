"""Customer buckets: silver gives every row `bucket = hash(customer_id) mod N`, so that a
customer-level step can split its work into N independent steps, each reading only its bucket's
files (the tables are partitioned by `bucket`). N is `$LAKEHOUSE_BUCKETS` (default 1).

DuckDB's `hash` is fast (0.3 s for 10M ids where `md5_number` took 50 s) but not promised stable
across DuckDB versions, so silver records N and the hash of a fixed probe: when either changes,
silver is rebuilt in full and every table after it follows.
"""

from typing import NamedTuple

import duckdb

from lakehouse_assets.lib.metadata import table_exists
from lakehouse_assets.lib.tables import SILVER_BUCKETING

COLUMN = "bucket"
PROBE = "lakehouse-assets bucket probe"


def partition(conn: duckdb.DuckDBPyConnection, table: str, count: int) -> None:
    """Partition `table` by bucket, so that each bucket's rows are in files of their own; with
    one bucket there is nothing to split, and a partitioned write costs 20-40% more (1-2 s for
    silver at 10M)."""
    if count > 1:
        conn.execute(f"ALTER TABLE {table} SET PARTITIONED BY ({COLUMN})")


class Bucketing(NamedTuple):
    """How rows are split: the bucket count and DuckDB's hash of `PROBE`."""

    buckets: int
    hash_probe: int


def current(conn: duckdb.DuckDBPyConnection, count: int) -> Bucketing:
    """The bucketing a run with `count` buckets uses, on this DuckDB."""
    (probe,) = conn.execute("SELECT hash($probe)", {"probe": PROBE}).fetchone()  # type: ignore[misc]
    return Bucketing(count, int(probe))


def stored(conn: duckdb.DuckDBPyConnection) -> Bucketing | None:
    """The bucketing silver was last written with (None before buckets existed)."""
    if not table_exists(conn, SILVER_BUCKETING):
        return None
    row = conn.execute(f"SELECT buckets, hash_probe FROM {SILVER_BUCKETING}").fetchone()
    return Bucketing(int(row[0]), int(row[1])) if row else None


def record(conn: duckdb.DuckDBPyConnection, bucketing: Bucketing) -> None:
    """Remember `bucketing` as silver's (in the caller's transaction)."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {SILVER_BUCKETING} (buckets INTEGER, hash_probe UBIGINT)"
    )
    conn.execute(f"DELETE FROM {SILVER_BUCKETING}")
    conn.execute(f"INSERT INTO {SILVER_BUCKETING} VALUES (?, ?)", list(bucketing))


def change(before: Bucketing | None, now: Bucketing) -> str | None:
    """Why rows bucketed as `before` cannot be kept under `now`, or None if they can."""
    if before is None:
        return "silver's rows have no customer bucket yet (written before buckets existed)"
    if before.buckets != now.buckets:
        return (
            f"the bucket count changed from {before.buckets} to {now.buckets} "
            "($LAKEHOUSE_BUCKETS), so every row's bucket changes"
        )
    if before.hash_probe != now.hash_probe:
        return (
            "DuckDB's hash function changed (a new DuckDB version), so every row's bucket changes"
        )
    return None
