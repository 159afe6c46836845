"""Fan-out by customer bucket (issue 22), in process: N buckets give the same tables as one, an
append stays equal to a full build per bucket, a change of N rebuilds with the reason, and a run
killed while silver's shard steps run leaves the lake at the snapshot it had."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.integration.test_incremental import (
    FLOAT_SUMS,
    gold_mismatches_sql,
    write_csv,
)
from lakehouse_assets_tests.support.helpers import (
    NO_SEED,
    failure_messages,
    home_location,
    lake_conn,
    query,
    run_graph,
)

UP_TO_GOLD = dg.AssetSelection.assets(
    "raw_transactions", "bronze_transactions", "silver_transactions", "gold_customer_summary"
)
UP_TO_FEATURES = UP_TO_GOLD | dg.AssetSelection.assets("customer_features", "scoring_features")
FEATURE_TABLES = ("gold.customer_features", "gold.scoring_features")
BUCKET_STEP = "gold_customer_summary.bucket_of_gold_customer_summary"


def build(
    instance, home: Path, landing: Path, buckets: int, selection=UP_TO_GOLD
) -> dg.ExecuteInProcessResult:
    """Materialize `selection` into the lakehouse in `home`, split into `buckets`."""
    location = home_location(home)
    duckdb = LakehouseDuckDB(
        catalog=location.catalog, data_path=location.data_path, buckets=buckets
    )
    resources = {"duckdb": duckdb, "landing": LandingZone(path=str(landing))}
    result = run_graph(instance, selection, NO_SEED, resources)
    assert result.success, failure_messages(result)
    return result


def bucket_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(
        e.step_key
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_SUCCESS and e.step_key.startswith(BUCKET_STEP)
    )


def gold_metadata(result: dg.ExecuteInProcessResult) -> dict:
    [materialization] = result.asset_materializations_for_node("gold_customer_summary")
    return {key: value.value for key, value in materialization.metadata.items()}


def assert_same_tables(mine: Path, theirs: Path) -> None:
    """Silver, rejected, the file acceptance and gold hold the same rows in both lakes, buckets
    aside."""
    with lake_conn(mine) as conn:
        assert_same_tables_as(conn, home_location(theirs).catalog)


def assert_same_tables_as(conn, catalog: str) -> None:
    """The lake `conn` reads holds the rows of the lake in `catalog` (silver, rejected, gold)."""
    conn.execute("DETACH DATABASE IF EXISTS theirs")
    conn.execute(f"ATTACH {lake.quote('ducklake:' + catalog)} AS theirs (READ_ONLY)")
    for table in ("silver.transactions", "silver.rejected_transactions"):
        a = f"SELECT * EXCLUDE (_ingested_at{', bucket' if 'rejected' not in table else ''})"
        only_here = conn.execute(
            f"SELECT count(*) FROM ({a} FROM {table} EXCEPT ALL {a} FROM theirs.{table})"
        ).fetchone()[0]
        only_there = conn.execute(
            f"SELECT count(*) FROM ({a} FROM theirs.{table} EXCEPT ALL {a} FROM {table})"
        ).fetchone()[0]
        assert (only_here, only_there) == (0, 0), table
    acceptance = "SELECT * FROM {}silver.file_acceptance ORDER BY source_file"
    assert (
        conn.execute(acceptance.format("")).fetchall()
        == conn.execute(acceptance.format("theirs.")).fetchall()
    )
    columns = [
        row[0]
        for row in conn.execute("DESCRIBE gold.customer_summary").fetchall()
        if row[0] != "bucket"
    ]
    gold = "gold.customer_summary"
    mismatches = gold_mismatches_sql(columns, gold, f"theirs.{gold}", FLOAT_SUMS)
    assert conn.execute(mismatches).fetchone()[0] == 0
    assert conn.execute(f"SELECT count(*) FROM {gold}").fetchone()[0] > 0


def assert_same_features_as(conn, catalog: str) -> None:
    """Both feature tables hold the same rows in the lake `conn` reads and in `catalog`'s."""
    conn.execute("DETACH DATABASE IF EXISTS theirs")
    conn.execute(f"ATTACH {lake.quote('ducklake:' + catalog)} AS theirs (READ_ONLY)")
    for table in FEATURE_TABLES:
        described = conn.execute(f"DESCRIBE {table}").fetchall()
        columns = [name for name, *_ in described if name != "bucket"]
        numbers = tuple(name for name, kind, *_ in described if kind == "DOUBLE")
        mismatches = gold_mismatches_sql(columns, table, f"theirs.{table}", numbers)
        assert conn.execute(mismatches).fetchone()[0] == 0, table
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0


