"""`churn_scores_outcomes`: how the champion's past scores turned out, once the data tell."""

from typing import Any

import dagster as dg

from lakehouse_assets.lib.metadata import markdown_rows, table_exists, table_metadata
from lakehouse_assets.lib.model.outcomes import (
    COLUMNS,
    REALIZED_ROC_AUC_MARGIN,
    as_arrow,
    no_figures_yet,
    realized,
    realized_roc_auc_plot,
)
from lakehouse_assets.lib.model.plots import markdown_image
from lakehouse_assets.lib.resources import LakehouseDuckDB, transaction
from lakehouse_assets.lib.tables import (
    CHURN_SCORES_HISTORY,
    CHURN_SCORES_OUTCOMES,
    SILVER_TRANSACTIONS,
)

REALIZED_ROC_AUC = "churn_scores_realized_roc_auc"


class OutcomesConfig(dg.Config):
    horizon_days: int = 90
    """The churn horizon the scores predict: set it to customer_features' `horizon_days`."""


@dg.asset(
    deps=["churn_scores", "silver_transactions"],
    group_name="model",
    kinds={"duckdb"},
    pool="duckdb",
)
def churn_scores_outcomes(
    context: dg.AssetExecutionContext, config: OutcomesConfig, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`gold.churn_scores_outcomes`: every past scoring in `gold.churn_scores_history`, and for
    those whose horizon the data now cover, how its scores turned out. A customer scored at
    `features_as_of` churned when silver has no purchase of theirs in the horizon after it, as
    the training labels are made. Realized ROC AUC, Brier score and top-decile capture, by model
    version, beside the ROC AUC the version's evaluation recorded: the evaluation measured the
    model once, on held-out customers; this measures the scores it gave in production."""
    if config.horizon_days < 1:
        raise dg.Failure(
            f"horizon_days must be at least 1, got {config.horizon_days}", allow_retries=False
        )
    with duckdb.get_connection() as conn:
        if not table_exists(conn, CHURN_SCORES_HISTORY):
            raise dg.Failure(
                f"{CHURN_SCORES_HISTORY} does not exist yet: materialize churn_scores first.",
                allow_retries=False,
            )
        with transaction(conn):  # one snapshot read, one written
            scorings = realized(conn, config.horizon_days)
            latest_event = conn.execute(
                f"SELECT max(event_time) FROM {SILVER_TRANSACTIONS}"
            ).fetchone()[0]
            conn.register("outcomes_rows", as_arrow(scorings))
            try:
                conn.execute(
                    f"CREATE OR REPLACE TABLE {CHURN_SCORES_OUTCOMES} AS SELECT * FROM outcomes_rows"
                )
            finally:
                conn.unregister("outcomes_rows")
        table = table_metadata(conn, CHURN_SCORES_OUTCOMES)
    judged = [s for s in scorings if s.roc_auc is not None]
    metadata: dict[str, Any] = {
        **table,
        "horizon_days": config.horizon_days,
        "scorings": len(scorings),
        "scorings_judged": len(judged),
        "by_scoring": dg.MetadataValue.md(
            markdown_rows(list(COLUMNS), [s.row() for s in scorings])
        ),
    }
    if not judged:
        why = no_figures_yet(scorings, latest_event)
        context.log.info(why)
        return dg.MaterializeResult(metadata={**metadata, "realized": dg.MetadataValue.text(why)})
    latest = max(judged, key=lambda s: (s.features_as_of, s.scored_at))
    context.log.info(
        f"Scores of version {latest.model_version} at {latest.features_as_of}: realized ROC AUC "
        f"{latest.roc_auc:.4f} (its evaluation: {latest.evaluation_roc_auc}), churn rate "
        f"{latest.churn_rate:.3f} against a mean probability of {latest.mean_probability:.3f}"
    )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "realized_roc_auc": latest.roc_auc,
            "realized_brier": latest.brier,
            "realized_top_decile_capture": latest.top_decile_capture,
            "realized_churn_rate": latest.churn_rate,
            **(
                {"evaluation_roc_auc": latest.evaluation_roc_auc}
                if latest.evaluation_roc_auc is not None
                else {}
            ),
            "realized_model_version": latest.model_version,
            "realized_features_as_of": dg.MetadataValue.text(str(latest.features_as_of)),
            "plot_realized_roc_auc": dg.MetadataValue.md(
                markdown_image("realized_roc_auc", realized_roc_auc_plot(scorings))
            ),
        }
    )


@dg.asset_check(asset=churn_scores_outcomes, name=REALIZED_ROC_AUC, blocking=False, pool="duckdb")
def churn_scores_realized_roc_auc(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """WARN when the latest judged scoring's realized ROC AUC is more than 0.05 below the ROC AUC
    its model version's evaluation recorded: the scores rank customers worse in production than
    on the held-out customers. Retrain, and look at the drift check for what changed. Passes,
    saying so, while no scoring is judged yet."""
    with duckdb.get_connection() as conn:
        (scoring_now,) = conn.execute(
            f"SELECT model_version FROM {CHURN_SCORES_OUTCOMES} "
            "ORDER BY features_as_of DESC, scored_at DESC LIMIT 1"
        ).fetchone() or (None,)
        judged = conn.execute(
            f"SELECT features_as_of, model_version, roc_auc, evaluation_roc_auc "
            f"FROM {CHURN_SCORES_OUTCOMES} WHERE roc_auc IS NOT NULL "
            "ORDER BY features_as_of DESC, scored_at DESC LIMIT 1"
        ).fetchone()
    if judged is None:
        return dg.AssetCheckResult(
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            description="No scoring is judged yet: the data do not cover any scoring's horizon.",
        )
    features_as_of, version, roc_auc, evaluated = judged
    floor = None if evaluated is None else evaluated - REALIZED_ROC_AUC_MARGIN
    passed = floor is None or roc_auc >= floor
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"Version {version}'s scores at {features_as_of}: realized ROC AUC {roc_auc:.4f}, "
            + (
                "its run records no evaluation."
                if floor is None
                else f"evaluation {evaluated:.4f}; warn below {floor:.4f}."
            )
            + (
                ""
                if scoring_now in (None, version)
                else f" Version {scoring_now} scores now; its scores are judged a horizon later."
            )
            + ("" if passed else " Retrain, and see scoring_features_drift for what changed.")
        ),
        metadata={
            "realized_roc_auc": roc_auc,
            **({"evaluation_roc_auc": evaluated} if evaluated is not None else {}),
            "margin": REALIZED_ROC_AUC_MARGIN,
            "model_version": version,
            "features_as_of": dg.MetadataValue.text(str(features_as_of)),
        },
    )
