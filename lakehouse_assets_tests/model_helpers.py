"""Assertions about what the graph left in MLflow, made with a plain MlflowClient."""

import hashlib
import pickle
import tempfile
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np

from lakehouse_assets.layers.features import FEATURE_COLUMNS, LABEL

MODEL = "customer_churn"


def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_predicts(uri: str, home: Path, name: str = MODEL) -> tuple[str, float]:
    """Download the champion's model.pkl, verify its SHA-256, predict on the features table.

    Returns the champion version and its ROC AUC on the whole features table.
    """
    from sklearn.metrics import roc_auc_score

    client = client_for(uri)
    version = client.get_model_version_by_alias(name, "champion")
    assert version.source.endswith("/model")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "model/model.pkl", tmp)
        payload = Path(path).read_bytes()
    assert hashlib.sha256(payload).hexdigest() == version.tags["model_sha256"]
    model = pickle.loads(payload)
    with duckdb.connect(str(home / "lakehouse.duckdb"), read_only=True) as conn:
        data = conn.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)}, {LABEL} FROM gold.customer_features"
        ).fetchnumpy()
    x = np.column_stack([data[c].astype("float64") for c in FEATURE_COLUMNS])
    predictions = model.predict(x)
    assert set(np.unique(predictions)) <= {0, 1} and len(predictions) == len(x)
    return str(version.version), roc_auc_score(data[LABEL], model.predict_proba(x)[:, 1])


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
