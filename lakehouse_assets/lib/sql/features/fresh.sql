-- features_fresh: the one definition of the stored feature columns, for every customer with a
-- purchase at or before $cutoff, from those purchases only (silver_rows) and purchase_gaps.
-- Training (gold.customer_features, with a label) and scoring (gold.scoring_features) both use
-- it, so they cannot drift apart.
CREATE OR REPLACE TEMP TABLE features_fresh AS
WITH purchases AS (
    SELECT
        customer_id,
        event_time,
        amount,
        coalesce(quantity, 1) AS quantity,
        date_diff('second', event_time, $cutoff) / 86400.0 AS age_days
    FROM silver_rows
    WHERE event_time <= $cutoff
),

per_customer AS (
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
        coalesce(sum(amount) FILTER (WHERE age_days > 90 AND age_days <= 180), 0)
            AS amount_prev_90d
    FROM purchases
    GROUP BY customer_id
)

SELECT
    per_customer.customer_id,
    per_customer.frequency,
    purchase_gaps.active_days,
    per_customer.monetary_total,
    per_customer.monetary_avg,
    per_customer.monetary_max,
    per_customer.monetary_std,
    per_customer.quantity_total,
    per_customer.quantity_avg,
    per_customer.txn_last_30d,
    per_customer.txn_last_90d,
    per_customer.txn_last_180d,
    per_customer.amount_last_30d,
    per_customer.amount_last_90d,
    per_customer.amount_last_180d,
    CASE
        WHEN per_customer.frequency > 1
            THEN
                date_diff('second', per_customer.first_purchase_at, per_customer.last_purchase_at)
                / 86400.0 / (per_customer.frequency - 1)
        ELSE 0
    END AS mean_gap_days,
    purchase_gaps.last_gap_days,
    per_customer.txn_last_90d - per_customer.txn_prev_90d AS txn_trend_90d,
    per_customer.amount_last_90d - per_customer.amount_prev_90d AS amount_trend_90d,
    purchase_gaps.max_gap_days,
    purchase_gaps.gap_std_days,
    CASE
        WHEN mean_gap_days > 0 THEN purchase_gaps.gap_std_days / mean_gap_days ELSE 0
    END AS gap_cv,
    per_customer.txn_last_90d / per_customer.frequency AS txn_share_90d,
    per_customer.txn_last_180d / per_customer.frequency AS txn_share_180d,
    CASE
        WHEN per_customer.monetary_total > 0
            THEN per_customer.amount_last_90d / per_customer.monetary_total
        ELSE 0
    END AS amount_share_90d,
    CASE
        WHEN per_customer.monetary_total > 0
            THEN per_customer.amount_last_180d / per_customer.monetary_total
        ELSE 0
    END AS amount_share_180d,
    per_customer.first_purchase_at,
    per_customer.last_purchase_at
FROM per_customer
INNER JOIN purchase_gaps USING (customer_id)
