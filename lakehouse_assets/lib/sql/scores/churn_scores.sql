-- gold.churn_scores: every customer of scored_customers (customer_id, churn_probability) with
-- its risk decile (1 = the 10% most at risk), the model version that scored it ($model_version),
-- the features' cutoff ($features_as_of) and when it was scored ($scored_at).
CREATE OR REPLACE TABLE gold.churn_scores AS
SELECT
    customer_id,
    churn_probability,
    ntile(10) OVER (ORDER BY churn_probability DESC, customer_id ASC) AS risk_decile,
    $model_version AS model_version,
    $features_as_of::TIMESTAMP AS features_as_of,
    $scored_at::TIMESTAMP AS scored_at
FROM scored_customers
ORDER BY churn_probability DESC, customer_id ASC
