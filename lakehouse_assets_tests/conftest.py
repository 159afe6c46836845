"""Shared fixtures: a fresh LAKEHOUSE_HOME per test and helpers to run the graph through Dagster."""

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from lakehouse_assets import defs
from lakehouse_assets.profiles import build_resources
from lakehouse_assets_tests.mlflow_servers import current_mlflow_server, legacy_mlflow_server

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
)

ENV_VARS = (
    "LAKEHOUSE_ENV",
    "LAKEHOUSE_MODEL_SIGNING_KEY",
    "LAKEHOUSE_HOME",
    "LAKEHOUSE_LANDING_DIR",
    "LAKEHOUSE_DUCKDB_PATH",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
)


@pytest.fixture
def lakehouse_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary LAKEHOUSE_HOME with every other lakehouse/MLflow variable unset."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "lakehouse"
    monkeypatch.setenv("LAKEHOUSE_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def instance():
    """A Dagster instance in a temporary directory, kept across the runs of one test."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="module")
def current_url(tmp_path_factory):
    """A current `mlflow server` on loopback, one per test module."""
    with current_mlflow_server(tmp_path_factory.mktemp("mlflow-current")) as url:
        yield url


@pytest.fixture(scope="module")
def legacy_url(tmp_path_factory):
    """An MLflow 2.9.2 server (its own virtual environment) on loopback, one per test module."""
    with legacy_mlflow_server(tmp_path_factory.mktemp("mlflow-legacy")) as url:
        yield url


def run_graph(
    instance: dg.DagsterInstance,
    selection: str | dg.AssetSelection = "*",
    run_config: dict | None = None,
    resources: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize `selection` (and its checks) as `dagster asset materialize` would, in process."""
    test_defs = dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        resources={**build_resources(), **(resources or {})},
        executor=dg.in_process_executor,
        jobs=[dg.define_asset_job("graph", selection=selection)],
    )
    job = test_defs.resolve_job_def("graph")
    return job.execute_in_process(
        run_config=run_config or {}, instance=instance, raise_on_error=False
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    evaluations = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return {e.check_name: e.passed for e in evaluations}


def error_check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    """Results of the checks with ERROR severity (the WARN-only drift check left out)."""
    return {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.severity == dg.AssetCheckSeverity.ERROR
    }


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(str(e.step_failure_data.error) for e in result.all_events if e.is_step_failure)


def query(home: Path, sql: str, params: dict | None = None) -> list[tuple]:
    with duckdb.connect(str(home / "lakehouse.duckdb"), read_only=True) as conn:
        return conn.execute(sql, params or {}).fetchall()


def scalar(home: Path, sql: str):
    return query(home, sql)[0][0]
