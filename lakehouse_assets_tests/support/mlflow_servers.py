"""MLflow on loopback for tests, each a context manager: real servers of the installed MLflow,
of MLflow 2.9.2 (no `logged-models` API) from its own cached virtualenv, and `mlflow models
serve`; and, on pytest-httpserver, a server that gives every request the same answer and a proxy
that answers 503 a few times, then forwards. Prebuild the 2.9.2 virtualenv (CI does it once):

    python -m lakehouse_assets_tests.support.mlflow_servers --build-legacy
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import urllib3
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from lakehouse_assets_tests.support.processes import (
    HOST,
    clean_env,
    free_port,
    log_tail,
    run_command,
    server_process,
)

START_TIMEOUT = 120.0  # seconds for a server to answer /health (2 busy cores: be generous)

LEGACY_MLFLOW_VERSION = "2.9.2"
# mlflow 2.9.2 already caps numpy<2, pandas<3, pyarrow<15, protobuf<5, gunicorn<22 itself;
# with these two extra caps its server starts on Python 3.11 (checked 2026-11 against what
# PyPI served then). Changing this tuple changes the cache key, i.e. forces a rebuild.
LEGACY_REQUIREMENTS = (f"mlflow=={LEGACY_MLFLOW_VERSION}", "sqlalchemy<2.1", "alembic<1.14")
LEGACY_BUILD_TIMEOUT = 1200.0  # seconds per build step; a build took ~35 s here
_MARKER = ".lakehouse-complete"  # written last: its presence means the venv is complete
# `mlflow server` with the options 2.9.2 and 3.x share: sqlite, and artifacts that clients up- and
# download through the server, both in the server's directory.
TRACKING_SERVER = ["server", "--backend-store-uri", "sqlite:///mlflow.db",
                   "--serve-artifacts", "--artifacts-destination", "artifacts"]  # fmt: skip


@contextlib.contextmanager
def _mlflow(name: str, python, args: list[str], tmp_dir: Path, env: dict) -> Iterator[str]:
    """`python -m mlflow *args` on a free loopback port, in `tmp_dir` (what it writes to "./" stays
    there; log `mlflow-server.log`); its URL once /health answers."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{HOST}:{port}"
    # One uvicorn (3.x) or gunicorn (2.9.2) worker saves memory.
    cmd = [str(python), "-m", "mlflow", *args, *f"--host {HOST} --port {port} --workers 1".split()]
    log = tmp_dir / "mlflow-server.log"
    with server_process(name, cmd, log, f"{url}/health", START_TIMEOUT, env=env, cwd=tmp_dir):
        yield url


def current_mlflow_server(tmp_dir: Path):
    """The installed MLflow's server (3.x), as a context manager yielding its URL. Its default
    `--allowed-hosts` and CORS settings accept 127.0.0.1:<any port>."""
    # No huey job runner (GenAI evaluation jobs): 2 fewer processes.
    env = clean_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    return _mlflow("mlflow server (current)", sys.executable, TRACKING_SERVER, tmp_dir, env)


def legacy_mlflow_server(tmp_dir: Path):
    """MLflow 2.9.2's server (gunicorn), as `current_mlflow_server`; builds its venv if needed."""
    venv = legacy_mlflow_venv()
    name = f"mlflow server ({LEGACY_MLFLOW_VERSION})"
    return _mlflow(name, venv / "bin" / "python", TRACKING_SERVER, tmp_dir, _legacy_env(venv))


def model_server(model_uri: str, tracking_uri: str, tmp_dir: Path):
    """`mlflow models serve -m model_uri --env-manager local`; yields its URL (`/invocations`).
    It starts `uvicorn` by name: `clean_env` puts the venv's bin first on PATH."""
    env = clean_env(MLFLOW_TRACKING_URI=tracking_uri)
    args = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    return _mlflow("mlflow models serve", sys.executable, args, tmp_dir, env)


# ------------------------------------------------------------ legacy MLflow environment


