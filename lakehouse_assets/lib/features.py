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
import re
from datetime import datetime

import dagster as dg

from lakehouse_assets.lib import buckets, fanout, refresh
from lakehouse_assets.lib.metadata import table_exists, table_metadata
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.sql import sql
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

# The activity windows before the cutoff, as fresh.sql counts them (affected_customers.sql
# takes them as $window_1_days ...).
WINDOW_DAYS = (30, 90, 180)
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

# The silver rows that lib/sql/features reads, as the view `silver_rows`: all of the bucket's
# (`silver_in_bucket`), or in a refresh `rows_to_recompute`, the rows of the bucket's customers
# in `customers_to_recompute`.
SILVER_ROWS = "silver_rows"
AFFECTED = "customers_to_recompute"
AFFECTED_ROWS = "rows_to_recompute"
SILVER_IN_BUCKET = fanout.SILVER_IN_BUCKET
ALL_ROWS_SQL = f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS SELECT * FROM {SILVER_IN_BUCKET}"
AFFECTED_ROWS_SQL = f"CREATE OR REPLACE TEMP VIEW {SILVER_ROWS} AS SELECT * FROM {AFFECTED_ROWS}"
# The stored columns: fresh.sql (after gaps.sql), and for training rows a view of them with the
# label (returning_customers.sql, then labelled.sql).
FRESH = "features_fresh"
LABELLED = "features_labelled"
FRESH_SQL = sql("features/fresh")
# Every temp object a refresh may create on its connection, dropped at its end.
TEMPORARIES = (
    ("VIEW", LABELLED),
    ("TABLE", "returning_customers"),
    ("TABLE", FRESH),
    ("TABLE", "purchase_gaps"),
    ("VIEW", SILVER_ROWS),
    ("TABLE", AFFECTED_ROWS),
    ("TABLE", AFFECTED),
    ("VIEW", SILVER_IN_BUCKET),
)

# What each feature table last read: the silver load, the cutoff and the definitions' hash.
WATERMARKS = {
    CUSTOMER_FEATURES: CUSTOMER_FEATURES_WATERMARK,
    SCORING_FEATURES: SCORING_FEATURES_WATERMARK,
}
# Each feature table is a view: its stored columns (a table) with the `AT_CUTOFF` features
# computed at the cutoff, so that moving the cutoff rewrites no row.
STORED = {CUSTOMER_FEATURES: CUSTOMER_FEATURES_STORED, SCORING_FEATURES: SCORING_FEATURES_STORED}
LAYOUT = "stored columns, and a view at the cutoff"  # in the definitions' hash


# The files that compute feature values and the label; the others only choose which customers
# a refresh recomputes, which changes no value.
DEFINING_FILES = (
    "features/gaps",
    "features/fresh",
    "features/returning_customers",
    "features/labelled",
)


def definition_hash(horizon_days: int | None) -> str:
    """The features' definitions as a hash: the statements of `DEFINING_FILES` (without their
    comments and layout, which change no value), the `AT_CUTOFF` expressions, the horizon and
    the `LAYOUT`, so that changing any of them forces a full rebuild of the feature tables."""
    statements = "\n".join(_statement_only(sql(name)) for name in DEFINING_FILES)
    text = f"{statements}{AT_CUTOFF}{horizon_days}{LAYOUT}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _statement_only(text: str) -> str:
    """`text` without `--` comments, and with every run of whitespace as one space."""
    return " ".join(re.sub(r"--[^\n]*", "", text).split())


def _stored_sql(source: str, labelled: bool) -> str:
    """The stored columns of a feature table from `source` (`FRESH` or `LABELLED`): every
    feature not `AT_CUTOFF`, the purchase span and, for training rows, the label. Generated,
    as the view is, from `FEATURE_COLUMNS`, which lists the columns once for Python and SQL."""
    columns = (
        "customer_id",
        *(c for c in FEATURE_COLUMNS if c not in AT_CUTOFF),
        *PURCHASE_SPAN,
        *([LABEL] if labelled else []),
    )
    return f"SELECT {', '.join(columns)} FROM {source}"


def _view_sql(table: str, cutoff: datetime, labelled: bool) -> str:
    """`table` as a view of its stored columns: the features in `FEATURE_COLUMNS` order, those
    `AT_CUTOFF` computed at `cutoff`, then the purchase span, the label (training) or
    `features_as_of` (scoring), and the customer's bucket. Unsorted: readers that need an order sort by customer_id.
    Generated, not a file: a view cannot hold a parameter, so the cutoff is a TIMESTAMP
    literal, and the columns follow `FEATURE_COLUMNS`."""
    at = f"TIMESTAMP '{cutoff.isoformat(sep=' ')}'"
    features = ",\n    ".join(
        f"{AT_CUTOFF[c].replace('$cutoff', at)} AS {c}" if c in AT_CUTOFF else c
        for c in FEATURE_COLUMNS
    )
    last_column = LABEL if labelled else f"{at} AS features_as_of"
    return (
        f"CREATE OR REPLACE VIEW {table} AS\nSELECT customer_id,\n    {features},\n    "
        f"{', '.join(PURCHASE_SPAN)}, {last_column}, {buckets.COLUMN}\nFROM {STORED[table]}"
    )


WATERMARK_COLUMNS = "cutoff TIMESTAMP, definition VARCHAR"


def guard(table: str):
    """What another run refreshing `table` changes: its watermark (the fan-out's guard)."""
    return lambda conn: refresh.read_watermark(conn, WATERMARKS[table])


