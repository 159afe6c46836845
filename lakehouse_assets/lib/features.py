"""Features: per-customer inputs for the churn model, computed only from data up to a cutoff.

The cutoff moves with the data, yet a refresh reads silver only for the customers whose features
can have changed otherwise: those with new silver rows, or with a purchase near an edge that the
cutoff's move shifted (the cutoff itself, the 30/90/180-day windows, the label's horizon). Every
other customer keeps their stored columns. The features that are a function of the cutoff
itself (`AT_CUTOFF`) are not stored: each feature table is a view that computes them at its
cutoff over the stored columns.
"""

import dataclasses
import hashlib
import time
from datetime import datetime

import dagster as dg

from lakehouse_assets.lib import refresh
from lakehouse_assets.lib.metadata import log_progress, table_exists, table_metadata
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import transaction
from lakehouse_assets.lib.tables import (
    CUSTOMER_FEATURES,
    CUSTOMER_FEATURES_STORED,
    CUSTOMER_FEATURES_WATERMARK,
    SCORING_FEATURES,
    SCORING_FEATURES_STORED,
    SCORING_FEATURES_WATERMARK,
    SILVER_TRANSACTIONS,
)

LABEL = "churned"
FEATURE_COLUMNS = (
    "recency_days", "tenure_days", "frequency", "active_days",
    "monetary_total", "monetary_avg", "monetary_max", "monetary_std",
    "quantity_total", "quantity_avg",
    "txn_last_30d", "txn_last_90d", "txn_last_180d",
    "amount_last_30d", "amount_last_90d", "amount_last_180d",
    "mean_gap_days", "last_gap_days", "purchases_per_30d",
    "txn_trend_90d", "amount_trend_90d",
    "recency_to_mean_gap", "recency_to_max_gap", "max_gap_days", "gap_std_days", "gap_cv",
    "txn_share_90d", "txn_share_180d", "amount_share_90d", "amount_share_180d",
)  # fmt: skip

WINDOW_DAYS = (30, 90, 180)  # the activity windows before the cutoff, as FRESH_SQL counts them
# Stored beside the features, so that a later cutoff can be applied without reading silver.
PURCHASE_SPAN = ("first_purchase_at", "last_purchase_at")

_RECENCY = "date_diff('second', last_purchase_at, $cutoff) / 86400.0"
_TENURE = "date_diff('second', first_purchase_at, $cutoff) / 86400.0"
# The features that are a function of the cutoff itself, from the stored columns. The ratios are
# the customer's own rhythm: recency in units of their mean and longest gap; with one purchase
# there is no gap yet, and the tenure stands in (1 once tenure >= 1 day).
AT_CUTOFF = {
    "recency_days": _RECENCY,
    "tenure_days": _TENURE,
    "purchases_per_30d": f"frequency * 30.0 / greatest({_TENURE}, 1)",
    "recency_to_mean_gap": f"{_RECENCY} / "
    f"greatest(CASE WHEN frequency > 1 THEN mean_gap_days ELSE {_TENURE} END, 1)",
    "recency_to_max_gap": f"{_RECENCY} / "
    f"greatest(CASE WHEN frequency > 1 THEN max_gap_days ELSE {_TENURE} END, 1)",
}

# `{silver}` is silver.transactions, or in a refresh the rows of the customers to recompute.
# What needs each customer's purchases in order (a window): the days with a purchase (one more
# whenever the date changes; as count(DISTINCT date) it took twice as long) and the gaps between
# purchases. Staged in a temporary table first: in one statement with the other aggregates DuckDB
# ran out of memory at 100M transactions with the derived 1.5 GiB limit. The last gap is 0 when
# the latest purchases tie.
GAPS = "purchase_gaps"
GAPS_SQL = f"""
CREATE OR REPLACE TEMP TABLE {GAPS} AS
SELECT customer_id,
    count(*) FILTER (WHERE new_day) AS active_days,
    coalesce(max(gap_days), 0) AS max_gap_days,
    coalesce(stddev_samp(gap_days), 0) AS gap_std_days,
    coalesce(max(gap_days) FILTER (WHERE is_latest), 0) AS last_gap_days
FROM (
    SELECT customer_id,  -- the gap to the previous purchase, NULL for the first
        date_diff('second', lag(event_time) OVER w, event_time) / 86400.0 AS gap_days,
        lead(event_time) OVER w IS NULL AS is_latest,
        (lag(event_time) OVER w)::DATE IS DISTINCT FROM event_time::DATE AS new_day
    FROM {{silver}}
    WHERE event_time <= $cutoff
    WINDOW w AS (PARTITION BY customer_id ORDER BY event_time)
)
GROUP BY customer_id
"""

