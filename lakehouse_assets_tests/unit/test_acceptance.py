"""Per-file acceptance: silver's counts per landed file version, computed by DuckDB from small
in-memory tables shaped as silver's load leaves them, and the hints for misread files."""

from datetime import datetime

import duckdb
import pytest

from lakehouse_assets.lib import acceptance
from lakehouse_assets.lib.acceptance import FileAcceptance, header_hint, hints
from lakehouse_assets.lib.tables import BRONZE_FILES, SILVER_LOADS, SILVER_REJECTED

FIRST_LOAD = datetime(2025, 3, 1, 12, 0)
SECOND_LOAD = datetime(2025, 3, 2, 12, 0)

REJECTED_COLUMNS = (
    "_source_file VARCHAR, _source_row BIGINT, reason VARCHAR, transaction_id VARCHAR, "
    "customer_id VARCHAR, event_time VARCHAR, amount VARCHAR, quantity VARCHAR, "
    "_ingested_at TIMESTAMP"
)


@pytest.fixture
def conn():
    """bronze's file list and rows (`bronze_files`, `bronze_rows`: as silver's commit reads
    them) and silver's rejected rows.

    a.csv: 4 rows, row 3 with a decimal comma, row 4 a copy of row 1; b.csv: 2 good rows."""
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA bronze")
    conn.execute("CREATE SCHEMA silver")
    conn.execute(f"CREATE TABLE {BRONZE_FILES} (source_file VARCHAR, sha256 VARCHAR)")
    conn.execute(f"INSERT INTO {BRONZE_FILES} VALUES ('a.csv', 'sha-a'), ('b.csv', 'sha-b')")
    conn.execute(f"CREATE TABLE {SILVER_REJECTED} ({REJECTED_COLUMNS})")
    conn.execute(
        f"INSERT INTO {SILVER_REJECTED} VALUES "
        "('a.csv', 3, 'bad_amount', 't3', 'c1', '2025-01-03', '12,50', '1', $at), "
        "('a.csv', 4, 'duplicate', 't1', 'c1', '2025-01-01', '10', '1', $at)",
        {"at": FIRST_LOAD},
    )
    conn.execute(f"CREATE VIEW bronze_files AS FROM {BRONZE_FILES}")
    conn.execute("CREATE TABLE bronze_rows (_source_file VARCHAR, _ingested_at TIMESTAMP)")
    landed = ["a.csv"] * 4 + ["b.csv"] * 2
    conn.executemany("INSERT INTO bronze_rows VALUES (?, ?)", [(f, FIRST_LOAD) for f in landed])
    yield conn
    conn.close()


def add_file_c(conn) -> None:
    """A later load's new file c.csv: 2 rows, both without a customer id."""
    conn.execute(f"INSERT INTO {BRONZE_FILES} VALUES ('c.csv', 'sha-c')")
    conn.execute(
        f"INSERT INTO {SILVER_REJECTED} VALUES "
        "('c.csv', 1, 'missing_customer_id', 't7', NULL, '2025-02-01', '5', '1', $at), "
        "('c.csv', 2, 'missing_customer_id', 't8', NULL, '2025-02-02', '6', '1', $at)",
        {"at": SECOND_LOAD},
    )
    conn.executemany("INSERT INTO bronze_rows VALUES (?, ?)", [("c.csv", SECOND_LOAD)] * 2)


def test_a_full_load_counts_every_file(conn):
    files = acceptance.record(conn, True, 1, None)
    assert [f.source_file for f in files] == ["a.csv", "b.csv"]  # most rejected first
    a, b = files
    assert (a.rows, a.accepted, a.rejected, a.invalid) == (4, 2, 2, 1)
    assert a.rejects == [
        {"reason": "bad_amount", "rows": 1, "first_row": 3, "example": "12,50"},
        {"reason": "duplicate", "rows": 1, "first_row": 4, "example": "t1"},
    ]
    assert a.rejected_share == pytest.approx(0.5)
    assert (b.rows, b.accepted, b.rejected, b.rejects) == (2, 2, 0, [])
    assert acceptance.mostly_rejected(files) == [a]
    assert acceptance.rejected_by_reason(files) == {"bad_amount": 1, "duplicate": 1}
    assert hints(a)[0].startswith("Decimal commas?")


def test_a_full_rebuild_keeps_when_each_file_was_first_seen(conn):
    acceptance.record(conn, True, 1, None)
    assert acceptance.record(conn, True, 2, None) == []
    assert [f.source_file for f in acceptance.first_seen_in(conn, 1)] == ["a.csv", "b.csv"]


