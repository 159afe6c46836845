"""Features: per-customer inputs for the churn model, computed only from data up to a cutoff."""

import time

import dagster as dg

from lakehouse_assets.layers.gold import gold_customer_summary
from lakehouse_assets.layers.silver import silver_transactions
from lakehouse_assets.metadata import log_progress, table_metadata
from lakehouse_assets.resources import LakehouseDuckDB, transaction

TABLE = "gold.customer_features"
LABEL = "churned"
FEATURE_COLUMNS = (
    "recency_days", "tenure_days", "frequency", "active_days",
    "monetary_total", "monetary_avg", "monetary_max", "monetary_std",
    "quantity_total", "quantity_avg",
    "txn_last_30d", "txn_last_90d", "txn_last_180d",
    "amount_last_30d", "amount_last_90d", "amount_last_180d",
    "mean_gap_days", "last_gap_days", "purchases_per_30d",
    "txn_trend_90d", "amount_trend_90d",
)  # fmt: skip

# `history` holds only rows at or before the cutoff; the label alone looks past it.
FEATURES_SQL = f"""
CREATE OR REPLACE TABLE {TABLE} AS
WITH history AS (
    SELECT customer_id, amount, coalesce(quantity, 1) AS quantity,
        date_diff('second', event_time, $cutoff) / 86400.0 AS age_days
    FROM silver.transactions
    WHERE event_time <= $cutoff
),
per_customer AS (
    SELECT
        customer_id,
        min(age_days) AS recency_days,
        max(age_days) AS tenure_days,
        count(*) AS frequency,
        count(DISTINCT floor(age_days)) AS active_days,
        sum(amount) AS monetary_total,
        avg(amount) AS monetary_avg,
        max(amount) AS monetary_max,
        coalesce(stddev_samp(amount), 0) AS monetary_std,
        sum(quantity) AS quantity_total,
        avg(quantity) AS quantity_avg,
        count(*) FILTER (WHERE age_days <= 30) AS txn_last_30d,
        count(*) FILTER (WHERE age_days <= 90) AS txn_last_90d,
        count(*) FILTER (WHERE age_days <= 180) AS txn_last_180d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 30), 0) AS amount_last_30d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 90), 0) AS amount_last_90d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 180), 0) AS amount_last_180d,
        count(*) FILTER (WHERE age_days > 90 AND age_days <= 180) AS txn_prev_90d,
        coalesce(sum(amount) FILTER (WHERE age_days > 90 AND age_days <= 180), 0) AS amount_prev_90d,
        min(age_days, 2) AS two_most_recent
    FROM history
    GROUP BY customer_id
),
active_after_cutoff AS (
    SELECT DISTINCT customer_id
    FROM silver.transactions
    WHERE event_time > $cutoff AND event_time <= $cutoff + to_days($horizon_days)
)
SELECT
    p.customer_id,
    recency_days, tenure_days, frequency, active_days,
    monetary_total, monetary_avg, monetary_max, monetary_std,
    quantity_total, quantity_avg,
    txn_last_30d, txn_last_90d, txn_last_180d,
    amount_last_30d, amount_last_90d, amount_last_180d,
    CASE WHEN frequency > 1 THEN (tenure_days - recency_days) / (frequency - 1) ELSE 0 END
        AS mean_gap_days,
    CASE WHEN frequency > 1 THEN two_most_recent[2] - two_most_recent[1] ELSE 0 END
        AS last_gap_days,
    frequency * 30.0 / greatest(tenure_days, 1) AS purchases_per_30d,
    txn_last_90d - txn_prev_90d AS txn_trend_90d,
    amount_last_90d - amount_prev_90d AS amount_trend_90d,
    CASE WHEN a.customer_id IS NULL THEN 1 ELSE 0 END AS {LABEL}
FROM per_customer p
LEFT JOIN active_after_cutoff a USING (customer_id)
ORDER BY p.customer_id
"""


class FeaturesConfig(dg.Config):
    horizon_days: int = 90
    """Churn horizon: a customer churned when they bought nothing in this many days after the
    cutoff. The cutoff is the latest `event_time` in silver minus the horizon."""


@dg.asset(
    deps=[gold_customer_summary, silver_transactions],
    group_name="features",
    kinds={"duckdb"},
    pool="duckdb",
)
def customer_features(
    context: dg.AssetExecutionContext, config: FeaturesConfig, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`gold.customer_features`: one row per customer with a purchase at or before the cutoff:
    21 numeric features (recency, frequency, monetary value, tenure, 30/90/180-day activity,
    inter-purchase gaps, 90-day trends) from data up to the cutoff only, and the label
    `churned` (1 = no purchase within `horizon_days` after the cutoff)."""
    if config.horizon_days < 1:
        raise dg.Failure(
            f"horizon_days must be at least 1, got {config.horizon_days}", allow_retries=False
        )
    with duckdb.get_connection() as conn:
        latest = conn.execute("SELECT max(event_time) FROM silver.transactions").fetchone()[0]
        if latest is None:
            raise dg.Failure(
                "silver.transactions is empty: no features to compute", allow_retries=False
            )
        cutoff = conn.execute(
            "SELECT $latest::TIMESTAMP - to_days($h)", {"latest": latest, "h": config.horizon_days}
        ).fetchone()[0]
        context.log.info(
            f"Feature cutoff {cutoff} (latest event {latest} - {config.horizon_days} days)"
        )
        started = time.perf_counter()
        with transaction(conn):
            conn.execute(FEATURES_SQL, {"cutoff": cutoff, "horizon_days": config.horizon_days})
        metadata = table_metadata(conn, TABLE)
        log_progress(context, f"{TABLE}: computed", metadata["dagster/row_count"].value, started)
        churn_rate = conn.execute(f"SELECT avg({LABEL}) FROM {TABLE}").fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "cutoff": dg.MetadataValue.text(str(cutoff)),
            "horizon_days": config.horizon_days,
            "churn_rate": float(churn_rate or 0.0),
            "feature_count": len(FEATURE_COLUMNS),
        }
    )
