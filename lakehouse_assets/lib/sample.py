"""The built-in sample: seeded, reproducible transaction logs with a real churn signal.

Customers who churn buy less often and spend less as their churn day approaches, then stop.
About 5% of rows are invalid, spread over every kind silver rejects. Rows are generated
in chunks of customers and streamed to one Parquet file, so memory stays bounded at any size.

    python -m lakehouse_assets.lib.sample --events 10000000 --customers 1000000 --out DIR
"""

import argparse
import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SAMPLE_FILE_NAME = "sample_transactions.parquet"
DEFAULT_EVENTS = 10_000
DEFAULT_CUSTOMERS = 1_000
PERIOD_START = datetime(2025, 1, 1)
PERIOD_DAYS = 365
INVALID_FRACTION = 0.05
INVALID_KINDS = (
    "missing_customer_id",
    "bad_event_time",
    "negative_amount",
    "non_numeric_amount",
    "future_event_time",
    "duplicate",
)
CHUNK_CUSTOMERS = 50_000
CHURN_SHARE = 0.35
SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("customer_id", pa.string()),
        ("event_time", pa.string()),
        ("amount", pa.string()),
        ("quantity", pa.string()),
        ("channel", pa.string()),
    ]
)
CHANNELS = np.array(["web", "store", "app"])

log = logging.getLogger(__name__)