def test_four_buckets_give_the_tables_of_one_also_after_an_append(
    tmp_path, instance, lakehouse_home
):
    landing = tmp_path / "landing"
    write_sample(landing / "first.parquet", events=30_000, customers=3_000, seed=7)
    one, four = tmp_path / "one", tmp_path / "four"
    build(instance, one, landing, 1, UP_TO_FEATURES)
    result = build(instance, four, landing, 4, UP_TO_FEATURES)
    assert bucket_steps(result) == [f"{BUCKET_STEP}[bucket_{b}]" for b in range(4)]
    metadata = gold_metadata(result)
    assert metadata["buckets"] == 4 and metadata["refresh"] == "full"
    per_bucket = metadata["bucket_rows"]
    assert len(per_bucket) == 4 and all(rows > 0 for rows in per_bucket.values())
    assert sum(per_bucket.values()) == metadata["dagster/row_count"]
    assert_same_tables(four, one)
    with lake_conn(four) as conn:
        assert_same_features_as(conn, home_location(one).catalog)
    # Each bucket's rows are in files of that bucket only: a bucket step reads only its own.
    files = query(
        four,
        "SELECT DISTINCT regexp_extract(data_file, 'bucket=(\\d+)', 1) FROM "
        "ducklake_list_files('lake', 'customer_summary', schema => 'gold')",
    )
    assert sorted(int(f[0]) for f in files) == [0, 1, 2, 3]
    # No piece is left once committed.
    assert not list((four / "lake" / "fanout").rglob("*.parquet"))

    # An append: new rows for some customers, a new customer, and copies that only silver's
    # identity (trimmed) makes copies: of a kept row under another customer, of a new row with
    # its id padded, of a row without id with its customer padded.
    [(kept_id,)] = query(one, "SELECT min(transaction_id) FROM silver.transactions")
    write_csv(
        landing / "second.csv",
        [
            "n1,C00000001,2025-01-01T00:00:00,5,1",
            "n2,NEW1,2025-01-02T00:00:00,7,1",
            f" {kept_id} ,OTHER,2025-01-03T00:00:00,9,1",
            "n3,C00000003,2025-01-03T00:00:00,2,1",
            " n3 ,C00000009,2025-01-03T00:00:00,2,1",
            ",C00000004,2025-01-04T00:00:00,3,1",
            ", C00000004 ,2025-01-04T00:00:00,3,1",
        ],
    )
    build(instance, one, landing, 1, UP_TO_FEATURES)
    appended = build(instance, four, landing, 4, UP_TO_FEATURES)
    assert gold_metadata(appended)["refresh"] == "append"
    assert gold_metadata(appended)["customers_recomputed"] == 4  # C..1, NEW1, C..3, C..4
    [features] = appended.asset_materializations_for_node("scoring_features")
    assert features.metadata["refresh"].value == "append"  # a few customers, per bucket
    assert_same_tables(four, one)
    assert query(four, "SELECT count(*) FROM silver.rejected_transactions "
                 "WHERE reason = 'duplicate' AND _source_file = 'second.csv'") == [(3,)]  # fmt: skip
    with lake_conn(four) as conn:
        assert_same_features_as(conn, home_location(one).catalog)


def test_a_new_bucket_count_rebuilds_silver_and_gold_saying_why(tmp_path, instance, lakehouse_home):
    landing = tmp_path / "landing"
    write_sample(landing / "first.parquet", events=5_000, customers=500, seed=3)
    home = tmp_path / "home"
    build(instance, home, landing, 2)
    result = build(instance, home, landing, 3)
    [silver] = result.asset_materializations_for_node("silver_transactions")
    assert silver.metadata["refresh"].value == "full"
    assert "bucket count changed from 2 to 3" in silver.metadata["refresh_reason"].value
    assert gold_metadata(result)["refresh"] == "full"
    assert query(home, "SELECT DISTINCT bucket FROM gold.customer_summary ORDER BY 1") == [
        (0,), (1,), (2,),
    ]  # fmt: skip


def test_a_run_killed_during_silvers_shard_steps_leaves_the_lake_unchanged(
    tmp_path, instance, lakehouse_home
):
    """SIGKILL the run's process once a shard's piece of silver is written: the lake keeps the
    snapshot it had, and the next run succeeds and equals a clean build."""
    landing = lakehouse_home / "landing"
    write_sample(landing / "first.parquet", events=400_000, customers=40_000, seed=11)
    env = {**os.environ, "LAKEHOUSE_BUCKETS": "8", "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    materialize = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "lakehouse_assets",
    ]
    up_to_bronze = subprocess.run(
        [*materialize, "--select", "raw_transactions,bronze_transactions"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert up_to_bronze.returncode == 0, up_to_bronze.stderr[-3000:]
    with lake_conn(lakehouse_home) as conn:
        before = lake.current_snapshot(conn)

    log = (tmp_path / "silver.log").open("w")
    silver = subprocess.Popen(
        [*materialize, "--select", "silver_transactions"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    pieces = lakehouse_home / "lake" / "fanout"
    deadline = time.monotonic() + 300
    while not list(pieces.rglob("piece.parquet")):
        assert silver.poll() is None, (tmp_path / "silver.log").read_text()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.killpg(silver.pid, signal.SIGKILL)
    silver.wait()
    assert silver.returncode == -signal.SIGKILL
    with lake_conn(lakehouse_home) as conn:
        assert lake.current_snapshot(conn) == before
        assert conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'silver'"
        ).fetchone() == (0,)

    rerun = subprocess.run(
        [*materialize, "--select", "silver_transactions,gold_customer_summary"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    clean = tmp_path / "clean"
    build(instance, clean, landing, 8)
    assert_same_tables(lakehouse_home, clean)
