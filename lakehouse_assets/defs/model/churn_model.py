"""`churn_model`: train the churn classifier and log it to MLflow as an MLflow model folder."""

import hashlib
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Literal

import dagster as dg

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.features import FEATURE_COLUMNS, training_snapshot
from lakehouse_assets.lib.metadata import log_progress
from lakehouse_assets.lib.model import signing
from lakehouse_assets.lib.model.baselines import VERDICT_METRICS
from lakehouse_assets.lib.model.champion import current_champion
from lakehouse_assets.lib.model.dataset import SPLIT_METHOD, features_fingerprint, load_split
from lakehouse_assets.lib.model.estimators import logistic_regression
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.mlflow_model import MODEL_FILE, save_model_folder
from lakehouse_assets.lib.model.mlflow_resource import MODEL_ARTIFACT_DIR, MlflowTracking
from lakehouse_assets.lib.model.onnx_export import export
from lakehouse_assets.lib.model.onnx_model import ONNX_ARTIFACT_DIR, save_folder
from lakehouse_assets.lib.model.retries import mlflow_retry_policy
from lakehouse_assets.lib.model.training import (
    CUTOFF_TAG,
    ONNX_SHA_TAG,
    ONNX_TAG,
    RECIPE_TAG,
    SHA_TAG,
    TRAINING_KEY_TAG,
    trusted_versions,
)
from lakehouse_assets.lib.model.training_data import (
    CATALOG_TAG,
    FINGERPRINT_TAG,
    SNAPSHOT_TAG,
    log_training_input,
)
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.tables import CUSTOMER_FEATURES


class ChurnModelConfig(dg.Config):
    model_type: Literal["logistic_regression", "random_forest", "hist_gradient_boosting"] = (
        "logistic_regression"
    )
    """`logistic_regression` (default; chosen by cross-validation, see docs/model-quality.md),
    `random_forest` or `hist_gradient_boosting`."""
    regularization_c: float = 1.0
    """Inverse L2 strength of the logistic regression."""
    n_estimators: int = 100
    """Trees (random forest) or boosting iterations (gradient boosting)."""
    max_depth: int = 10
    random_state: int = 42
    """Seed of the estimator and of the stratified train/test split."""
    test_size: float = 0.2
    max_train_rows: int = 25_000
    """Train on a stratified subsample of at most this many rows (0 = all): training stays a few
    seconds long at any size, for little ROC AUC (docs/model-quality.md). The test split is
    never subsampled."""
    retrain_after_days: float = 7.0
    """Keep the champion until the features' cutoff has moved this many days (of data) past the
    cutoff of the last version trained the same way: a file that adds a day re-scores
    every customer with the champion but trains nothing. 0 = train whenever the features change.
    Retraining is also due without a champion, after a replaced file moved the cutoff back, and
    for other parameters, feature definitions or scikit-learn (docs/incremental-refresh.md, "Retraining")."""


def build_estimator(config: ChurnModelConfig):
    if config.model_type == "logistic_regression":
        return logistic_regression(config.regularization_c, config.random_state)
    # Imported only for the trees: sklearn.ensemble is slow to import.
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    if config.model_type == "random_forest":
        return RandomForestClassifier(
            n_estimators=config.n_estimators,
            max_depth=config.max_depth,
            random_state=config.random_state,
            n_jobs=-1,
        )
    return HistGradientBoostingClassifier(
        max_iter=config.n_estimators, max_depth=config.max_depth, random_state=config.random_state
    )


