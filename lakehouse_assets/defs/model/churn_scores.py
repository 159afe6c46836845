"""`churn_scores`: the champion ranks every customer by their risk of churning now."""

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.metadata import log_progress, markdown_table
from lakehouse_assets.lib.model import signing
from lakehouse_assets.lib.model.champion import load_verified_model, require_champion
from lakehouse_assets.lib.model.dataset import feature_frame
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.model.retries import mlflow_retry_policy
from lakehouse_assets.lib.model.scoring import churn_probability
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one, rebuild_table
from lakehouse_assets.lib.run_report import RunReport
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import CHURN_SCORES, SCORING_FEATURES

STAGING = "scored_customers"
BATCH_ROWS = 200_000
TOP_AT_RISK = 20

SCORES_SQL = sql("scores/churn_scores")  # reads STAGING
DECILES_SQL = sql("scores/deciles")


@dg.asset(
    deps=["scoring_features", "registered_churn_model"],
    group_name="model",
    kinds={"scikitlearn", "duckdb"},
    retry_policy=mlflow_retry_policy(),
    pool="duckdb",
)
def churn_scores(
    context: dg.AssetExecutionContext,
    duckdb: LakehouseDuckDB,
    mlflow: MlflowTracking,
    run_report: RunReport,  # noqa: ARG001 (required so that the run ends with its summary)
) -> dg.MaterializeResult:
    """`gold.churn_scores`: the current `champion` version (its pickle verified against the
    version's SHA-256, and with a signing key its signature, before it is unpickled) scores every customer of `gold.scoring_features`:
    `churn_probability`, `risk_decile` (1 = the 10% most at risk), `model_version`,
    `features_as_of` and `scored_at`. Scored in batches, so memory stays bounded; written in one
    transaction. Fails at once when the registered model has no champion."""
    with retry_only_transient("churn_scores"):
        client = mlflow.client()
        champion = require_champion(mlflow, client)
        with tempfile.TemporaryDirectory() as tmp:
            model = load_verified_model(mlflow, client, champion, Path(tmp))
        return _write_scores(context, duckdb, model, champion)


def _write_scores(context, duckdb: LakehouseDuckDB, model, champion) -> dg.MaterializeResult:
    """Score every scoring customer with `model`, then replace the table in one transaction."""
    context.log.info(f"Scoring {SCORING_FEATURES} with champion version {champion.version}")
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        features_as_of = conn.execute(
            f"SELECT max(features_as_of) FROM {SCORING_FEATURES}"
        ).fetchone()[0]
        scored = _score_in_batches(context, conn, model, started)
        params = {
            "model_version": champion.version,
            "features_as_of": features_as_of,
            "scored_at": datetime.now(UTC).replace(tzinfo=None),
        }
        metadata = rebuild_table(conn, CHURN_SCORES, SCORES_SQL, params)
        conn.execute(f"DROP TABLE {STAGING}")
        deciles = markdown_table(conn.execute(DECILES_SQL))
        top = markdown_table(
            conn.execute(
                f"SELECT customer_id, churn_probability, risk_decile FROM {CHURN_SCORES} "
                f"ORDER BY churn_probability DESC, customer_id LIMIT {TOP_AT_RISK}"
            )
        )
        mean_probability = conn.execute(
            f"SELECT avg(churn_probability) FROM {CHURN_SCORES}"
        ).fetchone()[0]
    log_progress(context, f"{CHURN_SCORES}: scored", scored, started)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "model_version": champion.version,
            "mlflow_run_id": champion.run_id,
            "provenance": signing.status(),
            "features_as_of": dg.MetadataValue.text(str(features_as_of)),
            "mean_churn_probability": float(mean_probability or 0.0),
            "churn_probability_by_decile": dg.MetadataValue.md(deciles),
            "most_at_risk": dg.MetadataValue.md(top),
        }
    )


def _score_in_batches(context, conn, model, started: float) -> int:
    """Stream the scoring features `BATCH_ROWS` at a time into the temporary table `STAGING`
    (customer_id, churn_probability); returns the rows scored."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGING} (customer_id VARCHAR, churn_probability DOUBLE)"
    )
    reader = conn.cursor()  # a second connection streams while the first one writes
    reader.execute(f"USE {lake.LAKE}")  # a new cursor starts in DuckDB's `memory` database
    reader.execute("SET python_enable_replacements = false")
    try:
        batches = reader.sql(
            f"SELECT customer_id, {', '.join(FEATURE_COLUMNS)} FROM {SCORING_FEATURES}"
        ).to_arrow_reader(BATCH_ROWS)
        scored = 0
        for batch in batches:
            columns = {
                name: batch.column(name).to_numpy(zero_copy_only=False) for name in FEATURE_COLUMNS
            }
            probability = churn_probability(model, feature_frame(columns, copy=False))
            rows = pa.table(
                {"customer_id": batch.column("customer_id"), "churn_probability": probability}
            )
            conn.register("scored_batch", rows)
            conn.execute(f"INSERT INTO {STAGING} SELECT * FROM scored_batch")
            conn.unregister("scored_batch")
            scored += batch.num_rows
            if scored % (5 * BATCH_ROWS) == 0:
                log_progress(context, f"{CHURN_SCORES}: scored so far", scored, started)
    finally:
        reader.close()
    return scored


# Checks
SCORES_ONE_ROW_PER_CUSTOMER = "churn_scores_one_row_per_customer"
SCORES_ARE_PROBABILITIES = "churn_scores_are_probabilities"


@dg.asset_check(asset=churn_scores, name=SCORES_ONE_ROW_PER_CUSTOMER, blocking=True, pool="duckdb")
def churn_scores_one_row_per_customer(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """gold.churn_scores has exactly one row for each customer of gold.scoring_features."""
    rows, distinct, scoring, unscored = query_one(
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
    bad_probability, bad_decile = query_one(
        duckdb,
        "SELECT count(*) FILTER (WHERE churn_probability IS NULL OR NOT isfinite(churn_probability)"
        " OR churn_probability < 0 OR churn_probability > 1), "
        f"count(*) FILTER (WHERE risk_decile NOT BETWEEN 1 AND 10) FROM {CHURN_SCORES}",
    )
    return dg.AssetCheckResult(
        passed=bad_probability == 0 and bad_decile == 0,
        metadata={"bad_probabilities": bad_probability, "bad_deciles": bad_decile},
    )