def test_an_appending_load_counts_only_the_rows_ingested_since(conn):
    acceptance.record(conn, True, 1, None)
    add_file_c(conn)
    [c] = acceptance.record(conn, False, 2, FIRST_LOAD)
    assert (c.source_file, c.rows, c.accepted, c.rejected, c.invalid) == ("c.csv", 2, 0, 2, 2)
    assert c.rejects == [
        {"reason": "missing_customer_id", "rows": 2, "first_row": 1, "example": ""}
    ]
    assert [f.source_file for f in acceptance.first_seen_in(conn, 1)] == ["a.csv", "b.csv"]


def test_the_latest_load_and_the_files_without_a_valid_row(conn):
    acceptance.record(conn, True, 1, None)
    add_file_c(conn)
    acceptance.record(conn, False, 2, FIRST_LOAD)
    conn.execute(f"CREATE TABLE {SILVER_LOADS} AS SELECT unnest([1, 2]) AS load_id")
    load, files = acceptance.latest_load(conn)
    assert load == 2 and [f.source_file for f in files] == ["c.csv"]
    landed = {"a.csv", "b.csv", "c.csv"}
    assert [f.source_file for f in acceptance.without_valid_rows(conn, landed)] == ["c.csv"]
    assert acceptance.without_valid_rows(conn, {"a.csv"}) == []  # c.csv was removed


def rejects(*reasons: tuple[str, int, str]) -> list[dict]:
    return [
        {"reason": reason, "rows": rows, "first_row": i + 1, "example": example}
        for i, (reason, rows, example) in enumerate(reasons)
    ]


def test_reasons_name_the_top_three_with_an_example():
    f = FileAcceptance(
        "x.csv",
        100,
        90,
        10,
        10,
        rejects(("bad_amount", 4, "n/a"), ("bad_event_time", 3, "soon"), ("bad_quantity", 2, "")),
    )
    assert f.reasons() == (
        "bad_amount 4 (e.g. 'n/a' in data row 1), bad_event_time 3 (e.g. 'soon' in data row 2), "
        "bad_quantity 2 (e.g. '' in data row 3)"
    )
    more = FileAcceptance("x.csv", 100, 89, 11, 11, f.rejects + rejects(("duplicate", 1, "t")))
    assert more.reasons().endswith(" and 1 more reason(s)")


def test_an_empty_file_has_no_rejected_share():
    assert FileAcceptance("empty.csv", 0, 0, 0, 0, []).rejected_share == 0.0


def test_markdown_lists_at_most_twenty_files():
    files = [FileAcceptance(f"f{i:02}.csv", 10, 9, 1, 1, []) for i in range(22)]
    table = acceptance.markdown(files)
    lines = table.splitlines()
    assert lines[0] == "| file | rows | accepted | rejected | share | rejects |"
    assert lines[2] == "| f00.csv | 10 | 9 | 1 | 10.0% |  |"
    assert "f19.csv" in table and "f20.csv" not in table
    assert lines[-1] == "…and 2 more file(s)"


def misread(**examples: str) -> FileAcceptance:
    found = rejects(*((reason, 1, value) for reason, value in examples.items()))
    return FileAcceptance("x.csv", 1, 0, 1, 1, found)


@pytest.mark.parametrize(
    ("examples", "hint"),
    [
        ({"bad_amount": " -1.234,50 "}, "Decimal commas?"),
        ({"bad_quantity": "1;2"}, "Semicolons?"),
        ({"missing_customer_id": "Customer_ID"}, "A header row inside the file?"),
        ({"bad_event_time": "01.02.2025 10:00"}, "Day-first dates?"),
        ({"bad_event_time": "1735689600123"}, "Epoch numbers?"),
    ],
)
def test_hints_name_the_likely_cause(examples, hint):
    [found] = hints(misread(**examples))
    assert found.startswith(hint), found


def test_values_that_point_at_no_cause_give_no_hint():
    assert hints(misread(bad_amount="12.50.3", bad_event_time="yesterday")) == []
    assert hints(misread(missing_customer_id=None)) == []


def test_header_hints():
    assert header_hint(["customer_id;event_time;amount"]).startswith(" Semicolons?")
    assert "'2025-06-01'" in header_hint(["c1", "2025-06-01", "5"])
    assert header_hint(["customer", "when", "amount"]) == ""
