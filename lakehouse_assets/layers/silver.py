"""Silver layer: typed, validated, deduplicated transactions, and every rejected row with a reason."""

import time
from datetime import UTC, datetime

import dagster as dg

from lakehouse_assets.layers.bronze import bronze_transactions
from lakehouse_assets.metadata import log_progress, markdown_rows, table_metadata
from lakehouse_assets.resources import LakehouseDuckDB, transaction

TABLE = "silver.transactions"
REJECTED_TABLE = "silver.rejected_transactions"
TYPED = "typed_transactions"
LATER_COPIES = "later_copies"
LINEAGE = "_source_file, _source_row, _ingested_at"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S"
# A transaction is identified by its transaction_id, else by its whole record.
IDENTITY = ", ".join(
    ["transaction_id"]
    + [f"CASE WHEN transaction_id IS NULL THEN {c} END" for c in ("customer_id", "event_time",
                                                                  "amount", "quantity")]
)  # fmt: skip

# 1. Every bronze row typed once, with the reason it is invalid (NULL when valid). Values are
# trimmed first (trim also drops Unicode spaces such as U+00A0, which casts do not). The common
# ISO form without offset is parsed by a fast strptime; anything else (offsets, dates, spaces)
# by the general TIMESTAMPTZ cast, in UTC.
TYPED_SQL = f"""
CREATE TEMP TABLE {TYPED} AS
WITH parsed AS (
    SELECT
        {LINEAGE},
        nullif(trim(customer_id), '') AS customer_id,
        coalesce(
            try_strptime(event_time, '{ISO_FORMAT}'),
            try_cast(trim(event_time) AS TIMESTAMPTZ)::TIMESTAMP
        ) AS event_time,
        try_cast(trim(amount) AS DOUBLE) AS amount,
        nullif(trim(quantity), '') IS NOT NULL AS has_quantity,
        try_cast(trim(quantity) AS DOUBLE) AS quantity_number,
        nullif(trim(transaction_id), '') AS transaction_id
    FROM bronze.transactions
),
typed AS (
    SELECT * EXCLUDE (quantity_number),
        CASE WHEN quantity_number >= 0 AND quantity_number = floor(quantity_number)
             THEN try_cast(quantity_number AS INTEGER) END AS quantity
    FROM parsed
)
SELECT {LINEAGE}, transaction_id, customer_id, event_time, amount, quantity,
    CASE
        WHEN customer_id IS NULL THEN 'missing_customer_id'
        WHEN event_time IS NULL THEN 'bad_event_time'
        WHEN event_time > $now THEN 'future_event_time'
        WHEN amount IS NULL OR NOT isfinite(amount) OR amount < 0 THEN 'bad_amount'
        WHEN has_quantity AND quantity IS NULL THEN 'bad_quantity'
    END AS invalid_reason
FROM typed
"""

# 2. Later copies: valid rows whose identity an earlier valid row (by ingestion time, file,
# row) already has. Only rows whose transaction_id repeats (NULL included) can be copies.
LATER_COPIES_SQL = f"""
CREATE TEMP TABLE {LATER_COPIES} AS
WITH repeated AS (
    SELECT transaction_id
    FROM {TYPED}
    WHERE invalid_reason IS NULL
    GROUP BY ALL
    HAVING count(*) > 1
)
SELECT _source_file, _source_row
FROM {TYPED} t
SEMI JOIN repeated r ON t.transaction_id IS NOT DISTINCT FROM r.transaction_id
WHERE invalid_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY {IDENTITY} ORDER BY _ingested_at, _source_file, _source_row
) > 1
"""

# 3. Valid rows that are not later copies.
SILVER_SQL = f"""
CREATE OR REPLACE TABLE {TABLE} AS
SELECT transaction_id, customer_id, event_time, amount, quantity, {LINEAGE}
FROM {TYPED}
ANTI JOIN {LATER_COPIES} USING (_source_file, _source_row)
WHERE invalid_reason IS NULL
"""

# 4. Invalid rows and later copies, with their text as landed.
REJECTED_SQL = f"""
CREATE OR REPLACE TABLE {REJECTED_TABLE} AS
WITH reasons AS (
    SELECT _source_file, _source_row, invalid_reason AS reason
    FROM {TYPED}
    WHERE invalid_reason IS NOT NULL
    UNION ALL
    SELECT _source_file, _source_row, 'duplicate' AS reason
    FROM {LATER_COPIES}
)
SELECT b._source_file, b._source_row, b._ingested_at, r.reason,
    b.transaction_id, b.customer_id, b.event_time, b.amount, b.quantity
FROM bronze.transactions b
JOIN reasons r USING (_source_file, _source_row)
"""


@dg.asset(deps=[bronze_transactions], group_name="silver", kinds={"duckdb"}, pool="duckdb")
def silver_transactions(
    context: dg.AssetExecutionContext, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`silver.transactions`: typed (`event_time` TIMESTAMP in UTC, `amount` DOUBLE, `quantity`
    INTEGER), validated and deduplicated (on `transaction_id`, else on the whole record).

    Every bronze row that does not reach silver is in `silver.rejected_transactions` with its
    lineage and a `reason`: missing_customer_id, bad_event_time, future_event_time, bad_amount,
    bad_quantity or duplicate. rows(bronze) = rows(silver) + rows(rejected).
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS silver")
        bronze = conn.execute("SELECT count(*) FROM bronze.transactions").fetchone()[0]
        with transaction(conn):
            conn.execute(TYPED_SQL, {"now": now})
            log_progress(context, f"{TABLE}: typed and validated", bronze, started)
            copies = conn.execute(LATER_COPIES_SQL).fetchone()[0]
            log_progress(context, f"{TABLE}: {copies:,} later copies found in", bronze, started)
            rows = conn.execute(SILVER_SQL).fetchone()[0]
            log_progress(context, f"{TABLE}: written,", rows, started)
            conn.execute(REJECTED_SQL)
            conn.execute(f"DROP TABLE {TYPED}")
            conn.execute(f"DROP TABLE {LATER_COPIES}")
        rejected = dict(
            conn.execute(
                f"SELECT reason, count(*) FROM {REJECTED_TABLE} GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        metadata = table_metadata(conn, TABLE)
    log_progress(context, f"{TABLE}: done; bronze", bronze, started)
    context.log.info(f"{REJECTED_TABLE}: {rejected}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "rejected_rows": sum(rejected.values()),
            "rejected_by_reason": dg.MetadataValue.md(
                markdown_rows(["reason", "rows"], list(rejected.items()))
            ),
            **{f"rejected/{reason}": count for reason, count in rejected.items()},
        }
    )
