"""Smoke tests of ``mlflow_servers``, and the facts about the MLflow client they pin down.

The MLflow client under test is the one installed next to the tests (3.x).
Servers: the same MLflow (``current``) and MLflow 2.9.2 (``legacy``: no
``logged-models`` API, which is what broke ``mlflow.sklearn.log_model``).

Error facts pinned here (the production code classifies transient vs
deterministic failures from them):

* HTTP status + JSON body with ``error_code`` -> ``RestException``;
  ``get_http_status_code()`` comes from the body's ``error_code``, not from the
  HTTP status. A JSON body without ``error_code`` gives ``INTERNAL_ERROR`` -> 500.
* Non-JSON body, status not retried -> plain ``MlflowException`` "... failed with
  error code 404 != 200. Response body: ..."; error_code mapped from the status.
* Retried statuses (408, 429, 500, 502, 503, 504) once retries are used up,
  connection refused and read timeouts -> plain ``MlflowException``
  "API request to <url> failed with exception ..." with error_code
  ``INTERNAL_ERROR`` (so ``get_http_status_code() == 500`` for all of them),
  ``__cause__`` None and the requests exception only as ``__context__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from lakehouse_assets_tests.support.mlflow_servers import (
    always_404_server,
    current_mlflow_server,
    flaky_proxy,
    free_port,
    legacy_mlflow_server,
)

ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts/"


@pytest.fixture(autouse=True)
def no_client_retries(monkeypatch):
    """Fail fast: the client's default is 7 retries with backoff (~4 minutes)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


@pytest.fixture
def use_tracking_uri(monkeypatch):
    """Point the fluent API (``mlflow.start_run``, ``log_model``) at a URL for one test."""

    def use(url: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # so monkeypatch restores it after
        mlflow.set_tracking_uri(url)

    yield use
    mlflow.set_tracking_uri(None)  # unsets the global (and the env var, restored above)


def _tiny_model():
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 1.0, 2.0])


def _unique(prefix: str) -> str:
    return f"{prefix}-{time.time_ns()}"


# ------------------------------------------------ client API on both servers


@pytest.mark.parametrize("server", ["legacy_url", "current_url"])
def test_client_api_works(server, request, tmp_path):
    url = request.getfixturevalue(server)
    client = MlflowClient(url)

    experiment_id = client.create_experiment(_unique("smoke"))
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    client.log_metric(run_id, "auc", 0.75)
    note = tmp_path / "note.txt"
    note.write_text("hello from the smoke test")
    client.log_artifact(run_id, str(note))

    name = _unique("churn")
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run_id
    )
    client.set_registered_model_alias(name, "champion", version.version)
    champion = client.get_model_version_by_alias(name, "champion")
    downloaded = client.download_artifacts(run_id, "note.txt", str(tmp_path))

    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # served over HTTP
    assert client.get_run(run_id).data.metrics == {"auc": 0.75}
    assert champion.version == version.version == "1"
    assert champion.run_id == run_id
    assert Path(downloaded).read_text() == "hello from the smoke test"
    assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]


def test_legacy_server_rejects_log_model_with_logged_models_404(legacy_url, use_tracking_uri):
    """The incident: the 3.x client's log_model needs /logged-models, 2.9.2 lacks it."""
    client = MlflowClient(legacy_url)
    experiment_id = client.create_experiment(_unique("incident"))
    use_tracking_uri(legacy_url)
    with mlflow.start_run(experiment_id=experiment_id):
        with pytest.raises(MlflowException) as excinfo:
            mlflow.sklearn.log_model(_tiny_model(), name="model")

    exc = excinfo.value
    # Flask's HTML 404 page is not JSON: a plain MlflowException, not RestException.
    assert type(exc) is MlflowException
    assert "/api/2.0/mlflow/logged-models failed with error code 404 != 200" in str(exc)
    assert exc.error_code == "ENDPOINT_NOT_FOUND"
    assert exc.get_http_status_code() == 404


def test_current_server_accepts_log_model(current_url, use_tracking_uri):
    client = MlflowClient(current_url)
    experiment_id = client.create_experiment(_unique("log-model"))
    use_tracking_uri(current_url)
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(_tiny_model(), name="model")
    loaded = mlflow.sklearn.load_model(f"models:/{info.model_id}")

    assert client.get_logged_model(info.model_id).name == "model"
    assert loaded.predict([[3.0]])[0] == pytest.approx(3.0)


