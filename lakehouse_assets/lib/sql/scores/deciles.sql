-- Per risk decile of gold.churn_scores: its customers and their churn probabilities.
SELECT
    risk_decile,
    count(*) AS customers,
    min(churn_probability) AS min_probability,
    avg(churn_probability) AS mean_probability,
    max(churn_probability) AS max_probability
FROM gold.churn_scores
GROUP BY risk_decile
ORDER BY risk_decile