# The one definition of the stored columns: every customer with a purchase at or before $cutoff,
# from those purchases only. Training (`gold.customer_features`, with a label) and scoring
# (`gold.scoring_features`, at the latest event) both use it, so they cannot drift apart.
FRESH = "features_fresh"
FRESH_SQL = f"""
CREATE OR REPLACE TEMP TABLE {FRESH} AS
WITH per_customer AS (
    SELECT
        customer_id,
        min(event_time) AS first_purchase_at,
        max(event_time) AS last_purchase_at,
        count(*) AS frequency,
        sum(amount) AS monetary_total,
        avg(amount) AS monetary_avg,
        max(amount) AS monetary_max,
        coalesce(stddev_samp(amount), 0) AS monetary_std,
        sum(quantity)::BIGINT AS quantity_total,  -- not HUGEINT: numpy has no int128
        avg(quantity) AS quantity_avg,
        count(*) FILTER (WHERE age_days <= 30) AS txn_last_30d,
        count(*) FILTER (WHERE age_days <= 90) AS txn_last_90d,
        count(*) FILTER (WHERE age_days <= 180) AS txn_last_180d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 30), 0) AS amount_last_30d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 90), 0) AS amount_last_90d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 180), 0) AS amount_last_180d,
        count(*) FILTER (WHERE age_days > 90 AND age_days <= 180) AS txn_prev_90d,
        coalesce(sum(amount) FILTER (WHERE age_days > 90 AND age_days <= 180), 0) AS amount_prev_90d
    FROM (
        SELECT customer_id, event_time, amount, coalesce(quantity, 1) AS quantity,
            date_diff('second', event_time, $cutoff) / 86400.0 AS age_days
        FROM {{silver}}
        WHERE event_time <= $cutoff
    )
    GROUP BY customer_id
)
SELECT
    customer_id,
    frequency, active_days,
    monetary_total, monetary_avg, monetary_max, monetary_std,
    quantity_total, quantity_avg,
    txn_last_30d, txn_last_90d, txn_last_180d,
    amount_last_30d, amount_last_90d, amount_last_180d,
    CASE WHEN frequency > 1
        THEN date_diff('second', first_purchase_at, last_purchase_at) / 86400.0 / (frequency - 1)
        ELSE 0 END AS mean_gap_days,
    last_gap_days,
    txn_last_90d - txn_prev_90d AS txn_trend_90d,
    amount_last_90d - amount_prev_90d AS amount_trend_90d,
    max_gap_days,
    gap_std_days,
    CASE WHEN mean_gap_days > 0 THEN gap_std_days / mean_gap_days ELSE 0 END AS gap_cv,
    txn_last_90d / frequency AS txn_share_90d,
    txn_last_180d / frequency AS txn_share_180d,
    CASE WHEN monetary_total > 0 THEN amount_last_90d / monetary_total ELSE 0 END
        AS amount_share_90d,
    CASE WHEN monetary_total > 0 THEN amount_last_180d / monetary_total ELSE 0 END
        AS amount_share_180d,
    first_purchase_at, last_purchase_at
FROM per_customer
JOIN {GAPS} USING (customer_id)
"""

# Training rows also have the label, which alone looks past the cutoff.
LABELLED_SQL = f"""
SELECT f.*, CASE WHEN a.customer_id IS NULL THEN 1 ELSE 0 END AS {LABEL}
FROM {FRESH} f
LEFT JOIN (
    SELECT DISTINCT customer_id
    FROM {{silver}}
    WHERE event_time > $cutoff AND event_time <= $cutoff + to_days($horizon_days)
) a USING (customer_id)
"""

# What each feature table last read: the silver load, the cutoff and the definitions' hash.
WATERMARKS = {
    CUSTOMER_FEATURES: CUSTOMER_FEATURES_WATERMARK,
    SCORING_FEATURES: SCORING_FEATURES_WATERMARK,
}
# Each feature table is a view: its stored columns (a table) with the `AT_CUTOFF` features
# computed at the cutoff, so that moving the cutoff rewrites no row.
STORED = {CUSTOMER_FEATURES: CUSTOMER_FEATURES_STORED, SCORING_FEATURES: SCORING_FEATURES_STORED}
LAYOUT = "stored columns, and a view at the cutoff"  # in the definitions' hash
AFFECTED = "customers_to_recompute"
AFFECTED_ROWS = "rows_to_recompute"


