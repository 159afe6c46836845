"""Metadata for the Dagster UI, from tables in an in-memory DuckDB."""

import logging
import time
from types import SimpleNamespace

import dagster as dg
import duckdb
import pytest

from lakehouse_assets.lib import metadata


@pytest.fixture
def conn():
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA gold")
    conn.execute(
        "CREATE TABLE gold.scores AS SELECT range AS id, 'c' || range AS customer_id, "
        "range / 8 AS score FROM range(7)"
    )
    conn.execute("CREATE VIEW gold.top AS SELECT * FROM gold.scores WHERE score > 0.5")
    yield conn
    conn.close()


def test_markdown_rows_renders_a_table():
    table = metadata.markdown_rows(["id", "name"], [(1, "a"), (2, "b")])
    assert table == "| id | name |\n|---|---|\n| 1 | a |\n| 2 | b |"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (None, "∅"),
        (0.123456789, "0.1235"),
        (1234567.0, "1.235e+06"),
        ("a|b", "a\\|b"),
        ("two\nlines", "two lines"),
        ("x" * 40, "x" * 40),
        ("x" * 41, "x" * 37 + "..."),
        (True, "True"),
    ],
)
def test_values_are_shortened_and_escaped(value, cell):
    assert metadata.markdown_rows(["v"], [(value,)]).splitlines()[2] == f"| {cell} |"


def test_markdown_table_renders_a_duckdb_result(conn):
    result = conn.execute("SELECT id, customer_id FROM gold.scores ORDER BY id LIMIT 2")
    assert metadata.markdown_table(result) == (
        "| id | customer_id |\n|---|---|\n| 0 | c0 |\n| 1 | c1 |"
    )


def test_table_metadata_has_rows_schema_and_a_preview(conn):
    found = metadata.table_metadata(conn, "gold.scores")
    assert found["dagster/row_count"] == dg.MetadataValue.int(7)
    columns = found["dagster/column_schema"].value.columns
    assert [(c.name, c.type) for c in columns] == [
        ("id", "BIGINT"),
        ("customer_id", "VARCHAR"),
        ("score", "DOUBLE"),
    ]
    assert found["table"].value == "gold.scores"
    preview = found["preview"].value.splitlines()
    assert preview[0] == "| id | customer_id | score |"
    assert len(preview) == 2 + metadata.PREVIEW_ROWS


def test_table_exists_tells_tables_from_views(conn):
    assert metadata.table_exists(conn, "gold.scores")
    assert metadata.table_exists(conn, "gold.top")
    assert not metadata.table_exists(conn, "gold.top", views=False)
    assert metadata.table_exists(conn, "gold.scores", views=False)
    assert not metadata.table_exists(conn, "gold.missing")
    assert not metadata.table_exists(conn, "silver.scores")


def test_log_progress_logs_rows_and_rate(caplog):
    context = SimpleNamespace(log=logging.getLogger("metadata_test"))
    with caplog.at_level(logging.INFO, logger="metadata_test"):
        metadata.log_progress(context, "silver: typed", 1_234_567, time.perf_counter() - 2.0)
    [record] = caplog.records
    assert record.getMessage().startswith("silver: typed 1,234,567 rows in 2.0 s (")
    assert record.getMessage().endswith(" rows/s)")
