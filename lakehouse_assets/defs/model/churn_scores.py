"""`churn_scores`: the champion ranks every customer by their risk of churning now."""

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa

from lakehouse_assets.lib import fanout, lake
from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.metadata import log_progress, markdown_table, table_metadata
from lakehouse_assets.lib.model import signing
from lakehouse_assets.lib.model.champion import (
    Champion,
    champion_run,
    load_verified_model,
    load_verified_onnx,
    require_champion,
)
from lakehouse_assets.lib.model.dataset import feature_frame
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.onnx_model import OnnxScorer
from lakehouse_assets.lib.model.retries import mlflow_retry_policy
from lakehouse_assets.lib.model.scoring import churn_probability
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, query_one
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import CHURN_SCORES, CHURN_SCORES_HISTORY, SCORING_FEATURES

STAGING = "scored_customers"
BATCH_ROWS = 200_000
TOP_AT_RISK = 20

SCORES_SQL = sql("scores/churn_scores")  # reads STAGING
DECILES_SQL = sql("scores/deciles")
HISTORY_SQL = sql("scores/history")  # reads CHURN_SCORES


def _plan(context, conn, config) -> tuple[RefreshPlan, dict]:
    """The champion that scores every bucket, the features' cutoff, and the scoring time."""
    mlflow = context.resources.mlflow
    with retry_only_transient("churn_scores"):
        champion = require_champion(mlflow, mlflow.client())
        run = champion_run(mlflow, mlflow.client(), champion)
        evaluation_roc_auc = run.data.metrics.get("roc_auc")
    champion.require_pickle_fallback(mlflow.registered_model_name, run.data.tags)
    runtime = _runtime(champion)
    if champion.onnx_sha256:
        context.log.info(
            f"Scoring {SCORING_FEATURES} with champion version {champion.version} on {runtime}"
        )
    else:
        context.log.warning(
            f"Champion version {champion.version} has no ONNX model ({champion.onnx_missing()}): "
            f"scoring {SCORING_FEATURES} with its verified pickle on {runtime}."
        )
    features_as_of = conn.execute(f"SELECT max(features_as_of) FROM {SCORING_FEATURES}").fetchone()[
        0
    ]
    extra = {
        "champion": champion,
        "scored_by": runtime,
        "evaluation_roc_auc": evaluation_roc_auc,
        "features_as_of": features_as_of,
        "scored_at": datetime.now(UTC).replace(tzinfo=None),
    }
    return RefreshPlan(
        Refresh.FULL, f"champion version {champion.version} scores every customer"
    ), extra


def _runtime(champion: Champion) -> str:
    """What scores: onnxruntime on the ONNX model, or scikit-learn on the pickle without one."""
    if champion.onnx_sha256:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"
    import sklearn

    return f"scikit-learn {sklearn.__version__} (pickle)"


def _scorer(mlflow, champion: Champion, work_dir: Path):
    """The champion's churn probability of a mapping of feature columns: its verified ONNX model
    in onnxruntime (nothing unpickled), or its verified pickle when it has no ONNX model."""
    if champion.onnx_sha256:
        return OnnxScorer(load_verified_onnx(mlflow, mlflow.client(), champion, work_dir))
    model = load_verified_model(mlflow, mlflow.client(), champion, work_dir)
    return lambda columns: churn_probability(model, feature_frame(columns, copy=False))


def _piece(context, conn, task: fanout.BucketTask) -> fanout.Piece:
    """Verify and load the champion, then score the bucket's customers in batches."""
    mlflow = context.resources.mlflow
    with retry_only_transient("churn_scores"), tempfile.TemporaryDirectory() as tmp:
        scorer = _scorer(mlflow, task.extra["champion"], Path(tmp))
    started = time.perf_counter()
    features = task.at_snapshot(SCORING_FEATURES, f"customer_id, {', '.join(FEATURE_COLUMNS)}")
    _score_in_batches(context, conn, scorer, features, started)
    piece = fanout.write_piece(conn, task, f"SELECT * FROM {STAGING}")
    conn.execute(f"DROP TABLE {STAGING}")
    return piece


