"""MLflow's basic-auth app, as `deploy/` starts it: the pipeline's user runs the whole graph;
without credentials (401) or as a read-only user (403) nobody creates a version or moves the
`champion` alias; no password reaches Dagster's run logs or metadata, nor MLflow's run."""

import json

import dagster as dg
import pytest
import requests
from mlflow import MlflowClient

from lakehouse_assets.lib.model.mlflow_errors import mlflow_errors
from lakehouse_assets_tests.support.helpers import failure_messages, run_graph
from lakehouse_assets_tests.support.locked_deploy import mlflow_auth_server

MODEL = "customer_churn"
SIGNING_KEY = "auth-test-signing-key-0123456789"


@pytest.fixture(scope="module")
def auth(tmp_path_factory):
    with mlflow_auth_server(tmp_path_factory.mktemp("mlflow-auth")) as server:
        yield server


def as_user(monkeypatch, auth, user: tuple[str, str] | None) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth.url)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    if user:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def test_the_pipeline_user_runs_the_whole_graph_and_no_password_is_logged(
    auth, lakehouse_home, instance, monkeypatch
):
    as_user(monkeypatch, auth, auth.pipeline)
    monkeypatch.setenv("LAKEHOUSE_MODEL_SIGNING_KEY", SIGNING_KEY)
    result = run_graph(instance)
    assert result.success, failure_messages(result)
    client = MlflowClient(tracking_uri=auth.url, registry_uri=auth.url)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "1" and "model_signature" in champion.tags

    from dagster._serdes import serialize_value

    texts = [serialize_value(instance.get_run_by_id(result.run_id))]
    texts += [serialize_value(e) for e in instance.all_logs(result.run_id)]
    run = client.get_run(champion.run_id)
    texts.append(json.dumps([run.data.params, run.data.tags]))
    secrets = [auth.pipeline[1], auth.reader[1], auth.admin_password, SIGNING_KEY]
    leaked = [s[:5] for s in secrets for text in texts if s in text]
    assert not leaked, f"secrets (first chars) found in run logs or metadata: {leaked}"


def _create_version_and_move_alias(url: str, auth_header: tuple[str, str] | None):
    """The attack of the issue, as raw REST calls: a new version, then the alias onto it."""
    session = requests.Session()
    session.auth = auth_header
    created = session.post(
        f"{url}/api/2.0/mlflow/model-versions/create",
        json={"name": MODEL, "source": "mlflow-artifacts:/0/planted/artifacts/model"},
        timeout=30,
    )
    alias = session.post(
        f"{url}/api/2.0/mlflow/registered-models/alias",
        json={"name": MODEL, "alias": "champion", "version": "1"},
        timeout=30,
    )
    return created.status_code, alias.status_code


def test_without_credentials_nobody_creates_a_version_or_moves_the_alias(auth):
    assert _create_version_and_move_alias(auth.url, None) == (401, 401)
    assert _create_version_and_move_alias(auth.url, ("pipeline", "wrong-password")) == (401, 401)


def test_a_read_only_user_reads_but_creates_no_version_and_moves_no_alias(auth):
    assert _create_version_and_move_alias(auth.url, auth.reader) == (403, 403)
    searched = requests.get(
        f"{auth.url}/api/2.0/mlflow/registered-models/get",
        params={"name": MODEL},
        auth=auth.reader,
        timeout=30,
    )
    assert searched.status_code == 200


@pytest.mark.parametrize(
    ("user", "status"), [(None, 401), ("reader", 403)], ids=["no credentials", "read-only"]
)
def test_the_pipeline_names_the_cause_and_does_not_retry(auth, monkeypatch, user, status):
    """What a run would report: the MLflow client's error, classified by the pipeline."""
    as_user(monkeypatch, auth, auth.reader if user else None)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(tracking_uri=auth.url, registry_uri=auth.url)
    with pytest.raises(dg.Failure) as failure:
        with mlflow_errors("move alias 'champion'", auth.url):
            client.set_registered_model_alias(MODEL, "champion", "1")
    assert failure.value.allow_retries is False
    message = failure.value.description
    assert f"HTTP {status}" in message and "refused the credentials" in message, message
    assert auth.reader[1] not in message
