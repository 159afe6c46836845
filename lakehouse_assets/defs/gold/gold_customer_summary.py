"""Gold layer: one summary row per customer, recomputed only for customers with new silver rows."""

import time

import dagster as dg

from lakehouse_assets.lib import refresh
from lakehouse_assets.lib.metadata import log_progress, table_exists, table_metadata
from lakehouse_assets.lib.refresh import Refresh
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one, transaction
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import (
    GOLD_SUMMARY,
    GOLD_SUMMARY_WATERMARK,
    SILVER_TRANSACTIONS,
)

# The silver rows the summary reads, as the view `silver_rows`: all of them, or in an append
# the rows of `changed_customers` (gold/changed_customers.sql), the customers with new rows.
SILVER_ROWS = "silver_rows"
ALL_ROWS_SQL = f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS SELECT * FROM {SILVER_TRANSACTIONS}"
CHANGED_ROWS_SQL = (
    f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS "
    f"SELECT * FROM {SILVER_TRANSACTIONS} SEMI JOIN changed_customers USING (customer_id)"
)


def write_summary_rows(conn) -> None:
    """The view `customer_summary_rows` over `silver_rows`, after the temp table `active_days`
    it joins: counted in two statements (customer_days.sql says why)."""
    conn.execute(sql("gold/customer_days"))
    conn.execute(sql("gold/active_days"))
    conn.execute("DROP TABLE customer_days")
    conn.execute(sql("gold/summary"))


def drop_summary_rows(conn) -> None:
    """Drop what `write_summary_rows` and the `silver_rows` view left on `conn`."""
    conn.execute("DROP VIEW customer_summary_rows")
    conn.execute("DROP TABLE active_days")
    conn.execute(f"DROP VIEW {SILVER_ROWS}")


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
            plan = refresh.plan_after_load(
                refresh.silver_loads(conn),
                refresh.read_load_watermark(conn, GOLD_SUMMARY_WATERMARK),
                GOLD_SUMMARY,
                table_exists(conn, GOLD_SUMMARY),
                config.full_refresh,
            )
            context.log.info(f"{GOLD_SUMMARY}: {plan.mode} refresh: {plan.reason}")
            customers = 0
            if plan.mode == Refresh.FULL:
                conn.execute(ALL_ROWS_SQL)
                write_summary_rows(conn)
                conn.execute(sql("gold/write_summary"))
                drop_summary_rows(conn)
            elif plan.mode == Refresh.APPEND:
                changed = conn.execute(sql("gold/changed_customers"), {"since": plan.since})
                customers = changed.fetchone()[0]
                conn.execute(CHANGED_ROWS_SQL)
                write_summary_rows(conn)
                conn.execute(sql("gold/delete_changed"))
                conn.execute(sql("gold/append_summary"))
                drop_summary_rows(conn)
                conn.execute("DROP TABLE changed_customers")
            if plan.remember is not None:
                refresh.remember(conn, GOLD_SUMMARY_WATERMARK, plan.remember)
        metadata = table_metadata(conn, GOLD_SUMMARY)
    if plan.mode == Refresh.FULL:
        customers = int(metadata["dagster/row_count"].value)  # type: ignore[arg-type]
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
