"""Assertions about what the graph left in MLflow, made with a plain MlflowClient."""

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import mlflow
import numpy as np

from lakehouse_assets import load_champion
from lakehouse_assets.layers.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.tables import CHURN_SCORES, CUSTOMER_FEATURES, SCORING_FEATURES

MODEL = "customer_churn"


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_predicts(uri: str, home: Path, name: str = MODEL) -> tuple[str, float]:
    """Load the champion as any MLflow user would (`mlflow.pyfunc.load_model` and
    `mlflow.sklearn.load_model` on `models:/name@champion`) and with `load_champion()`, which
    verifies the pickle's SHA-256 first. All three must give the probabilities in
    `gold.churn_scores`, to within 1e-9, for every scored customer.

    Returns the champion version and its ROC AUC on the whole training features table."""
    from sklearn.metrics import roc_auc_score

    client = client_for(uri)
    version = client.get_model_version_by_alias(name, "champion")
    assert version.source.endswith("/model")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "model/model.pkl", tmp)
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == version.tags["model_sha256"]
    scored = _scored_customers(home)
    x = scored[list(FEATURE_COLUMNS)]
    model_uri = f"models:/{name}@champion"
    with mlflow_uris(uri):
        pyfunc = mlflow.pyfunc.load_model(model_uri).predict(x)
        sklearn_model = mlflow.sklearn.load_model(model_uri)
    verified = load_champion(uri, name)
    expected = scored["churn_probability"].to_numpy()
    assert (scored["model_version"] == str(version.version)).all()
    for probability in (
        np.asarray(pyfunc)[:, 1],
        sklearn_model.predict_proba(x)[:, 1],
        verified.predict_proba(x)[:, 1],
    ):
        assert np.abs(probability - expected).max() <= 1e-9
    with duckdb.connect(str(home / "lakehouse.duckdb"), read_only=True) as conn:
        data = conn.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)}, {LABEL} FROM {CUSTOMER_FEATURES}"
        ).df()
    roc_auc = roc_auc_score(data[LABEL], verified.predict_proba(data[list(FEATURE_COLUMNS)])[:, 1])
    return str(version.version), roc_auc


@contextmanager
def mlflow_uris(uri: str):
    """Point MLflow's global tracking and registry URIs at `uri` for the block, then restore
    them and the environment: `set_registry_uri(None)` leaves $MLFLOW_REGISTRY_URI behind."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _scored_customers(home: Path):
    """Every row of gold.churn_scores beside its scoring features, as a DataFrame."""
    with duckdb.connect(str(home / "lakehouse.duckdb"), read_only=True) as conn:
        scored = conn.execute(
            f"SELECT s.*, {', '.join(FEATURE_COLUMNS)} FROM {CHURN_SCORES} s "
            f"JOIN {SCORING_FEATURES} USING (customer_id) ORDER BY customer_id"
        ).df()
    assert len(scored) > 0
    return scored


def running_runs(uri: str) -> list[str]:
    client = client_for(uri)
    experiment = client.get_experiment_by_name("lakehouse_ml_pipeline")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id])
    return [r.info.run_id for r in runs if r.info.status == "RUNNING"]


def step_starts(result: dg.ExecuteInProcessResult, step: str) -> int:
    """How many times `step` started (1 + retries)."""
    return sum(
        1
        for e in result.all_events
        if e.step_key == step and e.event_type_value in ("STEP_START", "STEP_RESTARTED")
    )
