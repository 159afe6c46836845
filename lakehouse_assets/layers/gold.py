"""Gold layer: one summary row per customer."""

import time

import dagster as dg

from lakehouse_assets.layers.silver import silver_transactions
from lakehouse_assets.metadata import log_progress, table_metadata
from lakehouse_assets.resources import LakehouseDuckDB, transaction

TABLE = "gold.customer_summary"

SUMMARY_SQL = f"""
CREATE OR REPLACE TABLE {TABLE} AS
SELECT
    customer_id,
    min(event_time) AS first_purchase_at,
    max(event_time) AS last_purchase_at,
    count(*) AS transaction_count,
    count(DISTINCT event_time::DATE) AS active_days,
    sum(amount) AS total_amount,
    avg(amount) AS avg_amount,
    max(amount) AS max_amount,
    sum(quantity) AS total_quantity,
    avg(quantity) AS avg_quantity
FROM silver.transactions
GROUP BY customer_id
"""


@dg.asset(deps=[silver_transactions], group_name="gold", kinds={"duckdb"}, pool="duckdb")
def gold_customer_summary(
    context: dg.AssetExecutionContext, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`gold.customer_summary`: one row per customer in silver: first and last purchase,
    transaction count, active days, total, average and largest amount, quantities."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS gold")
        with transaction(conn):
            conn.execute(SUMMARY_SQL)
        metadata = table_metadata(conn, TABLE)
        silver = conn.execute("SELECT count(*) FROM silver.transactions").fetchone()[0]
    log_progress(context, f"{TABLE}: summarized", silver, started)
    return dg.MaterializeResult(metadata=metadata)
