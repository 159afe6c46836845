"""Incremental silver, gold and features equal a full rebuild, row for row, after every landing."""

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakehouse_assets.defs.features.customer_features import FeaturesConfig
from lakehouse_assets.defs.features.scoring_features import ScoringFeaturesConfig
from lakehouse_assets.defs.gold.gold_customer_summary import GoldConfig
from lakehouse_assets.defs.silver.silver_transactions import SilverConfig
from lakehouse_assets.lib.features import FRESH_SQL, WINDOW_DAYS
from lakehouse_assets.lib.resources import LandingZone
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets.lib.tables import BRONZE_TRANSACTIONS as BRONZE
from lakehouse_assets_tests.support.helpers import (
    NO_SEED,
    copy_lake,
    error_check_results,
    failure_messages,
    home_location,
    lake_conn,
    lake_resource,
    query,
    run_graph,
)

SILVER_AND_GOLD = dg.AssetSelection.assets("silver_transactions", "gold_customer_summary")
UP_TO_GOLD = dg.AssetSelection.assets("raw_transactions", "bronze_transactions") | SILVER_AND_GOLD
FULL_REFRESH = dg.RunConfig(
    ops={
        "silver_transactions": SilverConfig(full_refresh=True),
        "gold_customer_summary": GoldConfig(full_refresh=True),
    }
)
TABLES = ("silver.transactions", "silver.rejected_transactions", "gold.customer_summary")
# Sums of doubles depend on the order DuckDB's threads add them in: two full builds of 10M rows
# differ in the last bits (up to 5e-12 in total_amount, 1e-13 in avg_amount), and rounding would
# still split values such as 54.2165625 (an average of 32 cents-valued amounts). Gold is
# therefore compared per customer, these two columns within a relative 1e-9.
FLOAT_SUMS = ("total_amount", "avg_amount")


def gold_mismatches_sql(
    columns: list[str], mine: str, theirs: str, float_sums: tuple[str, ...] = FLOAT_SUMS
) -> str:
    """Count customers in only one gold table, or whose rows differ."""
    differ = [
        f"abs(a.{c} - b.{c}) > 1e-9 * greatest(1, abs(a.{c}))"
        if c in float_sums
        else f"a.{c} IS DISTINCT FROM b.{c}"
        for c in columns
    ]
    return (
        f"SELECT count(*) FROM {mine} a FULL JOIN {theirs} b USING (customer_id) "
        f"WHERE a.customer_id IS NULL OR b.customer_id IS NULL OR {' OR '.join(differ)}"
    )


# A fresh build ingests every file at once, so lineage times differ; everything else must not.
LINEAGE_TIME = "* EXCLUDE (_ingested_at)"
HEADER = "transaction_id,customer_id,event_time,amount,quantity"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def refresh(instance, selection=UP_TO_GOLD, run_config=NO_SEED, resources=None) -> dict[str, str]:
    """Materialize `selection`; every blocking check must pass (the files here are full of
    rejects and copies on purpose, so the WARN checks may warn). Returns each layer's refresh
    mode."""
    result = run_graph(instance, selection, run_config, resources)
    assert result.success, failure_messages(result)
    checks = error_check_results(result)
    assert checks and all(checks.values()), checks
    return {
        node: result.asset_materializations_for_node(node)[0].metadata["refresh"].value
        for node in ("silver_transactions", "gold_customer_summary")
    }


def attach_other(conn, home: Path) -> None:
    """Attach the lake of the lakehouse in `home`, read-only, as `theirs`."""
    catalog = home_location(home).catalog.replace("'", "''")
    conn.execute("DETACH DATABASE IF EXISTS theirs")  # attached databases outlive the cursor
    conn.execute(f"ATTACH 'ducklake:{catalog}' AS theirs (READ_ONLY)")


