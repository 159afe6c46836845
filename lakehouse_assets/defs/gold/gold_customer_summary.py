"""Gold layer: one summary row per customer, recomputed only for customers with new silver rows."""

import dagster as dg

from lakehouse_assets.lib import fanout, refresh
from lakehouse_assets.lib.metadata import table_exists, table_metadata
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import (
    GOLD_SUMMARY,
    GOLD_SUMMARY_WATERMARK,
    SILVER_TRANSACTIONS,
)

# The silver rows a bucket's summary reads, as the view `silver_rows`: the bucket's rows
# (`silver_in_bucket`, as of the plan's snapshot), or in an append those of `changed_customers`
# (gold/changed_customers.sql), the bucket's customers with new rows.
SILVER_IN_BUCKET = fanout.SILVER_IN_BUCKET
SILVER_ROWS = "silver_rows"
ALL_ROWS_SQL = f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS SELECT * FROM {SILVER_IN_BUCKET}"
CHANGED_ROWS_SQL = (
    f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS "
    f"SELECT * FROM {SILVER_IN_BUCKET} SEMI JOIN changed_customers USING (customer_id)"
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


def _plan(context, conn, config: GoldConfig) -> tuple[RefreshPlan, dict]:
    plan = refresh.plan_after_load(
        refresh.silver_loads(conn),
        refresh.read_load_watermark(conn, GOLD_SUMMARY_WATERMARK),
        GOLD_SUMMARY,
        table_exists(conn, GOLD_SUMMARY),
        config.full_refresh,
    )
    return plan, {}


def _piece(context, conn, task: fanout.BucketTask) -> fanout.Piece:
    """The summaries of the bucket's customers (all, or those with new rows)."""
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW {SILVER_IN_BUCKET} AS {task.at_snapshot(SILVER_TRANSACTIONS)}"
    )
    if task.plan.mode == Refresh.FULL:
        conn.execute(ALL_ROWS_SQL)
    else:
        conn.execute(sql("gold/changed_customers"), {"since": task.plan.since})
        conn.execute(CHANGED_ROWS_SQL)
    write_summary_rows(conn)
    piece = fanout.write_piece(conn, task, "SELECT * FROM customer_summary_rows")
    drop_summary_rows(conn)
    return piece


def _commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    plan = planned.plan
    if plan.mode != Refresh.UNCHANGED:
        fanout.commit_pieces(conn, GOLD_SUMMARY, plan.mode, pieces, planned.buckets)
    if plan.remember is not None:
        refresh.remember(conn, GOLD_SUMMARY_WATERMARK, plan.remember)
    metadata = table_metadata(conn, GOLD_SUMMARY)
    customers = sum(p.rows for p in pieces)
    return {**metadata, **plan.metadata(customers)}


gold_customer_summary = fanout.bucketed_asset(
    name="gold_customer_summary",
    table=GOLD_SUMMARY,
    upstream=["silver_transactions"],
    group_name="gold",
    description="""`gold.customer_summary`: one row per customer in silver: first and last
    purchase, transaction count, active days, total, average and largest amount, quantities.

    Computed bucket by bucket (`$LAKEHOUSE_BUCKETS`), committed as one snapshot. Incremental:
    after silver appended rows, only the customers with new rows are recomputed (their rows
    replaced); after silver was rebuilt in full, or with `full_refresh`, every customer is. The
    metadata `refresh` says which.""",
    config_class=GoldConfig,
    guard=lambda conn: refresh.read_watermark(conn, GOLD_SUMMARY_WATERMARK),
    plan=_plan,
    piece=_piece,
    commit=_commit,
)


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
