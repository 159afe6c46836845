"""Every DuckDB table of the lakehouse, named once, with the asset that writes it."""

import re

BRONZE_TRANSACTIONS = "bronze.transactions"
BRONZE_FILES = "bronze.ingested_files"
SILVER_TRANSACTIONS = "silver.transactions"
SILVER_REJECTED = "silver.rejected_transactions"
SILVER_FILES_SEEN = "silver.bronze_files_seen"
SILVER_LOADS = "silver.loads"
SILVER_FILE_ACCEPTANCE = "silver.file_acceptance"
SILVER_BUCKETING = "silver.bucketing"
GOLD_SUMMARY = "gold.customer_summary"
GOLD_SUMMARY_WATERMARK = "gold.customer_summary_watermark"
CUSTOMER_FEATURES = "gold.customer_features"
SCORING_FEATURES = "gold.scoring_features"
CUSTOMER_FEATURES_STORED = "gold.customer_features_stored"
SCORING_FEATURES_STORED = "gold.scoring_features_stored"
CUSTOMER_FEATURES_WATERMARK = "gold.customer_features_watermark"
SCORING_FEATURES_WATERMARK = "gold.scoring_features_watermark"
CHURN_SCORES = "gold.churn_scores"
CHURN_SCORES_HISTORY = "gold.churn_scores_history"
CHURN_SCORES_OUTCOMES = "gold.churn_scores_outcomes"

# Table -> the asset that writes it, in lineage order.
WRITTEN_BY = {
    BRONZE_TRANSACTIONS: "bronze_transactions",
    BRONZE_FILES: "bronze_transactions",
    SILVER_TRANSACTIONS: "silver_transactions",
    SILVER_REJECTED: "silver_transactions",
    SILVER_FILES_SEEN: "silver_transactions",
    SILVER_LOADS: "silver_transactions",
    SILVER_FILE_ACCEPTANCE: "silver_transactions",
    SILVER_BUCKETING: "silver_transactions",
    GOLD_SUMMARY: "gold_customer_summary",
    GOLD_SUMMARY_WATERMARK: "gold_customer_summary",
    CUSTOMER_FEATURES: "customer_features",
    SCORING_FEATURES: "scoring_features",
    CUSTOMER_FEATURES_STORED: "customer_features",
    SCORING_FEATURES_STORED: "scoring_features",
    CUSTOMER_FEATURES_WATERMARK: "customer_features",
    SCORING_FEATURES_WATERMARK: "scoring_features",
    CHURN_SCORES: "churn_scores",
    CHURN_SCORES_HISTORY: "churn_scores",
    CHURN_SCORES_OUTCOMES: "churn_scores_outcomes",
}

_MISSING = re.compile(r'Table with name "?([\w.]+)"? does not exist')


def missing_table(message: str, exists) -> str | None:
    """The lakehouse table that a DuckDB "does not exist" error is about, or None. `exists(table)`
    tells which of several same-named tables (bronze.transactions, silver.transactions) is the
    missing one when DuckDB names the table without its schema."""
    match = _MISSING.search(message)
    if match is None:
        return None
    name = match.group(1)
    candidates = [t for t in WRITTEN_BY if name in (t, t.split(".")[1])]
    return next((t for t in candidates if not exists(t)), None)
