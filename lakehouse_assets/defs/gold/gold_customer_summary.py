"""Gold layer: one summary row per customer, recomputed only for customers with new silver rows."""

import time

import dagster as dg

from lakehouse_assets.lib import refresh
from lakehouse_assets.lib.metadata import log_progress, table_exists, table_metadata
from lakehouse_assets.lib.refresh import Refresh
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one, transaction
from lakehouse_assets.lib.tables import (
    GOLD_SUMMARY,
    GOLD_SUMMARY_WATERMARK,
    SILVER_TRANSACTIONS,
)

ACTIVE_DAYS = "active_days"
CUSTOMER_DAYS = "customer_days"


def write_active_days(conn, rows: str = "") -> None:
    """The temporary table `ACTIVE_DAYS`: each customer's number of days with a purchase
    (`rows`: a clause that keeps some customers' silver rows). Counted in two statements, from
    one row per customer and day: DuckDB 1.5.5 did not spill `count(DISTINCT day)` in the
    summary's aggregation, nor the two-level count in one statement, and ran out of memory at
    100M transactions with a 1.5 GiB limit."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {CUSTOMER_DAYS} AS SELECT customer_id, "
        f"event_time::DATE AS day FROM {SILVER_TRANSACTIONS} {rows} GROUP BY ALL"
    )
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {ACTIVE_DAYS} AS SELECT customer_id, "
        f"count(*) AS active_days FROM {CUSTOMER_DAYS} GROUP BY customer_id"
    )
    conn.execute(f"DROP TABLE {CUSTOMER_DAYS}")


def summary_select(rows: str = "") -> str:
    """Each customer's summary from silver and `ACTIVE_DAYS` (`rows` as for `write_active_days`)."""
    return f"""
WITH per_customer AS (
    SELECT
        customer_id,
        min(event_time) AS first_purchase_at,
        max(event_time) AS last_purchase_at,
        count(*) AS transaction_count,
        sum(amount) AS total_amount,
        avg(amount) AS avg_amount,
        max(amount) AS max_amount,
        sum(quantity) AS total_quantity,
        avg(quantity) AS avg_quantity
    FROM {SILVER_TRANSACTIONS} {rows}
    GROUP BY customer_id
)
SELECT customer_id, first_purchase_at, last_purchase_at, transaction_count, active_days,
    total_amount, avg_amount, max_amount, total_quantity, avg_quantity
FROM per_customer
JOIN {ACTIVE_DAYS} USING (customer_id)
"""


ALL_ROWS = ""
SUMMARY_SQL = f"CREATE OR REPLACE TABLE {GOLD_SUMMARY} AS {summary_select()}"
# Incremental: the customers with silver rows ingested after the load gold last summarized,
# their old rows deleted, and their summary recomputed from all their silver rows.
CHANGED = "changed_customers"
CHANGED_ROWS = f"SEMI JOIN {CHANGED} USING (customer_id)"
CHANGED_SQL = f"""
CREATE TEMP TABLE {CHANGED} AS
SELECT DISTINCT customer_id FROM {SILVER_TRANSACTIONS} WHERE _ingested_at > $since
"""
DELETE_CHANGED_SQL = (
    f"DELETE FROM {GOLD_SUMMARY} WHERE customer_id IN (SELECT customer_id FROM {CHANGED})"
)
INSERT_CHANGED_SQL = f"""
INSERT INTO {GOLD_SUMMARY} BY NAME
{summary_select(CHANGED_ROWS)}
"""


class GoldConfig(dg.Config):
    full_refresh: bool = False
    """Recompute every customer's summary, not only those with new silver rows."""


@dg.asset(deps=["silver_transactions"], group_name="gold", kinds={"duckdb"}, pool="duckdb")
def gold_customer_summary(
    context: dg.AssetExecutionContext, config: GoldConfig, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`gold.customer_summary`: one row per customer in silver: first and last purchase,
    transaction count, active days, total, average and largest amount, quantities.

    Incremental: after silver appended rows, only the customers with new rows are recomputed
    (their rows replaced in one transaction); after silver was rebuilt in full, or with
    `full_refresh`, every customer is. The metadata `refresh` says which."""
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS gold")
        with transaction(conn):
            seen = refresh.read_watermark(conn, GOLD_SUMMARY_WATERMARK)
            plan = refresh.plan_after_load(
                refresh.silver_loads(conn),
                seen and refresh.SilverLoad(*seen),
                GOLD_SUMMARY,
                table_exists(conn, GOLD_SUMMARY),
                config.full_refresh,
            )
            context.log.info(f"{GOLD_SUMMARY}: {plan.mode} refresh: {plan.reason}")
            customers = 0
            if plan.mode == Refresh.FULL:
                write_active_days(conn, ALL_ROWS)
                conn.execute(SUMMARY_SQL)
                conn.execute(f"DROP TABLE {ACTIVE_DAYS}")
            elif plan.mode == Refresh.APPEND:
                customers = conn.execute(CHANGED_SQL, {"since": plan.since}).fetchone()[0]
                write_active_days(conn, CHANGED_ROWS)
                conn.execute(DELETE_CHANGED_SQL)
                conn.execute(INSERT_CHANGED_SQL)
                conn.execute(f"DROP TABLE {CHANGED}")
                conn.execute(f"DROP TABLE {ACTIVE_DAYS}")
            if plan.remember is not None:
                refresh.remember(conn, GOLD_SUMMARY_WATERMARK, plan.remember)
        metadata = table_metadata(conn, GOLD_SUMMARY)
    if plan.mode == Refresh.FULL:
        customers = metadata["dagster/row_count"].value
    log_progress(
        context, f"{GOLD_SUMMARY}: {plan.mode}; customers (re)computed:", customers, started
    )
    return dg.MaterializeResult(metadata={**metadata, **plan.metadata(customers)})


# Checks
GOLD_ONE_ROW_PER_CUSTOMER = "gold_one_row_per_customer"


@dg.asset_check(
    asset=gold_customer_summary, name=GOLD_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb"
)
def gold_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.customer_summary has exactly one row for each customer in silver."""
    rows, distinct, silver_customers = query_one(
        duckdb,
        "SELECT count(*), count(DISTINCT customer_id), "
        f"(SELECT count(DISTINCT customer_id) FROM {SILVER_TRANSACTIONS}) FROM {GOLD_SUMMARY}",
    )
    return dg.AssetCheckResult(
        passed=rows == distinct == silver_customers and rows > 0,
        metadata={
            "rows": rows,
            "distinct_customers": distinct,
            "silver_customers": silver_customers,
        },
    )