def differences(mine: Path, theirs: Path, silver_columns: str = "*") -> dict:
    """Rows of silver and rejected (`silver_columns`) in one database and not the other
    (EXCEPT ALL, both ways), and customers whose gold row differs."""
    found = {}
    with lake_conn(mine) as conn:
        attach_other(conn, theirs)
        for table in TABLES[:2]:
            a = f"SELECT {silver_columns} FROM {table}"
            b = f"SELECT {silver_columns} FROM theirs.{table}"
            extra = conn.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0]
            missing = conn.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0]
            if extra or missing:
                found[table] = {"only_here": extra, "only_there": missing}
        gold = TABLES[2]
        columns = [row[0] for row in conn.execute(f"DESCRIBE {gold}").fetchall()]
        sql = gold_mismatches_sql(columns, gold, f"theirs.{gold}")
        customers = conn.execute(sql).fetchone()[0]
        if customers:
            found[gold] = {"customers_differing": customers}
    return found


def assert_equals_full_refresh(home: Path, instance, copy_dir: Path) -> None:
    """`full_refresh: true` on a copy of the database gives the same silver, rejected and gold."""
    copy = copy_lake(home, copy_dir)
    modes = refresh(instance, SILVER_AND_GOLD, FULL_REFRESH, {"duckdb": lake_resource(copy)})
    assert modes == {"silver_transactions": "full", "gold_customer_summary": "full"}
    assert differences(home, copy) == {}


def assert_equals_fresh_build(home: Path, instance, fresh_dir: Path) -> None:
    """A new database built from the same landing folder holds the same business rows."""
    resources = {
        "duckdb": lake_resource(fresh_dir),
        "landing": LandingZone(path=str(home / "landing")),
    }
    refresh(instance, resources=resources)
    assert differences(home, fresh_dir, LINEAGE_TIME) == {}


def conservation(home: Path) -> tuple[int, int]:
    return query(
        home,
        f"SELECT (SELECT count(*) FROM {BRONZE}), (SELECT count(*) FROM silver.transactions) "
        "+ (SELECT count(*) FROM silver.rejected_transactions)",
    )[0]


def test_hand_written_files_refresh_like_a_full_rebuild(lakehouse_home, instance, tmp_path):
    landing = lakehouse_home / "landing"
    # 1. One file: valid rows, invalid rows, a copy within the file (by id and by whole record).
    write_csv(
        landing / "a.csv",
        [
            "t1,c1,2025-01-01,10,1",
            "t2,c1,2025-01-02,11,1",
            "t3,c2,2025-01-03,12,2",
            "t4,c2,2025-01-04,abc,1",  # bad_amount
            "t5,,2025-01-05,5,1",  # missing_customer_id
            "t6,c3,2999-01-01,5,1",  # future_event_time
            "t1,c1,2025-01-01,10,1",  # duplicate of t1 in the same file
            ",c3,2025-01-06,7,",  # no id: identified by the whole record
            ",c3,2025-01-06,7,",  # duplicate record
            "t7,c3,2025-01-07,8,2.5",  # bad_quantity
        ],
    )
    assert refresh(instance) == {"silver_transactions": "full", "gold_customer_summary": "full"}
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full1")
    assert_equals_fresh_build(lakehouse_home, instance, tmp_path / "fresh1")

    # 2. A second file repeating some of the first's transactions, valid and invalid ones.
    write_csv(
        landing / "b.csv",
        [
            "t2,c1,2025-01-02,11,1",  # duplicate of a.csv's kept t2
            "t3,c2,2025-02-03,99,1",  # same id, other values: still a duplicate of t3
            "t4,c2,2025-01-04,40,1",  # a.csv's t4 was invalid: this one is kept
            ",c3,2025-01-06,7,",  # duplicate record of a.csv's
            ",c3,2025-01-06,7,3",  # another record (quantity differs): kept
            "t8,c4,2025-01-08,9,1",
            "t8,c4,2025-01-09,9,1",  # duplicate of t8 within b.csv
            "t9,c4,not a date,9,1",  # bad_event_time
            "t10,c5,2025-01-10,-3,1",  # bad_amount
        ],
    )
    assert refresh(instance) == {
        "silver_transactions": "append",
        "gold_customer_summary": "append",
    }
    assert query(
        lakehouse_home,
        "SELECT _source_file, _source_row, reason FROM silver.rejected_transactions "
        "WHERE _source_file = 'b.csv' ORDER BY _source_row",
    ) == [
        ("b.csv", 1, "duplicate"),
        ("b.csv", 2, "duplicate"),
        ("b.csv", 4, "duplicate"),
        ("b.csv", 7, "duplicate"),
        ("b.csv", 8, "bad_event_time"),
        ("b.csv", 9, "bad_amount"),
    ]
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full2")

    # 3. a.csv replaced without t2 and t3: b.csv's copies of them are now the first.
    write_csv(landing / "a.csv", ["t1,c1,2025-01-01,10,1", "t11,c6,2025-01-11,1,1"])
    modes = refresh(instance)
    assert modes == {"silver_transactions": "full", "gold_customer_summary": "full"}
    assert query(
        lakehouse_home,
        "SELECT transaction_id, _source_file FROM silver.transactions "
        "WHERE transaction_id IN ('t2', 't3') ORDER BY 1",
    ) == [("t2", "b.csv"), ("t3", "b.csv")]
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full3")

    # 4. A file with new transactions only, and nothing new at all.
    write_csv(landing / "c.csv", ["t12,c1,2025-03-01,5,1", "t13,c7,2025-03-02,6,1"])
    assert refresh(instance)["silver_transactions"] == "append"
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full4")
    assert refresh(instance) == {
        "silver_transactions": "unchanged",
        "gold_customer_summary": "unchanged",
    }
    bronze, accounted = conservation(lakehouse_home)
    assert bronze == accounted == 2 + 9 + 2


