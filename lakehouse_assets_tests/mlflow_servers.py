"""Real MLflow tracking servers, and fault injection in front of them, on loopback.

Plain context managers for tests (the conftest wraps them in fixtures):

* ``current_mlflow_server(tmp_dir)``: the MLflow installed next to the tests.
* ``legacy_mlflow_server(tmp_dir)``: MLflow 2.9.2, run from its own cached
  virtualenv (``legacy_mlflow_venv``); it has no ``logged-models`` API.
* ``always_404_server()``: answers 404 + JSON to everything, counts requests;
  ``fixed_answer_server(status, body)`` answers any status and body the same way.
* ``flaky_proxy(upstream_url)``: answers the first N requests with 503 and
  forwards every later one, bodies streamed both ways, to a real server.

Every server binds 127.0.0.1 on a free port. MLflow servers run in their own
process group (``start_new_session``), which is killed as a whole on exit, so
no uvicorn/gunicorn worker outlives a test. A server that does not answer
``GET /health`` in time raises ``MlflowServerStartError`` with its log tail.

Prebuild the legacy virtualenv (CI does this once, it is cached)::

    python -m lakehouse_assets_tests.mlflow_servers --build-legacy
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

HOST = "127.0.0.1"
START_TIMEOUT = 120.0  # seconds for a server to answer /health (2 busy cores: be generous)
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL of a server's process group

LEGACY_MLFLOW_VERSION = "2.9.2"
# mlflow 2.9.2 already caps numpy<2, pandas<3, pyarrow<15, protobuf<5, gunicorn<22 itself;
# with these two extra caps its server starts on Python 3.11 (checked 2026-11 against what
# PyPI served then). Changing this tuple changes the cache key, i.e. forces a rebuild.
LEGACY_REQUIREMENTS = (f"mlflow=={LEGACY_MLFLOW_VERSION}", "sqlalchemy<2.1", "alembic<1.14")
LEGACY_BUILD_TIMEOUT = 1200.0  # seconds per build step; a build took ~35 s here
_MARKER = ".lakehouse-complete"  # written last: its presence means the venv is complete


class MlflowServerStartError(RuntimeError):
    """An MLflow server did not answer /health in time (message has its log tail)."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 60) -> str:
    """The last `lines` lines of `log`, for an error message."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------- MLflow servers


def _health_ok(port: int) -> bool:
    """True when ``GET /health`` on ``port`` answers 200 (http.client: no env proxies)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _group_gone(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s until no process of ``proc``'s group is left."""
    deadline = time.monotonic() + timeout
    while True:
        proc.poll()  # reap the leader (our child) once it exits
        try:
            os.killpg(proc.pid, 0)  # workers stay in the group after the leader exits
        except (ProcessLookupError, PermissionError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _stop_group(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM the whole process group; SIGKILL it if anything is left after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    if not _group_gone(proc, grace):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _group_gone(proc, 5.0)
    proc.wait()


@contextlib.contextmanager
def _mlflow_server(
    name: str, cmd: list[str], port: int, tmp_dir: Path, env: dict[str, str], timeout: float
) -> Iterator[str]:
    """Run ``cmd`` (an ``mlflow server`` on ``port``) in ``tmp_dir``; yield its URL."""
    log = tmp_dir / "mlflow-server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_dir,  # anything the server writes to "./" stays in tmp_dir
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: killpg reaches every worker
        )
    try:
        problem = _wait_healthy(proc, port, timeout)
        if problem:
            raise MlflowServerStartError(
                f"{name} on port {port} {problem}; log {log}:\n{log_tail(log)}"
            )
        yield f"http://{HOST}:{port}"
    finally:
        _stop_group(proc)


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float) -> str | None:
    """Poll /health until it answers; return what went wrong instead, if anything."""
    deadline = time.monotonic() + timeout
    while not _health_ok(port):
        if proc.poll() is not None:
            return f"exited with code {proc.returncode}"
        if time.monotonic() > deadline:
            return f"did not answer GET /health within {timeout:.0f}s"
        time.sleep(0.2)
    return None


def _server_args(tmp_dir: Path, port: int) -> list[str]:
    """``mlflow server`` options shared by 2.9.2 and 3.x: sqlite + proxied artifacts."""
    return [
        "server",
        "--host", HOST,
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_dir / 'mlflow.db'}",
        "--serve-artifacts",  # clients up/download artifacts over HTTP (mlflow-artifacts:/)
        "--artifacts-destination", str(tmp_dir / "artifacts"),
        "--workers", "1",  # uvicorn (3.x) / gunicorn (2.9.2) workers: 1 saves memory
    ]  # fmt: skip


