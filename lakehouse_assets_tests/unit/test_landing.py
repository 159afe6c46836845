"""Landed files: content hashes, and the DuckDB readers that see every value as landed text."""

import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse_assets.lib import landing

CSV = "customer_id,event_time,amount\nc2,2025-01-02,007.50\nc1,2025-01-01,3\nc3,,x\n"


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "landing" / "2025" / "jan.csv"
    path.parent.mkdir(parents=True)
    path.write_text(CSV)
    return path


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "feb.PARQUET"
    table = pa.table({"customer_id": ["c9", "c8"], "amount": [1.5, 2.0]})
    pq.write_table(table, path)
    return path


def test_sha256_of_is_the_files_content_hash_read_in_chunks(csv_file, monkeypatch):
    expected = hashlib.sha256(CSV.encode()).hexdigest()
    assert landing.sha256_of(csv_file) == expected
    monkeypatch.setattr(landing, "HASH_CHUNK_BYTES", 5)
    assert landing.sha256_of(csv_file) == expected


def test_describe_files_names_them_relative_to_the_folder(csv_file, tmp_path):
    [described] = landing.describe_files(tmp_path / "landing", [csv_file])
    assert described.relative_path == "2025/jan.csv"
    assert described.size_bytes == len(CSV)
    assert described.sha256 == hashlib.sha256(CSV.encode()).hexdigest()


def test_a_csv_is_read_as_text_with_its_row_numbers(csv_file):
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT customer_id, event_time, amount, _source_row FROM {landing.reader_sql(csv_file)}",
            {"path": str(csv_file)},
        )
        .fetchall()
    )
    assert rows == [
        ("c2", "2025-01-02", "007.50", 1),
        ("c1", "2025-01-01", "3", 2),
        ("c3", None, "x", 3),
    ]


def test_a_parquet_file_is_read_with_its_row_numbers(parquet_file):
    rows = (
        duckdb.connect()
        .execute(
            f"SELECT customer_id, amount, _source_row FROM {landing.reader_sql(parquet_file)}",
            {"path": str(parquet_file)},
        )
        .fetchall()
    )
    assert rows == [("c9", 1.5, 1), ("c8", 2.0, 2)]


def test_columns_sql_gives_the_files_own_columns(csv_file, parquet_file):
    conn = duckdb.connect()
    for path, columns in [
        (csv_file, ["customer_id", "event_time", "amount"]),
        (parquet_file, ["customer_id", "amount"]),
    ]:
        result = conn.execute(
            f"SELECT * FROM {landing.columns_sql(path)} LIMIT 0", {"path": str(path)}
        )
        assert [d[0] for d in result.description] == columns


def test_the_contract_columns():
    assert landing.CONTRACT_COLUMNS[:3] == landing.REQUIRED_COLUMNS
    assert set(landing.OPTIONAL_COLUMNS) == {"quantity", "transaction_id"}
