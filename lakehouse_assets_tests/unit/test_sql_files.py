"""The SQL files of lakehouse_assets/lib/sql on small in-memory DuckDB tables, and that the code
reads every one of them."""

import ast
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

import lakehouse_assets
from lakehouse_assets.defs.gold import gold_customer_summary as gold
from lakehouse_assets.defs.silver import silver_transactions as silver
from lakehouse_assets.lib import features, lake
from lakehouse_assets.lib.model import dataset
from lakehouse_assets.lib.sql import files, sql

NOW = datetime(2025, 6, 1, 12, 0)
BRONZE_COLUMNS = (
    "_source_file VARCHAR, _source_row BIGINT, _ingested_at TIMESTAMP, transaction_id VARCHAR, "
    "customer_id VARCHAR, event_time VARCHAR, amount VARCHAR, quantity VARCHAR"
)


@pytest.fixture
def conn():
    """An in-memory DuckDB with the lake's schemas, in UTC as the lake's connections are."""
    conn = duckdb.connect()
    conn.execute("SET TimeZone = 'UTC'")
    for schema in ("bronze", "silver", "gold"):
        conn.execute(f"CREATE SCHEMA {schema}")
    conn.execute(f"CREATE TABLE bronze.transactions ({BRONZE_COLUMNS})")
    conn.execute(sql("silver/parse_event_time"))
    yield conn
    conn.close()


BUCKETS = 3


def land(conn, file: str, ingested_at: datetime, rows: list[tuple]) -> None:
    """Rows (transaction_id, customer_id, event_time, amount, quantity) of one file into bronze."""
    conn.executemany(
        "INSERT INTO bronze.transactions VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(file, i, ingested_at, *row) for i, row in enumerate(rows, start=1)],
    )


def build_silver(conn, shards: int = 1) -> None:
    """silver.transactions and silver.rejected_transactions from all of bronze, as a full load
    in `shards` shards (as the asset's shard steps, then its commit, do)."""
    for shard in range(shards):
        conn.execute(
            "CREATE OR REPLACE TEMP VIEW bronze_rows AS SELECT * FROM bronze.transactions "
            f"WHERE {silver.shard_of(shards)} = {shard}"
        )
        conn.execute(sql("silver/typed"), {"now": NOW, "buckets": BUCKETS})
        conn.execute(sql("silver/later_copies"))
        conn.execute(sql("silver/kept"))
        conn.execute(sql("silver/rejected"))
        if shard == 0:
            conn.execute("CREATE TABLE silver.transactions AS FROM kept_transactions LIMIT 0")
            conn.execute("CREATE TABLE silver.rejected_transactions AS FROM rejected_rows LIMIT 0")
        conn.execute("INSERT INTO silver.transactions FROM kept_transactions")
        conn.execute("INSERT INTO silver.rejected_transactions FROM rejected_rows")
        conn.execute("DROP TABLE typed_transactions")
        conn.execute("DROP TABLE later_copies")


def reasons(conn) -> dict[tuple[str, int], str]:
    rows = conn.execute(
        "SELECT _source_file, _source_row, reason FROM silver.rejected_transactions"
    ).fetchall()
    return {(f, row): reason for f, row, reason in rows}