def write_sample(
    out_dir: Path,
    events: int = DEFAULT_EVENTS,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write `events` transactions for `customers` customers to `out_dir/sample_transactions.parquet`.

    The file is written under a temporary name and renamed when complete, so a landing-folder
    watcher never sees half a file.
    """
    if events < 1 or customers < 1 or events < customers:
        raise ValueError(
            f"need events >= customers >= 1, got events={events} customers={customers}"
        )
    progress = progress or log.info
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SAMPLE_FILE_NAME
    partial = out_dir / f".{SAMPLE_FILE_NAME}.partial"

    rng = np.random.default_rng(seed)
    plan = _customer_plan(rng, customers)
    invalid_total = round(events * INVALID_FRACTION)
    duplicates_total = invalid_total // len(INVALID_KINDS)
    base_counts = _allocate(rng, events - duplicates_total, plan["weight"])

    started = time.perf_counter()
    written = 0
    chunk_starts = range(0, customers, CHUNK_CUSTOMERS)
    with pq.ParquetWriter(partial, SCHEMA, compression="snappy") as writer:
        for chunk_no, first in enumerate(chunk_starts):
            last = min(first + CHUNK_CUSTOMERS, customers)
            chunk_base = int(base_counts[first:last].sum())
            chunk_events = _share(events, chunk_base, events - duplicates_total)
            if last == customers:
                chunk_events = events - written
            chunk_rng = np.random.default_rng([seed, chunk_no])
            table = _chunk(
                chunk_rng, plan, first, last, base_counts[first:last], chunk_events, written
            )
            writer.write_table(table)
            written += table.num_rows
            elapsed = time.perf_counter() - started
            progress(
                f"sample: {written:,}/{events:,} rows written "
                f"({written / max(elapsed, 1e-9):,.0f} rows/s)"
            )
    partial.replace(target)
    return target


def _customer_plan(rng: np.random.Generator, customers: int) -> dict[str, np.ndarray]:
    """Per-customer behaviour: start day, churn day (or end of period), spend level, activity."""
    start = rng.uniform(0, PERIOD_DAYS * 0.5, customers)
    churner = rng.random(customers) < CHURN_SHARE
    churn_day = start + 30 + rng.uniform(0, 1, customers) * (PERIOD_DAYS - 30 - start)
    end = np.where(churner, churn_day, PERIOD_DAYS)
    activity = rng.lognormal(0.0, 0.5, customers)
    spend = rng.lognormal(3.5, 0.6, customers)
    # Churners' density falls linearly to zero, so their expected count is half a steady buyer's.
    weight = activity * (end - start) * np.where(churner, 0.5, 1.0)
    return {"start": start, "end": end, "churner": churner, "spend": spend, "weight": weight}


def _allocate(rng: np.random.Generator, total: int, weight: np.ndarray) -> np.ndarray:
    """Split `total` events over customers in proportion to `weight`; everyone gets at least one."""
    extra = rng.multinomial(total - len(weight), weight / weight.sum())
    return extra + 1


def _share(events: int, chunk_base: int, base_total: int) -> int:
    return round(events * chunk_base / base_total)


def _chunk(rng, plan, first, last, counts, chunk_events, row_offset) -> pa.Table:
    """Rows for customers [first, last): valid events, some corrupted, plus exact duplicates."""
    base_rows = int(counts.sum())
    duplicates = max(chunk_events - base_rows, 0)
    customer = np.repeat(np.arange(first, last), counts)
    u = rng.random(base_rows)
    churner = plan["churner"][customer]
    progress_in_life = np.where(churner, 1 - np.sqrt(1 - u), u)
    start, end = plan["start"][customer], plan["end"][customer]
    day = start + (end - start) * progress_in_life
    order = np.argsort(day, kind="stable")
    customer, day, churner, progress_in_life = (
        customer[order],
        day[order],
        churner[order],
        progress_in_life[order],
    )
    fade = np.where(churner, 1 - 0.6 * progress_in_life, 1.0)
    amount = np.round(plan["spend"][customer] * fade * rng.lognormal(0, 0.3, base_rows), 2)
    quantity = 1 + rng.poisson(1.0, base_rows)
    seconds = np.round(day * 86_400).astype("int64")

    ids = pc.binary_join_element_wise(
        "T",
        pc.utf8_lpad(
            pa.array(np.arange(row_offset, row_offset + base_rows)).cast(pa.string()), 10, "0"
        ),
        "",
    )
    customer_ids = pc.binary_join_element_wise(
        "C", pc.utf8_lpad(pa.array(customer).cast(pa.string()), 8, "0"), ""
    )
    times = pa.array(
        np.datetime64(PERIOD_START, "s") + seconds.astype("timedelta64[s]"), pa.timestamp("s")
    )
    event_time = pc.strftime(times, format="%Y-%m-%dT%H:%M:%S")
    columns = {
        "transaction_id": ids.to_numpy(zero_copy_only=False).astype(object),
        "customer_id": customer_ids.to_numpy(zero_copy_only=False).astype(object),
        "event_time": event_time.to_numpy(zero_copy_only=False).astype(object),
        "amount": pa.array(amount).cast(pa.string()).to_numpy(zero_copy_only=False).astype(object),
        "quantity": pa.array(quantity)
        .cast(pa.string())
        .to_numpy(zero_copy_only=False)
        .astype(object),
        "channel": CHANNELS[rng.integers(0, len(CHANNELS), base_rows)].astype(object),
    }
    _corrupt(rng, columns, corrupted=round(duplicates * (len(INVALID_KINDS) - 1)))
    if duplicates:
        picks = np.sort(rng.choice(base_rows, size=duplicates, replace=duplicates > base_rows))
        for name, values in columns.items():
            columns[name] = np.concatenate([values, values[picks]])
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def _corrupt(rng, columns: dict[str, np.ndarray], corrupted: int) -> None:
    """Turn `corrupted` distinct rows invalid, evenly over every kind but duplicates."""
    rows = len(columns["customer_id"])
    corrupted = min(corrupted, rows)
    picks = rng.permutation(rows)[:corrupted]
    for kind, rows_of_kind in zip(
        INVALID_KINDS[:-1], np.array_split(picks, len(INVALID_KINDS) - 1), strict=True
    ):
        if kind == "missing_customer_id":
            columns["customer_id"][rows_of_kind] = None
        elif kind == "bad_event_time":
            columns["event_time"][rows_of_kind] = np.where(
                rng.random(len(rows_of_kind)) < 0.5, "not-a-date", "2025-13-45T25:61:00"
            )
        elif kind == "negative_amount":
            columns["amount"][rows_of_kind] = "-" + columns["amount"][rows_of_kind]
        elif kind == "non_numeric_amount":
            columns["amount"][rows_of_kind] = np.where(
                rng.random(len(rows_of_kind)) < 0.5, "n/a", "12,50"
            )
        elif kind == "future_event_time":
            columns["event_time"][rows_of_kind] = "2099-01-01T00:00:00"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    path = write_sample(args.out, args.events, args.customers, args.seed)
    print(f"wrote {args.events:,} transactions for {args.customers:,} customers to {path}")
