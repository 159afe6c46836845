"""The whole graph against real MLflow tracking servers on loopback: the current version, an
MLflow 2.9.2 server (no logged-models API), a server that answers 404 to everything, and proxies
that answer 503 before they recover."""

import time
import uuid

import mlflow
import pytest
import requests
from sklearn.linear_model import LogisticRegression

from lakehouse_assets.lib.features import FEATURE_COLUMNS
from lakehouse_assets.lib.model.mlflow_errors import mlflow_errors
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    champion_predicts,
    client_for,
    error_check_results,
    failure_messages,
    lake_conn,
    run_graph,
    running_runs,
    step_starts,
)
from lakehouse_assets_tests.support.mlflow_servers import (
    always_404_server,
    flaky_proxy,
    model_server,
)


def tracking(url: str) -> tuple[dict, str]:
    """An MLflow resource on `url` with a registered model name of its own."""
    name = f"customer_churn_{uuid.uuid4().hex[:8]}"
    return {"mlflow": MlflowTracking(tracking_uri=url, registered_model_name=name)}, name


@pytest.mark.parametrize("server", ["current_url", "legacy_url"])
def test_whole_graph_registers_a_champion_on_a_server(server, request, lakehouse_home, instance):
    url = request.getfixturevalue(server)
    resources, name = tracking(url)
    result = run_graph(instance, resources=resources)
    assert result.success, failure_messages(result)
    assert all(error_check_results(result).values())
    version, roc_auc = champion_predicts(url, lakehouse_home, name)
    assert version == "1" and roc_auc > 0.75
    assert running_runs(url) == []
    assert not (lakehouse_home / "mlflow.db").exists()  # nothing went to the local default


