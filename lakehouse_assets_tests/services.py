"""Real servers on loopback for tests: PostgreSQL, a moto S3 server, redis.

Each helper is a plain context manager that starts the server on a free
127.0.0.1 port, waits (bounded) until it answers, and kills the server's
process group on exit, even when the test fails. A server that does not come
up raises ``ServiceStartError`` with the tail of its log.

System packages come from ``.ci/install-services.sh``; the Python clients
(boto3, psycopg2, redis, ...) are imported only where they are used.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse_assets_tests.mlflow_servers import HOST, free_port, log_tail


def _pg_bin() -> Path:
    """``$LAKEHOUSE_PG_BIN``, else the newest Debian PostgreSQL (15 on Debian 12, 17 on 13)."""
    if os.environ.get("LAKEHOUSE_PG_BIN"):
        return Path(os.environ["LAKEHOUSE_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()


class ServiceStartError(RuntimeError):
    """A test service did not become ready in time."""


# ---------------------------------------------------------------- helpers


def _spawn(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, stdout+stderr appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )


def _wait_ready(
    name: str, proc: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float
) -> None:
    """Poll ``ready()`` until true; raise with the log tail on exit or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            problem = f"exited with code {proc.returncode}"
            break
        if ready():
            return
        if time.monotonic() > deadline:
            problem = f"not ready after {timeout:.0f}s"
            break
        time.sleep(0.1)
    raise ServiceStartError(f"{name} {problem}; log {log}:\n{log_tail(log, 40)}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """Send ``sig`` to the leader, wait up to ``grace`` s, then SIGKILL its group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # Kill whatever is left in the group (also children of an exited leader).
    deadline = time.monotonic() + 5
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        while time.monotonic() < deadline:  # until the group is gone
            os.killpg(proc.pid, 0)
            time.sleep(0.05)
    proc.wait()


def http_answers(url: str) -> bool:
    """True if ``url`` gives any HTTP answer (even an error status)."""
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def server_process(
    name: str,
    cmd: list[str],
    log: Path | str,
    ready: Callable[[], bool],
    timeout: float = 30.0,
    **popen_kwargs,
) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` in its own process group until the block exits.

    Waits until ``ready()`` is true (raising ``ServiceStartError`` with the
    tail of ``log`` otherwise); on exit SIGTERMs it, then SIGKILLs the group.
    Used below, and for ad-hoc servers such as ``mlflow server``.
    """
    log = Path(log)
    proc = _spawn(cmd, log, **popen_kwargs)
    try:
        _wait_ready(name, proc, ready, log, timeout)
        yield proc
    finally:
        _stop(proc)


# --------------------------------------------------------------- postgres


@dataclass
class PostgresServer:
    """A running PostgreSQL; ``user`` is a superuser with password auth."""

    host: str
    port: int
    user: str
    password: str
    data_dir: Path
    log: Path
    timeout: float = 30.0
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    def url(self, driver: str | None = None, database: str = "postgres") -> str:
        """SQLAlchemy/libpq URL. Dagster needs ``driver="psycopg2"``: with
        SQLAlchemy 2.1 a bare ``postgresql://`` means psycopg 3."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """Create database ``name`` (a plain identifier) with psql."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a plain identifier: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with the psql client and return its output."""
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
               "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
               "-c", sql]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Start the server on ``data_dir`` and wait until it accepts connections.

        Durability is traded for speed (fsync off): data survives ``restart()``
        (a clean shutdown), not a crash of the machine.
        """
        if self._proc is not None:
            raise RuntimeError("postgres is already running")
        cmd = [str(PG_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
               "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories=",
               "-c", "fsync=off", "-c", "synchronous_commit=off",
               "-c", "full_page_writes=off"]  # fmt: skip
        self._proc = _spawn(cmd, self.log, cwd=self.data_dir, **_as_postgres())
        isready = [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        try:
            _wait_ready(
                "postgres",
                self._proc,
                lambda: subprocess.run(isready, check=False).returncode == 0,
                self.log,
                self.timeout,
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT); the data directory is kept."""
        if self._proc is not None:
            _stop(self._proc, signal.SIGINT)
            self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same data directory and port."""
        self.stop()
        self.start()


def _as_postgres() -> dict:
    """Popen kwargs to run as the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@contextlib.contextmanager
def postgres_server(tmp_dir: Path | str, timeout: float = 30.0) -> Iterator[PostgresServer]:
    """Run PostgreSQL on a free loopback port; yields a ``PostgresServer``.

    The log goes to ``tmp_dir/postgres.log``. The data directory is a fresh
    directory under the system temp dir owned by the server user (as root
    that is ``postgres``, which cannot enter pytest's 0700 ``tmp_path``); it
    is removed on exit.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "postgres.log"
    base = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
        server = PostgresServer(
            host=HOST,
            port=free_port(),
            user="lakehouse",
            password=secrets.token_hex(16),  # hex: safe in URLs unescaped
            data_dir=base / "data",
            log=log,
            timeout=timeout,
        )
        pwfile = base / "pwfile"
        pwfile.write_text(server.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", server.user,
                  f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                  "--no-locale", "--no-sync", "--no-instructions"]  # fmt: skip
        with open(log, "ab") as out:
            done = subprocess.run(
                initdb, cwd=base, stdout=out, stderr=subprocess.STDOUT, check=False,
                timeout=timeout, **_as_postgres(),
            )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise ServiceStartError(f"initdb failed; log {log}:\n{log_tail(log, 40)}")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------- s3


@dataclass
class S3Server:
    """A running moto S3 server; any credentials are accepted."""

    endpoint_url: str
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """Environment for boto3-based clients (MLflow included)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self):
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` and return it."""
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def s3_server(
    tmp_dir: Path | str | None = None,
    timeout: float = 30.0,
    access_key: str = "testing",
    secret_key: str = "testing",
) -> Iterator[S3Server]:
    """Run moto's S3 server (``python -m moto.server``) on a free loopback port.

    The log goes to ``tmp_dir/moto.log`` (a throwaway dir if not given). moto accepts any
    credentials; pass random ones to check that they never leak into logs.
    """
    with contextlib.ExitStack() as stack:
        if tmp_dir is None:
            tmp_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="lakehouse-s3-"))
        port = free_port()
        server = S3Server(f"http://{HOST}:{port}", access_key, secret_key)
        cmd = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
        log = Path(tmp_dir) / "moto.log"
        ready = functools.partial(http_answers, server.endpoint_url)
        with server_process("moto s3", cmd, log, ready, timeout):
            yield server


# ------------------------------------------------------------------ redis


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(tmp_dir: Path | str, timeout: float = 15.0) -> Iterator[str]:
    """Run Debian's ``redis-server`` without persistence; yields ``redis://`` URL.

    Its log goes to ``tmp_dir/redis.log``.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "redis.log"
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
           "--appendonly", "no", "--dir", str(tmp_dir), "--daemonize", "no"]  # fmt: skip
    with server_process("redis", cmd, log, functools.partial(_redis_pong, port), timeout):
        yield f"redis://{HOST}:{port}/0"


