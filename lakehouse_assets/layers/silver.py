"""Silver layer: typed, validated, deduplicated transactions, and every rejected row with a reason."""

import time
from datetime import UTC, datetime

import dagster as dg

from lakehouse_assets.layers.bronze import bronze_transactions
from lakehouse_assets.metadata import log_progress, markdown_rows, table_metadata
from lakehouse_assets.resources import LakehouseDuckDB, transaction

TABLE = "silver.transactions"
REJECTED_TABLE = "silver.rejected_transactions"
REPEATED_IDS = "repeated_transaction_ids"
LATER_COPIES = "later_copies"
LINEAGE = "_source_file, _source_row, _ingested_at"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S"
TRIMMED_ID = "nullif(trim(transaction_id), '')"
# A transaction is identified by its transaction_id, else by its whole record.
IDENTITY = ("transaction_id", "record_customer_id", "record_event_time", "record_amount",
            "record_quantity")  # fmt: skip


def validated_cte(source: str = "bronze.transactions") -> str:
    """CTEs `typed` and `validated`: the bronze rows in `source` typed, with the reason each is
    invalid (NULL when valid) and its identity. The common ISO form without offset is parsed by
    a fast strptime; anything else (offsets, dates, spaces) by the general TIMESTAMPTZ cast, in
    UTC."""
    return f"""
typed AS (
    SELECT
        {LINEAGE},
        customer_id AS raw_customer_id, event_time AS raw_event_time, amount AS raw_amount,
        quantity AS raw_quantity, transaction_id AS raw_transaction_id,
        nullif(trim(customer_id), '') AS customer_id,
        coalesce(
            try_strptime(event_time, '{ISO_FORMAT}'),
            try_cast(trim(event_time) AS TIMESTAMPTZ)::TIMESTAMP
        ) AS event_time,
        try_cast(trim(amount) AS DOUBLE) AS amount,
        CASE WHEN try_cast(trim(quantity) AS DOUBLE) >= 0
              AND try_cast(trim(quantity) AS DOUBLE) = floor(try_cast(trim(quantity) AS DOUBLE))
             THEN try_cast(try_cast(trim(quantity) AS DOUBLE) AS INTEGER) END AS quantity,
        {TRIMMED_ID} AS transaction_id
    FROM {source}
),
validated AS (
    SELECT *,
        CASE
            WHEN customer_id IS NULL THEN 'missing_customer_id'
            WHEN event_time IS NULL THEN 'bad_event_time'
            WHEN event_time > $now THEN 'future_event_time'
            WHEN amount IS NULL OR NOT isfinite(amount) OR amount < 0 THEN 'bad_amount'
            WHEN nullif(trim(raw_quantity), '') IS NOT NULL AND quantity IS NULL THEN 'bad_quantity'
        END AS invalid_reason,
        CASE WHEN transaction_id IS NULL THEN customer_id END AS record_customer_id,
        CASE WHEN transaction_id IS NULL THEN event_time END AS record_event_time,
        CASE WHEN transaction_id IS NULL THEN amount END AS record_amount,
        CASE WHEN transaction_id IS NULL THEN quantity END AS record_quantity
    FROM typed
)"""


# 1. Transaction ids that occur more than once in bronze (NULL included): only their rows can be
# copies. One aggregation over a single column, before anything is typed.
REPEATED_IDS_SQL = f"""
CREATE TEMP TABLE {REPEATED_IDS} AS
SELECT {TRIMMED_ID} AS transaction_id
FROM bronze.transactions
GROUP BY ALL
HAVING count(*) > 1
"""

# 2. Later copies: valid rows (among those candidates) whose identity an earlier row (by
# ingestion time, file, row) already has.
LATER_COPIES_SQL = f"""
CREATE TEMP TABLE {LATER_COPIES} AS
WITH candidates AS (
    SELECT b.*
    FROM bronze.transactions b
    SEMI JOIN {REPEATED_IDS} r
        ON nullif(trim(b.transaction_id), '') IS NOT DISTINCT FROM r.transaction_id
),
{validated_cte("candidates")}
SELECT _source_file, _source_row
FROM validated
WHERE invalid_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY {", ".join(IDENTITY)} ORDER BY _ingested_at, _source_file, _source_row
) > 1
"""

# Every bronze row, typed and classified.
CLASSIFIED_CTE = f"""
{validated_cte()},
classified AS (
    SELECT v.*, c._source_row IS NOT NULL AS later_copy
    FROM validated v
    LEFT JOIN {LATER_COPIES} c
        ON v._source_file = c._source_file AND v._source_row = c._source_row
)"""

# 3. Valid rows that are not later copies.
SILVER_SQL = f"""
CREATE OR REPLACE TABLE {TABLE} AS
WITH {CLASSIFIED_CTE}
SELECT transaction_id, customer_id, event_time, amount, quantity, {LINEAGE}
FROM classified
WHERE invalid_reason IS NULL AND NOT later_copy
"""

# 4. Invalid rows and later copies, with their text as landed.
REJECTED_SQL = f"""
CREATE OR REPLACE TABLE {REJECTED_TABLE} AS
WITH {CLASSIFIED_CTE}
SELECT {LINEAGE}, coalesce(invalid_reason, 'duplicate') AS reason,
    raw_transaction_id AS transaction_id, raw_customer_id AS customer_id,
    raw_event_time AS event_time, raw_amount AS amount, raw_quantity AS quantity
FROM classified
WHERE invalid_reason IS NOT NULL OR later_copy
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
            conn.execute(REPEATED_IDS_SQL)
            copies = conn.execute(LATER_COPIES_SQL, {"now": now}).fetchone()[0]
            log_progress(context, f"{TABLE}: {copies:,} later copies found in", bronze, started)
            rows = conn.execute(SILVER_SQL, {"now": now}).fetchone()[0]
            log_progress(context, f"{TABLE}: written,", rows, started)
            conn.execute(REJECTED_SQL, {"now": now})
            conn.execute(f"DROP TABLE {REPEATED_IDS}")
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