def training_snapshot(conn) -> refresh.FeatureWatermark | None:
    """What `gold.customer_features` was last computed with (its cutoff and the hash of its
    definitions and horizon), from its watermark; None when none is recorded."""
    return refresh.read_feature_watermark(conn, WATERMARKS[CUSTOMER_FEATURES])


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
    seen = refresh.read_feature_watermark(conn, WATERMARKS[table])
    after_load = refresh.plan_after_load(
        refresh.silver_loads(conn),
        seen.load if seen else None,
        table,
        table_exists(conn, table),
        full_refresh,
    )
    stored_exists = table_exists(conn, STORED[table])
    return refresh.plan_features(after_load, seen, STORED[table], stored_exists, cutoff, definition)


def plan_refresh(
    context, conn, table: str, cutoff: datetime, full_refresh: bool, horizon_days: int | None
) -> tuple[RefreshPlan, dict]:
    """How `table` reaches `cutoff` (with labels over `horizon_days` if given), and what its
    pieces and commit need. An append that would recompute more than half of the customers is
    planned as a full refresh: recomputing all of them then costs less."""
    assert cutoff.tzinfo is None, cutoff  # the view's TIMESTAMP literal would drop the offset
    definition = definition_hash(horizon_days)
    plan = _plan(conn, table, cutoff, definition, full_refresh)
    if plan.mode == Refresh.APPEND:
        conn.execute(
            f"CREATE OR REPLACE TEMP VIEW {SILVER_IN_BUCKET} AS SELECT * FROM {SILVER_TRANSACTIONS}"
        )
        conn.execute(
            sql("features/affected_customers"), _affected_params(plan, cutoff, horizon_days)
        )
        changed, customers = conn.execute(
            f"SELECT (SELECT count(*) FROM {AFFECTED}), (SELECT count(*) FROM {table})"
        ).fetchone()
        conn.execute(f"DROP TABLE {AFFECTED}")
        conn.execute(f"DROP VIEW {SILVER_IN_BUCKET}")
        if changed > customers / 2:
            reason = f"{plan.reason}; {changed:,} of {customers:,} changed"
            plan = dataclasses.replace(plan, mode=Refresh.FULL, reason=reason)
    context.log.info(f"{table}: {plan.mode} refresh: {plan.reason}")
    extra = {
        "table": table,
        "cutoff": cutoff,
        "definition": definition,
        "horizon_days": horizon_days,
    }
    return plan, extra


def _affected_params(plan: RefreshPlan, cutoff: datetime, horizon_days: int | None) -> dict:
    return {
        "since": plan.since,
        "previous_cutoff": plan.previous_cutoff,
        "cutoff": cutoff,
        **{f"window_{i}_days": days for i, days in enumerate(WINDOW_DAYS, start=1)},
        "horizon_days": horizon_days or 0,  # no label: the cutoff again
    }


def write_piece(context, conn, task: fanout.BucketTask) -> fanout.Piece:
    """The stored columns of the bucket's customers: all of them, or in an append those that
    can have changed."""
    extra = task.extra
    cutoff, horizon_days = extra["cutoff"], extra["horizon_days"]
    labelled = horizon_days is not None
    conn.execute(
        f"CREATE OR REPLACE TEMP VIEW {SILVER_IN_BUCKET} AS {task.at_snapshot(SILVER_TRANSACTIONS)}"
    )
    silver_rows = ALL_ROWS_SQL
    if task.plan.mode == Refresh.APPEND:
        params = _affected_params(task.plan, cutoff, horizon_days)
        conn.execute(sql("features/affected_customers"), params)
        conn.execute(sql("features/rows_to_recompute"))  # their rows, read once
        silver_rows = AFFECTED_ROWS_SQL
    conn.execute(silver_rows)
    conn.execute(sql("features/gaps"), {"cutoff": cutoff})  # temporary tables
    conn.execute(sql("features/fresh"), {"cutoff": cutoff})
    if labelled:
        horizon = {"cutoff": cutoff, "horizon_days": horizon_days}
        conn.execute(sql("features/returning_customers"), horizon)
        conn.execute(sql("features/labelled"))
    piece = fanout.write_piece(conn, task, _stored_sql(LABELLED if labelled else FRESH, labelled))
    for kind, temp in TEMPORARIES:
        conn.execute(f"DROP {kind} IF EXISTS {temp}")
    return piece


def commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    """In the commit's transaction: the stored rows (all anew, or the recomputed customers'
    replaced), the view at the cutoff, and the watermark."""
    plan, extra = planned.plan, planned.extra
    table, cutoff = extra["table"], extra["cutoff"]
    labelled = extra["horizon_days"] is not None
    if plan.mode != Refresh.UNCHANGED:
        if plan.mode == Refresh.FULL and table_exists(conn, table, views=False):
            conn.execute(f"DROP TABLE {table}")  # written as a table before the view
        fanout.commit_pieces(conn, STORED[table], plan.mode, pieces, planned.buckets)
        conn.execute(_view_sql(table, cutoff, labelled))
        # No silver load to remember: none is forgotten, and the next run is full.
        remembered = (*plan.remember, cutoff, extra["definition"]) if plan.remember else None
        refresh.remember(conn, WATERMARKS[table], remembered, WATERMARK_COLUMNS)
    recomputed = sum(p.rows for p in pieces)
    return {**table_metadata(conn, table), **plan.metadata(recomputed)}
