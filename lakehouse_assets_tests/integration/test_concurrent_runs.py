"""The README's main command as a user runs it: two at once on one lakehouse register one model,
a bad setting is named, and each run ends with a summary of what it did."""

import subprocess
from pathlib import Path

import dagster as dg
import mlflow

from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets.lib.settings import MEMORY_LIMIT_ENV
from lakehouse_assets_tests.support.dagster_dev import BIN, user_env
from lakehouse_assets_tests.support.helpers import scalar

MAIN_COMMAND = [str(BIN / "dagster"), "asset", "materialize", "-m", "lakehouse_assets", "--select", "*"]  # fmt: skip


def prepare_dagster_home(tmp_path: Path) -> None:
    """Create the Dagster instance's storage once: two processes that create it at the same time
    race on Dagster's own sqlite schema ("table alembic_version already exists"), before any
    code of this project runs (see docs/ui-and-sensors.md)."""
    env = user_env(tmp_path)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        instance.get_runs(limit=1)


def start(tmp_path: Path, name: str, **env: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        MAIN_COMMAND,
        cwd=tmp_path,
        env={**user_env(tmp_path), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def finish(tmp_path: Path, name: str, proc: subprocess.Popen) -> str:
    proc.wait(timeout=600)
    output = (tmp_path / f"{name}.log").read_text()
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{output[-4000:]}"
    return output


def registered_versions(home: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    return client.search_model_versions("name = 'customer_churn'")


def test_two_main_commands_at_once_register_one_model_and_end_with_a_summary(tmp_path):
    prepare_dagster_home(tmp_path)
    first, second = start(tmp_path, "first"), start(tmp_path, "second")
    outputs = [finish(tmp_path, "first", first), finish(tmp_path, "second", second)]

    home = tmp_path / "lakehouse"
    versions = registered_versions(home)
    assert [str(v.version) for v in versions] == ["1"], [(v.version, v.run_id) for v in versions]
    assert scalar(home, "SELECT count(*) FROM bronze.transactions") == 10_000
    assert (
        scalar(
            home,
            "SELECT (SELECT count(*) FROM silver.transactions) + "
            "(SELECT count(*) FROM silver.rejected_transactions)",
        )
        == 10_000
    )
    # One run waited for the other instead of interleaving its steps with it.
    assert sum("Waiting for" in output and "lakehouse.lock" in output for output in outputs) >= 1  # fmt: skip
    for output in outputs:
        assert "Run summary: 996 customers scored by champion version 1" in output, output[-3000:]
        assert "look next:" in output and "http://127.0.0.1:5000/#/experiments/" in output
        assert "?workflowType=machine_learning" in output  # MLflow 3's Model training view
        assert " - DEBUG - " not in output  # the shipped instance settings log INFO and up
        assert "Downloading artifacts" not in output
    assert any("trained in this run" in output for output in outputs)
    assert any("reused: identical to version 1" in output for output in outputs)
    experiment = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}").get_experiment_by_name(
        "lakehouse_ml_pipeline"
    )
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_runs_on_two_lakehouses_sharing_a_registry_register_one_version(tmp_path):
    """Two lakehouses (two homes: no shared run or registry lock, as on two machines) with the
    same data and one MLflow store: the check after registering leaves one version."""
    prepare_dagster_home(tmp_path)
    landing = tmp_path / "shared_landing"
    write_sample(landing)
    store = f"sqlite:///{tmp_path / 'shared_mlflow.db'}"
    runs = {
        name: start(
            tmp_path,
            name,
            LAKEHOUSE_HOME=str(tmp_path / name),
            LAKEHOUSE_LANDING_DIR=str(landing),
            MLFLOW_TRACKING_URI=store,
        )
        for name in ("left", "right")
    }
    outputs = {name: finish(tmp_path, name, proc) for name, proc in runs.items()}

    client = mlflow.MlflowClient(tracking_uri=store)
    versions = client.search_model_versions("name = 'customer_churn'")
    assert [str(v.version) for v in versions] == ["1"], [(v.version, v.run_id) for v in versions]
    for output in outputs.values():
        assert "Run summary: 996 customers scored by champion version 1" in output


def test_a_bad_memory_limit_fails_the_run_naming_the_variable(tmp_path):
    run = start(tmp_path, "run", **{MEMORY_LIMIT_ENV: "lots"})
    run.wait(timeout=300)
    output = (tmp_path / "run.log").read_text()
    assert run.returncode != 0
    # One line names the variable, the value and a good example.
    (line, *_) = [line for line in output.splitlines() if f"{MEMORY_LIMIT_ENV} must be" in line]
    assert "'lots'" in line and f"e.g. {MEMORY_LIMIT_ENV}=8GB" in line, output
