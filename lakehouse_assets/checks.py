"""Asset checks on the data layers. Blocking checks stop downstream work on bad data."""

import dagster as dg

from lakehouse_assets import acceptance
from lakehouse_assets.layers.bronze import bronze_transactions
from lakehouse_assets.layers.features import (
    FEATURE_COLUMNS,
    LABEL,
    customer_features,
)
from lakehouse_assets.layers.gold import gold_customer_summary
from lakehouse_assets.layers.silver import silver_transactions
from lakehouse_assets.model.churn_scores import churn_scores
from lakehouse_assets.model.drift import scoring_features_drift
from lakehouse_assets.resources import LakehouseDuckDB, LandingZone
from lakehouse_assets.tables import (
    BRONZE_TRANSACTIONS,
    CHURN_SCORES,
    CUSTOMER_FEATURES,
    GOLD_SUMMARY,
    SCORING_FEATURES,
    SILVER_REJECTED,
    SILVER_TRANSACTIONS,
)

BRONZE_NOT_EMPTY = "bronze_not_empty"
SILVER_NOT_EMPTY = "silver_not_empty"
SILVER_NO_NULL_KEYS = "silver_no_null_keys"
SILVER_CONSERVES_ROWS = "silver_conserves_bronze_rows"
LANDED_FILES_READABLE = "silver_landed_files_have_valid_rows"
NEW_FILES_MOSTLY_ACCEPTED = "silver_new_files_mostly_accepted"
GOLD_ONE_ROW_PER_CUSTOMER = "gold_one_row_per_customer"
FEATURES_ONE_ROW_PER_CUSTOMER = "features_one_row_per_customer"
FEATURES_FINITE = "features_finite"
FEATURES_BOTH_CLASSES = "features_both_label_classes"
SCORES_ONE_ROW_PER_CUSTOMER = "churn_scores_one_row_per_customer"
SCORES_ARE_PROBABILITIES = "churn_scores_are_probabilities"


def _scalar(duckdb: LakehouseDuckDB, sql: str):
    with duckdb.get_connection() as conn:
        return conn.execute(sql).fetchone()