def _affected_sql(edges: tuple[int, ...]) -> str:
    """Customers with silver rows ingested after `$since`, or with a purchase between the
    previous and the new place of an edge (the cutoff + `e` days, for `e` in `edges`, a minute
    either side): only their rows can enter or leave the snapshot, a window or the label's
    horizon."""
    near_edges = " OR ".join(
        f"event_time BETWEEN $previous_cutoff + to_days({e}) - INTERVAL 1 MINUTE "
        f"AND $cutoff + to_days({e}) + INTERVAL 1 MINUTE"
        for e in edges
    )
    return (
        f"CREATE OR REPLACE TEMP TABLE {AFFECTED} AS SELECT DISTINCT customer_id "
        f"FROM {SILVER_TRANSACTIONS} WHERE _ingested_at > $since OR {near_edges}"
    )


AFFECTED_ROWS_SQL = f"""
CREATE OR REPLACE TEMP TABLE {AFFECTED_ROWS} AS
SELECT customer_id, event_time, amount, quantity
FROM {SILVER_TRANSACTIONS} SEMI JOIN {AFFECTED} USING (customer_id)
"""


def _stored_sql(rows: str, labelled: bool) -> str:
    """The stored columns of a feature table, from `rows`: every feature not `AT_CUTOFF`, the
    purchase span and, for training rows, the label."""
    columns = (
        "customer_id",
        *(c for c in FEATURE_COLUMNS if c not in AT_CUTOFF),
        *PURCHASE_SPAN,
        *([LABEL] if labelled else []),
    )
    return f"SELECT {', '.join(columns)} FROM ({rows})"


def _view_sql(table: str, cutoff: datetime, labelled: bool) -> str:
    """`table` as a view of its stored columns: the features in `FEATURE_COLUMNS` order, those
    `AT_CUTOFF` computed at `cutoff`, then the purchase span and the label (training) or
    `features_as_of` (scoring). Unsorted: readers that need an order sort by customer_id."""
    at = f"TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
    features = ",\n    ".join(
        f"{AT_CUTOFF[c].replace('$cutoff', at)} AS {c}" if c in AT_CUTOFF else c
        for c in FEATURE_COLUMNS
    )
    last_column = LABEL if labelled else f"{at} AS features_as_of"
    return (
        f"CREATE OR REPLACE VIEW {table} AS\nSELECT customer_id,\n    {features},\n    "
        f"{', '.join(PURCHASE_SPAN)}, {last_column}\nFROM {STORED[table]}"
    )


WATERMARK_COLUMNS = "cutoff TIMESTAMP, definition VARCHAR"


def _write(conn, table: str, mode: Refresh, rows: str, params: dict, cutoff, remembered) -> dict:
    """In one transaction: the stored rows (all of them anew, or in a refresh those of the
    customers to recompute replaced), the view at `cutoff`, and the watermark `remembered`.
    `params` has the label's `horizon_days` for training rows."""
    assert cutoff.tzinfo is None, cutoff  # a TIMESTAMP literal would drop the offset
    labelled = "horizon_days" in params
    stored = STORED[table]
    with transaction(conn):
        if mode == Refresh.APPEND:
            conn.execute(
                f"DELETE FROM {stored} WHERE customer_id IN (SELECT customer_id FROM {AFFECTED})"
            )
            conn.execute(f"INSERT INTO {stored} BY NAME {_stored_sql(rows, labelled)}", params)
        else:
            if table_exists(conn, table, views=False):  # written as a table before the view
                conn.execute(f"DROP TABLE {table}")
            create = f"CREATE OR REPLACE TABLE {stored} AS {_stored_sql(rows, labelled)}"
            conn.execute(create, params)
        conn.execute(_view_sql(table, cutoff, labelled))
        refresh.remember(conn, WATERMARKS[table], remembered, WATERMARK_COLUMNS)
    return table_metadata(conn, table)


