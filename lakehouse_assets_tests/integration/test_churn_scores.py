"""The champion at work: scoring features, churn scores, drift, and no duplicate versions
(default sqlite store; the MLflow servers are in test_model_servers.py)."""

from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

import lakehouse_assets
from lakehouse_assets import load_champion
from lakehouse_assets.defs.model.churn_model import ChurnModelConfig
from lakehouse_assets.lib.features import FEATURE_COLUMNS, PURCHASE_SPAN
from lakehouse_assets.lib.model.drift import SCORING_FEATURES_DRIFT
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    client_for,
    failure_messages,
    query,
    run_graph,
    scalar,
    step_starts,
)

DATA_AND_SCORING_FEATURES = dg.AssetSelection.groups("raw", "bronze", "silver", "gold", "features")


def sqlite_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def test_training_and_scoring_features_agree_at_the_same_cutoff(lakehouse_home, instance):
    """scoring_features at cutoff = latest event L, then one later purchase lands at L + 90 days,
    so that customer_features' cutoff (latest - 90 days) is L too: every feature of every
    customer is the same in both tables."""
    assert run_graph(instance, "*scoring_features").success
    latest = scalar(lakehouse_home, "SELECT max(event_time) FROM silver.transactions")
    columns = ", ".join(FEATURE_COLUMNS)
    scoring = query(lakehouse_home, f"SELECT customer_id, {columns} FROM gold.scoring_features")
    later = latest + timedelta(days=90)
    (lakehouse_home / "landing" / "later.csv").write_text(
        f"customer_id,event_time,amount\nlate-customer,{later.isoformat()},10.0\n"
    )
    # Nobody but the new customer buys after L, so the label check fails: the table is written.
    result = run_graph(instance, "*customer_features")
    cutoff = result.asset_materializations_for_node("customer_features")[0].metadata["cutoff"]
    assert cutoff.value == str(latest)
    training = query(lakehouse_home, f"SELECT customer_id, {columns} FROM gold.customer_features")
    assert len(scoring) > 900
    assert sorted(training) == sorted(scoring)


def test_the_feature_list_is_the_select_list(lakehouse_home, instance):
    assert run_graph(instance, "*scoring_features").success
    columns = [row[0] for row in query(lakehouse_home, "DESCRIBE gold.scoring_features")]
    assert columns == ["customer_id", *FEATURE_COLUMNS, *PURCHASE_SPAN, "features_as_of", "bucket"]


def test_every_customer_is_scored_and_a_refresh_rescores_everyone(lakehouse_home, instance):
    first = run_graph(instance)
    assert first.success, failure_messages(first)
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks["churn_scores_one_row_per_customer"] and checks["churn_scores_are_probabilities"]
    customers = scalar(lakehouse_home, "SELECT count(*) FROM gold.scoring_features")
    assert customers == scalar(
        lakehouse_home, "SELECT count(DISTINCT customer_id) FROM silver.transactions"
    )
    rows, distinct, deciles, low, high = query(
        lakehouse_home,
        "SELECT count(*), count(DISTINCT customer_id), count(DISTINCT risk_decile), "
        "min(churn_probability), max(churn_probability) FROM gold.churn_scores",
    )[0]
    assert rows == distinct == customers and deciles == 10 and 0 <= low < high <= 1
    # Decile 1 holds the highest probabilities.
    top, bottom = query(
        lakehouse_home,
        "SELECT min(churn_probability) FILTER (WHERE risk_decile = 1), "
        "max(churn_probability) FILTER (WHERE risk_decile = 10) FROM gold.churn_scores",
    )[0]
    assert top >= bottom
    metadata = first.asset_materializations_for_node("churn_scores")[0].metadata
    assert metadata["model_version"].value == "1"
    assert metadata["dagster/row_count"].value == customers
    assert "risk_decile" in metadata["churn_probability_by_decile"].value
    assert metadata["most_at_risk"].value.count("\n") == 21  # header, rule and 20 customers
    first_scored_at = scalar(lakehouse_home, "SELECT max(scored_at) FROM gold.churn_scores")

    new_customers = pd.DataFrame(
        {
            "customer_id": ["new-1", "new-2", "new-1"],
            "event_time": ["2025-12-01T10:00:00", "2025-12-02T10:00:00", "2025-12-20T10:00:00"],
            "amount": ["12.5", "40", "7.25"],
        }
    )
    new_customers.to_csv(lakehouse_home / "landing" / "day2.csv", index=False)
    second = run_graph(instance, run_config=WORSE_MODEL)
    assert second.success, failure_messages(second)
    rows, distinct, versions, scored_at = query(
        lakehouse_home,
        "SELECT count(*), count(DISTINCT customer_id), list(DISTINCT model_version), "
        "min(scored_at) FROM gold.churn_scores",
    )[0]
    assert rows == distinct == customers + 2
    assert versions == ["1"]  # the worse model stayed a challenger; the champion scored
    assert scored_at > first_scored_at
    assert (
        scalar(
            lakehouse_home, "SELECT count(*) FROM gold.churn_scores WHERE customer_id LIKE 'new-%'"
        )
        == 2
    )


