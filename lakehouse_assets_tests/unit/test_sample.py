"""The built-in sample: reproducible for a seed, the requested size, a share of invalid rows."""

from datetime import datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from lakehouse_assets.lib import sample

EVENTS, CUSTOMERS = 400, 40


def write(folder: Path, seed: int = 7, progress=None):
    path = sample.write_sample(folder, EVENTS, CUSTOMERS, seed=seed, progress=progress)
    return pq.read_table(path)


def test_the_same_seed_writes_the_same_rows(tmp_path):
    assert write(tmp_path / "a").equals(write(tmp_path / "b"))


def test_another_seed_writes_other_rows(tmp_path):
    assert not write(tmp_path / "a", seed=7).equals(write(tmp_path / "b", seed=8))


def test_the_file_has_the_requested_size_and_schema(tmp_path):
    messages = []
    table = write(tmp_path, progress=messages.append)
    assert table.num_rows == EVENTS
    assert table.schema == sample.SCHEMA
    customers = pc.drop_null(table["customer_id"]).unique()
    assert len(customers) == CUSTOMERS  # everyone buys at least once
    assert messages[-1].startswith(f"sample: {EVENTS:,}/{EVENTS:,} rows written")
    assert sorted(p.name for p in tmp_path.iterdir()) == [sample.SAMPLE_FILE_NAME]  # no .partial


def test_about_five_percent_of_rows_are_invalid_of_every_kind(tmp_path):
    rows = write(tmp_path).to_pylist()
    missing = [r for r in rows if r["customer_id"] is None]
    bad_time = [r for r in rows if r["event_time"] in ("not-a-date", "2025-13-45T25:61:00")]
    future = [r for r in rows if r["event_time"] == "2099-01-01T00:00:00"]
    negative = [r for r in rows if r["amount"].startswith("-")]
    non_numeric = [r for r in rows if r["amount"] in ("n/a", "12,50")]
    ids = [r["transaction_id"] for r in rows]
    duplicates = len(ids) - len(set(ids))
    kinds = [missing, bad_time, future, negative, non_numeric]
    assert all(kinds) and duplicates > 0
    invalid = sum(map(len, kinds)) + duplicates
    assert invalid == pytest.approx(EVENTS * sample.INVALID_FRACTION, abs=len(kinds))


def test_valid_rows_fall_in_the_sample_period(tmp_path):
    for row in write(tmp_path).to_pylist():
        try:
            when = datetime.fromisoformat(row["event_time"])
        except ValueError:
            continue  # a corrupted one
        if when.year != 2099:
            assert sample.PERIOD_START <= when <= datetime(2026, 1, 1)


@pytest.mark.parametrize(("events", "customers"), [(0, 0), (10, 0), (5, 10)])
def test_too_few_events_or_customers_fail(tmp_path, events, customers):
    with pytest.raises(ValueError, match="need events >= customers >= 1"):
        sample.write_sample(tmp_path, events, customers)
    assert not tmp_path.joinpath(sample.SAMPLE_FILE_NAME).exists()
