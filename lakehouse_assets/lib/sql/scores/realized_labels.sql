-- The customers of one past scoring ($features_as_of, $model_version) in
-- gold.churn_scores_history, with the score given then and the label the data now give:
-- churned (1) when silver has no purchase of theirs within $horizon_days after
-- features_as_of, as features/returning_customers.sql labels the training customers.
WITH scored AS (
    SELECT
        customer_id,
        churn_probability
    FROM gold.churn_scores_history
    WHERE features_as_of = $features_as_of AND model_version = $model_version
),

returned AS (
    SELECT DISTINCT customer_id
    FROM silver.transactions
    WHERE
        event_time > $features_as_of
        AND event_time <= $features_as_of::TIMESTAMP + to_days($horizon_days)
)

SELECT
    scored.churn_probability,
    CASE WHEN returned.customer_id IS NULL THEN 1 ELSE 0 END AS churned
FROM scored
LEFT JOIN returned ON scored.customer_id = returned.customer_id
