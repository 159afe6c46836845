"""Fixtures: a fresh LAKEHOUSE_HOME and Dagster instance per test, MLflow servers per module;
and each test marked with its tier, the folder it sits in. Support code lives in `support/`."""

from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets_tests.support.mlflow_servers import (
    current_mlflow_server,
    legacy_mlflow_server,
)

TIER_MARKERS = {
    "unit": "unit",
    "integration": "integration",
    "mlflow_contract": "mlflow_server",
    "deployment": "deployment",
    "e2e": "e2e",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier (its folder), so that `-m` selects tiers."""
    for item in items:
        tier = Path(item.fspath).parent.name
        if tier in TIER_MARKERS:
            item.add_marker(TIER_MARKERS[tier])


ENV_VARS = (
    "LAKEHOUSE_ENV",
    "LAKEHOUSE_MODEL_SIGNING_KEY",
    "LAKEHOUSE_HOME",
    "LAKEHOUSE_LANDING_DIR",
    "LAKEHOUSE_DUCKDB_PATH",
    "LAKEHOUSE_CATALOG",
    "LAKEHOUSE_DATA_PATH",
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