def test_no_repeats_across_files_equal_a_fresh_build(lakehouse_home, instance, tmp_path):
    landing = lakehouse_home / "landing"
    for n, name in enumerate(["x.csv", "y.csv", "w.csv"]):  # w.csv sorts first, lands last
        rows = [f"{name}{i},c{i % 4},2025-0{n + 1}-{i + 1:02d},{i}.25,{i}" for i in range(9)]
        write_csv(landing / name, [*rows, "bad,c1,2025-13-01,1,1", rows[0]])
        assert refresh(instance)["silver_transactions"] == ("full" if n == 0 else "append")
        if n == 0:
            # One file, built in full: nothing across files yet, and a first full build equal
            # to a full refresh and to a fresh build is test_hand_written_files_...'s step 1.
            continue
        assert_equals_full_refresh(lakehouse_home, instance, tmp_path / f"full{n}")
        assert_equals_fresh_build(lakehouse_home, instance, tmp_path / f"fresh{n}")


def test_sample_split_in_files_refreshes_like_a_full_rebuild(lakehouse_home, instance, tmp_path):
    """The built-in sample (its copies are at the end, so they repeat earlier files' rows)."""
    sample = pq.read_table(write_sample(tmp_path / "sample", 10_000, 1_000))
    landing = lakehouse_home / "landing"
    landing.mkdir(parents=True)
    bounds = [0, 3_000, 6_500, sample.num_rows]
    for part, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False), start=1):
        pq.write_table(sample.slice(start, stop - start), landing / f"part_{part}.parquet")
        modes = refresh(instance)
        assert modes["silver_transactions"] == ("full" if part == 1 else "append")
        if part > 1:  # part 1 is a first build, in full (compared in the hand-written test)
            assert_equals_full_refresh(lakehouse_home, instance, tmp_path / f"full{part}")
    assert query(
        lakehouse_home,
        "SELECT DISTINCT _source_file FROM silver.rejected_transactions "
        "WHERE reason = 'duplicate' ORDER BY 1",
    ) == [("part_3.parquet",)]
    # Files landed in name order: a fresh build orders them the same way.
    assert_equals_fresh_build(lakehouse_home, instance, tmp_path / "fresh")

    # Part 2 replaced by its first half: copies in part 3 of its other half are now kept.
    pq.write_table(sample.slice(3_000, 1_750), landing / "part_2.parquet")
    assert refresh(instance)["silver_transactions"] == "full"
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full_replaced")
    bronze, accounted = conservation(lakehouse_home)
    assert bronze == accounted == 10_000 - 1_750