# ---------------------------------------------------------- 404 answers


def test_404_with_mlflow_error_body_is_a_rest_exception_and_not_retried(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # 404 is never retried
    with always_404_server() as server:
        client = MlflowClient(server.url)
        with pytest.raises(RestException) as by_name:
            client.get_experiment_by_name("anything")
        with pytest.raises(RestException) as create:
            client.create_experiment("anything")

    for exc in (by_name.value, create.value):
        assert str(exc) == "ENDPOINT_NOT_FOUND: always_404_server: no such endpoint"
        assert exc.error_code == "ENDPOINT_NOT_FOUND"
        assert exc.get_http_status_code() == 404
        assert exc.__cause__ is None
    assert [(r.method, r.path.split("?")[0], r.status) for r in server.requests] == [
        ("GET", "/api/2.0/mlflow/experiments/get-by-name", 404),
        ("POST", "/api/2.0/mlflow/experiments/create", 404),
    ]


def test_404_with_foreign_json_body_looks_like_a_500():
    """Classification trap: the status code of a RestException comes from the body."""
    with always_404_server({"detail": "Not Found"}) as server:
        with pytest.raises(RestException) as excinfo:
            MlflowClient(server.url).get_experiment_by_name("anything")

    assert str(excinfo.value) == "INTERNAL_ERROR: Response: {'detail': 'Not Found'}"
    assert excinfo.value.get_http_status_code() == 500
    assert server.request_count == 1


def test_404_resource_does_not_exist_makes_get_experiment_by_name_return_none():
    body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "nope"}
    with always_404_server(body) as server:
        assert MlflowClient(server.url).get_experiment_by_name("anything") is None
    assert server.request_count == 1


# ------------------------------------------------- transient failures


def test_503_without_retries_surfaces_at_once(current_url):
    with flaky_proxy(current_url, failures=1) as proxy:
        client = MlflowClient(proxy.url)
        started = time.monotonic()
        with pytest.raises(MlflowException) as excinfo:
            client.get_experiment_by_name("Default")
        elapsed = time.monotonic() - started
        default = client.get_experiment_by_name("Default")  # the next request goes through

    exc = excinfo.value
    assert type(exc) is MlflowException
    assert str(exc).startswith(
        f"API request to {proxy.url}/api/2.0/mlflow/experiments/get-by-name failed with "
        f"exception HTTPConnectionPool(host='127.0.0.1', port={proxy.url.rsplit(':', 1)[1]}): "
        "Max retries exceeded with url: /api/2.0/mlflow/experiments/get-by-name"
    )
    assert "(Caused by ResponseError('too many 503 error responses'))" in str(exc)
    assert exc.error_code == "INTERNAL_ERROR"
    assert exc.get_http_status_code() == 500
    assert exc.__cause__ is None
    assert isinstance(exc.__context__, requests.exceptions.RetryError)
    assert elapsed < 5
    assert default.experiment_id == "0"
    assert (proxy.request_count, proxy.failures_sent, proxy.forwarded_count) == (2, 1, 1)


