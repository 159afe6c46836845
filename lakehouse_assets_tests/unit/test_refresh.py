"""The refresh planners, called directly: silver's on small in-memory tables, the others on the
loads and watermarks they are given."""

from datetime import datetime, timedelta

import duckdb
import pytest

from lakehouse_assets.lib import buckets, refresh
from lakehouse_assets.lib.refresh import (
    FeatureWatermark,
    LoadRecord,
    Refresh,
    RefreshPlan,
    SilverLoad,
    plan_after_load,
    plan_features,
)
from lakehouse_assets.lib.tables import (
    BRONZE_FILES,
    BRONZE_TRANSACTIONS,
    SILVER_FILE_ACCEPTANCE,
    SILVER_REJECTED,
    SILVER_TRANSACTIONS,
)

T0 = datetime(2026, 1, 1)
NOW = datetime(2026, 6, 1)
FULL_LOAD = LoadRecord(1, T0, "full", "silver has not been built yet", T0)
APPEND_LOAD = LoadRecord(
    2, T0 + timedelta(hours=1), "append", "1 new file", T0 + timedelta(hours=1)
)


def after(loads, seen, exists=True, full_refresh=False) -> RefreshPlan:
    return plan_after_load(loads, seen, "gold.customer_summary", exists, full_refresh)


def test_after_load_first_build_and_requested_full_remember_the_latest_load():
    first = after([FULL_LOAD], None, exists=False)
    assert first.mode is Refresh.FULL and "has not been built yet" in first.reason
    assert first.remember == SilverLoad(1, T0)
    requested = after([FULL_LOAD, APPEND_LOAD], SilverLoad(2, APPEND_LOAD.loaded_at), True, True)
    assert requested.mode is Refresh.FULL and "full_refresh" in requested.reason
    assert requested.remember == SilverLoad(2, APPEND_LOAD.loaded_at)


def test_after_load_without_any_silver_load_is_full_and_remembers_nothing():
    plan = after([], None)
    assert plan.mode is Refresh.FULL and plan.remember is None
    assert "records no silver load" in plan.reason


def test_after_load_unchanged_when_silver_did_not_load_again():
    plan = after([FULL_LOAD], SilverLoad(1, T0))
    assert plan == RefreshPlan(Refresh.UNCHANGED, "silver has not changed since load 1")


def test_after_load_appends_the_rows_ingested_after_the_load_it_read():
    plan = after([FULL_LOAD, APPEND_LOAD], SilverLoad(1, T0))
    assert plan.mode is Refresh.APPEND and plan.since == T0
    assert plan.remember == SilverLoad(2, APPEND_LOAD.loaded_at)
    assert plan.reason == "silver appended rows in load(s) 2"


def test_after_load_is_full_after_silver_was_rebuilt_or_recreated():
    rebuilt = LoadRecord(3, T0 + timedelta(days=1), "full", "a file was replaced", T0)
    plan = after([FULL_LOAD, APPEND_LOAD, rebuilt], SilverLoad(1, T0))
    assert (
        plan.mode is Refresh.FULL and "rebuilt in full (load 3: a file was replaced)" in plan.reason
    )
    gone = after([APPEND_LOAD], SilverLoad(1, T0))  # the load it read is no longer recorded
    assert gone.mode is Refresh.FULL and "silver was recreated" in gone.reason


def test_after_load_is_full_when_the_table_it_read_into_is_gone():
    plan = after([FULL_LOAD, APPEND_LOAD], SilverLoad(1, T0), exists=False)
    assert plan.mode is Refresh.FULL


def test_after_load_is_full_when_the_load_it_read_held_no_rows():
    empty = FULL_LOAD._replace(ingested_through=None)
    plan = after([empty, APPEND_LOAD], SilverLoad(1, T0))
    assert plan.mode is Refresh.FULL and "held no bronze rows" in plan.reason


CUTOFF = datetime(2026, 3, 1)
SEEN = FeatureWatermark(SilverLoad(1, T0), CUTOFF, "def1")


def features(after_load, seen=SEEN, stored=True, cutoff=CUTOFF, definition="def1"):
    return plan_features(after_load, seen, "gold.x_stored", stored, cutoff, definition)


