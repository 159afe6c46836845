"""Servers on loopback for the deployment tests: PostgreSQL and Redis (Debian's packages, from
`.ci/install-services.sh`, run by `processes.server_process`), S3 (moto's `ThreadedMotoServer`),
and the team deployment of docs/deployment.md assembled from them with the files in deploy/
(dagster.yaml, mlflow-server.sh, celery.yaml) used as they are."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.processes import (
    HOST,
    REPO_ROOT,
    ServerStartError,
    clean_env,
    free_port,
    log_tail,
    run_command,
    server_process,
)

# `$LAKEHOUSE_PG_BIN`, else the newest Debian PostgreSQL (15 on Debian 12, 17 on 13).
PG_BIN = Path(os.environ.get("LAKEHOUSE_PG_BIN") or max(Path("/usr/lib/postgresql").glob("*/bin"),
               key=lambda p: int(p.parts[-2]), default="/usr/lib/postgresql/15/bin"))  # fmt: skip
PG_TIMEOUT = 30.0  # seconds for initdb, and for the server to accept connections
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
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def url(self, driver: str | None = None, database: str = "postgres") -> str:
        """SQLAlchemy/libpq URL. Dagster needs `driver="psycopg2"`: with SQLAlchemy 2.1 a bare
        `postgresql://` means psycopg 3."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str) -> str:
        """Run `sql` with the psql client and return its output."""
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.host,
               "-p", str(self.port), "-U", self.user, "-d", "postgres", "-c", sql]  # fmt: skip
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
        self._stack.enter_context(server_process("postgres", cmd, self.log, ready, PG_TIMEOUT,
                                                 signal.SIGINT, cwd=self.data_dir, **_AS_POSTGRES))  # fmt: skip

    def close(self) -> None:
        self._stack.close()

    def restart(self) -> None:
        """Stop and start again on the same data directory and port."""
        self.close()
        self.start()


@contextlib.contextmanager
def postgres_server(tmp_dir: Path) -> Iterator[PostgresServer]:
    """PostgreSQL on a free loopback port, log `tmp_dir/postgres.log`. The data directory is a
    fresh directory under the system temp dir owned by the server user (as root that is
    `postgres`, which cannot enter pytest's 0700 `tmp_path`); it is removed on exit."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    log = tmp_dir / "postgres.log"
    password = secrets.token_hex(16)  # hex: safe in URLs unescaped
    with tempfile.TemporaryDirectory(prefix="lakehouse-pg-", ignore_cleanup_errors=True) as tmp:
        base = Path(tmp)
        server = PostgresServer(HOST, free_port(), "lakehouse", password, base / "data", log)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        if os.geteuid() == 0:
            shutil.chown(base, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", str(server.data_dir), "-U", server.user,
                  f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-locale",
                  "--no-sync", "--no-instructions"]  # fmt: skip
        code = run_command(initdb, None, log, PG_TIMEOUT, cwd=base, **_AS_POSTGRES)
        pwfile.unlink()
        if code != 0:
            raise ServerStartError(f"initdb failed; log {log}:\n{log_tail(log, 40)}")
        server.start()
        with contextlib.closing(server):
            yield server


@dataclass
class S3Server:
    """A running moto S3 server; any credentials are accepted."""

    endpoint_url: str
    access_key: str
    secret_key: str
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

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


@contextlib.contextmanager
def s3_server(access_key: str = "testing", secret_key: str = "testing") -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, in a thread of this process, with no buckets.
    moto accepts any credentials; pass random ones to check that they never leak into logs."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(HOST, 0, verbose=False)
    moto.start()
    server = S3Server(f"http://{HOST}:{moto.get_host_and_port()[1]}", access_key, secret_key)
    try:
        # moto's state is per process: start from none of another test's buckets.
        requests.post(f"{server.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()
        yield server
    finally:
        moto.stop()  # werkzeug closes the listening socket


@contextlib.contextmanager
def redis_server(tmp_dir: Path, timeout: float = 15.0) -> Iterator[str]:
    """Debian's `redis-server` without persistence, log `tmp_dir/redis.log`; its `redis://` URL
    once it has logged that it accepts connections."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), tmp_dir / "redis.log"
    cmd = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "",
           "--appendonly", "no", "--dir", str(tmp_dir), "--daemonize", "no"]  # fmt: skip
    ready = lambda: "Ready to accept connections" in log.read_text()  # noqa: E731
    with server_process("redis", cmd, log, ready, timeout):
        yield f"redis://{HOST}:{port}/0"