def test_typing_rejects_each_invalid_row_with_its_reason(conn):
    land(
        conn,
        "a.csv",
        datetime(2025, 5, 1),
        [
            ("t1", " c1 ", "2025-03-01T10:00:00", " 12.50 ", "2"),
            ("t2", "c1", "2025-03-01 12:00:00+02", "3", ""),
            ("t3", "c2", "2025-03-02T10:00:00", "abc", "1"),
            ("t4", "c2", "2025-03-02T10:00:00", "-1", "1"),
            ("t5", "c2", "2025-03-02T10:00:00", "nan", "1"),
            ("t6", "", "2025-03-02T10:00:00", "1", "1"),
            ("t7", "c3", "yesterday", "1", "1"),
            ("t8", "c3", "2025-07-01T00:00:00", "1", "1"),
            ("t9", "c3", "2025-03-03T00:00:00", "1", "1.5"),
        ],
    )
    build_silver(conn)
    assert reasons(conn) == {
        ("a.csv", 3): "bad_amount",
        ("a.csv", 4): "bad_amount",
        ("a.csv", 5): "bad_amount",
        ("a.csv", 6): "missing_customer_id",
        ("a.csv", 7): "bad_event_time",
        ("a.csv", 8): "future_event_time",
        ("a.csv", 9): "bad_quantity",
    }
    kept = conn.execute(
        "SELECT transaction_id, customer_id, event_time, amount, quantity "
        "FROM silver.transactions ORDER BY transaction_id"
    ).fetchall()
    assert kept == [
        ("t1", "c1", datetime(2025, 3, 1, 10), 12.5, 2),
        ("t2", "c1", datetime(2025, 3, 1, 10), 3.0, None),  # the offset, in UTC
    ]
    rejected = conn.execute(
        "SELECT amount FROM silver.rejected_transactions WHERE _source_row = 3"
    ).fetchone()
    assert rejected == ("abc",)  # as landed
    # silver.transactions's columns, in order, with their types.
    assert [r[:2] for r in conn.execute("DESCRIBE silver.transactions").fetchall()] == [
        ("transaction_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("event_time", "TIMESTAMP"),
        ("amount", "DOUBLE"),
        ("quantity", "INTEGER"),
        ("_source_file", "VARCHAR"),
        ("_source_row", "BIGINT"),
        ("_ingested_at", "TIMESTAMP"),
        ("bucket", "INTEGER"),
    ]
    # Each customer's rows share one bucket: DuckDB's hash of the id, mod the bucket count.
    buckets = conn.execute(
        "SELECT customer_id, bucket, hash(customer_id) % $n FROM silver.transactions",
        {"n": BUCKETS},
    ).fetchall()
    assert all(bucket == expected and 0 <= bucket < BUCKETS for _, bucket, expected in buckets)


def test_the_first_copy_is_kept_and_later_copies_are_rejected_as_duplicates(conn):
    record = ("c9", "2025-03-01T10:00:00", "5", "1")
    land(conn, "b.csv", datetime(2025, 5, 2), [("t1", "c1", "2025-03-02T10:00:00", "9", "1")])
    land(
        conn,
        "a.csv",
        datetime(2025, 5, 1),
        [
            ("t1", "c1", "2025-03-01T10:00:00", "7", "1"),  # first by ingestion time
            (None, *record),
            (None, *record),  # no transaction_id: the whole record is its identity
            (None, "c9", "2025-03-01T10:00:00", "6", "1"),
        ],
    )
    build_silver(conn)
    assert reasons(conn) == {("b.csv", 1): "duplicate", ("a.csv", 3): "duplicate"}
    kept = conn.execute(
        "SELECT _source_file, _source_row, amount FROM silver.transactions ORDER BY ALL"
    ).fetchall()
    assert kept == [("a.csv", 1, 7.0), ("a.csv", 2, 5.0), ("a.csv", 4, 6.0)]

    # Appending: a new file's copy of a kept row is a duplicate; silver's rows stay.
    land(conn, "c.csv", datetime(2025, 5, 3), [(None, *record), ("t2", "c2", *record[1:])])
    conn.execute("DROP VIEW bronze_rows")
    conn.execute(
        "CREATE TEMP TABLE bronze_rows AS SELECT * FROM bronze.transactions WHERE _ingested_at > $since",
        {"since": datetime(2025, 5, 2)},
    )
    conn.execute(sql("silver/typed"), {"now": NOW, "buckets": BUCKETS})
    conn.execute(sql("silver/new_later_copies"))
    conn.execute(sql("silver/kept"))
    conn.execute(sql("silver/rejected"))
    assert conn.execute("INSERT INTO silver.transactions FROM kept_transactions").fetchone() == (1,)
    conn.execute("INSERT INTO silver.rejected_transactions FROM rejected_rows")
    assert reasons(conn)[("c.csv", 1)] == "duplicate"
    assert conn.execute("SELECT count(*) FROM silver.transactions").fetchone() == (4,)


def test_silver_in_shards_equals_silver_in_one(conn):
    """Every copy of a transaction falls in the shard of its first copy (also under another
    customer, or without transaction_id), so shards deduplicate on their own."""
    rows = [
        (f"t{i % 40}", f"c{i % 17}", f"2025-03-{1 + i % 28:02d}T10:00:00", str(i % 9), "1")
        for i in range(200)
    ]
    rows += [(None, "c1", "2025-03-01T10:00:00", "5", "1")] * 3
    rows += [(None, " c1 ", "2025-03-01T10:00:00", "5", "1")]  # the same record, padded
    rows += [(" t1 ", "c99", "2025-03-02T10:00:00", "1", "")]  # t1, padded, another customer
    land(conn, "a.csv", datetime(2025, 5, 1), rows)
    land(conn, "b.csv", datetime(2025, 5, 2), rows[::-3])
    tables = ("silver.transactions", "silver.rejected_transactions")
    build_silver(conn)
    one = [conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables]
    for t in tables:
        conn.execute(f"DROP TABLE {t}")
    build_silver(conn, shards=4)
    four = [conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables]
    assert four == one
    landed = len(rows) + len(rows[::-3])
    assert len(one[0]) == 40 + 1 and len(one[0]) + len(one[1]) == landed  # 40 ids, 1 record
    shards = conn.execute(
        f"SELECT count(DISTINCT {silver.IDENTITY_HASH} % 4) FROM bronze.transactions"
    ).fetchone()
    assert shards == (4,)  # the rows really were split


def test_expired_future_counts_rejected_future_rows_no_longer_in_the_future(conn):
    land(conn, "a.csv", datetime(2025, 5, 1), [("t1", "c1", "2025-06-02T00:00:00", "1", "1")])
    build_silver(conn)
    assert conn.execute(silver.EXPIRED_FUTURE_SQL, {"now": NOW}).fetchone() == (0,)
    later = datetime(2025, 6, 3)
    assert conn.execute(silver.EXPIRED_FUTURE_SQL, {"now": later}).fetchone() == (1,)


def silver_rows(conn, rows: list[tuple]) -> None:
    """silver.transactions with rows (customer_id, event_time, amount, quantity, ingested_at)."""
    conn.execute(
        "CREATE OR REPLACE TABLE silver.transactions (customer_id VARCHAR, event_time TIMESTAMP, "
        "amount DOUBLE, quantity INTEGER, _ingested_at TIMESTAMP)"
    )
    conn.executemany("INSERT INTO silver.transactions VALUES ($1, $2, $3, $4, $5)", rows)
    # What a bucket step reads (here the only bucket): gold's and the features' input.
    conn.execute("CREATE OR REPLACE VIEW silver_in_bucket AS SELECT * FROM silver.transactions")


def test_gold_summarizes_each_customer_and_in_an_append_only_changed_customers(conn):
    day = datetime(2025, 3, 1, 10)
    first = datetime(2025, 5, 1)
    silver_rows(
        conn,
        [
            ("c1", day, 10.0, 1, first),
            ("c1", day.replace(hour=11), 20.0, None, first),  # the same day
            ("c1", day.replace(day=5), 30.0, 3, first),
            ("c2", day, 5.0, 2, first),
        ],
    )
    conn.execute(gold.ALL_ROWS_SQL)
    gold.write_summary_rows(conn)
    summary = "SELECT * FROM customer_summary_rows ORDER BY customer_id"
    assert conn.execute(summary).fetchall() == [
        ("c1", day, day.replace(day=5), 3, 2, 60.0, 20.0, 30.0, 4, 2.0),
        ("c2", day, day, 1, 1, 5.0, 5.0, 5.0, 2, 2.0),
    ]
    gold.drop_summary_rows(conn)

    conn.execute(
        "INSERT INTO silver.transactions VALUES ('c2', $day, 1.0, 1, $at)",
        {"day": day.replace(day=9), "at": datetime(2025, 5, 2)},
    )
    changed = conn.execute(sql("gold/changed_customers"), {"since": first}).fetchone()
    assert changed == (1,)
    conn.execute(gold.CHANGED_ROWS_SQL)
    gold.write_summary_rows(conn)
    rows = conn.execute(summary).fetchall()
    assert [row[:5] for row in rows] == [("c2", day, day.replace(day=9), 2, 2)]


def test_features_and_the_label_at_a_cutoff(conn):
    cutoff = datetime(2025, 3, 31)
    at = datetime(2025, 5, 1)
    silver_rows(
        conn,
        [
            ("c1", datetime(2025, 3, 1), 10.0, 1, at),
            ("c1", datetime(2025, 3, 21), 30.0, None, at),  # 10 days before the cutoff
            ("c1", datetime(2025, 4, 10), 5.0, 1, at),  # after: c1 returns, not churned
            ("c2", datetime(2024, 12, 1), 8.0, 2, at),  # 120 days before: in 180d, not 90d
        ],
    )
    conn.execute(features.ALL_ROWS_SQL)
    conn.execute(sql("features/gaps"), {"cutoff": cutoff})
    conn.execute(sql("features/fresh"), {"cutoff": cutoff})
    conn.execute(sql("features/returning_customers"), {"cutoff": cutoff, "horizon_days": 30})
    conn.execute(sql("features/labelled"))
    rows = conn.execute(
        "SELECT customer_id, frequency, active_days, monetary_total, quantity_total, "
        "txn_last_30d, txn_last_90d, txn_last_180d, mean_gap_days, last_gap_days, churned "
        f"FROM {features.LABELLED} ORDER BY customer_id"
    ).fetchall()
    assert rows == [
        ("c1", 2, 2, 40.0, 2, 2, 2, 2, 20.0, 20.0, 0),
        ("c2", 1, 1, 8.0, 2, 0, 0, 1, 0.0, 0.0, 1),
    ]
    stored = conn.execute(features._stored_sql(features.LABELLED, labelled=True)).description
    names = [d[0] for d in stored]
    assert names[0] == "customer_id" and names[-1] == features.LABEL


def test_a_refresh_recomputes_customers_near_a_moved_edge(conn):
    previous, cutoff = datetime(2025, 3, 30), datetime(2025, 3, 31)
    loaded = datetime(2025, 5, 1)
    silver_rows(
        conn,
        [
            ("near_cutoff", datetime(2025, 3, 30, 12), 1.0, 1, loaded),
            ("near_window", datetime(2025, 1, 29, 12), 1.0, 1, loaded),  # 60 days before
            ("near_horizon", datetime(2025, 5, 29, 12), 1.0, 1, loaded),  # 60 days after
            ("new_rows", datetime(2024, 1, 1), 1.0, 1, datetime(2025, 5, 2)),
            ("untouched", datetime(2025, 2, 14), 1.0, 1, loaded),
        ],
    )
    windows = {"window_1_days": 30, "window_2_days": 60, "window_3_days": 90}
    params = {"since": loaded, "previous_cutoff": previous, "cutoff": cutoff, **windows}
    conn.execute(sql("features/affected_customers"), {**params, "horizon_days": 60})
    affected = {r[0] for r in conn.execute(f"SELECT * FROM {features.AFFECTED}").fetchall()}
    assert affected == {"near_cutoff", "near_window", "near_horizon", "new_rows"}
    conn.execute(sql("features/affected_customers"), {**params, "horizon_days": 0})
    affected = {r[0] for r in conn.execute(f"SELECT * FROM {features.AFFECTED}").fetchall()}
    assert affected == {"near_cutoff", "near_window", "new_rows"}  # no label, no horizon edge


def test_the_files_agree_with_the_python_that_runs_them():
    assert f"'{silver.ISO_FORMAT}'" in sql("silver/parse_event_time")
    assert f"__ducklake_metadata_{lake.LAKE}." in sql("maintenance/lake_files")
    split = sql("model/split")
    for text in ("customer_id || '/' || $seed", "customer_id || '/sample/' || $seed"):
        assert dataset.md5_lower_64(text) in split
    assert f"% {dataset.HASH_BUCKETS} < $cut" in split
    affected = sql("features/affected_customers")
    for i in range(1, len(features.WINDOW_DAYS) + 1):
        assert f"$window_{i}_days" in affected
    assert f"$window_{len(features.WINDOW_DAYS) + 1}_days" not in affected
    for name in files():
        assert "{" not in sql(name), f"{name}.sql is templated"


def test_the_definition_hash_follows_what_computes_values_only(monkeypatch):
    before = features.definition_hash(90)
    assert features.definition_hash(None) != before  # the horizon is in it
    for name in files("features"):
        edits = {
            "statement": sql(name).replace("SELECT", "SELECT DISTINCT", 1),
            "comment and layout": "-- reworded\n" + sql(name).replace("\n", "\n  "),
        }
        for edit, text in edits.items():
            monkeypatch.setattr(
                features, "sql", lambda n, name=name, text=text: text if n == name else sql(n)
            )
            changed = features.definition_hash(90) != before
            defines = name in features.DEFINING_FILES and edit == "statement"
            assert changed == defines, (name, edit)
    monkeypatch.undo()
    assert features.definition_hash(90) == before


def test_every_sql_file_is_read_by_the_code():
    """No orphan file: each name is a string literal in the package's Python."""
    package = Path(lakehouse_assets.__file__).parent
    literals = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
    orphans = [name for name in files() if name not in literals]
    assert files() and not orphans, orphans