def _commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    """Rank every scored customer into risk deciles and replace the table."""
    extra = planned.extra
    champion = extra["champion"]
    files = [p.path for p in pieces]
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGING} AS SELECT * FROM read_parquet($files, "
        "hive_partitioning => false)",
        {"files": files},
    )
    params = {
        "model_version": champion.version,
        "scored_by": extra["scored_by"],
        "features_as_of": extra["features_as_of"],
        "scored_at": extra["scored_at"],
    }
    fanout.replace_partitioned(conn, CHURN_SCORES, SCORES_SQL, params, planned.buckets)
    conn.execute(f"DROP TABLE {STAGING}")
    _keep_in_history(conn, params, extra["evaluation_roc_auc"])
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
    return {
        **table_metadata(conn, CHURN_SCORES),
        "model_version": champion.version,
        "mlflow_run_id": champion.run_id,
        "scored_by": extra["scored_by"],
        "provenance": signing.status(),
        "features_as_of": dg.MetadataValue.text(str(extra["features_as_of"])),
        "mean_churn_probability": float(mean_probability or 0.0),
        "churn_probability_by_decile": dg.MetadataValue.md(deciles),
        "most_at_risk": dg.MetadataValue.md(top),
    }


def _keep_in_history(conn, params: dict, evaluation_roc_auc: float | None) -> None:
    """Append the scores to `gold.churn_scores_history`, in the commit's transaction: a scoring
    of the same features by the same version replaces the earlier one."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {CHURN_SCORES_HISTORY} AS {HISTORY_SQL} LIMIT 0",
        {"evaluation_roc_auc": evaluation_roc_auc},
    )
    conn.execute(
        f"DELETE FROM {CHURN_SCORES_HISTORY} WHERE features_as_of = $features_as_of "
        "AND model_version = $model_version",
        {k: params[k] for k in ("features_as_of", "model_version")},
    )
    conn.execute(
        f"INSERT INTO {CHURN_SCORES_HISTORY} {HISTORY_SQL}",
        {"evaluation_roc_auc": evaluation_roc_auc},
    )


def _score_in_batches(context, conn, scorer, features_sql: str, started: float) -> int:
    """Stream the rows of `features_sql` `BATCH_ROWS` at a time into the temporary table
    `STAGING` (customer_id, churn_probability); returns the rows scored."""
    conn.execute(
        f"CREATE OR REPLACE TEMP TABLE {STAGING} (customer_id VARCHAR, churn_probability DOUBLE)"
    )
    reader = conn.cursor()  # a second connection streams while the first one writes
    reader.execute(f"USE {lake.LAKE}")  # a new cursor starts in DuckDB's `memory` database
    reader.execute("SET python_enable_replacements = false")
    try:
        batches = reader.sql(features_sql).to_arrow_reader(BATCH_ROWS)
        scored = 0
        for batch in batches:
            columns = {
                name: batch.column(name).to_numpy(zero_copy_only=False) for name in FEATURE_COLUMNS
            }
            probability = scorer(columns)
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


churn_scores = fanout.bucketed_asset(
    name="churn_scores",
    table=CHURN_SCORES,
    upstream=["scoring_features", "registered_churn_model"],
    group_name="model",
    description="""`gold.churn_scores`: the current `champion` version scores every customer
    of `gold.scoring_features` with onnxruntime on its ONNX model (verified against the
    version's SHA-256, and with a signing key its signature, before it is opened; nothing is
    unpickled): `churn_probability`, `risk_decile` (1 = the 10% most at risk),
    `model_version`, `scored_by` (the runtime), `features_as_of` and `scored_at`. A version
    without an ONNX model scores with its verified pickle, with a warning. Every scoring is also appended to `gold.churn_scores_history`, which
    `churn_scores_outcomes` compares with what the customers then did. Scored bucket by bucket
    (each bucket verifies the champion) in batches, so memory stays bounded; written in one
    transaction. Fails at once when the registered model has no champion.""",
    plan=_plan,
    piece=_piece,
    commit=_commit,
    guard=fanout.latest_of(CHURN_SCORES, "scored_at"),  # a later run's scores are kept
    resource_keys=frozenset({"mlflow"}),
    commit_resource_keys=frozenset({"run_report"}),  # the run ends with its summary
    retry_policy=mlflow_retry_policy(),
    kinds=frozenset({"onnx", "scikitlearn", "duckdb"}),  # scikit-learn: a version without ONNX
)


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
