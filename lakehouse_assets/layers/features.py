"""Features: per-customer inputs for the churn model, computed only from data up to a cutoff."""

import dagster as dg

from lakehouse_assets.layers.gold import gold_customer_summary
from lakehouse_assets.layers.silver import silver_transactions
from lakehouse_assets.resources import LakehouseDuckDB, rebuild_table
from lakehouse_assets.tables import CUSTOMER_FEATURES, SCORING_FEATURES, SILVER_TRANSACTIONS

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

# The spread of each customer's gaps between purchases up to $cutoff, staged in a temporary
# table first: it needs the purchases in order (a window), and in one statement with the other
# aggregates DuckDB ran out of memory at 100M transactions with the derived 1.5 GiB limit; alone,
# it spilled and took 54 s there.
GAPS = "purchase_gaps"
GAPS_SQL = f"""
CREATE OR REPLACE TEMP TABLE {GAPS} AS
SELECT customer_id,
    coalesce(max(gap_days), 0) AS max_gap_days,
    coalesce(stddev_samp(gap_days), 0) AS gap_std_days
FROM (
    SELECT customer_id,  -- the gap to the customer's previous purchase (NULL for the first)
        lead(age_days) OVER (PARTITION BY customer_id ORDER BY age_days) - age_days AS gap_days
    FROM (
        SELECT customer_id, date_diff('second', event_time, $cutoff) / 86400.0 AS age_days
        FROM {SILVER_TRANSACTIONS}
        WHERE event_time <= $cutoff
    )
)
GROUP BY customer_id
"""

# The one definition of the features: every customer with a purchase at or before $cutoff, from
# those purchases only. Training (`gold.customer_features`, with a label) and scoring
# (`gold.scoring_features`, at the latest event) both select from it, so they cannot drift apart.
FEATURES_AT_CUTOFF_SQL = f"""
-- purchases is read twice. NOT MATERIALIZED keeps each read a plain scan, so the sums of amounts
-- add rows in the same order as before: on the sample, equal data give equal features, which
-- churn_model's fingerprint needs to skip retraining (a materialized CTE is read in any order).
WITH purchases AS NOT MATERIALIZED (
    SELECT customer_id, amount, coalesce(quantity, 1) AS quantity,
        date_diff('second', event_time, $cutoff) / 86400.0 AS age_days
    FROM {SILVER_TRANSACTIONS}
    WHERE event_time <= $cutoff
),
latest AS (SELECT customer_id, min(age_days) AS latest_age FROM purchases GROUP BY customer_id),
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
        sum(quantity)::BIGINT AS quantity_total,  -- not HUGEINT: numpy has no int128
        avg(quantity) AS quantity_avg,
        count(*) FILTER (WHERE age_days <= 30) AS txn_last_30d,
        count(*) FILTER (WHERE age_days <= 90) AS txn_last_90d,
        count(*) FILTER (WHERE age_days <= 180) AS txn_last_180d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 30), 0) AS amount_last_30d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 90), 0) AS amount_last_90d,
        coalesce(sum(amount) FILTER (WHERE age_days <= 180), 0) AS amount_last_180d,
        count(*) FILTER (WHERE age_days > 90 AND age_days <= 180) AS txn_prev_90d,
        coalesce(sum(amount) FILTER (WHERE age_days > 90 AND age_days <= 180), 0) AS amount_prev_90d,
        -- The gap between the two most recent purchases, from aggregates that can spill
        -- (min(age_days, 2) keeps a list per customer and cannot): the latest age comes from
        -- `latest`; a tie at it means a gap of 0.
        min(age_days) FILTER (WHERE age_days > latest_age) AS second_latest_age,
        count(*) FILTER (WHERE age_days = latest_age) AS at_latest_age
    FROM purchases
    JOIN latest USING (customer_id)
    GROUP BY customer_id
)
SELECT
    customer_id,
    recency_days, tenure_days, frequency, active_days,
    monetary_total, monetary_avg, monetary_max, monetary_std,
    quantity_total, quantity_avg,
    txn_last_30d, txn_last_90d, txn_last_180d,
    amount_last_30d, amount_last_90d, amount_last_180d,
    CASE WHEN frequency > 1 THEN (tenure_days - recency_days) / (frequency - 1) ELSE 0 END
        AS mean_gap_days,
    CASE WHEN at_latest_age > 1 OR frequency = 1 THEN 0 ELSE second_latest_age - recency_days END
        AS last_gap_days,
    frequency * 30.0 / greatest(tenure_days, 1) AS purchases_per_30d,
    txn_last_90d - txn_prev_90d AS txn_trend_90d,
    amount_last_90d - amount_prev_90d AS amount_trend_90d,
    -- The customer's own rhythm: how many of their usual gaps since the last purchase, how
    -- regular the gaps are, what share of the history is recent. With one purchase there is no
    -- gap yet: the ratios use the tenure instead (1 once tenure >= 1 day) and the spreads are 0.
    recency_days / greatest(CASE WHEN frequency > 1 THEN mean_gap_days ELSE tenure_days END, 1)
        AS recency_to_mean_gap,
    recency_days / greatest(CASE WHEN frequency > 1 THEN max_gap_days ELSE tenure_days END, 1)
        AS recency_to_max_gap,
    max_gap_days,
    gap_std_days,
    CASE WHEN mean_gap_days > 0 THEN gap_std_days / mean_gap_days ELSE 0 END AS gap_cv,
    txn_last_90d / frequency AS txn_share_90d,
    txn_last_180d / frequency AS txn_share_180d,
    CASE WHEN monetary_total > 0 THEN amount_last_90d / monetary_total ELSE 0 END
        AS amount_share_90d,
    CASE WHEN monetary_total > 0 THEN amount_last_180d / monetary_total ELSE 0 END
        AS amount_share_180d
FROM per_customer
JOIN {GAPS} USING (customer_id)
"""