def _legacy_env(venv: Path) -> dict[str, str]:
    """Environment that keeps the legacy venv from seeing the test venv's packages."""
    env = clean_env(VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _build_legacy_venv(venv: Path, log: Path) -> None:
    """Create `venv` from scratch and pip-install LEGACY_REQUIREMENTS; log to `log`."""
    shutil.rmtree(venv, ignore_errors=True)  # leftovers of an interrupted build
    log.unlink(missing_ok=True)
    started, python = time.monotonic(), str(venv / "bin" / "python")
    for step in (
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--no-input", *LEGACY_REQUIREMENTS],
        [python, "-c", "import mlflow, mlflow.server; print('mlflow', mlflow.__version__)"],
    ):
        with open(log, "a") as out:
            print("$", *step, file=out)
        if run_command(step, _legacy_env(venv), log, LEGACY_BUILD_TIMEOUT) != 0:
            raise RuntimeError(f"building the MLflow {LEGACY_MLFLOW_VERSION} venv failed at "
                               f"{step[:4]}; log {log}:\n{log_tail(log)}")  # fmt: skip
    # The marker is written last: a venv without it is incomplete and gets rebuilt.
    (venv / _MARKER).write_text(f"# built in {time.monotonic() - started:.1f}s\n")


def legacy_mlflow_venv() -> Path:
    """A virtualenv with MLflow 2.9.2 in `$LAKEHOUSE_TEST_CACHE` (default
    `~/.cache/lakehouse-assets-tests`), named after a hash of the pins and the interpreter, built
    on first use (log `<name>.build.log`) under a `flock` that concurrent test processes share."""
    cache_dir = os.environ.get("LAKEHOUSE_TEST_CACHE") or "~/.cache/lakehouse-assets-tests"
    key = "\n".join([*LEGACY_REQUIREMENTS, sys.version, sys.base_prefix])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    python = "py{}{}".format(*sys.version_info[:2])
    venv = Path(cache_dir).expanduser() / f"mlflow-{LEGACY_MLFLOW_VERSION}-{python}-{digest}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or when a builder dies
        if not (venv / _MARKER).is_file():  # never built, or its build was interrupted
            _build_legacy_venv(venv, Path(f"{venv}.build.log"))
    return venv


# ------------------------------------------------------- fake answers (pytest-httpserver)

Answered = namedtuple("Answered", "method path status")  # path includes the query string
ANY_PATH = re.compile(".*")


class LoopbackServer(HTTPServer):
    """pytest-httpserver's server (made with `host=HOST`: port 0 picks a free one), one request at
    a time (HTTP/1.0: every connection is closed after its answer, so a stopped server is gone);
    a context manager."""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def requests(self) -> list[Answered]:
        """Every request answered so far, in order (logged before the client sees the answer)."""
        return [Answered(r.method, r.environ["RAW_URI"], a.status_code) for r, a in self.log]

    @property
    def request_count(self) -> int:
        return len(self.log)


def fixed_answer_server(status: int, body: bytes | dict, content_type="text/plain"):
    """A `LoopbackServer` that answers `status` + `body` (a dict is sent as JSON) to every method
    and path, as a proxy or gateway in front of a tracking server might."""
    if isinstance(body, dict):
        body, content_type = json.dumps(body).encode(), "application/json"
    server = LoopbackServer(HOST)
    server.expect_request(ANY_PATH).respond_with_data(body, status, content_type=content_type)
    return server


DEFAULT_404_BODY = {
    "error_code": "ENDPOINT_NOT_FOUND",
    "message": "always_404_server: no such endpoint",
}


def always_404_server(body: dict | None = None):
    """404 + JSON `body` to everything. The default body is MLflow-shaped (`error_code` +
    `message`): the client raises `RestException` with `get_http_status_code() == 404`. A JSON
    body *without* `error_code` (e.g. `{"detail": "Not Found"}`) makes it raise `RestException`
    with error_code `INTERNAL_ERROR`, i.e. `get_http_status_code() == 500`."""
    return fixed_answer_server(404, DEFAULT_404_BODY if body is None else body)


# Headers that describe one connection, not the message: never forwarded.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
}  # fmt: skip


class FlakyProxy(LoopbackServer):
    """A fault-injecting reverse proxy: answers the first `failures` requests whose path starts
    with `path_prefix` (e.g. "/api/2.0/mlflow-artifacts/": artifact transfers) with `status` and
    forwards every other one (method, path, query, headers, body) to `upstream_url`."""

    def __init__(self, upstream_url: str, failures=2, status=503, path_prefix="/") -> None:
        super().__init__(HOST)
        self.upstream_url, self.failures, self.status = upstream_url, failures, status
        self.path_prefix = path_prefix
        self.failures_sent = 0  # requests are answered one at a time: no lock needed
        self.expect_request(ANY_PATH).respond_with_handler(self._answer)

    @property
    def forwarded_count(self) -> int:
        return self.request_count - self.failures_sent

    def _answer(self, request: Request) -> Response:
        path = request.environ["RAW_URI"]
        if path.startswith(self.path_prefix) and self.failures_sent < self.failures:
            self.failures_sent += 1
            body = f"{self.status} {HTTPStatus(self.status).phrase} (injected by flaky_proxy)\n"
            return Response(body, self.status, content_type="text/plain")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        with urllib3.PoolManager() as pool:  # a connection per request; the answer as it is sent
            answer = pool.request(request.method, self.upstream_url + path, headers=headers,
                                  body=request.get_data(), decode_content=False, redirect=False,
                                  retries=False, timeout=300)  # fmt: skip
        kept = [(k, v) for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP]
        return Response(answer.data, answer.status, kept)


flaky_proxy = FlakyProxy  # named as the other servers' factories


if __name__ == "__main__":  # --build-legacy: build (or verify) the cached MLflow 2.9.2 venv
    if sys.argv[1:] != ["--build-legacy"]:
        sys.exit("usage: python -m lakehouse_assets_tests.support.mlflow_servers --build-legacy")
    print(f"MLflow {LEGACY_MLFLOW_VERSION} venv ready: {legacy_mlflow_venv()}")
