"""MLflow on loopback for tests, each a context manager: real servers (`processes.server_process`,
ready once `GET /health` answers 200) of the installed MLflow, of MLflow 2.9.2 (no
`logged-models` API) from its own cached virtualenv, and `mlflow models serve`; and, on
pytest-httpserver, a server that gives every request the same answer and a proxy that answers
503 a few times, then forwards. Prebuild the 2.9.2 virtualenv (CI does it once; it is cached):

    python -m lakehouse_assets_tests.mlflow_servers --build-legacy
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from lakehouse_assets_tests.processes import HOST, free_port, http_status, log_tail, server_process

START_TIMEOUT = 120.0  # seconds for a server to answer /health (2 busy cores: be generous)

LEGACY_MLFLOW_VERSION = "2.9.2"
# mlflow 2.9.2 already caps numpy<2, pandas<3, pyarrow<15, protobuf<5, gunicorn<22 itself;
# with these two extra caps its server starts on Python 3.11 (checked 2026-11 against what
# PyPI served then). Changing this tuple changes the cache key, i.e. forces a rebuild.
LEGACY_REQUIREMENTS = (f"mlflow=={LEGACY_MLFLOW_VERSION}", "sqlalchemy<2.1", "alembic<1.14")
LEGACY_BUILD_TIMEOUT = 1200.0  # seconds per build step; a build took ~35 s here
_MARKER = ".lakehouse-complete"  # written last: its presence means the venv is complete


@contextlib.contextmanager
def _mlflow(
    name: str, python, args: list[str], tmp_dir, env: dict, timeout: float
) -> Iterator[str]:
    """`python -m mlflow *args` on a free loopback port, in `tmp_dir` (what it writes to "./" stays
    there; log `mlflow-server.log`); its URL once /health answers."""
    tmp_dir = Path(tmp_dir).resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://{HOST}:{port}"
    # One uvicorn (3.x) or gunicorn (2.9.2) worker saves memory.
    cmd = [str(python), "-m", "mlflow", *args, *f"--host {HOST} --port {port} --workers 1".split()]
    ready = lambda: http_status(f"{url}/health") == 200  # noqa: E731
    with server_process(
        name, cmd, tmp_dir / "mlflow-server.log", ready, timeout, env=env, cwd=tmp_dir
    ):
        yield url


def _tracking_server(name: str, python, tmp_dir, env: dict, timeout: float):
    """`mlflow server` with the options 2.9.2 and 3.x share: sqlite (`tmp_dir/mlflow.db`), and
    artifacts in `tmp_dir/artifacts` that clients up- and download through the server."""
    tmp_dir = Path(tmp_dir).resolve()
    args = ["server", "--backend-store-uri", f"sqlite:///{tmp_dir / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(tmp_dir / "artifacts")]  # fmt: skip
    return _mlflow(name, python, args, tmp_dir, env, timeout)


def current_mlflow_server(tmp_dir: Path | str, timeout: float = START_TIMEOUT):
    """The installed MLflow's server (3.x), as a context manager yielding its URL. Its default
    `--allowed-hosts` and CORS settings accept 127.0.0.1:<any port>."""
    # No huey job runner (GenAI evaluation jobs): 2 fewer processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return _tracking_server("mlflow server (current)", sys.executable, tmp_dir, env, timeout)


def legacy_mlflow_server(tmp_dir: Path | str, cache_dir=None, timeout: float = START_TIMEOUT):
    """MLflow 2.9.2's server (gunicorn), as `current_mlflow_server`; builds its venv if needed."""
    venv = legacy_mlflow_venv(cache_dir)
    name = f"mlflow server ({LEGACY_MLFLOW_VERSION})"
    return _tracking_server(name, venv / "bin" / "python", tmp_dir, _legacy_env(venv), timeout)


def model_server(model_uri: str, tracking_uri: str, tmp_dir: Path | str, timeout=START_TIMEOUT):
    """`mlflow models serve -m model_uri --env-manager local`; yields its URL (`/invocations`)."""
    # The scoring server starts `uvicorn` by name: the venv's bin goes first on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    args = ["models", "serve", "-m", model_uri, "--env-manager", "local"]
    return _mlflow("mlflow models serve", sys.executable, args, tmp_dir, env, timeout)


# ------------------------------------------------------------ legacy MLflow environment


def default_cache_dir() -> Path:
    """`$LAKEHOUSE_TEST_CACHE` or `~/.cache/lakehouse-assets-tests`."""
    default = Path.home() / ".cache" / "lakehouse-assets-tests"
    return Path(os.environ.get("LAKEHOUSE_TEST_CACHE") or default).expanduser()


def _legacy_venv_name() -> str:
    """Directory name; the hash covers the pins and the interpreter the venv links to."""
    key = "\n".join([*LEGACY_REQUIREMENTS, sys.version, sys.base_prefix])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    major, minor = sys.version_info[:2]
    return f"mlflow-{LEGACY_MLFLOW_VERSION}-py{major}{minor}-{digest}"


