"""Silver layer: typed, validated, deduplicated transactions, and every rejected row with a reason."""

from datetime import UTC, datetime

import dagster as dg

from lakehouse_assets.layers.bronze import bronze_transactions
from lakehouse_assets.metadata import markdown_table, table_metadata
from lakehouse_assets.resources import LakehouseDuckDB, transaction

TABLE = "silver.transactions"
REJECTED_TABLE = "silver.rejected_transactions"
LINEAGE = "_source_file, _source_row, _ingested_at"
INTEGER_PATTERN = r"^\s*[+]?\d+\s*$"

# One pass over bronze: type every row, give invalid rows their reason, rank duplicates.
# The first copy (by ingestion time, file, row) of a transaction is kept.
CLASSIFY_SQL = f"""
CREATE TEMP TABLE classified AS
WITH typed AS (
    SELECT
        {LINEAGE},
        customer_id AS raw_customer_id, event_time AS raw_event_time, amount AS raw_amount,
        quantity AS raw_quantity, transaction_id AS raw_transaction_id,
        nullif(trim(customer_id), '') AS customer_id,
        try_cast(trim(event_time) AS TIMESTAMPTZ)::TIMESTAMP AS event_time,
        try_cast(trim(amount) AS DOUBLE) AS amount,
        CASE WHEN regexp_full_match(quantity, '{INTEGER_PATTERN}')
             THEN try_cast(trim(quantity) AS INTEGER) END AS quantity,
        nullif(trim(transaction_id), '') AS transaction_id
    FROM bronze.transactions
),
validated AS (
    SELECT *,
        CASE
            WHEN customer_id IS NULL THEN 'missing_customer_id'
            WHEN event_time IS NULL THEN 'bad_event_time'
            WHEN event_time > $now THEN 'future_event_time'
            WHEN amount IS NULL OR NOT isfinite(amount) OR amount < 0 THEN 'bad_amount'
            WHEN nullif(trim(raw_quantity), '') IS NOT NULL AND quantity IS NULL THEN 'bad_quantity'
        END AS invalid_reason
    FROM typed
)
SELECT *,
    CASE WHEN invalid_reason IS NULL THEN row_number() OVER (
        PARTITION BY invalid_reason IS NULL, transaction_id,
            CASE WHEN transaction_id IS NULL THEN customer_id END,
            CASE WHEN transaction_id IS NULL THEN event_time END,
            CASE WHEN transaction_id IS NULL THEN amount END,
            CASE WHEN transaction_id IS NULL THEN quantity END
        ORDER BY _ingested_at, _source_file, _source_row
    ) END AS copy_number
FROM validated
"""

SILVER_SQL = f"""
CREATE OR REPLACE TABLE {TABLE} AS
SELECT transaction_id, customer_id, event_time, amount, quantity, {LINEAGE}
FROM classified
WHERE invalid_reason IS NULL AND copy_number = 1
"""

REJECTED_SQL = f"""
CREATE OR REPLACE TABLE {REJECTED_TABLE} AS
SELECT {LINEAGE}, coalesce(invalid_reason, 'duplicate') AS reason,
    raw_transaction_id AS transaction_id, raw_customer_id AS customer_id,
    raw_event_time AS event_time, raw_amount AS amount, raw_quantity AS quantity
FROM classified
WHERE invalid_reason IS NOT NULL OR copy_number > 1
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
    with duckdb.get_connection() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS silver")
        with transaction(conn):
            conn.execute(CLASSIFY_SQL, {"now": now})
            conn.execute(SILVER_SQL)
            conn.execute(REJECTED_SQL)
            conn.execute("DROP TABLE classified")
        reasons = conn.execute(
            f"SELECT reason, count(*) AS rows FROM {REJECTED_TABLE} GROUP BY reason ORDER BY reason"
        )
        reasons_md = markdown_table(reasons)
        rejected = dict(
            conn.execute(f"SELECT reason, count(*) FROM {REJECTED_TABLE} GROUP BY reason").fetchall()
        )
        metadata = table_metadata(conn, TABLE)
    total_rejected = sum(rejected.values())
    context.log.info(f"{TABLE}: {metadata['dagster/row_count'].value:,} rows; rejected {rejected}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "rejected_rows": total_rejected,
            "rejected_by_reason": dg.MetadataValue.md(reasons_md),
            **{f"rejected/{reason}": count for reason, count in sorted(rejected.items())},
        }
    )