# Training rows: the features at the cutoff, and the label, which alone looks past it. Two
# statements: as one (features, label join and sort), at 100M transactions (10M customers) DuckDB
# ran out of memory with 1.5 GiB; as two, the same work spilled and took 56 s + 13 s.
FEATURES_STAGING = "features_at_cutoff"
FEATURES_SQL = f"CREATE OR REPLACE TEMP TABLE {FEATURES_STAGING} AS {FEATURES_AT_CUTOFF_SQL}"
LABELLED_FEATURES_SQL = f"""
CREATE OR REPLACE TABLE {CUSTOMER_FEATURES} AS
WITH active_after_cutoff AS (
    SELECT DISTINCT customer_id
    FROM {SILVER_TRANSACTIONS}
    WHERE event_time > $cutoff AND event_time <= $cutoff + to_days($horizon_days)
)
SELECT f.*, CASE WHEN a.customer_id IS NULL THEN 1 ELSE 0 END AS {LABEL}
FROM {FEATURES_STAGING} f
LEFT JOIN active_after_cutoff a USING (customer_id)
ORDER BY f.customer_id
"""


def latest_event(conn):
    """The latest `event_time` in silver; fails when silver is empty."""
    latest = conn.execute(f"SELECT max(event_time) FROM {SILVER_TRANSACTIONS}").fetchone()[0]
    if latest is None:
        raise dg.Failure(
            f"{SILVER_TRANSACTIONS} is empty: no features to compute", allow_retries=False
        )
    return latest


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
    30 numeric features (recency, frequency, monetary value, tenure, 30/90/180-day activity,
    inter-purchase gaps, 90-day trends, and the customer's own rhythm: recency in units of their
    mean and longest gap, the spread of gaps, the share of purchases and spend in the last
    90/180 days) from data up to the cutoff only, and the label
    `churned` (1 = no purchase within `horizon_days` after the cutoff)."""
    if config.horizon_days < 1:
        raise dg.Failure(
            f"horizon_days must be at least 1, got {config.horizon_days}", allow_retries=False
        )
    with duckdb.get_connection() as conn:
        latest = latest_event(conn)
        cutoff = conn.execute(
            "SELECT $latest::TIMESTAMP - to_days($h)", {"latest": latest, "h": config.horizon_days}
        ).fetchone()[0]
        context.log.info(
            f"Feature cutoff {cutoff} (latest event {latest} - {config.horizon_days} days)"
        )
        conn.execute(GAPS_SQL, {"cutoff": cutoff})  # temporary tables: nothing stored yet
        conn.execute(FEATURES_SQL, {"cutoff": cutoff})
        params = {"cutoff": cutoff, "horizon_days": config.horizon_days}
        metadata = rebuild_table(conn, CUSTOMER_FEATURES, LABELLED_FEATURES_SQL, params, context)
        conn.execute(f"DROP TABLE {FEATURES_STAGING}")
        conn.execute(f"DROP TABLE {GAPS}")
        churn_rate = conn.execute(f"SELECT avg({LABEL}) FROM {CUSTOMER_FEATURES}").fetchone()[0]
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "cutoff": dg.MetadataValue.text(str(cutoff)),
            "horizon_days": config.horizon_days,
            "churn_rate": float(churn_rate or 0.0),
            "feature_count": len(FEATURE_COLUMNS),
        }
    )


SCORING_SQL = f"""
CREATE OR REPLACE TABLE {SCORING_FEATURES} AS
SELECT *, $cutoff::TIMESTAMP AS features_as_of FROM ({FEATURES_AT_CUTOFF_SQL}) ORDER BY customer_id
"""


@dg.asset(deps=[silver_transactions], group_name="features", kinds={"duckdb"}, pool="duckdb")
def scoring_features(
    context: dg.AssetExecutionContext, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`gold.scoring_features`: the same 30 features as `gold.customer_features`, from the same
    SQL, for every customer with history, at cutoff = the latest `event_time` in silver (no
    label) and the cutoff as `features_as_of`: what the champion scores to rank the customers at risk now."""
    with duckdb.get_connection() as conn:
        cutoff = latest_event(conn)
        context.log.info(f"Scoring features as of {cutoff} (the latest event in silver)")
        conn.execute(GAPS_SQL, {"cutoff": cutoff})  # a temporary table: nothing stored yet
        metadata = rebuild_table(conn, SCORING_FEATURES, SCORING_SQL, {"cutoff": cutoff}, context)
        conn.execute(f"DROP TABLE {GAPS}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "features_as_of": dg.MetadataValue.text(str(cutoff)),
            "feature_count": len(FEATURE_COLUMNS),
        }
    )
