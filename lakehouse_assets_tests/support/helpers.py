"""Helpers for the tests: run the code location's graph with `dg.materialize`, read its results,
its DuckDB tables, and what it left in MLflow (with a plain MlflowClient)."""

import hashlib
import os
import shutil
import sqlite3
import tempfile
from contextlib import closing, contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np

from lakehouse_assets import defs, load_champion
from lakehouse_assets.defs.raw.raw_transactions import RawConfig
from lakehouse_assets.lib import lake
from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.lib.profiles import build_resources
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.tables import CHURN_SCORES, CUSTOMER_FEATURES, SCORING_FEATURES

# The assets of the graph, in lineage order.
ASSET_NAMES = (
    "raw_transactions",
    "bronze_transactions",
    "silver_transactions",
    "gold_customer_summary",
    "customer_features",
    "scoring_features",
    "churn_model",
    "churn_model_evaluation",
    "registered_churn_model",
    "churn_scores",
    "churn_scores_outcomes",
)
MODEL = "customer_churn"
# The pictures the evaluation must show (issue 11), by name.
PLOTS = (
    "roc",
    "precision_recall",
    "cumulative_gains",
    "calibration",
    "feature_importance",
    "probability_histogram",
)
NO_SEED = dg.RunConfig(ops={"raw_transactions": RawConfig(seed_sample_if_empty=False)})


def run_graph(
    instance: dg.DagsterInstance,
    selection: str | dg.AssetSelection = "*",
    run_config: dg.RunConfig | None = None,
    resources: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize `selection` and its checks, with the code location's resources (`resources`
    override some), as `dagster asset materialize` would, in process."""
    return dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=selection,
        resources={**build_resources(), **(resources or {})},
        instance=instance,
        run_config=run_config,
        raise_on_error=False,
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def error_check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Results of the checks with ERROR severity (the WARN-only drift check left out)."""
    return {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.severity == dg.AssetCheckSeverity.ERROR
    }


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """The errors of failed steps and of resources that failed to start."""
    errors = [e.step_failure_data.error for e in result.get_step_failure_events()]
    errors += [
        e.event_specific_data.error
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE
    ]
    return "\n".join(str(error) for error in errors)


def step_starts(result: dg.ExecuteInProcessResult, step: str) -> int:
    """How many times `step` started (1 + retries). A bucketed asset's steps are named
    `<asset>.<op>[<bucket>]`: pass the one meant (e.g. `churn_scores.bucket_of_churn_scores[bucket_0]`)."""
    starts = (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED)
    return sum(1 for e in result.all_events if e.step_key == step and e.event_type in starts)


def home_location(home: Path) -> lake.LakeLocation:
    """The lake of the lakehouse in `home` (the default catalog and data path)."""
    return lake.LakeLocation(f"sqlite:{home / 'catalog.sqlite'}", f"{home / 'lake'}/")


@contextmanager
def lake_conn(home: Path, read_only: bool = True):
    """A connection to the lake of the lakehouse in `home`, read-only unless asked."""
    conn = lake.cursor(home_location(home), read_only=read_only)
    try:
        yield conn
    finally:
        conn.close()


def copy_lake(home: Path, destination: Path) -> Path:
    """A copy of the lake of `home` in `destination` (a lakehouse home of its own): the SQLite
    catalog (by SQLite's backup, so the WAL is in it), the Parquet files, and the catalog's
    recorded data path pointed at the copy's."""
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / "catalog.sqlite"
    with (
        closing(sqlite3.connect(home / "catalog.sqlite")) as source,
        closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)
    shutil.copytree(home / "lake", destination / "lake")
    with closing(sqlite3.connect(target)) as copy, copy:
        copy.execute(
            "UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
            (f"{destination / 'lake'}/",),
        )
    return destination


def lake_resource(home: Path) -> LakehouseDuckDB:
    """The duckdb resource for the lakehouse in `home`."""
    location = home_location(home)
    return LakehouseDuckDB(catalog=location.catalog, data_path=location.data_path)


def query(home: Path, sql: str, params: dict | None = None) -> list[tuple]:
    with lake_conn(home) as conn:
        return conn.execute(sql, params or {}).fetchall()


def scalar(home: Path, sql: str):
    return query(home, sql)[0][0]


def client_for(uri: str) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def running_runs(uri: str) -> list[str]:
    client = client_for(uri)
    experiment = client.get_experiment_by_name("lakehouse_ml_pipeline")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id])
    return [r.info.run_id for r in runs if r.info.status == "RUNNING"]