def test_features_unchanged_only_when_neither_silver_nor_the_cutoff_moved():
    silver_same = after([FULL_LOAD], SEEN.load)
    assert features(silver_same).mode is Refresh.UNCHANGED
    moved = features(silver_same, cutoff=CUTOFF + timedelta(days=1))
    assert moved.mode is Refresh.APPEND and moved.since is None
    assert moved.previous_cutoff == CUTOFF and moved.remember == SEEN.load


def test_features_append_recomputes_new_rows_and_moved_edges():
    plan = features(after([FULL_LOAD, APPEND_LOAD], SEEN.load), cutoff=CUTOFF + timedelta(days=2))
    assert plan.mode is Refresh.APPEND and plan.since == T0 and plan.previous_cutoff == CUTOFF
    assert plan.remember == SilverLoad(2, APPEND_LOAD.loaded_at)
    assert "the cutoff moved from 2026-03-01 00:00:00 to 2026-03-03 00:00:00" in plan.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"stored": False}, "gold.x_stored does not exist"),
        ({"definition": "def2"}, "the feature definitions changed"),
        ({"cutoff": CUTOFF - timedelta(days=1)}, "the cutoff moved back"),
    ],
)
def test_features_full_when_the_stored_rows_cannot_be_reused(change, reason):
    plan = features(after([FULL_LOAD], SEEN.load), **change)
    assert plan.mode is Refresh.FULL and reason in plan.reason and plan.remember == SEEN.load


def test_features_follow_a_full_silver_plan():
    full = after([FULL_LOAD], None, exists=False)
    assert features(full, seen=None) is full


def test_metadata_is_one_vocabulary():
    plan = RefreshPlan(Refresh.APPEND, "why")
    assert plan.metadata(7) == {
        "refresh": "append",
        "refresh_reason": "why",
        "customers_recomputed": 7,
    }
    assert plan.metadata() == {"refresh": "append", "refresh_reason": "why"}


# Silver's planner reads bronze's file list and silver's watermark.
EXPIRED_SQL = f"SELECT count(*) FROM {SILVER_REJECTED} WHERE until <= $now"


@pytest.fixture
def conn():
    """Bronze with one file of two rows, and silver holding it: what a first load leaves."""
    conn = duckdb.connect()
    for schema in ("bronze", "silver"):
        conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE {BRONZE_TRANSACTIONS} (id INT, _ingested_at TIMESTAMP)")
    conn.execute(
        f"CREATE TABLE {BRONZE_FILES} (source_file VARCHAR, sha256 VARCHAR, "
        "size_bytes BIGINT, row_count BIGINT, ingested_at TIMESTAMP)"
    )
    conn.execute(f"CREATE TABLE {SILVER_TRANSACTIONS} (id INT)")
    conn.execute(f"CREATE TABLE {SILVER_REJECTED} (id INT, until TIMESTAMP)")
    conn.execute(f"CREATE TABLE {SILVER_FILE_ACCEPTANCE} (source_file VARCHAR)")
    refresh.create_tables(conn)
    land(conn, "a.csv", "sha-a", T0, 2)
    conn.execute(f"INSERT INTO {SILVER_TRANSACTIONS} VALUES (1)")
    conn.execute(f"INSERT INTO {SILVER_REJECTED} VALUES (2, NULL)")
    seen = refresh.plan_silver(conn, SILVER_TABLES, EXPIRED_SQL, NOW, False, BUCKETING)
    assert seen.mode is Refresh.FULL
    refresh.record_load(conn, seen, T0, 1, 1)
    buckets.record(conn, BUCKETING)
    yield conn
    conn.close()


SILVER_TABLES = (SILVER_TRANSACTIONS, SILVER_REJECTED)
BUCKETING = buckets.Bucketing(1, 1234)


def land(conn, name: str, sha: str, at: datetime, rows: int) -> None:
    conn.execute(f"INSERT INTO {BRONZE_FILES} VALUES (?, ?, 0, ?, ?)", [name, sha, rows, at])
    conn.executemany(
        f"INSERT INTO {BRONZE_TRANSACTIONS} VALUES (?, ?)", [[i, at] for i in range(rows)]
    )