@contextlib.contextmanager
def current_mlflow_server(tmp_dir: Path | str, timeout: float = START_TIMEOUT) -> Iterator[str]:
    """Run the installed MLflow's server (3.x) on a free loopback port; yield its URL.

    Data goes to ``tmp_dir`` (``mlflow.db``, ``artifacts/``, ``mlflow-server.log``).
    No security flags are needed: 3.x's default ``--allowed-hosts`` and CORS
    settings accept ``127.0.0.1:<any port>`` and ``localhost:<any port>``.
    """
    tmp_dir = Path(tmp_dir).resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        # Don't start the huey job runner (GenAI evaluation jobs): 2 fewer processes.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    cmd = [sys.executable, "-m", "mlflow", *_server_args(tmp_dir, port)]
    with _mlflow_server("mlflow server (current)", cmd, port, tmp_dir, env, timeout) as url:
        yield url


@contextlib.contextmanager
def model_server(
    model_uri: str, tracking_uri: str, tmp_dir: Path | str, timeout: float = START_TIMEOUT
) -> Iterator[str]:
    """`mlflow models serve -m model_uri --env-manager local` on a free loopback port; yield its
    URL (`/invocations` scores, `/health` answers when ready). Stopped on exit."""
    tmp_dir = Path(tmp_dir).resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # The scoring server starts `uvicorn` by name: the venv's bin goes first on PATH.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
           "--env-manager", "local", "--host", HOST, "--port", str(port), "--workers", "1"]  # fmt: skip
    with _mlflow_server("mlflow models serve", cmd, port, tmp_dir, env, timeout) as url:
        yield url


# ------------------------------------------------------------ legacy MLflow


