"""Servers on loopback for the deployment tests: PostgreSQL and Redis (Debian's packages, from
`.ci/install-services.sh`, run by `processes.server_process`), S3 (moto's `ThreadedMotoServer`),
and the team deployment of docs/deployment.md assembled from them with the files in deploy/
(dagster.yaml, mlflow-server.sh, celery.yaml) used as they are."""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse_assets_tests.processes import (
    HOST,
    REPO_ROOT,
    ServerStartError,
    free_port,
    http_status,
    log_tail,
    server_process,
)

# `$LAKEHOUSE_PG_BIN`, else the newest Debian PostgreSQL (15 on Debian 12, 17 on 13).
_PG_VERSIONS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parts[-2]))
PG_BIN = Path(
    os.environ.get("LAKEHOUSE_PG_BIN") or (_PG_VERSIONS or [Path("/usr/lib/postgresql/15/bin")])[-1]
)
# As root, PostgreSQL runs as the `postgres` user.
_AS_POSTGRES = (
    {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
)


@dataclass
class PostgresServer:
    """A running PostgreSQL; `user` is a superuser with password auth."""

    host: str
    port: int
    user: str
    password: str
    data_dir: Path
    log: Path
    timeout: float = 30.0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def url(self, driver: str | None = None, database: str = "postgres") -> str:
        """SQLAlchemy/libpq URL. Dagster needs `driver="psycopg2"`: with SQLAlchemy 2.1 a bare
        `postgresql://` means psycopg 3."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not a plain identifier: {name!r}")
        self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run `sql` with the psql client and return its output."""
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.host,
               "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql]  # fmt: skip
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run(cmd, env=env, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Start on `data_dir` and wait until it accepts connections. fsync is off: data survive
        `restart()` (a clean shutdown), not a crash of the machine."""
        cmd = [str(PG_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
               "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories=",
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        isready = [str(PG_BIN / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        ready = lambda: subprocess.run(isready, check=False).returncode == 0  # noqa: E731
        # SIGINT: PostgreSQL's fast shutdown; the data directory is kept.
        self._stack.enter_context(server_process("postgres", cmd, self.log, ready, self.timeout,
                                                 signal.SIGINT, cwd=self.data_dir, **_AS_POSTGRES))  # fmt: skip

    def stop(self) -> None:
        self._stack.close()

    def restart(self) -> None:
        """Stop and start again on the same data directory and port."""
        self.stop()
        self.start()


@contextlib.contextmanager
def postgres_server(tmp_dir: Path | str, timeout: float = 30.0) -> Iterator[PostgresServer]:
    """PostgreSQL on a free loopback port, log `tmp_dir/postgres.log`. The data directory is a
    fresh directory under the system temp dir owned by the server user (as root that is
    `postgres`, which cannot enter pytest's 0700 `tmp_path`); it is removed on exit."""
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "postgres.log"
    base = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    password = secrets.token_hex(16)  # hex: safe in URLs unescaped
    server = PostgresServer(HOST, free_port(), "lakehouse", password, base / "data", log, timeout)
    try:
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", server.user,
                  f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
                  "--no-sync", "--no-instructions"]  # fmt: skip
        with open(log, "ab") as out:
            done = subprocess.run(initdb, cwd=base, stdout=out, stderr=subprocess.STDOUT,
                                  check=False, timeout=timeout, **_AS_POSTGRES)  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise ServerStartError(f"initdb failed; log {log}:\n{log_tail(log, 40)}")
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)


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
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key)  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


@contextlib.contextmanager
def s3_server(access_key: str = "testing", secret_key: str = "testing") -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, in a thread of this process, with no buckets.
    moto accepts any credentials; pass random ones to check that they never leak into logs."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(HOST, 0, verbose=False)
    moto.start()
    server = S3Server(f"http://{HOST}:{moto.get_host_and_port()[1]}", access_key, secret_key)
    try:
        import requests

        # moto's state is per process: start from none of another test's buckets.
        requests.post(f"{server.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        yield server
    finally:
        moto.stop()  # werkzeug closes the listening socket


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(tmp_dir: Path | str, timeout: float = 15.0) -> Iterator[str]:
    """Debian's `redis-server` without persistence, log `tmp_dir/redis.log`; its `redis://` URL."""
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
           "--appendonly", "no", "--dir", str(tmp_dir), "--daemonize", "no"]  # fmt: skip
    with server_process("redis", cmd, tmp_dir / "redis.log", lambda: _redis_pong(port), timeout):
        yield f"redis://{HOST}:{port}/0"


# ------------------------------------------------------------ deployment

DEPLOY_DIR = REPO_ROOT / "deploy"
# Inherited variables with these prefixes are dropped: a test deployment sets its own.
_DEPLOYMENT_PREFIXES = ("AWS_", "MLFLOW_", "LAKEHOUSE_", "DAGSTER_", "PG")


def clean_env(**extra: str) -> dict[str, str]:
    """`os.environ` without deployment variables, the venv's bin first on PATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DEPLOYMENT_PREFIXES)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
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
    return {"DAGSTER_PG_USERNAME": pg.user, "DAGSTER_PG_PASSWORD": pg.password,
            "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_DB": db_name}  # fmt: skip


def dagster_home(path: Path, pg: PostgresServer, db_name: str = "dagster") -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is, and its database on `pg`."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_DIR / "dagster.yaml", path / "dagster.yaml")
    pg.create_database(db_name)
    return path


@contextlib.contextmanager
def team_mlflow_server(
    tmp_dir: Path, pg: PostgresServer, s3: S3Server, bucket: str = "mlflow", timeout: float = 120
) -> Iterator[str]:
    """deploy/mlflow-server.sh on `pg` (database `mlflow`) with artifacts in `s3://bucket`, one
    worker; yields its URL. Log `tmp_dir/mlflow-server.log`."""
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
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )  # fmt: skip (no job runner)
    url = f"http://{HOST}:{port}"
    cmd = ["bash", str(DEPLOY_DIR / "mlflow-server.sh")]
    ready = lambda: http_status(f"{url}/health") is not None  # noqa: E731
    log = Path(tmp_dir) / "mlflow-server.log"
    with server_process("mlflow", cmd, log, ready, timeout, env=env, cwd=tmp_dir):
        yield url


def leaked_secrets(texts: dict[str, str], secrets_: dict[str, str]) -> list[str]:
    """`"<secret name> in <source>"` for each secret value found in a text."""
    return [f"{name} in {source}" for source, text in texts.items()
            for name, value in secrets_.items() if value and value in text]  # fmt: skip


def run_log_texts(instance, run_id: str) -> dict[str, str]:
    """What the UI shows of a run: its record (config, tags) and every event with its metadata,
    serialized as Dagster stores them."""
    from dagster._serdes import serialize_value

    events = instance.all_logs(run_id)
    return {"run record": serialize_value(instance.get_run_by_id(run_id)),
            "run events": "\n".join(serialize_value(e) for e in events)}  # fmt: skip


def file_texts(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (compute logs, server and worker logs) as text."""
    paths = [p for root in roots for p in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return {str(p): p.read_text(errors="replace") for p in paths if p.is_file()}
