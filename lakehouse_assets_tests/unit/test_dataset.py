"""The training data's split and helpers, on a features table in an in-memory DuckDB."""

import hashlib

import duckdb
import numpy as np
import pytest

from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.lib.model import dataset
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES

CUSTOMERS = 2000


@pytest.fixture
def conn():
    """`gold.customer_features` with every feature column: 2,000 customers, a quarter churned."""
    conn = duckdb.connect()
    conn.execute("CREATE SCHEMA gold")
    features = ", ".join(f"(range * {i + 1}) / 7.0 AS {c}" for i, c in enumerate(FEATURE_COLUMNS))
    conn.execute(
        f"CREATE TABLE {CUSTOMER_FEATURES} AS SELECT 'C' || lpad(range::VARCHAR, 8, '0') "
        f"AS customer_id, {features}, (range % 4 = 0)::INTEGER AS {LABEL} FROM range({CUSTOMERS})"
    )
    yield conn
    conn.close()


def split(conn, test_size=0.2, seed=42, max_rows=0) -> dict[str, tuple[bool, bool]]:
    """customer_id -> (in_test, in_sample) of `create_split`."""
    dataset.create_split(conn, test_size, seed, max_rows, None)
    rows = conn.execute(f"SELECT customer_id, in_test, in_sample FROM {dataset.SPLIT}").fetchall()
    conn.execute(f"DROP TABLE {dataset.SPLIT}")
    return {customer: (in_test, in_sample) for customer, in_test, in_sample in rows}


@pytest.mark.parametrize("text", ["C00000001", "", "näive/42"])
def test_md5_lower_64_is_the_digests_last_eight_bytes_little_endian(text):
    (value, builtin) = (
        duckdb.connect()
        .execute(f"SELECT {dataset.md5_lower_64('$t')}, md5_number_lower($t)", {"t": text})
        .fetchone()
    )
    assert value == builtin
    assert value == int.from_bytes(hashlib.md5(text.encode()).digest()[8:], "little")


def test_the_test_side_is_about_the_test_size(conn):
    sides = split(conn, test_size=0.2)
    in_test = sum(t for t, _ in sides.values())
    assert len(sides) == CUSTOMERS
    assert in_test == pytest.approx(0.2 * CUSTOMERS, rel=0.15)
    assert all(sample for _, sample in sides.values())  # max_rows 0: everyone


def test_a_customers_side_does_not_depend_on_the_other_customers(conn):
    before = split(conn)
    conn.execute(f"DELETE FROM {CUSTOMER_FEATURES} WHERE customer_id > 'C00001000'")
    after = split(conn)
    assert after == {c: before[c] for c in after}


def test_the_split_depends_on_the_seed(conn):
    one, other = split(conn, seed=1), split(conn, seed=2)
    assert one == split(conn, seed=1)
    assert sum(one[c][0] != other[c][0] for c in one) > 100


@pytest.mark.parametrize("max_rows", [300, 301, 302, 303])
def test_a_sample_keeps_exactly_max_rows_of_training_customers_stratified(conn, max_rows):
    """The churners' share of the sample is rounded to the nearest customer, the rest fills up."""
    sides = split(conn, max_rows=max_rows)
    labels = dict(conn.execute(f"SELECT customer_id, {LABEL} FROM {CUSTOMER_FEATURES}").fetchall())
    train = [c for c, (in_test, _) in sides.items() if not in_test]
    sampled = [c for c in train if sides[c][1]]
    assert len(sampled) == max_rows
    churned = sum(labels[c] for c in train)
    assert sum(labels[c] for c in sampled) == round(max_rows * churned / len(train))
    assert all(sample for in_test, sample in sides.values() if in_test)  # the test side whole


def test_max_rows_above_the_training_side_keeps_everyone(conn):
    assert all(sample for _, sample in split(conn, max_rows=CUSTOMERS).values())


def test_features_at_a_snapshot_reads_that_version():
    assert dataset.features_at(None) == CUSTOMER_FEATURES
    assert dataset.features_at(12) == f"(SELECT * FROM {CUSTOMER_FEATURES} AT (VERSION => 12))"


def test_the_fingerprint_changes_with_the_content_only(conn):
    fingerprint = dataset.features_fingerprint(conn)
    assert fingerprint.startswith(f"{CUSTOMERS}:")
    conn.execute(
        f"CREATE OR REPLACE TABLE {CUSTOMER_FEATURES} AS "
        f"SELECT * FROM {CUSTOMER_FEATURES} ORDER BY customer_id DESC"
    )
    assert dataset.features_fingerprint(conn) == fingerprint  # rows reordered
    conn.execute(f"UPDATE {CUSTOMER_FEATURES} SET {LABEL} = 1 - {LABEL} WHERE customer_id = 'C00000003'")  # fmt: skip
    assert dataset.features_fingerprint(conn) != fingerprint


def test_feature_frame_orders_the_columns_and_keeps_their_types():
    columns = {c: np.arange(3, dtype="int64") for c in reversed(FEATURE_COLUMNS)}
    columns["monetary_avg"] = np.array([1.5, 2.5, 3.5])
    frame = dataset.feature_frame(columns)
    assert list(frame.columns) == list(FEATURE_COLUMNS)
    assert frame["frequency"].dtype == "int64" and frame["monetary_avg"].dtype == "float64"
    columns["frequency"][0] = 99
    assert frame["frequency"].iloc[0] == 0  # copied