def plan(conn, full_refresh=False, now=NOW, bucketing=BUCKETING) -> RefreshPlan:
    return refresh.plan_silver(conn, SILVER_TABLES, EXPIRED_SQL, now, full_refresh, bucketing)


def test_silver_unchanged_without_new_files(conn):
    assert plan(conn).mode is Refresh.UNCHANGED
    assert plan(conn, full_refresh=True).mode is Refresh.FULL


def test_silver_appends_files_ingested_later(conn):
    land(conn, "b.csv", "sha-b", T0 + timedelta(hours=1), 3)
    appended = plan(conn)
    assert appended.mode is Refresh.APPEND and appended.since == T0
    assert (appended.new_files, appended.new_rows) == (1, 3)
    assert appended.reason == "1 new file(s) (b.csv), 3 rows"


def test_silver_rebuilds_when_a_new_file_sorts_before_what_it_saw(conn):
    land(conn, "early.csv", "sha-e", T0, 1)
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "early.csv" in rebuilt.reason


def test_silver_rebuilds_when_a_file_was_replaced(conn):
    conn.execute(f"UPDATE {BRONZE_FILES} SET sha256 = 'other' WHERE source_file = 'a.csv'")
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "replaced in bronze" in rebuilt.reason


def test_silver_rebuilds_when_rejected_future_rows_are_now_past(conn):
    conn.execute(f"UPDATE {SILVER_REJECTED} SET until = ?", [NOW - timedelta(days=1)])
    assert plan(conn).mode is Refresh.FULL
    assert plan(conn, now=NOW - timedelta(days=2)).mode is Refresh.UNCHANGED


def test_silver_rebuilds_when_its_rows_do_not_match_its_watermark(conn):
    conn.execute(f"DELETE FROM {SILVER_TRANSACTIONS}")
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "watermark accounts for 2" in rebuilt.reason


def test_silver_rebuilds_before_its_first_build_and_without_acceptance_counts(conn):
    conn.execute(f"DROP TABLE {SILVER_FILE_ACCEPTANCE}")
    assert "silver.file_acceptance has not been built yet" in plan(conn).reason
    conn.execute(f"DROP TABLE {SILVER_REJECTED}")
    assert plan(conn).reason == "silver has not been built yet"


def test_silver_rebuilds_when_its_watermark_is_empty(conn):
    conn.execute("DELETE FROM silver.bronze_files_seen")
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "watermark is unknown" in rebuilt.reason


def test_silver_rebuilds_when_bronze_rows_do_not_match_its_file_list(conn):
    conn.execute(f"DELETE FROM {BRONZE_TRANSACTIONS} WHERE id = 0")
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "holds 1 rows but bronze.ingested_files lists 2" in (
        rebuilt.reason
    )


def test_silver_rebuilds_when_new_rows_do_not_match_the_new_files(conn):
    land(conn, "b.csv", "sha-b", T0 + timedelta(hours=1), 3)
    conn.execute(f"UPDATE {BRONZE_FILES} SET row_count = 4 WHERE source_file = 'b.csv'")
    conn.execute(f"INSERT INTO {BRONZE_TRANSACTIONS} VALUES (9, ?)", [T0])  # keeps the total
    rebuilt = plan(conn)
    assert rebuilt.mode is Refresh.FULL and "but the new files list 4" in rebuilt.reason


def test_silver_rebuilds_when_the_bucket_count_or_the_hash_changes(conn):
    assert plan(conn).mode is Refresh.UNCHANGED
    recount = plan(conn, bucketing=buckets.Bucketing(4, 1234))
    assert recount.mode is Refresh.FULL
    assert recount.reason.startswith("the bucket count changed from 1 to 4")
    rehash = plan(conn, bucketing=buckets.Bucketing(1, 99))
    assert rehash.mode is Refresh.FULL and "hash function changed" in rehash.reason
    conn.execute("DROP TABLE silver.bucketing")
    assert "no customer bucket yet" in plan(conn).reason