def default_cache_dir() -> Path:
    """``$LAKEHOUSE_TEST_CACHE`` or ``~/.cache/lakehouse-assets-tests``."""
    configured = os.environ.get("LAKEHOUSE_TEST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "lakehouse-assets-tests"


def _legacy_venv_name() -> str:
    """Directory name; the hash covers the pins and the interpreter the venv links to."""
    key = "\n".join([*LEGACY_REQUIREMENTS, sys.version, sys.base_prefix])
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    major, minor = sys.version_info[:2]
    return f"mlflow-{LEGACY_MLFLOW_VERSION}-py{major}{minor}-{digest}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_complete(venv: Path) -> bool:
    return (venv / _MARKER).is_file() and _venv_python(venv).exists()


def _legacy_env(venv: Path) -> dict[str, str]:
    """Environment that keeps the legacy venv from seeing the test venv's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _build_legacy_venv(venv: Path, log: Path) -> None:
    """Create ``venv`` from scratch and pip-install LEGACY_REQUIREMENTS; log to ``log``."""
    shutil.rmtree(venv, ignore_errors=True)  # leftovers of an interrupted build
    started = time.monotonic()
    python = str(_venv_python(venv))
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
         *LEGACY_REQUIREMENTS],
        [python, "-c", "import mlflow, mlflow.server; print('mlflow', mlflow.__version__)"],
    ]  # fmt: skip
    with open(log, "w") as out:
        for step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            done = subprocess.run(
                step,
                env=_legacy_env(venv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=LEGACY_BUILD_TIMEOUT,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"building the MLflow {LEGACY_MLFLOW_VERSION} venv failed at {step[:4]}; "
                    f"log {log}:\n{log_tail(log)}"
                )
    freeze = subprocess.run(
        [python, "-m", "pip", "freeze", "--disable-pip-version-check"],
        env=_legacy_env(venv),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elapsed = time.monotonic() - started
    # The marker is written last: a venv without it is incomplete and gets rebuilt.
    (venv / _MARKER).write_text(f"# built in {elapsed:.1f}s\n{freeze}")


def legacy_mlflow_venv(cache_dir: Path | str | None = None) -> Path:
    """Return a virtualenv with MLflow 2.9.2, building it on first use.

    The venv lives in ``cache_dir`` (default: ``default_cache_dir()``) and is
    reused once complete. An exclusive ``flock`` on a sibling ``.lock`` file
    keeps concurrent test processes from building into the same directory;
    the waiting ones then reuse the result. Build log: ``<name>.build.log``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    venv = cache_dir / _legacy_venv_name()
    if _is_complete(venv):
        return venv
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or when a builder dies
        if not _is_complete(venv):  # another process may have built it meanwhile
            _build_legacy_venv(venv, cache_dir / f"{venv.name}.build.log")
    return venv


@contextlib.contextmanager
def legacy_mlflow_server(
    tmp_dir: Path | str,
    cache_dir: Path | str | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Run MLflow 2.9.2's server (gunicorn) on a free loopback port; yield its URL.

    Builds the cached venv first if needed (see ``legacy_mlflow_venv``).
    Data goes to ``tmp_dir`` as for ``current_mlflow_server``.
    """
    venv = legacy_mlflow_venv(cache_dir)
    tmp_dir = Path(tmp_dir).resolve()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [str(_venv_python(venv)), "-m", "mlflow", *_server_args(tmp_dir, port)]
    name = f"mlflow server ({LEGACY_MLFLOW_VERSION})"
    with _mlflow_server(name, cmd, port, tmp_dir, _legacy_env(venv), timeout) as url:
        yield url


# ------------------------------------------------- small loopback HTTP servers

# Headers that describe one connection, not the message: never forwarded.
_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
}  # fmt: skip
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request a loopback server answered (path includes the query string)."""

    method: str
    path: str
    status: int


class LoopbackHTTPServer:
    """Base of the threaded HTTP servers below: a URL and a log of requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self.url = ""  # set once listening

    @property
    def requests(self) -> list[RecordedRequest]:
        """Copy of every request answered so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Number of requests answered so far."""
        with self._lock:
            return len(self._requests)

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(method, path, status))


class _Handler(BaseHTTPRequestHandler):
    """Keep-alive handler for every method; subclasses implement ``handle_any``."""

    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    def handle_any(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self.handle_any()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, fmt, *args) -> None:  # keep pytest output quiet
        pass

    @property
    def service(self):
        return self.server.service  # type: ignore[attr-defined]

    def iter_request_body(self) -> Iterator[bytes]:
        """Yield the request body in chunks (Content-Length or chunked encoding)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the empty line
                        pass
                    return
                yield self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(_CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        """Send a complete response (no body for HEAD) and record it."""
        for _ in self.iter_request_body():  # drain: the connection stays usable
            pass
        self.service._record(self.command, self.path, status)  # before the client can see it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _ThreadingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that can also cut its open (keep-alive) connections."""

    daemon_threads = True

    def __init__(self, handler: type[_Handler], service: LoopbackHTTPServer) -> None:
        super().__init__((HOST, 0), handler)
        self.service = service
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away mid-request: not worth a traceback
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open client connection (clients see a reset/EOF)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def _serve(service: LoopbackHTTPServer, handler: type[_Handler]) -> Iterator[None]:
    """Serve ``handler`` on a free loopback port in a daemon thread; set ``service.url``.

    On exit the listening socket *and* the clients' pooled keep-alive
    connections are closed, so a stopped server really is gone.
    """
    httpd = _ThreadingServer(handler, service)
    service.url = f"http://{HOST}:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
        name=handler.__name__,
        daemon=True,
    )
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()
        thread.join(5)


class FixedAnswerServer(LoopbackHTTPServer):
    """Answers every request with the same status, body and content type."""

    def __init__(self, status: int, body: bytes, content_type: str) -> None:
        super().__init__()
        self.status = status
        self.body = body
        self.content_type = content_type


class _FixedAnswerHandler(_Handler):
    def handle_any(self) -> None:
        self.reply(self.service.status, self.service.body, self.service.content_type)


@contextlib.contextmanager
def fixed_answer_server(
    status: int, body: bytes | dict, content_type: str = "text/plain"
) -> Iterator[FixedAnswerServer]:
    """Serve ``status`` + ``body`` (a dict is sent as JSON) to every method and path, as a proxy
    or gateway in front of a tracking server might; yield the server."""
    if isinstance(body, dict):
        body, content_type = json.dumps(body).encode(), "application/json"
    server = FixedAnswerServer(status, body, content_type)
    with _serve(server, _FixedAnswerHandler):
        yield server


DEFAULT_404_BODY = {
    "error_code": "ENDPOINT_NOT_FOUND",
    "message": "always_404_server: no such endpoint",
}


@contextlib.contextmanager
def always_404_server(body: dict | None = None) -> Iterator[FixedAnswerServer]:
    """Serve 404 + JSON ``body`` to every method and path; yield the server.

    The default body is MLflow-shaped (``error_code`` + ``message``), so the
    MLflow client raises ``RestException`` with ``get_http_status_code() == 404``.
    Note: a JSON body *without* ``error_code`` (e.g. ``{"detail": "Not Found"}``)
    makes the client raise ``RestException`` with error_code ``INTERNAL_ERROR``,
    i.e. ``get_http_status_code() == 500``, although the HTTP status was 404.
    """
    with fixed_answer_server(404, DEFAULT_404_BODY if body is None else body) as server:
        yield server


class FlakyProxy(LoopbackHTTPServer):
    """Reverse proxy that fails the first ``failures`` matching requests with ``status``."""

    def __init__(self, upstream_url: str, failures: int, status: int, path_prefix: str) -> None:
        super().__init__()
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.failures = failures
        self.status = status
        self.path_prefix = path_prefix
        self._injected = 0

    @property
    def failures_sent(self) -> int:
        """How many ``status`` answers were injected so far."""
        with self._lock:
            return self._injected

    @property
    def forwarded_count(self) -> int:
        """How many requests reached the upstream server."""
        return self.request_count - self.failures_sent

    def _should_fail(self, path: str) -> bool:
        """Decide (atomically) whether this request gets an injected failure."""
        with self._lock:
            if path.startswith(self.path_prefix) and self._injected < self.failures:
                self._injected += 1
                return True
            return False


class _FlakyProxyHandler(_Handler):
    def handle_any(self) -> None:
        proxy: FlakyProxy = self.service
        if proxy._should_fail(self.path):
            reason = http.client.responses.get(proxy.status, "Error")
            body = f"{proxy.status} {reason} (injected by flaky_proxy)\n".encode()
            self.reply(proxy.status, body, "text/plain")
        else:
            self.forward(proxy)

    def forward(self, proxy: FlakyProxy) -> None:
        """Stream this request to the upstream server and its response back."""
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
        try:
            try:
                response = self._send_upstream(upstream, proxy)
            except OSError as exc:  # upstream down: answer like a gateway would
                body = f"502 Bad Gateway (flaky_proxy: {exc})\n".encode()
                self.close_connection = True  # the request body may be half-read
                proxy._record(self.command, self.path, 502)  # before the client can see it
                self.send_response(502)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            proxy._record(self.command, self.path, response.status)
            self.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            has_body = self.command != "HEAD" and response.status not in (204, 304)
            if has_body and response.getheader("Content-Length") is None:
                # Unknown length (upstream sent chunks): delimit the body by closing.
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            while has_body and (chunk := response.read(_CHUNK)):
                self.wfile.write(chunk)
        finally:
            upstream.close()

    def _send_upstream(
        self, upstream: http.client.HTTPConnection, proxy: FlakyProxy
    ) -> http.client.HTTPResponse:
        upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        upstream.putheader("Host", f"{proxy.upstream_host}:{proxy.upstream_port}")
        for key, value in self.headers.items():
            if key.lower() not in _HOP_BY_HOP | {"host", "content-length"}:
                upstream.putheader(key, value)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        elif self.headers.get("Content-Length") is not None:
            upstream.putheader("Content-Length", self.headers["Content-Length"])
        upstream.endheaders()
        for chunk in self.iter_request_body():
            upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            upstream.send(b"0\r\n\r\n")
        return upstream.getresponse()


@contextlib.contextmanager
def flaky_proxy(
    upstream_url: str, failures: int = 2, status: int = 503, path_prefix: str = "/"
) -> Iterator[FlakyProxy]:
    """Put a fault-injecting reverse proxy in front of ``upstream_url``; yield it.

    The first ``failures`` requests whose path starts with ``path_prefix``
    (e.g. ``"/api/2.0/mlflow-artifacts/"`` to fail only artifact transfers) get
    ``status`` with a plain-text body; everything else is forwarded: any
    method, headers, query string and body, streamed in 64 KiB chunks both
    ways. Use ``proxy.url`` as the tracking URI; ``proxy.failures_sent`` counts
    the injected answers.
    """
    proxy = FlakyProxy(upstream_url, failures, status, path_prefix)
    with _serve(proxy, _FlakyProxyHandler):
        yield proxy


# -------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``--build-legacy``: build (or verify) the cached MLflow 2.9.2 venv."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse_assets_tests.mlflow_servers")
    parser.add_argument(
        "--build-legacy",
        action="store_true",
        help=f"build the cached MLflow {LEGACY_MLFLOW_VERSION} virtualenv if missing",
    )
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