def champion_predicts(uri: str, home: Path, name: str = MODEL) -> tuple[str, float]:
    """Load the champion as any MLflow user would (`mlflow.pyfunc.load_model` and
    `mlflow.sklearn.load_model` on `models:/name@champion`, and its ONNX model with
    `mlflow.pyfunc.load_model` on `runs:/<run>/model_onnx` and with onnxruntime alone), and
    with `load_champion()` in both flavours, which verify the file's SHA-256 first. Every way
    must give the probabilities in `gold.churn_scores`, which onnxruntime scored, to within
    1e-6 (the parity the pipeline promises), for every scored customer.

    Returns the champion version and its ROC AUC on the whole training features table."""
    import onnxruntime
    from sklearn.metrics import roc_auc_score

    client = client_for(uri)
    version = client.get_model_version_by_alias(name, "champion")
    assert version.source.endswith("/model")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "model/model.pkl", tmp)
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == version.tags["model_sha256"]
        onnx_path = client.download_artifacts(version.run_id, "model_onnx/model.onnx", tmp)
        onnx_bytes = Path(onnx_path).read_bytes()
        assert hashlib.sha256(onnx_bytes).hexdigest() == version.tags["model_onnx_sha256"]
    with lake_conn(home) as conn:
        scored = conn.execute(
            f"SELECT s.*, {', '.join(FEATURE_COLUMNS)} FROM {CHURN_SCORES} s "
            f"JOIN {SCORING_FEATURES} USING (customer_id) ORDER BY customer_id"
        ).df()
        data = conn.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)}, {LABEL} FROM {CUSTOMER_FEATURES}"
        ).df()
    assert len(scored) > 0
    assert (scored["scored_by"] == f"onnxruntime {onnxruntime.__version__}").all()
    x = scored[list(FEATURE_COLUMNS)]
    model_uri = f"models:/{name}@champion"
    with mlflow_uris(uri):
        pyfunc = mlflow.pyfunc.load_model(model_uri).predict(x)
        sklearn_model = mlflow.sklearn.load_model(model_uri)
        onnx_pyfunc = mlflow.pyfunc.load_model(f"runs:/{version.run_id}/model_onnx").predict(x)
    verified = load_champion(uri, name)
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = {i.name: x[i.name].to_numpy() for i in session.get_inputs()}
    verified_session = load_champion(uri, name, flavor="onnx")
    expected = scored["churn_probability"].to_numpy()
    assert (scored["model_version"] == str(version.version)).all()
    pickled = verified.predict_proba(x)[:, 1]
    for probability in (np.asarray(pyfunc)[:, 1], sklearn_model.predict_proba(x)[:, 1]):
        assert np.abs(probability - pickled).max() <= 1e-9  # one pickle, three loaders
    for probability in (
        pickled,
        onnx_pyfunc["churn_probability"].to_numpy(),
        session.run(["churn_probability"], feeds)[0],
        verified_session.run(["churn_probability"], feeds)[0],
    ):
        assert np.abs(probability - expected).max() <= 1e-6  # ONNX scored the table
    roc_auc = roc_auc_score(data[LABEL], verified.predict_proba(data[list(FEATURE_COLUMNS)])[:, 1])
    return str(version.version), roc_auc


def assert_onnx_parity_on_every_customer(result: dg.ExecuteInProcessResult, home: Path) -> None:
    """churn_model compared its ONNX model with the pickle on every customer of
    gold.customer_features, in double precision, and found them within 1e-6; the registered
    version carries the ONNX model's hash and how it was checked."""
    import onnxruntime

    trained = result.asset_materializations_for_node("churn_model")[0].metadata
    with lake_conn(home) as conn:
        x = conn.execute(f"SELECT {', '.join(FEATURE_COLUMNS)} FROM {CUSTOMER_FEATURES}").df()
    customers = len(x)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    session = load_champion(uri, flavor="onnx")
    assert isinstance(session, onnxruntime.InferenceSession)
    onnx_p = session.run(["churn_probability"], {c: x[c].to_numpy() for c in FEATURE_COLUMNS})[0]
    pickle_p = load_champion(uri).predict_proba(x)[:, 1]
    assert np.abs(onnx_p - pickle_p).max() <= 1e-6  # measured here, not read from the run
    assert 0 <= trained["onnx_max_abs_diff"].value <= 1e-6
    status = trained["onnx"].value
    assert status.startswith("model_onnx/model.onnx: double precision"), status
    assert f"over {customers:,} customers of {CUSTOMER_FEATURES}" in status, status
    version = client_for(uri).get_model_version_by_alias(MODEL, "champion")
    assert version.tags["model_onnx_sha256"] == trained["onnx_sha256"].value
    assert version.tags["model_onnx"] == status


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


DATA = dg.AssetSelection.groups("raw", "bronze", "silver", "gold", "features")
UP_TO_GOLD = dg.AssetSelection.groups("raw", "bronze", "silver", "gold")
TABLES = (
    "bronze.transactions",
    "silver.transactions",
    "silver.rejected_transactions",
    "gold.customer_summary",
    "gold.customer_features",
)


def table_state(home: Path, tables: tuple[str, ...] = TABLES) -> dict[str, tuple]:
    """Row count and an order-independent content hash of each table."""
    return {
        t: query(home, f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {t} AS t")[0] for t in tables
    }


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.strip() + "\n")
    return path
