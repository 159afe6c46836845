"""How MLflow client errors are classified: what the real MLflow client raises when a server, or a
proxy or gateway in front of it, answers with a given status and body."""

import dagster as dg
import pytest
from mlflow import MlflowClient

from lakehouse_assets.lib.model.mlflow_errors import MlflowTransientError, mlflow_errors
from lakehouse_assets_tests.support.mlflow_servers import fixed_answer_server

TEMPORARILY_UNAVAILABLE = {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}
PERMISSION_DENIED = {"error_code": "PERMISSION_DENIED", "message": "not yours"}


@pytest.fixture(autouse=True)
def no_client_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # as MlflowTracking sets it
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def create_experiment_answered(status: int, body, content_type: str = "text/plain") -> Exception:
    """The error `mlflow_errors` raises when creating an experiment gets this answer."""
    with fixed_answer_server(status, body, content_type) as server:
        with pytest.raises((MlflowTransientError, dg.Failure)) as raised:
            with mlflow_errors("create an experiment", server.url):
                MlflowClient(server.url).create_experiment("anything")
        assert server.request_count == 1  # the client itself never retried
    assert server.url in str(raised.value)
    return raised.value


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (429, b"Too Many Requests", "text/plain"),
        (502, b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        (503, TEMPORARILY_UNAVAILABLE, "application/json"),
        (504, b"Gateway Timeout", "text/plain"),
    ],
)
def test_statuses_that_may_pass_later_are_transient(status, body, content_type):
    error = create_experiment_answered(status, body, content_type)
    assert isinstance(error, MlflowTransientError), error
    assert f"HTTP {status}" in str(error) and "will be retried" in str(error)


@pytest.mark.parametrize(
    ("status", "body", "cause"),
    [
        (501, b"Not Implemented", "does not implement"),
        (505, b"HTTP Version Not Supported", "does not implement"),
        (400, b"Bad Request", "rejected the request as invalid"),
        (401, b"Unauthorized", "refused the credentials"),
        (403, PERMISSION_DENIED, "refused the credentials"),
    ],
)
def test_statuses_that_cannot_pass_later_are_final(status, body, cause):
    error = create_experiment_answered(status, body)
    assert isinstance(error, dg.Failure) and not error.allow_retries
    assert f"HTTP {status}" in error.description and cause in error.description
    assert error.metadata["http_status"].value == status


def test_a_json_answer_that_is_not_mlflows_is_final_and_named():
    """A gateway's JSON body without MLflow's error_code hides the HTTP status from the client
    (it reports INTERNAL_ERROR): the status is unknown, so the error is not retried."""
    error = create_experiment_answered(401, {"message": "Invalid authentication credentials"})
    assert isinstance(error, dg.Failure) and not error.allow_retries
    assert "not from MLflow" in error.description
    assert "Invalid authentication credentials" in error.description