# ------------------------------------------------------------ deployment
# The team deployment of docs/deployment.md, assembled from the servers above with the files in
# deploy/ (dagster.yaml, mlflow-server.sh, celery.yaml) used as they are.

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_DIR = REPO_ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
# Inherited variables with these prefixes are dropped: a test deployment sets its own.
_DEPLOYMENT_PREFIXES = ("AWS_", "MLFLOW_", "LAKEHOUSE_", "DAGSTER_", "PG")


def clean_env(**extra: str) -> dict[str, str]:
    """``os.environ`` without deployment variables, the venv's bin first on PATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DEPLOYMENT_PREFIXES)}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


SIGNING_KEY = os.urandom(16).hex()  # LAKEHOUSE_MODEL_SIGNING_KEY of the test deployments


def prod_env(pg: PostgresServer, home: Path, lake: Path, **extra: str) -> dict[str, str]:
    """`clean_env` for the `prod` profile: Dagster on `pg`, DuckDB and landing under `lake`."""
    return clean_env(
        **dagster_pg_env(pg),
        DAGSTER_HOME=str(home),
        LAKEHOUSE_ENV="prod",
        LAKEHOUSE_MODEL_SIGNING_KEY=SIGNING_KEY,  # the prod profile requires it
        LAKEHOUSE_DUCKDB_PATH=str(lake / "lakehouse.duckdb"),
        LAKEHOUSE_LANDING_DIR=str(lake / "landing"),
        **extra,
    )


def wait_for_finished_run(instance, timeout: float):
    """The newest run not started by a sensor, once it has finished; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs() if "dagster/sensor_name" not in r.tags]
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no finished run after {timeout:.0f}s: {instance.get_runs()}")


