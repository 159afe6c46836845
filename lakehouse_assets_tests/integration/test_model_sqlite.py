"""The whole graph against the default store (sqlite + local artifacts): no server needed."""

import dagster as dg

from lakehouse_assets.defs.model.churn_model import ChurnModelConfig
from lakehouse_assets.defs.model.churn_model_evaluation import EvaluationConfig
from lakehouse_assets.lib.model.dataset import load_split
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    assert_onnx_parity_on_every_customer,
    champion_predicts,
    client_for,
    error_check_results,
    failure_messages,
    run_graph,
    running_runs,
    step_starts,
)

WORSE_MODEL = dg.RunConfig(
    ops={
        "churn_model": ChurnModelConfig(model_type="random_forest", max_depth=1, n_estimators=3),
        # A stump forest need not beat the recency rule; this test is about the champion.
        "churn_model_evaluation": EvaluationConfig(recency_roc_auc_margin=-1.0),
    }
)


def test_default_store_registers_a_champion_that_predicts(lakehouse_home, instance):
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    assert all(error_check_results(result).values())
    uri = f"sqlite:///{lakehouse_home / 'mlflow.db'}"
    version, roc_auc = champion_predicts(uri, lakehouse_home)
    assert version == "1"
    assert_onnx_parity_on_every_customer(result, lakehouse_home)
    evaluation = result.asset_materializations_for_node("churn_model_evaluation")[0].metadata
    assert evaluation["roc_auc"].value >= 0.75
    assert evaluation["accuracy"].value >= evaluation["baseline_majority_accuracy"].value
    assert evaluation["roc_auc"].value > evaluation["baseline_recency_roc_auc"].value
    assert evaluation["brier"].value <= evaluation["baseline_majority_brier"].value
    assert roc_auc > 0.75
    assert (lakehouse_home / "mlartifacts").is_dir()
    assert running_runs(uri) == []
    run = client_for(uri).search_runs(
        [client_for(uri).get_experiment_by_name("lakehouse_ml_pipeline").experiment_id]
    )[0]
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert {"accuracy", "f1_score", "roc_auc", "brier", "baseline_recency_roc_auc"} <= set(
        run.data.metrics
    )
    assert run.data.params["model_type"] == "logistic_regression"


def test_a_worse_model_stays_a_challenger(lakehouse_home, instance):
    assert run_graph(instance).success
    uri = f"sqlite:///{lakehouse_home / 'mlflow.db'}"
    second = run_graph(instance, run_config=WORSE_MODEL)
    assert second.success, failure_messages(second)
    registered = second.asset_materializations_for_node("registered_churn_model")[0].metadata
    assert registered["version"].value == "2"
    assert registered["champion"].value is False
    assert "stays a registered challenger" in registered["decision"].value
    client = client_for(uri)
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    assert client.get_model_version(MODEL, "2").tags["role"] == "challenger"
    assert running_runs(uri) == []


def test_a_tampered_pickle_is_refused_once_and_never_registered(lakehouse_home, instance):
    assert run_graph(instance, "*churn_model").success
    pickles = list((lakehouse_home / "mlartifacts").rglob("model.pkl"))
    assert len(pickles) == 1
    pickles[0].write_bytes(pickles[0].read_bytes() + b"tampered")
    result = run_graph(
        instance, dg.AssetSelection.assets("churn_model_evaluation", "registered_churn_model")
    )
    assert not result.success
    message = failure_messages(result)
    assert "Refusing to unpickle" in message and "SHA-256" in message, message
    assert step_starts(result, "churn_model_evaluation") == 1
    assert client_for(f"sqlite:///{lakehouse_home / 'mlflow.db'}").search_registered_models() == []
    assert running_runs(f"sqlite:///{lakehouse_home / 'mlflow.db'}") == []


def test_the_training_sample_is_stratified_exact_and_leaves_the_test_side_alone(
    lakehouse_home, instance
):
    assert run_graph(instance, "*customer_features").success
    duckdb = LakehouseDuckDB()
    full = load_split(duckdb, 0.2, 42)
    capped = load_split(duckdb, 0.2, 42, max_train_rows=100)
    assert len(full.y_train) > 700 and len(capped.y_train) == 100 == len(capped.x_train)
    # Stratified: the churn share of the sample is the training side's, to one customer.
    assert abs(capped.y_train.sum() - 100 * full.y_train.mean()) <= 1
    # The test side is the same customers, whatever the cap.
    assert capped.y_test.tolist() == full.y_test.tolist()
    assert capped.x_test.equals(full.x_test)
    # Seeded: the same sample again; another seed, another sample.
    assert load_split(duckdb, 0.2, 42, max_train_rows=100).x_train.equals(capped.x_train)
    assert not load_split(duckdb, 0.2, 7, max_train_rows=100).x_train.equals(capped.x_train)
    # Only the features a step asks for are read.
    test_only = load_split(duckdb, 0.2, 42, max_train_rows=100, features=("test",))
    assert test_only.x_train.empty and test_only.y_train.tolist() == capped.y_train.tolist()
