"""MLflow client errors classified as transient (retried) or final, from the exceptions the
client raises; no server is needed to build them. Answers of real servers are classified in
integration/test_mlflow_errors.py."""

import dagster as dg
import pytest
import requests
from mlflow.exceptions import MlflowException, RestException

from lakehouse_assets.lib.model import mlflow_errors as errors
from lakehouse_assets.lib.model.mlflow_errors import MlflowTransientError

SERVER = "http://mlflow.example.com:5000"


def http_error(status: int, url: str = f"{SERVER}/api/2.0/mlflow/runs/create") -> Exception:
    response = requests.Response()
    response.status_code, response.url = status, url
    return requests.HTTPError(f"{status} Server Error: for url: {url}", response=response)


def raised_by(error: BaseException, action: str = "create a run") -> Exception:
    """What `mlflow_errors` turns `error` into."""
    with pytest.raises((MlflowTransientError, dg.Failure)) as raised:
        with errors.mlflow_errors(action, SERVER):
            raise error
    return raised.value


def chained(error: BaseException, outer: BaseException) -> BaseException:
    """`outer` raised while handling `error`, as the MLflow client wraps requests' errors."""
    try:
        try:
            raise error
        except BaseException as cause:
            raise outer from cause
    except BaseException as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("status", "transient"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (599, True)]
    + [(400, False), (401, False), (403, False), (404, False), (501, False), (505, False)],
)
def test_transient_statuses(status, transient):
    assert errors.is_transient_status(status) is transient


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (http_error(502), 502),
        (
            MlflowException("API request to endpoint /api/2.0/x failed with error code 503 != 200"),
            503,
        ),
        (
            MlflowException(
                "Max retries exceeded (Caused by ResponseError('too many 429 error responses'))"
            ),
            429,
        ),
        (MlflowException("404 Client Error: Not Found for url: http://h/api/2.0/x"), 404),
        (RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no"}), 404),
        (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "later"}), 503),
        (RestException({"message": "not MLflow's JSON"}), None),  # INTERNAL_ERROR says nothing
        (ValueError("bad input"), None),
    ],
)
def test_http_status_is_found_in_the_error(error, status):
    assert errors.http_status(error) == status


def test_http_status_is_found_in_a_cause():
    error = chained(http_error(504), MlflowException("request failed"))
    assert errors.http_status(error) == 504


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (requests.ConnectionError("Connection refused"), True),
        (requests.Timeout("read timed out"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (requests.exceptions.SSLError("certificate verify failed"), False),
        (RestException({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}), True),
        (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}), False),
        (http_error(503), True),
        (http_error(403), False),
        (ValueError("a bug"), False),
    ],
)
def test_is_transient(error, transient):
    assert errors.is_transient(error) is transient


def test_a_connection_failure_behind_a_client_error_is_transient():
    error = chained(ConnectionRefusedError(111, "refused"), MlflowException("INTERNAL_ERROR"))
    assert errors.is_transient(error)


def test_a_transient_error_says_it_will_be_retried():
    error = raised_by(http_error(503))
    assert isinstance(error, MlflowTransientError)
    assert str(error).startswith("MLflow request to create a run failed transiently (HTTP 503)")
    assert f"at /api/2.0/mlflow/runs/create on {SERVER}" in str(error)
    assert "will be retried" in str(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_a_final_error_names_the_likely_cause_and_is_not_retried():
    error = raised_by(http_error(403))
    assert isinstance(error, dg.Failure) and not error.allow_retries
    assert "failed (HTTP 403)" in error.description
    assert "refused the credentials" in error.description
    assert error.metadata["http_status"].value == 403
    assert error.metadata["endpoint"].value == "/api/2.0/mlflow/runs/create"
    assert error.metadata["mlflow_server"].value == SERVER


def test_credentials_in_an_error_are_not_repeated():
    url = "http://pipeline:hunter2@mlflow.example.com/api/2.0/mlflow/runs/create"
    for error in (
        raised_by(requests.ConnectionError(f"refused: {url}")),
        raised_by(ValueError(url)),
    ):
        assert "hunter2" not in str(error)
        assert "//***@mlflow.example.com" in str(error)


def test_failures_and_retries_pass_through_unchanged():
    for error in (
        dg.Failure("already classified"),
        MlflowTransientError("already classified"),
        dg.RetryRequested(),
    ):
        with pytest.raises(type(error)) as raised:
            with errors.mlflow_errors("create a run", SERVER):
                raise error
        assert raised.value is error


@pytest.mark.parametrize(
    ("status", "endpoint", "cause"),
    [
        (404, "/api/2.0/mlflow/logged-models/search", "exists only on MLflow 3.x servers"),
        (404, "/api/2.0/mlflow/runs/get", "does not point at an MLflow server"),
        (401, None, "refused the credentials"),
        (422, None, "rejected the request as invalid"),
        (501, None, "does not implement"),
        (None, None, "retrying will not fix"),
        (500, None, "an unexpected MLflow error"),
    ],
)
def test_likely_cause(status, endpoint, cause):
    error = MlflowException(f"failed at {endpoint}" if endpoint else "failed")
    assert cause in errors.likely_cause(error, status)


def test_a_json_answer_without_mlflows_error_code_is_named_as_foreign():
    error = RestException({"message": "Invalid authentication credentials"})
    assert "not from MLflow" in errors.likely_cause(error, errors.http_status(error))


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("http://u:p@host:5000/api", "http://***@host:5000/api"),
        (
            "see https://token@host and s3://k:s@bucket/x",
            "see https://***@host and s3://***@bucket/x",
        ),
        ("postgres:dbname=lake password=s3cret", "postgres:dbname=lake password=***"),
        ("http://host:5000/api", "http://host:5000/api"),
    ],
)
def test_redact(text, redacted):
    assert errors.redact(text) == redacted


def test_retry_only_transient_makes_other_errors_final():
    with pytest.raises(dg.Failure) as raised:
        with errors.retry_only_transient("churn_model"):
            raise KeyError("recency_days")
    assert not raised.value.allow_retries
    assert raised.value.description == "churn_model failed: KeyError: 'recency_days'. Not retried."
    with pytest.raises(MlflowTransientError):
        with errors.retry_only_transient("churn_model"):
            raise MlflowTransientError("try again")