def dagster_pg_env(pg: PostgresServer, db_name: str = "dagster") -> dict[str, str]:
    """The variables deploy/dagster.yaml reads."""
    return {
        "DAGSTER_PG_USERNAME": pg.user,
        "DAGSTER_PG_PASSWORD": pg.password,
        "DAGSTER_PG_HOST": pg.host,
        "DAGSTER_PG_PORT": str(pg.port),
        "DAGSTER_PG_DB": db_name,
    }


def dagster_home(path: Path, pg: PostgresServer, db_name: str = "dagster") -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is, and its database on ``pg``."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_DIR / "dagster.yaml", path / "dagster.yaml")
    pg.create_database(db_name)
    return path


@contextlib.contextmanager
def team_mlflow_server(
    tmp_dir: Path, pg: PostgresServer, s3: S3Server, bucket: str = "mlflow", timeout: float = 120
) -> Iterator[str]:
    """deploy/mlflow-server.sh on ``pg`` (database ``mlflow``) with artifacts in ``s3://bucket``;
    one worker. Yields its URL; its log is ``tmp_dir/mlflow-server.log``."""
    pg.create_database("mlflow")
    s3.create_bucket(bucket)
    port = free_port()
    env = clean_env(
        **s3.env(),
        MLFLOW_PG_USERNAME=pg.user,
        MLFLOW_PG_PASSWORD=pg.password,
        MLFLOW_PG_HOST=pg.host,
        MLFLOW_PG_PORT=str(pg.port),
        MLFLOW_PG_DB="mlflow",
        MLFLOW_ARTIFACTS_DESTINATION=f"s3://{bucket}/artifacts",
        MLFLOW_HOST=HOST,
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no job runner processes
    )
    url = f"http://{HOST}:{port}"
    cmd = ["bash", str(DEPLOY_DIR / "mlflow-server.sh")]
    ready = functools.partial(http_answers, f"{url}/health")
    log = Path(tmp_dir) / "mlflow-server.log"
    with server_process("mlflow", cmd, log, ready, timeout, env=env, cwd=tmp_dir):
        yield url


def run_command(
    cmd: list[str], env: dict[str, str], log: Path, timeout: float, cwd: Path | None = None
) -> int:
    """Run ``cmd`` in its own process group, output appended to ``log``; its exit code.

    On timeout the whole group is killed and ``TimeoutError`` raised with the log tail.
    """
    proc = _spawn(cmd, log, env=env, cwd=cwd)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        message = f"{cmd[:4]} ran over {timeout:.0f}s; log {log}:\n{log_tail(log, 40)}"
        raise TimeoutError(message) from None
    finally:
        _stop(proc, grace=5)


def leaked_secrets(texts: dict[str, str], secrets_: dict[str, str]) -> list[str]:
    """``"<secret name> in <source>"`` for each secret value found in a text."""
    return [f"{name} in {source}" for source, text in texts.items()
            for name, value in secrets_.items() if value and value in text]  # fmt: skip


def run_log_texts(instance, run_id: str) -> dict[str, str]:
    """What the UI shows of a run: its record (config, tags) and every event with its metadata,
    serialized as Dagster stores them."""
    from dagster._serdes import serialize_value

    events = instance.all_logs(run_id)
    return {
        "run record": serialize_value(instance.get_run_by_id(run_id)),
        "run events": "\n".join(serialize_value(e) for e in events),
    }


def file_texts(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (compute logs, server and worker logs) as text."""
    texts = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            texts[str(path)] = path.read_text(errors="replace")
    return texts
