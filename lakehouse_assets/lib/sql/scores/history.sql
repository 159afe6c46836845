-- gold.churn_scores_history's rows of the scoring just written: every customer of
-- gold.churn_scores, with the ROC AUC that the model version's evaluation recorded
-- ($evaluation_roc_auc), so that its realized figures can be compared with it later.
SELECT
    scored_at,
    features_as_of,
    model_version,
    customer_id,
    churn_probability,
    $evaluation_roc_auc::DOUBLE AS evaluation_roc_auc
FROM gold.churn_scores
