"""Every model traced to its data: after further refreshes, `training_data(1)` still returns what
version 1 learned from, refitting on it gives the same model, and maintenance keeps it so."""

from datetime import timedelta

import dagster as dg
import duckdb
import mlflow
import numpy as np
import pandas as pd

from lakehouse_assets import defs, training_data
from lakehouse_assets.defs.model.churn_model import ChurnModelConfig, build_estimator
from lakehouse_assets.lib.features import FEATURE_COLUMNS, LABEL
from lakehouse_assets.lib.model.training_data import SNAPSHOT_TAG, digest
from lakehouse_assets.lib.profiles import build_resources
from lakehouse_assets.lib.settings import mlflow_tracking_uri
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    NO_SEED,
    client_for,
    failure_messages,
    lake_conn,
    mlflow_uris,
    run_graph,
    scalar,
    write_csv,
)

RETRAIN = dg.RunConfig(
    ops={
        "raw_transactions": NO_SEED.ops["raw_transactions"],
        "churn_model": ChurnModelConfig(retrain_after_days=0),
    }  # fmt: skip
)


def fingerprint_of(frame: pd.DataFrame) -> str:
    """`features_fingerprint` of a frame: rows and the sum of DuckDB's row hashes."""
    columns = ", ".join(("customer_id", LABEL, *FEATURE_COLUMNS))
    rows, total = duckdb.sql(f"SELECT count(*), sum(hash({columns})::HUGEINT) FROM frame").fetchone()  # fmt: skip
    return f"{rows}:{total}"


def land_purchases(home, name: str, day, customers: int) -> None:
    """A file of one purchase on `day` for each of the first `customers` sample customers."""
    rows = "".join(
        f"{name}-{i},C{i:08d},{day.isoformat()},{i % 40 + 5},1\n" for i in range(customers)
    )
    write_csv(home / "landing" / f"{name}.csv", "transaction_id,customer_id,event_time,amount,quantity\n" + rows)  # fmt: skip


def test_training_data_returns_what_version_1_learned_from_after_refreshes_and_maintenance(
    lakehouse_home, instance
):
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    client = client_for(mlflow_tracking_uri())
    run = client.get_run(client.get_model_version(MODEL, "1").run_id)
    last_day = scalar(lakehouse_home, "SELECT max(event_time) FROM silver.transactions")
    for n, days in enumerate((3, 30)):  # two refreshes that change version 1's customers
        land_purchases(lakehouse_home, f"later{n}", last_day + timedelta(days=days), 300)
        result = run_graph(instance, run_config=RETRAIN)
        assert result.success, failure_messages(result)
    assert len(client.search_model_versions(f"name = '{MODEL}'")) >= 2

    frame = training_data(1)

    tags, params = run.data.tags, run.data.params
    assert frame.attrs["snapshot_id"] == int(tags[SNAPSHOT_TAG])
    assert fingerprint_of(frame) == tags["features_fingerprint"]
    with lake_conn(lakehouse_home) as conn:
        now = conn.execute(
            f"SELECT customer_id, {LABEL}, {', '.join(FEATURE_COLUMNS)} FROM gold.customer_features"
        ).df()
    assert fingerprint_of(now) != tags["features_fingerprint"]  # the features moved on
    counts = frame["split"].value_counts().to_dict()
    assert counts["train"] == int(params["train_rows"]) and counts["test"] == int(params["test_rows"])  # fmt: skip
    [dataset] = run.inputs.dataset_inputs
    assert dataset.dataset.digest == digest(tags["features_fingerprint"])
    assert dataset.dataset.source_type == "ducklake"
    assert f'"snapshot_id": {tags[SNAPSHOT_TAG]}' in dataset.dataset.source

    # Refitting on the training rows reproduces the logged model's probabilities.
    config = ChurnModelConfig(
        **{k: type(v)(params[k]) for k, v in ChurnModelConfig().model_dump().items()}
    )
    train = frame[frame["split"] == "train"]
    refit = build_estimator(config).fit(train[list(FEATURE_COLUMNS)], train[LABEL])
    x = frame[list(FEATURE_COLUMNS)]
    with mlflow_uris(mlflow_tracking_uri()):
        logged = mlflow.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_allclose(
        refit.predict_proba(x)[:, 1], logged.predict_proba(x)[:, 1], rtol=0, atol=1e-12
    )

    # Maintenance with no time-travel window keeps the snapshots of registered versions only.
    maintained = defs.get_job_def("lakehouse_maintenance").execute_in_process(
        instance=instance,
        resources=build_resources(),
        run_config={"ops": {"maintain_lake": {"config": {"keep_days": 0}}}},
    )
    assert maintained.success
    [output] = [
        e.step_output_data.metadata
        for e in maintained.all_events
        if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    sizes = {k: v.value for k, v in output.items() if k.endswith(("_before", "_after"))}
    assert sizes["files_after"] < sizes["files_before"], sizes
    assert sizes["snapshots_after"] < sizes["snapshots_before"], sizes
    pd.testing.assert_frame_equal(training_data(1), frame)
    kept = {
        r[0] for r in lake_conn_rows(lakehouse_home, "SELECT snapshot_id FROM lake.snapshots()")
    }
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        assert int(client.get_run(version.run_id).data.tags[SNAPSHOT_TAG]) in kept


def lake_conn_rows(home, sql: str) -> list[tuple]:
    with lake_conn(home) as conn:
        return conn.execute(sql).fetchall()
