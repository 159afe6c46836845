-- Every past scoring in gold.churn_scores_history: its features' cutoff, the model version,
-- when it was scored, its customers, the ROC AUC its evaluation recorded, and the day from which
-- the data cover its horizon ($horizon_days), with whether silver's latest event reaches it.
WITH latest AS (
    SELECT
        max(event_time) AS latest_event,
        to_days($horizon_days) AS horizon
    FROM silver.transactions
)

SELECT
    history.features_as_of,
    history.model_version,
    max(history.scored_at) AS scored_at,
    count(*) AS customers,
    any_value(history.evaluation_roc_auc) AS evaluation_roc_auc,
    history.features_as_of + any_value(latest.horizon) AS covered_from,
    coalesce(covered_from <= any_value(latest.latest_event), false) AS covered
FROM gold.churn_scores_history AS history
CROSS JOIN latest
GROUP BY history.features_as_of, history.model_version
ORDER BY
    history.features_as_of,
    try_cast(history.model_version AS INTEGER) NULLS LAST,
    history.model_version