@dg.asset(
    deps=["customer_features"],
    group_name="model",
    kinds={"scikitlearn", "mlflow"},
    retry_policy=mlflow_retry_policy(),
    pool="duckdb",  # reads the lake at one snapshot; apart from the steps that write it
)
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnModelConfig,
    duckdb: LakehouseDuckDB,
    mlflow: MlflowTracking,
) -> dg.MaterializeResult:
    """Churn classifier trained on `gold.customer_features` (seeded 80/20 split by customer),
    logged to MLflow as a standard MLflow model (`model/`: MLmodel with signature and input
    example, `model.pkl` a plain pickle, requirements), with its parameters and the
    pickle's SHA-256 as tag `model_sha256` and, with `$LAKEHOUSE_MODEL_SIGNING_KEY` set, an
    HMAC-SHA256 of that hash and the run id as tag `model_signature` (metadata `provenance` says
    "unsigned" without a key). Beside it, the same model as ONNX (`model_onnx/`, MLflow's ONNX
    flavour; tags `model_onnx_sha256`, `model_onnx_signature`, `model_onnx`), which must give
    the pickle's probabilities within 1e-6 on every customer, or nothing is logged. The lake
    snapshot of the features it was trained on is tag `lakehouse_snapshot_id` and an MLflow
    dataset input (`training_data(version)` reads it
    back). Trains only when retraining is due (`retrain_after_days`, metadata
    `retraining`): until then the champion's run is kept. When a registered version was trained
    on the same features with the same parameters, that version's run is reused."""
    if not config.retrain_after_days >= 0:  # also refuses NaN
        raise dg.Failure(
            f"retrain_after_days must be 0 or more, got {config.retrain_after_days:g}",
            allow_retries=False,
        )
    with retry_only_transient("churn_model"):
        with duckdb.get_connection() as conn:
            snapshot = lake.current_snapshot(conn)  # every read below is of this snapshot
            fingerprint = features_fingerprint(conn, snapshot)
            features = training_snapshot(conn)
        cutoff = features.cutoff if features else None
        definition = features.definition if features else None
        key = training_key(fingerprint, config)
        client = mlflow.client()
        versions = trusted_versions(mlflow, client)
        identical = _identical_version(versions, key)
        if identical is not None:
            why = "it was trained on the same features with the same parameters"
            return _reused(context, mlflow, client, identical, why, "identical_to_version")
        recipe = training_recipe(config, definition)
        kept, why, kept_run = _retraining_due(mlflow, client, versions, config, cutoff, recipe)
        if kept is not None:
            return _reused(context, mlflow, client, kept, why, "kept_version", kept_run)
        context.log.info(f"Retraining is due: {why}")
        split = load_split(
            duckdb,
            config.test_size,
            config.random_state,
            config.max_train_rows,
            ("train",),
            snapshot,
        )
        context.log.info(
            f"Training {config.model_type} on {len(split.y_train):,} rows, testing on {len(split.y_test):,}"
        )
        started = time.perf_counter()
        model = build_estimator(config).fit(split.x_train, split.y_train)
        log_progress(context, f"Trained {config.model_type} on", len(split.y_train), started)
        onnx = export(context, duckdb, snapshot, model, split.x_train)
        # Scored once, by churn_model_evaluation, with the baselines, the champion and plots.
        params = {
            **config.model_dump(),
            "train_rows": len(split.y_train),
            "test_rows": len(split.y_test),
            "features": ",".join(FEATURE_COLUMNS),
        }
        with mlflow.run_for(context) as run, tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / MODEL_ARTIFACT_DIR
            sha256 = save_model_folder(model, split.x_train, folder)
            onnx_folder = Path(tmp) / ONNX_ARTIFACT_DIR
            onnx_sha256 = (
                save_folder(onnx.converted, split.x_train, onnx_folder) if onnx.converted else None
            )
            onnx_tags = {ONNX_TAG: onnx.status}
            if onnx_sha256:
                onnx_tags[ONNX_SHA_TAG] = onnx_sha256
                onnx_tags.update(signing.signature_tags(onnx_sha256, run.run_id, signing.ONNX))
            with mlflow.errors(f"log params, metrics and tags to run {run.run_id}"):
                from mlflow.entities import Param, RunTag

                run.client.log_batch(
                    run.run_id,
                    params=[Param(k, str(v)) for k, v in params.items()],
                    tags=[
                        RunTag(SHA_TAG, sha256),
                        RunTag(FINGERPRINT_TAG, fingerprint),
                        RunTag(TRAINING_KEY_TAG, key),
                        RunTag(RECIPE_TAG, recipe),
                        RunTag(SNAPSHOT_TAG, str(snapshot)),
                        RunTag(CATALOG_TAG, duckdb.location().describe()),
                        *([RunTag(CUTOFF_TAG, cutoff.isoformat())] if cutoff else []),
                        *(
                            RunTag(k, v)
                            for k, v in signing.signature_tags(sha256, run.run_id).items()
                        ),
                        *(RunTag(k, v) for k, v in onnx_tags.items()),
                    ],
                )
            with mlflow.errors(f"log the training dataset to run {run.run_id}"):
                log_training_input(run, duckdb.location(), snapshot, fingerprint)
            mlflow.log_model_folder(run, folder)
            if onnx_sha256:
                mlflow.log_model_folder(run, onnx_folder, ONNX_ARTIFACT_DIR)
            size = (folder / MODEL_FILE).stat().st_size
        context.log.info(
            f"Logged the MLflow model {MODEL_ARTIFACT_DIR}/ ({MODEL_FILE}: {size:,} bytes) to run {run.run_id}"
        )
    url = mlflow.run_url(run.experiment_id, run.run_id)
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": run.run_id,
            "mlflow_experiment_id": run.experiment_id,
            "mlflow_run": dg.MetadataValue.url(url)
            if url
            else dg.MetadataValue.text(mlflow.server()),
            "model_sha256": sha256,
            "onnx": onnx.status,
            "onnx_sha256": onnx_sha256 or "none",
            **({"onnx_max_abs_diff": onnx.max_abs_diff} if onnx.max_abs_diff is not None else {}),
            "provenance": signing.status(),
            "model_type": config.model_type,
            "train_rows": len(split.y_train),
            "test_rows": len(split.y_test),
            "identical_to_version": "none",
            "kept_version": "none",
            "retraining": dg.MetadataValue.md(f"trained: {why}"),
            SNAPSHOT_TAG: snapshot,
        }
    )


