-- gold.churn_scores' rows: every customer of scored_customers (customer_id, churn_probability,
-- bucket) with its risk decile (1 = the 10% most at risk), the model version that scored it
-- ($model_version), the runtime that scored it ($scored_by), the features' cutoff
-- ($features_as_of) and when it was scored ($scored_at).
-- The noqa: the columns in the order a reader expects, the decile beside the probability.
SELECT  -- noqa: ST06
    customer_id,
    churn_probability,
    bucket,
    ntile(10) OVER (ORDER BY churn_probability DESC, customer_id ASC) AS risk_decile,
    $model_version AS model_version,
    $scored_by AS scored_by,
    $features_as_of::TIMESTAMP AS features_as_of,
    $scored_at::TIMESTAMP AS scored_at
FROM scored_customers