# ------------------------------------------------------------ deployment

DEPLOY_DIR = REPO_ROOT / "deploy"


@contextlib.contextmanager
def celery_worker(name: str, env: dict[str, str], tmp_dir: Path) -> Iterator[subprocess.Popen]:
    """A `dagster-celery` worker named `name` (deploy/celery.yaml, concurrency 1, log
    `tmp_dir/<name>.log`), once it consumes the queue: celery then logs "<name>@<host> ready."."""
    log = tmp_dir / f"{name}.log"
    cmd = ["dagster-celery", "worker", "start", "-A", "dagster_celery.app",
           "-y", str(DEPLOY_DIR / "celery.yaml"), "-n", name, "--", "--concurrency=1"]  # fmt: skip
    ready = lambda: log.exists() and " ready." in log.read_text(errors="replace")  # noqa: E731
    with server_process(name, cmd, log, ready, timeout=120, env=env, cwd=tmp_dir) as worker:
        yield worker


def prod_env(pg: PostgresServer, home: Path, lake: Path, **extra: str) -> dict[str, str]:
    """`clean_env` for the `prod` profile: Dagster on `pg`, the lake and landing under `lake`, with
    the sample landed there (a configured landing folder never gets it from the pipeline)."""
    if not (lake / "landing").exists():
        write_sample(lake / "landing")
    return clean_env(
        **dagster_pg_env(pg),
        DAGSTER_HOME=str(home),
        LAKEHOUSE_ENV="prod",
        LAKEHOUSE_MODEL_SIGNING_KEY=os.urandom(16).hex(),  # the prod profile requires it
        LAKEHOUSE_CATALOG=f"sqlite:{lake / 'catalog.sqlite'}",
        LAKEHOUSE_DATA_PATH=str(lake / "data"),
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


def dagster_pg_env(pg: PostgresServer, prefix="DAGSTER", database="dagster") -> dict[str, str]:
    """The variables deploy/dagster.yaml reads; deploy/mlflow-server.sh reads the same with
    the prefix MLFLOW."""
    values = {"USERNAME": pg.user, "PASSWORD": pg.password, "HOST": pg.host,
              "PORT": str(pg.port), "DB": database}  # fmt: skip
    return {f"{prefix}_PG_{name}": value for name, value in values.items()}


def dagster_home(path: Path, pg: PostgresServer) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is, and its database on `pg`."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY_DIR / "dagster.yaml", path / "dagster.yaml")
    pg.create_database("dagster")
    return path


@contextlib.contextmanager
def deployed_mlflow_server(script: str, tmp_dir: Path, **env: str) -> Iterator[str]:
    """`deploy/<script>` on a free loopback port with one worker and no job runner, in `tmp_dir`
    (log `mlflow-server.log`), its other settings in `env`; its URL once /health answers."""
    port = free_port()
    env = clean_env(MLFLOW_HOST=HOST, MLFLOW_PORT=str(port), MLFLOW_WORKERS="1",
                    MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **env)  # fmt: skip
    url = f"http://{HOST}:{port}"
    cmd, log = ["bash", str(DEPLOY_DIR / script)], tmp_dir / "mlflow-server.log"
    with server_process(script, cmd, log, f"{url}/health", 180, env=env, cwd=tmp_dir):
        yield url


def team_mlflow_server(tmp_dir: Path, pg: PostgresServer, s3: S3Server):
    """deploy/mlflow-server.sh on `pg` (database `mlflow`), artifacts in `s3://mlflow/artifacts`."""
    pg.create_database("mlflow")
    s3.create_bucket("mlflow")
    env = {**s3.env(), **dagster_pg_env(pg, "MLFLOW", "mlflow")}
    env["MLFLOW_ARTIFACTS_DESTINATION"] = "s3://mlflow/artifacts"
    return deployed_mlflow_server("mlflow-server.sh", tmp_dir, **env)


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