WORSE_MODEL = dg.RunConfig(ops={"churn_model": ChurnModelConfig(max_depth=1, n_estimators=3)})


def test_without_a_champion_scoring_fails_at_once_and_names_the_model(lakehouse_home, instance):
    result = run_graph(
        instance, DATA_AND_SCORING_FEATURES | dg.AssetSelection.assets("churn_scores")
    )
    assert not result.success
    assert step_starts(result, "churn_scores.plan_churn_scores") == 1
    message = failure_messages(result)
    assert f"Registered model '{MODEL}'" in message and "'champion'" in message, message


def test_running_twice_on_the_same_data_registers_one_version(lakehouse_home, instance):
    assert run_graph(instance).success
    second = run_graph(instance)
    assert second.success, failure_messages(second)
    trained = second.asset_materializations_for_node("churn_model")[0].metadata
    assert trained["identical_to_version"].value == "1"
    registered = second.asset_materializations_for_node("registered_churn_model")[0].metadata
    assert registered["version"].value == "1" and registered["new_version"].value is False
    assert "Registered nothing new" in registered["decision"].value
    assert "identical to version 1" in registered["decision"].value
    client = client_for(sqlite_uri(lakehouse_home))
    assert [str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")] == ["1"]
    experiment = client.get_experiment_by_name("lakehouse_ml_pipeline")
    assert len(client.search_runs([experiment.experiment_id])) == 1  # nothing retrained


def test_scoring_unpickles_nothing_and_a_tampered_onnx_model_is_refused(lakehouse_home, instance):
    """A tampered pickle is refused by load_champion, and churn_scores, which only opens the
    ONNX model, still scores; a tampered ONNX model is refused by both, before any scoring; so
    is a version whose ONNX hash tag was removed (no silent fallback to the pickle)."""
    assert run_graph(instance).success
    (pickle_file,) = (lakehouse_home / "mlartifacts").rglob("model.pkl")
    pickle_file.write_bytes(pickle_file.read_bytes() + b"tampered")
    with pytest.raises(dg.Failure, match="Refusing to unpickle version 1 of 'customer_churn'"):
        load_champion(sqlite_uri(lakehouse_home))
    rescored = run_graph(instance, dg.AssetSelection.assets("churn_scores"))
    assert rescored.success, failure_messages(rescored)
    metadata = rescored.asset_materializations_for_node("churn_scores")[0].metadata
    assert metadata["scored_by"].value.startswith("onnxruntime ")
    (onnx_file,) = (lakehouse_home / "mlartifacts").rglob("model.onnx")
    onnx_file.write_bytes(onnx_file.read_bytes() + b"tampered")
    refusal = "Refusing to load the ONNX model of version 1 of 'customer_churn'"
    with pytest.raises(dg.Failure, match=refusal):
        load_champion(sqlite_uri(lakehouse_home), flavor="onnx")
    result = run_graph(instance, dg.AssetSelection.assets("churn_scores"))
    assert not result.success
    assert refusal in failure_messages(result) and "model_onnx_sha256" in failure_messages(result)
    assert step_starts(result, "churn_scores.bucket_of_churn_scores[bucket_0]") == 1
    assert scalar(lakehouse_home, "SELECT count(*) FROM gold.churn_scores") > 0  # still there
    # Without its ONNX tags, a version whose run made an ONNX model does not fall back to the
    # pickle: the run still says it has one.
    client = client_for(sqlite_uri(lakehouse_home))
    for tag in ("model_onnx_sha256", "model_onnx"):
        client.delete_model_version_tag(MODEL, "1", tag)
    result = run_graph(instance, dg.AssetSelection.assets("churn_scores"))
    assert not result.success
    message = failure_messages(result)
    assert "has an ONNX model (its MLflow run" in message and "Refusing to score it" in message
    assert step_starts(result, "churn_scores.plan_churn_scores") == 1


def shift_recent_amounts(landing: Path, factor: float) -> None:
    """Multiply the amounts of the sample's last 90 days by `factor` (invalid rows untouched)."""
    path = landing / "sample_transactions.parquet"
    frame = pd.read_parquet(path)
    times = pd.to_datetime(frame["event_time"], errors="coerce", format="ISO8601", utc=True)
    amounts = pd.to_numeric(frame["amount"], errors="coerce")
    latest = times[times <= pd.Timestamp.now(tz="UTC")].max()  # the sample has future rows too
    recent = (times > latest - pd.Timedelta(days=90)) & (times <= latest) & amounts.notna()
    frame.loc[recent, "amount"] = (amounts[recent] * factor).round(2).astype(str)
    frame.to_parquet(path, index=False)


def test_drift_check_names_the_amount_features_when_recent_amounts_jump(lakehouse_home, instance):
    """The sample as landed is quiet (test_layers.py); with its last 90 days of amounts times
    5, the check names the spending features, and only them."""
    write_sample(lakehouse_home / "landing")
    shift_recent_amounts(lakehouse_home / "landing", 5.0)
    result = run_graph(instance, DATA_AND_SCORING_FEATURES)
    assert result.success, failure_messages(result)
    (drift,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == SCORING_FEATURES_DRIFT
    ]
    assert drift.severity == dg.AssetCheckSeverity.WARN
    named = set(drift.metadata["drifted_features"].value.split(", "))
    assert "psi_by_feature" in drift.metadata and "tenure_days" not in named
    warnings = [
        record.user_message
        for record in instance.all_logs(result.run_id)
        if record.level >= 30 and "Feature drift" in record.user_message
    ]
    assert drift.metadata["matched_share"].value > 0.5  # compared at matching tenures
    assert {"amount_last_30d", "amount_last_90d", "amount_last_180d"} <= named
    assert all(f.startswith(("amount", "monetary")) for f in named), named  # only spending
    assert not drift.passed
    (line,) = warnings
    assert all(feature in line for feature in named)
    assert "tenure_days" not in line


def test_scores_are_queryable_from_duckdb(lakehouse_home, instance):
    """What the README shows: the 10 customers most at risk, through `lakehouse_assets.connect()`
    (read-only, the lake in use)."""
    assert run_graph(instance).success
    with lakehouse_assets.connect() as conn:
        top = conn.execute(
            "SELECT customer_id, churn_probability FROM gold.churn_scores "
            "WHERE risk_decile = 1 ORDER BY churn_probability DESC LIMIT 10"
        ).fetchall()
    assert len(top) == 10 and top[0][1] >= top[-1][1]