def test_503_is_retried_by_the_client_when_retries_are_on(current_url, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    with flaky_proxy(current_url, failures=2) as proxy:
        experiment = MlflowClient(proxy.url).get_experiment_by_name("Default")

    assert experiment.experiment_id == "0"
    assert [r.status for r in proxy.requests] == [503, 503, 200]


def test_retries_exhausted_after_max_retries_plus_one_requests(current_url, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    with flaky_proxy(current_url, failures=10, status=429) as proxy:
        with pytest.raises(MlflowException, match=r"too many 429 error responses"):
            MlflowClient(proxy.url).create_experiment(_unique("never"))
    assert proxy.failures_sent == 3


def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient(url).create_experiment("anything")

    exc = excinfo.value
    assert type(exc) is MlflowException
    assert str(exc).startswith(f"API request to {url}/api/2.0/mlflow/experiments/create failed")
    assert "NewConnectionError" in str(exc)
    assert "[Errno 111] Connection refused" in str(exc)
    assert exc.get_http_status_code() == 500
    assert isinstance(exc.__context__, requests.exceptions.ConnectionError)


def test_read_timeout_is_a_connection_error_not_a_timeout(monkeypatch):
    """MLFLOW_HTTP_REQUEST_TIMEOUT applies; the failure is not requests' Timeout."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    with socket.socket() as silent:  # the kernel accepts connections, nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(MlflowException) as excinfo:
            MlflowClient(url).get_experiment_by_name("anything")
        elapsed = time.monotonic() - started

    exc = excinfo.value
    assert "Read timed out. (read timeout=1)" in str(exc)
    assert "ReadTimeoutError" in str(exc)
    assert "timeout exception" not in str(exc)  # MLflow's own timeout message is not used
    assert isinstance(exc.__context__, requests.exceptions.ConnectionError)
    assert not isinstance(exc.__context__, requests.exceptions.Timeout)
    assert 0.9 < elapsed < 10


def test_backoff_factor_must_be_an_integer(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.5")
    with pytest.raises(ValueError, match="MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"):
        MlflowClient(f"http://127.0.0.1:{free_port()}").get_experiment_by_name("x")


# ------------------------------------------------ artifacts through the proxy


def test_big_artifact_streams_through_proxy_with_retried_uploads(
    current_url, monkeypatch, tmp_path
):
    """24 MiB up and down through the proxy; the PUT fails twice and is re-sent whole."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    with flaky_proxy(current_url, failures=2, path_prefix=ARTIFACTS_PREFIX) as proxy:
        client = MlflowClient(proxy.url)
        run = client.create_run(client.create_experiment(_unique("big")))
        client.log_artifact(run.info.run_id, str(big))
        out = tmp_path / "out"
        out.mkdir()
        downloaded = client.download_artifacts(run.info.run_id, "big.bin", str(out))

    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    assert hashlib.sha256(Path(downloaded).read_bytes()).hexdigest() == digest
    puts = [r.status for r in proxy.requests if r.method == "PUT"]
    assert puts == [503, 503, 200]
    assert proxy.failures_sent == 2


def test_download_failure_is_reported_as_a_missing_path(current_url, tmp_path):
    """Classification trap: download_artifacts turns any failure, 503 included,
    into RESOURCE_DOES_NOT_EXIST (404); the real cause is only logged at DEBUG."""
    client = MlflowClient(current_url)
    run = client.create_run(client.create_experiment(_unique("download")))
    note = tmp_path / "note.txt"
    note.write_text("x")
    client.log_artifact(run.info.run_id, str(note))

    with flaky_proxy(current_url, failures=100, path_prefix=ARTIFACTS_PREFIX) as proxy:
        with pytest.raises(MlflowException) as excinfo:
            MlflowClient(proxy.url).download_artifacts(run.info.run_id, "note.txt", str(tmp_path))

    exc = excinfo.value
    assert str(exc) == (
        "Failed to download artifacts from path 'note.txt', please ensure that the path is correct."
    )
    assert exc.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert exc.get_http_status_code() == 404
    assert proxy.failures_sent >= 1


def test_artifact_repo_is_cached_per_run_id_with_its_first_url(current_url, tmp_path):
    """A run's artifact repository (with its host) is cached process-wide by run_id:
    a client with another tracking URI still uploads to the first URL."""
    client = MlflowClient(current_url)
    run_id = client.create_run(client.create_experiment(_unique("cache"))).info.run_id
    note = tmp_path / "note.txt"
    note.write_text("x")
    client.log_artifact(run_id, str(note))  # caches the repo for current_url

    with flaky_proxy(current_url, failures=0) as proxy:
        MlflowClient(proxy.url).log_artifact(run_id, str(note))

    assert proxy.request_count == 0  # nothing went through the proxy


# ------------------------------------------------------------- cleanup


def _processes_listening_on(port: int) -> list[str]:
    """Command lines of processes whose arguments name ``port`` (``--port P``, ``-b h:P``)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if str(port) in args or any(a.endswith(f":{port}") for a in args):
                found.append(" ".join(args))
    return found


@pytest.mark.parametrize("server", [legacy_mlflow_server, current_mlflow_server])
def test_server_leaves_no_process_behind(server, tmp_path):
    started = time.monotonic()
    with server(tmp_path) as url:
        startup = time.monotonic() - started
        port = int(url.rsplit(":", 1)[1])
        # The CLI plus at least one worker (gunicorn master+worker / uvicorn).
        assert len(_processes_listening_on(port)) >= 2
    assert _processes_listening_on(port) == []
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/health", timeout=2)
    print(f"{server.__name__} answered /health after {startup:.1f}s")