def _identity(config: ChurnModelConfig) -> dict:
    import sklearn

    return {
        "config": config.model_dump(exclude={"retrain_after_days"}),  # when, not how
        "features": FEATURE_COLUMNS,
        "scikit_learn": sklearn.__version__,
        "split": SPLIT_METHOD,
        "files": ["pickle", "onnx"],  # versions logged before the ONNX model are trained again
    }


def training_key(fingerprint: str, config: ChurnModelConfig) -> str:
    """What determines the trained model: the features' content, the run config, the feature
    list and the scikit-learn version. Equal keys train identical (seeded) models."""
    identity = {"features_fingerprint": fingerprint, **_identity(config)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def training_recipe(config: ChurnModelConfig, definition: str | None) -> str:
    """Models trained the same way: the training key without the features' content, with the
    features' definitions and horizon (`definition`, from their watermark)."""
    identity = {"features_definition": definition, **_identity(config)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _identical_version(versions: list, key: str):
    """The first version whose training key is `key`, if any (None when nothing matches)."""
    matches = [v for v in versions if (v.tags or {}).get(TRAINING_KEY_TAG) == key]
    return min(matches, key=lambda v: int(v.version)) if matches else None


def _retraining_due(mlflow: MlflowTracking, client, versions: list, config, cutoff, recipe):
    """(the champion's version, why it stays, its MLflow run) while retraining is not due; else
    (None, why a new model must be trained, None). `versions`: the trusted ones."""
    champion = current_champion(mlflow, client)
    if champion is None:
        return None, "there is no champion yet", None
    kept = next((v for v in versions if str(v.version) == champion.version), None)
    if kept is None:  # only trusted versions are listed
        return None, f"champion version {champion.version} is not signed with the current key", None
    if cutoff is None:
        return None, f"{CUSTOMER_FEATURES} records no cutoff", None
    dated = [
        (int(v.version), at, v)
        for v in versions
        if (v.tags or {}).get(RECIPE_TAG) == recipe and (at := _training_cutoff(v)) is not None
    ]
    if not dated:
        return (
            None,
            "no version was trained with these parameters, feature definitions and scikit-learn",
            None,
        )
    _, trained_at, latest = max(dated, key=lambda row: row[0])  # the last one registered
    days = (cutoff - trained_at).total_seconds() / 86_400
    since = (
        f"the cutoff {cutoff} is {days:.2f} days past {trained_at}, the training cutoff of "
        f"version {latest.version}"
    )
    if days < 0:
        return None, f"{since}: a replaced file moved it back", None
    if days >= config.retrain_after_days:
        return None, f"{since} (retrain_after_days: {config.retrain_after_days:g})", None
    with mlflow.errors(f"read run {kept.run_id}"):
        run = client.get_run(kept.run_id)
    if any(k not in run.data.metrics for k in VERDICT_METRICS):
        return None, f"champion version {kept.version} has no recorded evaluation to keep", None
    why = (
        f"{since}; champion version {kept.version} stays until retraining is due at "
        f"{config.retrain_after_days:g} days"
    )
    return kept, why, run


def _training_cutoff(version) -> datetime | None:
    try:
        return datetime.fromisoformat((version.tags or {})[CUTOFF_TAG])
    except (KeyError, ValueError):
        return None


def _reused(
    context, mlflow: MlflowTracking, client, version, why: str, field: str, run=None
) -> dg.MaterializeResult:
    """Point at the run of a registered version instead of training again; `field` says how it
    was chosen: `identical_to_version` or `kept_version` (the champion, retraining not due).
    `run`: the version's MLflow run, if already read."""
    if run is None:
        with mlflow.errors(f"read run {version.run_id}"):
            run = client.get_run(version.run_id)
    name = mlflow.registered_model_name
    verb = "kept champion" if field == "kept_version" else "reused"
    decision = f"Not retrained: {verb} version {version.version} of {name!r}: {why}"
    context.log.info(f"{decision} (MLflow run {version.run_id}).")
    url = mlflow.run_url(run.info.experiment_id, version.run_id)
    return dg.MaterializeResult(
        metadata={
            "mlflow_run_id": version.run_id,
            "mlflow_experiment_id": run.info.experiment_id,
            "mlflow_run": dg.MetadataValue.url(url)
            if url
            else dg.MetadataValue.text(mlflow.server()),
            "model_sha256": run.data.tags[SHA_TAG],
            "onnx": run.data.tags.get(ONNX_TAG, "none: trained before ONNX models were made"),
            "onnx_sha256": run.data.tags.get(ONNX_SHA_TAG, "none"),
            "provenance": signing.status(),
            "model_type": run.data.params.get("model_type", ""),
            "train_rows": int(run.data.params.get("train_rows", 0)),
            "test_rows": int(run.data.params.get("test_rows", 0)),
            "identical_to_version": "none",
            "kept_version": "none",
            field: str(version.version),
            "retraining": dg.MetadataValue.md(decision),
        }
    )