@dg.asset_check(asset=bronze_transactions, name=BRONZE_NOT_EMPTY, blocking=True, pool="duckdb")
def bronze_not_empty(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """bronze.transactions holds at least one row."""
    (rows,) = _scalar(duckdb, f"SELECT count(*) FROM {BRONZE_TRANSACTIONS}")
    return dg.AssetCheckResult(passed=rows > 0, metadata={"rows": rows})


@dg.asset_check(asset=silver_transactions, name=SILVER_NOT_EMPTY, blocking=True, pool="duckdb")
def silver_not_empty(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """silver.transactions holds at least one valid row."""
    (rows,) = _scalar(duckdb, f"SELECT count(*) FROM {SILVER_TRANSACTIONS}")
    return dg.AssetCheckResult(passed=rows > 0, metadata={"rows": rows})


@dg.asset_check(asset=silver_transactions, name=SILVER_NO_NULL_KEYS, blocking=True, pool="duckdb")
def silver_no_null_keys(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """No silver row lacks customer_id, event_time or amount."""
    (nulls,) = _scalar(
        duckdb,
        f"SELECT count(*) FROM {SILVER_TRANSACTIONS} "
        "WHERE customer_id IS NULL OR event_time IS NULL OR amount IS NULL",
    )
    return dg.AssetCheckResult(passed=nulls == 0, metadata={"rows_with_null_keys": nulls})


@dg.asset_check(asset=silver_transactions, name=SILVER_CONSERVES_ROWS, blocking=True, pool="duckdb")
def silver_conserves_bronze_rows(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """rows(bronze) = rows(silver) + rows(rejected): nothing disappears silently."""
    bronze, silver, rejected = _scalar(
        duckdb,
        f"SELECT (SELECT count(*) FROM {BRONZE_TRANSACTIONS}), (SELECT count(*) FROM {SILVER_TRANSACTIONS}),"
        f" (SELECT count(*) FROM {SILVER_REJECTED})",
    )
    return dg.AssetCheckResult(
        passed=bronze == silver + rejected,
        metadata={"bronze_rows": bronze, "silver_rows": silver, "rejected_rows": rejected,
                  "unaccounted_rows": bronze - silver - rejected},
    )  # fmt: skip


@dg.asset_check(asset=silver_transactions, name=LANDED_FILES_READABLE, blocking=True, pool="duckdb")
def silver_landed_files_have_valid_rows(
    context: dg.AssetCheckExecutionContext, duckdb: LakehouseDuckDB, landing: LandingZone
) -> dg.AssetCheckResult:
    """Every file in the landing folder has at least one valid row in the version silver holds:
    a file whose every row was rejected was most likely misread (decimal commas, another
    separator, no header), so the run stops until it is fixed or removed from the folder."""
    landed = set(landing.relative_data_files())
    with duckdb.get_connection() as conn:
        bad = acceptance.without_valid_rows(conn, landed)
    problems = [
        f"every row of landing file {f.source_file} ({f.rows:,} rows) was rejected: {f.reasons()}."
        + "".join(f" {hint}." for hint in acceptance.hints(f))
        for f in bad
    ]
    if problems:
        description = (
            " ".join(p[0].upper() + p[1:] for p in problems)
            + " Its rows stay in bronze.transactions and silver.rejected_transactions. Fix the "
            "file and land it under the same name (a changed file replaces its rows), or remove "
            "it from the landing folder; then rerun."
        )
        context.log.error(description)
    else:
        description = f"Each of the {len(landed)} landed file(s) has valid rows."
    return dg.AssetCheckResult(
        passed=not bad,
        description=description,
        metadata={
            "landed_files": len(landed),
            "files_without_valid_rows": dg.MetadataValue.md(acceptance.markdown(bad)),
        },
    )


@dg.asset_check(asset=silver_transactions, name=NEW_FILES_MOSTLY_ACCEPTED, pool="duckdb")
def silver_new_files_mostly_accepted(
    context: dg.AssetCheckExecutionContext, duckdb: LakehouseDuckDB
) -> dg.AssetCheckResult:
    """Warns about the files of the latest silver load more than 10% of whose rows were rejected
    (any reason, copies included): `silver.file_acceptance` has the reasons and an example of
    each."""
    with duckdb.get_connection() as conn:
        load, files = acceptance.latest_load(conn)
    flagged = acceptance.mostly_rejected(files)
    if flagged:
        description = (
            f"{len(flagged)} file(s) of silver load {load} had more than "
            f"{acceptance.WARN_REJECTED_SHARE:.0%} of their rows rejected: "
            + "; ".join(
                f"{f.source_file} {f.rejected_share:.0%} ({f.reasons()})" for f in flagged[:5]
            )
            + (f"; and {len(flagged) - 5} more" if len(flagged) > 5 else "")
        )
        context.log.warning(description)
    else:
        description = (
            f"{len(files)} new file(s) in silver load {load}, none with more than "
            f"{acceptance.WARN_REJECTED_SHARE:.0%} of their rows rejected."
        )
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "silver_load_id": load,
            "new_files": len(files),
            "files_mostly_rejected": dg.MetadataValue.md(acceptance.markdown(flagged)),
        },
    )


@dg.asset_check(
    asset=gold_customer_summary, name=GOLD_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb"
)
def gold_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.customer_summary has exactly one row for each customer in silver."""
    rows, distinct, silver_customers = _scalar(
        duckdb,
        "SELECT count(*), count(DISTINCT customer_id), "
        f"(SELECT count(DISTINCT customer_id) FROM {SILVER_TRANSACTIONS}) FROM {GOLD_SUMMARY}",
    )
    return dg.AssetCheckResult(
        passed=rows == distinct == silver_customers and rows > 0,
        metadata={
            "rows": rows,
            "distinct_customers": distinct,
            "silver_customers": silver_customers,
        },
    )


@dg.asset_check(
    asset=customer_features, name=FEATURES_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb"
)
def features_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.customer_features has exactly one, non-empty, row per customer."""
    rows, distinct = _scalar(
        duckdb, f"SELECT count(*), count(DISTINCT customer_id) FROM {CUSTOMER_FEATURES}"
    )
    return dg.AssetCheckResult(
        passed=rows == distinct and rows > 0,
        metadata={"rows": rows, "distinct_customers": distinct},
    )


@dg.asset_check(asset=customer_features, name=FEATURES_FINITE, blocking=True, pool="duckdb")
def features_finite(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """No feature value is NULL, NaN or infinite."""
    bad = " + ".join(
        f"count(*) FILTER (WHERE {c} IS NULL OR NOT isfinite({c}::DOUBLE))" for c in FEATURE_COLUMNS
    )
    (bad_values,) = _scalar(duckdb, f"SELECT {bad} FROM {CUSTOMER_FEATURES}")
    return dg.AssetCheckResult(passed=bad_values == 0, metadata={"non_finite_values": bad_values})


@dg.asset_check(asset=customer_features, name=FEATURES_BOTH_CLASSES, blocking=True, pool="duckdb")
def features_both_label_classes(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """Both label classes (churned and retained) are present, so a model can be trained."""
    churned, retained = _scalar(
        duckdb,
        f"SELECT count(*) FILTER (WHERE {LABEL} = 1), count(*) FILTER (WHERE {LABEL} = 0) "
        f"FROM {CUSTOMER_FEATURES}",
    )
    return dg.AssetCheckResult(
        passed=churned > 0 and retained > 0, metadata={"churned": churned, "retained": retained}
    )


@dg.asset_check(asset=churn_scores, name=SCORES_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb")
def churn_scores_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.churn_scores has exactly one row for each customer of gold.scoring_features."""
    rows, distinct, scoring, unscored = _scalar(
        duckdb,
        f"SELECT count(*), count(DISTINCT customer_id), (SELECT count(*) FROM {SCORING_FEATURES}), "
        f"(SELECT count(*) FROM {SCORING_FEATURES} ANTI JOIN {CHURN_SCORES} USING (customer_id)) "
        f"FROM {CHURN_SCORES}",
    )
    return dg.AssetCheckResult(
        passed=rows == distinct == scoring and unscored == 0 and rows > 0,
        metadata={
            "rows": rows,
            "distinct_customers": distinct,
            "scoring_customers": scoring,
            "scoring_customers_without_score": unscored,
        },
    )


@dg.asset_check(asset=churn_scores, name=SCORES_ARE_PROBABILITIES, blocking=True, pool="duckdb")
def churn_scores_are_probabilities(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """Every churn_probability is a number in [0, 1] and every risk_decile is in 1..10."""
    bad_probability, bad_decile = _scalar(
        duckdb,
        "SELECT count(*) FILTER (WHERE churn_probability IS NULL OR NOT isfinite(churn_probability)"
        " OR churn_probability < 0 OR churn_probability > 1), "
        f"count(*) FILTER (WHERE risk_decile NOT BETWEEN 1 AND 10) FROM {CHURN_SCORES}",
    )
    return dg.AssetCheckResult(
        passed=bad_probability == 0 and bad_decile == 0,
        metadata={"bad_probabilities": bad_probability, "bad_deciles": bad_decile},
    )


data_checks = [
    bronze_not_empty,
    silver_not_empty,
    silver_no_null_keys,
    silver_conserves_bronze_rows,
    silver_landed_files_have_valid_rows,
    silver_new_files_mostly_accepted,
    gold_one_row_per_customer,
    features_one_row_per_customer,
    features_finite,
    features_both_label_classes,
    churn_scores_one_row_per_customer,
    churn_scores_are_probabilities,
    scoring_features_drift,
]