def test_tracking_uri_comes_from_the_environment(
    current_url, lakehouse_home, instance, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", current_url)
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    assert champion_predicts(current_url, lakehouse_home)[0].isdigit()
    assert not (lakehouse_home / "mlflow.db").exists()


def test_log_model_404_on_an_old_server_is_named_and_final(legacy_url, tmp_path):
    """The incident itself: mlflow.sklearn.log_model against a 2.x server."""
    import dagster as dg

    client = mlflow.MlflowClient(legacy_url)
    experiment = client.create_experiment(f"incident-{uuid.uuid4().hex[:8]}")
    mlflow.set_tracking_uri(legacy_url)
    try:
        with mlflow.start_run(experiment_id=experiment):
            model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
            with pytest.raises(dg.Failure) as failure:
                with mlflow_errors("log a model with mlflow.sklearn.log_model", legacy_url):
                    mlflow.sklearn.log_model(model, name="model")
    finally:
        mlflow.set_tracking_uri(None)
    assert failure.value.allow_retries is False
    message = failure.value.description
    assert "/logged-models" in message and "HTTP 404" in message and legacy_url in message
    assert "the server is older than the client" in message


def test_a_server_that_answers_404_fails_once_and_fast(lakehouse_home, instance):
    with always_404_server() as server:
        started = time.monotonic()
        result = run_graph(instance, resources=tracking(server.url)[0])
        elapsed = time.monotonic() - started
        requests_made = server.request_count
    assert not result.success
    assert step_starts(result, "churn_model") == 1  # no retry
    message = failure_messages(result)
    assert "HTTP 404" in message and server.url in message, message
    assert "the server is older than the client" in message
    assert requests_made <= 3
    assert elapsed < 60


def test_a_server_that_answers_503_twice_recovers_through_retries(
    current_url, lakehouse_home, instance
):
    with flaky_proxy(current_url, failures=2, status=503) as proxy:
        resources, name = tracking(proxy.url)
        result = run_graph(instance, resources=resources)
        assert proxy.failures_sent == 2
    assert result.success, failure_messages(result)
    assert step_starts(result, "churn_model") == 3  # two retries
    assert champion_predicts(current_url, lakehouse_home, name)[0] == "1"
    assert running_runs(current_url) == []


def test_registration_retried_after_the_alias_moved_keeps_one_champion_version(
    current_url, lakehouse_home, instance
):
    """The first attempt registers version 1 and moves `champion` to it, then tagging the version
    answers 503: the retry must find its own version already champion, not fail or register
    another."""
    tag_endpoint = "/api/2.0/mlflow/model-versions/set-tag"
    with flaky_proxy(current_url, failures=1, status=503, path_prefix=tag_endpoint) as proxy:
        resources, name = tracking(proxy.url)
        result = run_graph(instance, resources=resources)
        assert proxy.failures_sent == 1
    assert result.success, failure_messages(result)
    assert step_starts(result, "registered_churn_model") == 2
    versions = client_for(current_url).search_model_versions(f"name = '{name}'")
    assert [(v.version, v.tags.get("role")) for v in versions] == [("1", "champion")]
    assert champion_predicts(current_url, lakehouse_home, name)[0] == "1"
    decision = result.asset_materializations_for_node("registered_churn_model")[-1].metadata
    assert decision["decision"].value == "version 1 is the champion"


def test_credentials_in_the_tracking_uri_never_reach_dagster_events(lakehouse_home, instance):
    with always_404_server() as server:
        url_with_password = server.url.replace("http://", "http://alice:s3cret-pw@")
        result = run_graph(instance, resources=tracking(url_with_password)[0])
    assert not result.success
    assert "alice:***" not in failure_messages(result)  # the whole user:password is dropped
    assert "***@127.0.0.1" in failure_messages(result)
    logs = [str(e) for e in result.all_events]
    logs += [str(r.event_log_entry) for r in instance.get_records_for_run(result.run_id).records]
    assert not [line for line in logs if "s3cret-pw" in line]


def test_mlflow_models_serve_answers_with_the_scores_of_churn_scores(
    lakehouse_home, instance, tmp_path
):
    """The serving commands of docs/mlflow.md ("Serve it") on a free loopback port, for the
    pickled model and for the ONNX model: `/invocations` for two rows of gold.scoring_features
    answers their churn probabilities as in gold.churn_scores."""
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    columns = ", ".join(FEATURE_COLUMNS)
    with lake_conn(lakehouse_home) as conn:
        rows = conn.execute(
            f"SELECT {columns}, churn_probability FROM gold.scoring_features "
            "JOIN gold.churn_scores USING (customer_id) ORDER BY customer_id LIMIT 2"
        ).fetchall()
    request = {
        "dataframe_split": {"columns": list(FEATURE_COLUMNS), "data": [r[:-1] for r in rows]}
    }
    tracking_uri = f"sqlite:///{lakehouse_home / 'mlflow.db'}"
    with model_server("models:/customer_churn@champion", tracking_uri, tmp_path / "serve") as url:
        answer = requests.post(f"{url}/invocations", json=request, timeout=60)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2
    for (p_retained, p_churned), row in zip(predictions, rows, strict=True):
        assert (
            abs(p_churned - row[-1]) <= 1e-6 and abs(p_retained + p_churned - 1) <= 1e-9
        )  # ONNX scored
    # The ONNX model of the same version, served from its run: nothing is unpickled.
    run_id = client_for(tracking_uri).get_model_version_by_alias(MODEL, "champion").run_id
    onnx_uri = f"runs:/{run_id}/model_onnx"
    with model_server(onnx_uri, tracking_uri, tmp_path / "serve_onnx") as url:
        answer = requests.post(f"{url}/invocations", json=request, timeout=60)
    assert answer.status_code == 200, answer.text
    onnx_predictions = answer.json()["predictions"]
    assert [set(p) for p in onnx_predictions] == [{"churn_probability"}] * 2
    for prediction, row in zip(onnx_predictions, rows, strict=True):
        assert abs(prediction["churn_probability"] - row[-1]) <= 1e-6