def _legacy_env(venv: Path) -> dict[str, str]:
    """Environment that keeps the legacy venv from seeing the test venv's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _build_legacy_venv(venv: Path, log: Path) -> None:
    """Create `venv` from scratch and pip-install LEGACY_REQUIREMENTS; log to `log`."""
    shutil.rmtree(venv, ignore_errors=True)  # leftovers of an interrupted build
    started, python = time.monotonic(), str(venv / "bin" / "python")
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--no-input", *LEGACY_REQUIREMENTS],
        [python, "-c", "import mlflow, mlflow.server; print('mlflow', mlflow.__version__)"],
    ]
    try:
        with open(log, "w") as out:
            for step in steps:
                print("$", *step, file=out, flush=True)
                subprocess.run(step, env=_legacy_env(venv), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=LEGACY_BUILD_TIMEOUT, check=True)  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"building the MLflow {LEGACY_MLFLOW_VERSION} venv failed at "
                           f"{exc.cmd[:4]}; log {log}:\n{log_tail(log)}") from None  # fmt: skip
    # The marker is written last: a venv without it is incomplete and gets rebuilt.
    (venv / _MARKER).write_text(f"# built in {time.monotonic() - started:.1f}s\n")


def legacy_mlflow_venv(cache_dir: Path | str | None = None) -> Path:
    """A virtualenv with MLflow 2.9.2 in `cache_dir` (default: `default_cache_dir()`), built on
    first use (log `<name>.build.log`) and reused once complete. An exclusive `flock` on a sibling
    `.lock` file keeps concurrent test processes from building into the same directory."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    venv = cache_dir / _legacy_venv_name()
    complete = lambda: (venv / _MARKER).is_file() and (venv / "bin/python").exists()  # noqa: E731
    if complete():
        return venv
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or when a builder dies
        if not complete():  # another process may have built it meanwhile
            _build_legacy_venv(venv, cache_dir / f"{venv.name}.build.log")
    return venv


# ------------------------------------------------------- fake answers (pytest-httpserver)

Answered = namedtuple("Answered", "method path status")  # path includes the query string


class LoopbackServer(HTTPServer):
    """pytest-httpserver's server on a free loopback port, one request at a time (HTTP/1.0: every
    connection is closed after its answer, so a stopped server is gone); a context manager."""

    def __init__(self) -> None:
        super().__init__(HOST, 0)

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
    server = LoopbackServer()
    server.expect_request(re.compile(".*")).respond_with_data(
        body, status, content_type=content_type
    )
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
    """Answers the first `failures` requests whose path starts with `path_prefix` with `status`
    and forwards every other one (method, path, query, headers, body) to `upstream_url`."""

    def __init__(self, upstream_url: str, failures: int, status: int, path_prefix: str) -> None:
        super().__init__()
        self.upstream_url, self.failures, self.status = upstream_url, failures, status
        self.path_prefix = path_prefix
        self.failures_sent = 0  # requests are answered one at a time: no lock needed
        self.expect_request(re.compile(".*")).respond_with_handler(self._answer)

    @property
    def forwarded_count(self) -> int:
        """How many requests reached the upstream server."""
        return self.request_count - self.failures_sent

    def _answer(self, request: Request) -> Response:
        path = request.environ["RAW_URI"]
        if path.startswith(self.path_prefix) and self.failures_sent < self.failures:
            self.failures_sent += 1
            body = f"{self.status} {HTTPStatus(self.status).phrase} (injected by flaky_proxy)\n"
            return Response(body, self.status, content_type="text/plain")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            answer = requests.request(request.method, self.upstream_url + path, headers=headers,
                                      data=request.get_data(), stream=True, timeout=300,
                                      allow_redirects=False)  # fmt: skip
        except requests.ConnectionError as exc:  # upstream down: answer like a gateway would
            return Response(f"502 Bad Gateway (flaky_proxy: {exc})\n", 502)
        body = answer.raw.read(decode_content=False)  # as sent, compressed or not
        kept = [(k, v) for k, v in answer.raw.headers.items() if k.lower() not in _HOP_BY_HOP]
        return Response(body, answer.status_code, kept)


def flaky_proxy(upstream_url: str, failures=2, status=503, path_prefix="/") -> FlakyProxy:
    """A fault-injecting reverse proxy in front of `upstream_url`, as a context manager (e.g.
    `path_prefix="/api/2.0/mlflow-artifacts/"` fails only artifact transfers). Use `proxy.url` as
    the tracking URI; `proxy.failures_sent` counts the injected answers."""
    return FlakyProxy(upstream_url, failures, status, path_prefix)


def main(argv: list[str] | None = None) -> int:
    """`--build-legacy`: build (or verify) the cached MLflow 2.9.2 venv."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse_assets_tests.mlflow_servers")
    parser.add_argument("--build-legacy", action="store_true",
                        help=f"build the cached MLflow {LEGACY_MLFLOW_VERSION} virtualenv if missing")  # fmt: skip
    parser.add_argument("--cache-dir", type=Path, help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)
    if not args.build_legacy:
        parser.print_help()
        return 2
    started = time.monotonic()
    venv = legacy_mlflow_venv(args.cache_dir)
    print(f"MLflow {LEGACY_MLFLOW_VERSION} venv ready in {time.monotonic() - started:.1f}s: {venv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