def test_full_refresh_config_and_unsafe_states_rebuild(lakehouse_home, instance, tmp_path):
    landing = lakehouse_home / "landing"
    soon = (datetime.now(UTC) + timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%S")
    write_csv(landing / "a.csv", ["t1,c1,2025-01-01,10,1", f"t2,c2,{soon},5,1"])
    refresh(instance)
    assert query(lakehouse_home, "SELECT reason FROM silver.rejected_transactions") == [
        ("future_event_time",)
    ]
    # full_refresh: true rebuilds though nothing changed.
    assert refresh(instance, run_config=dg.RunConfig(ops={**NO_SEED.ops, **FULL_REFRESH.ops})) == {
        "silver_transactions": "full",
        "gold_customer_summary": "full",
    }

    # t2's event time has passed: a rebuild would keep it, so silver rebuilds.
    time.sleep(max(0.0, (datetime.fromisoformat(soon + "+00:00") - datetime.now(UTC)).total_seconds()) + 1)  # fmt: skip
    write_csv(landing / "b.csv", ["t3,c1,2025-01-03,10,1"])
    result = run_graph(instance, UP_TO_GOLD, NO_SEED)
    assert result.success, failure_messages(result)
    silver = result.asset_materializations_for_node("silver_transactions")[0].metadata
    assert silver["refresh"].value == "full"
    assert "no longer in the future" in silver["refresh_reason"].value
    assert query(lakehouse_home, "SELECT count(*) FROM silver.transactions") == [(3,)]
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full_expired")

    # A new file whose ingestion time is not after silver's latest (a clock set back).
    write_csv(landing / "c.csv", ["t4,c1,2025-01-04,10,1"])
    bronze_only = dg.AssetSelection.assets("raw_transactions", "bronze_transactions")
    assert run_graph(instance, bronze_only, NO_SEED).success
    with lake_conn(lakehouse_home, read_only=False) as conn:
        for table, column, file_column in (
            (BRONZE, "_ingested_at", "_source_file"),
            ("bronze.ingested_files", "ingested_at", "source_file"),
        ):
            conn.execute(
                f"UPDATE {table} SET {column} = TIMESTAMP '2000-01-01' WHERE {file_column} = 'c.csv'"
            )
    result = run_graph(instance, SILVER_AND_GOLD)
    assert result.success, failure_messages(result)
    silver = result.asset_materializations_for_node("silver_transactions")[0].metadata
    assert silver["refresh"].value == "full"
    assert "c.csv were ingested at or before" in silver["refresh_reason"].value
    assert_equals_full_refresh(lakehouse_home, instance, tmp_path / "full_clock")


UP_TO_FEATURES = UP_TO_GOLD | dg.AssetSelection.assets("customer_features", "scoring_features")
FEATURES_FULL_REFRESH = dg.RunConfig(
    ops={
        "customer_features": FeaturesConfig(full_refresh=True),
        "scoring_features": ScoringFeaturesConfig(full_refresh=True),
    }
)
FEATURE_TABLES = ("gold.customer_features", "gold.scoring_features")


def feature_refreshes(instance, run_config=NO_SEED, resources=None) -> dict[str, tuple]:
    """Materialize up to both feature tables (every blocking check must pass); each feature
    table's (refresh mode, customers recomputed, rows)."""
    result = run_graph(instance, UP_TO_FEATURES, run_config, resources)
    assert result.success, failure_messages(result)
    blocking = error_check_results(result)
    assert all(blocking.values()), blocking  # the drift and rejects checks only warn
    found = {}
    for node in ("customer_features", "scoring_features"):
        metadata = result.asset_materializations_for_node(node)[0].metadata
        found[node] = tuple(
            metadata[key].value for key in ("refresh", "customers_recomputed", "dagster/row_count")
        )
    return found


def assert_features_equal_full_refresh(home: Path, instance, copy_dir: Path) -> None:
    """Both feature tables, recomputed for every customer on a copy, are the same; doubles
    within a relative 1e-9 (sums depend on the order DuckDB adds them in)."""
    copy = copy_lake(home, copy_dir)
    result = run_graph(
        instance,
        dg.AssetSelection.assets("customer_features", "scoring_features"),
        FEATURES_FULL_REFRESH,
        {"duckdb": lake_resource(copy)},
    )
    assert result.success, failure_messages(result)
    with lake_conn(home) as conn:
        attach_other(conn, copy)
        for table in FEATURE_TABLES:
            types = dict(conn.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())  # fmt: skip
            doubles = tuple(c for c, t in types.items() if t == "DOUBLE")
            sql = gold_mismatches_sql(list(types), table, f"theirs.{table}", doubles)
            assert conn.execute(sql).fetchone()[0] == 0, table


def test_features_follow_the_moving_cutoff_like_a_full_rebuild(lakehouse_home, instance, tmp_path):
    """The sample lands in files by event time, so each file moves both cutoffs (and their
    windows and label horizon): by 16 days, when most customers change and all are recomputed,
    then by 2 days, when only some are. Then a file of late purchases, then a replaced file.
    After each, both feature tables equal a full rebuild."""
    sample = pq.read_table(write_sample(tmp_path / "sample", 10_000, 1_000))
    landing = lakehouse_home / "landing"
    landing.mkdir(parents=True)
    times = sample.column("event_time")
    bounds = ["", "2025-12-10", "2025-12-26", "2025-12-28", "3"]
    modes = ["full", "full", "append", "append"]
    for part, (start, stop) in enumerate(zip(bounds, bounds[1:], strict=False)):
        rows = pc.and_(pc.greater_equal(times, start), pc.less(times, stop))
        pq.write_table(sample.filter(rows), landing / f"part_{part}.parquet")
        refreshed = feature_refreshes(instance)
        for mode, recomputed, customers in refreshed.values():
            assert mode == modes[part]
            assert recomputed == customers if mode == "full" else 0 < recomputed < customers / 2
        if part > 0:  # part 0 is the first build: no cutoff has moved yet
            assert_features_equal_full_refresh(lakehouse_home, instance, tmp_path / f"full{part}")

    # Late purchases: new customers and existing ones, long before the cutoffs.
    write_csv(landing / "late.csv", ["late1,c-late,2025-03-01T10:00:00,5,1",
                                     "late2,C00000001,2025-06-01T10:00:00,7,2"])  # fmt: skip
    refreshed = feature_refreshes(instance)
    assert {mode for mode, *_ in refreshed.values()} == {"append"}
    assert_features_equal_full_refresh(lakehouse_home, instance, tmp_path / "full_late")
    assert feature_refreshes(instance)["scoring_features"][0] == "unchanged"

    # A replaced file: silver rebuilds, so do the features.
    write_csv(landing / "late.csv", ["late1,c-late,2025-03-01T10:00:00,5,1"])
    assert {mode for mode, *_ in feature_refreshes(instance).values()} == {"full"}
    assert_features_equal_full_refresh(lakehouse_home, instance, tmp_path / "full_replaced")


def test_the_refresh_watches_the_edge_of_every_window_the_features_count():
    """A refresh recomputes customers near the edges in WINDOW_DAYS: they must be the windows
    FRESH_SQL counts purchases in, or a moved cutoff would leave stale counts."""
    counted = {int(days) for days in re.findall(r"age_days [<>]=? (\d+)", FRESH_SQL)}
    assert counted == set(WINDOW_DAYS)