def training_snapshot(conn) -> tuple:
    """(cutoff, hash of the definitions and horizon) that `gold.customer_features` was last
    computed with, from its watermark (written with it); (None, None) when none is recorded."""
    table = WATERMARKS[CUSTOMER_FEATURES]
    row = (
        table_exists(conn, table)
        and conn.execute(f"SELECT cutoff, definition FROM {table}").fetchone()
    )
    return tuple(row) if row else (None, None)


def latest_event(conn):
    """The latest `event_time` in silver; fails when silver is empty."""
    latest = conn.execute(f"SELECT max(event_time) FROM {SILVER_TRANSACTIONS}").fetchone()[0]
    if latest is None:
        raise dg.Failure(
            f"{SILVER_TRANSACTIONS} is empty: no features to compute", allow_retries=False
        )
    return latest


def _plan(conn, table: str, cutoff: datetime, definition: str, full_refresh: bool) -> RefreshPlan:
    """How `table` reaches `cutoff`, from its watermark and silver's loads."""
    row = refresh.read_watermark(conn, WATERMARKS[table])
    seen = row and refresh.FeatureWatermark(refresh.SilverLoad(*row[:2]), *row[2:])
    after_load = refresh.plan_after_load(
        refresh.silver_loads(conn),
        seen and seen.load,
        table,
        table_exists(conn, table),
        full_refresh,
    )
    stored_exists = table_exists(conn, STORED[table])
    return refresh.plan_features(after_load, seen, STORED[table], stored_exists, cutoff, definition)


def refresh_features(
    context, conn, table: str, cutoff: datetime, full_refresh: bool, horizon_days: int | None
) -> dict:
    """Bring `table` to `cutoff` (with labels over `horizon_days` if given): recompute the
    customers that can have changed, or all of them, and write the table with its watermark in
    one transaction. Returns the table's metadata and how it was refreshed."""
    started = time.perf_counter()
    labelled = horizon_days is not None
    definition = hashlib.sha256(
        f"{GAPS_SQL}{FRESH_SQL}{LABELLED_SQL}{AT_CUTOFF}{horizon_days}{LAYOUT}".encode()
    ).hexdigest()[:16]
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")  # for the watermark
    with transaction(conn):
        plan = _plan(conn, table, cutoff, definition, full_refresh)
    silver = SILVER_TRANSACTIONS
    if plan.mode == Refresh.APPEND:
        edges = (0, *(-days for days in WINDOW_DAYS), *([horizon_days] if labelled else []))
        params = {"since": plan.since, "previous_cutoff": plan.previous_cutoff, "cutoff": cutoff}
        conn.execute(_affected_sql(edges), params)
        changed, customers = conn.execute(
            f"SELECT (SELECT count(*) FROM {AFFECTED}), (SELECT count(*) FROM {table})"
        ).fetchone()
        if changed > customers / 2:  # then recomputing all of them costs less
            reason = f"{plan.reason}; {changed:,} of {customers:,} changed"
            plan = dataclasses.replace(plan, mode=Refresh.FULL, reason=reason)
        else:
            conn.execute(AFFECTED_ROWS_SQL)  # their rows, read once
            silver = AFFECTED_ROWS
    context.log.info(f"{table}: {plan.mode} refresh: {plan.reason}")
    recomputed = 0
    if plan.mode != Refresh.UNCHANGED:
        conn.execute(GAPS_SQL.format(silver=silver), {"cutoff": cutoff})  # temporary tables
        conn.execute(FRESH_SQL.format(silver=silver), {"cutoff": cutoff})
        recomputed = conn.execute(f"SELECT count(*) FROM {FRESH}").fetchone()[0]
        rows = LABELLED_SQL.format(silver=silver) if labelled else f"SELECT * FROM {FRESH}"
        params = {"cutoff": cutoff, "horizon_days": horizon_days} if labelled else {}
        # No silver load to remember: none is forgotten, and the next run is full.
        remembered = plan.remember and (*plan.remember, cutoff, definition)
        metadata = _write(conn, table, plan.mode, rows, params, cutoff, remembered)
    else:
        metadata = table_metadata(conn, table)
    for temp in (GAPS, FRESH, AFFECTED, AFFECTED_ROWS):
        conn.execute(f"DROP TABLE IF EXISTS {temp}")
    log_progress(context, f"{table}: {plan.mode}; customers (re)computed:", recomputed, started)
    return {**metadata, **plan.metadata(recomputed)}
