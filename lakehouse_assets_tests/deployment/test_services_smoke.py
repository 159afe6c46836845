"""Smoke tests: each loopback service starts, does one real operation, stops."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from lakehouse_assets_tests.support import services
from lakehouse_assets_tests.support.processes import (
    ServerStartError,
    free_port,
    http_status,
    server_process,
)
from lakehouse_assets_tests.support.services import (
    postgres_server,
    redis_server,
    s3_server,
)


def _port_closed(url_port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", url_port)) != 0


def test_postgres_accepts_the_test_user(tmp_path):
    import psycopg2

    with postgres_server(tmp_path) as pg:
        pg.create_database("smoke")
        with psycopg2.connect(pg.url(database="smoke")) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int PRIMARY KEY, name text)")
            cur.execute("INSERT INTO t VALUES (%s, %s)", (1, "psycopg2"))
            cur.execute("SELECT id, name FROM t")
            assert cur.fetchall() == [(1, "psycopg2")]
    assert _port_closed(pg.port)


def test_postgres_restart_keeps_data(tmp_path):
    with postgres_server(tmp_path) as pg:
        pg.psql("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')")
        url = pg.url("psycopg2")
        pg.restart()
        assert pg.url("psycopg2") == url
        assert pg.psql("SELECT v FROM kept").strip() == "before"


def test_s3_put_get(tmp_path):
    with s3_server() as s3:
        s3.create_bucket("smoke-bucket")
        client = s3.client()
        client.put_object(Bucket="smoke-bucket", Key="a/b.txt", Body=b"hello")
        body = client.get_object(Bucket="smoke-bucket", Key="a/b.txt")["Body"].read()
        assert body == b"hello"
    assert http_status(s3.endpoint_url) is None


def test_redis_set_get(tmp_path):
    import redis

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert _port_closed(int(url.rsplit(":", 1)[1].split("/")[0]))


def test_start_failure_reports_log_tail(tmp_path, monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setattr(services, "free_port", lambda: busy.getsockname()[1])
        with pytest.raises(ServerStartError, match="(?s)redis exited.*in use"):
            with redis_server(tmp_path, timeout=10):
                pass


def test_dagster_instance_on_postgres_survives_restart(tmp_path, monkeypatch):
    import dagster as dg

    @dg.asset
    def trivial() -> int:
        return 1

    with postgres_server(tmp_path / "pg") as pg:
        pg.create_database("dagster")
        home = tmp_path / "dagster_home"
        home.mkdir()
        # postgresql+psycopg2: a bare postgresql:// means psycopg 3 under
        # SQLAlchemy 2.1, which fails on `NOTIFY run_events, $1`.
        (home / "dagster.yaml").write_text(
            f"storage:\n  postgres:\n    postgres_url: {pg.url('psycopg2', 'dagster')}\n"
            "telemetry:\n  enabled: false\n"
        )
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            run_id = dg.materialize([trivial], instance=instance).run_id
        pg.restart()
        with dg.DagsterInstance.get() as instance:
            assert [r.run_id for r in instance.get_runs()] == [run_id]
            assert instance.get_run_by_id(run_id).is_success


def test_mlflow_server_stores_artifacts_in_s3(tmp_path):
    import mlflow

    with postgres_server(tmp_path / "pg") as pg, s3_server() as s3:
        pg.create_database("mlflow")
        s3.create_bucket("mlflow")
        port = free_port()
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", pg.url("psycopg2", database="mlflow"),
               "--artifacts-destination", "s3://mlflow/artifacts",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
        env = {**os.environ, **s3.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        ready = lambda: http_status(f"http://127.0.0.1:{port}/health") is not None  # noqa: E731
        log = tmp_path / "mlflow.log"
        with server_process("mlflow", cmd, log, ready, timeout=120, env=env, cwd=tmp_path):
            client = mlflow.MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
            run = client.create_run(client.create_experiment("smoke"))
            artifact = tmp_path / "hello.txt"
            artifact.write_text("hello")
            client.log_artifact(run.info.run_id, str(artifact))
        key = f"artifacts/{run.info.experiment_id}/{run.info.run_id}/artifacts/hello.txt"
        assert s3.client().get_object(Bucket="mlflow", Key=key)["Body"].read() == b"hello"
