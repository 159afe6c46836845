"""The team lake: the whole graph, in the `prod` profile, keeps the DuckLake catalog on PostgreSQL
and the Parquet files in an S3 bucket (SeaweedFS on loopback, which checks its keys). Another
process then reads the tables and a model's training data from there, and no credential appears
in the run's events or on the MLflow run."""

import json
import os
import secrets
import subprocess
import sys
from contextlib import closing

import psycopg2

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.helpers import (
    MODEL,
    client_for,
    error_check_results,
    failure_messages,
    run_graph,
)
from lakehouse_assets_tests.support.processes import clean_env
from lakehouse_assets_tests.support.seaweedfs import seaweedfs_s3
from lakehouse_assets_tests.support.services import leaked_secrets, postgres_server, run_log_texts

DATA_PATH = "s3://lake/lakehouse/"

# Run in another process, with the run's environment: what a notebook or a script does.
READER = """
import json
import lakehouse_assets
from lakehouse_assets.lib.model.dataset import features_at

with lakehouse_assets.connect() as conn:
    scores, bronze, silver, rejected = conn.execute(
        "SELECT (SELECT count(*) FROM gold.churn_scores), "
        "(SELECT count(*) FROM bronze.transactions), "
        "(SELECT count(*) FROM silver.transactions), "
        "(SELECT count(*) FROM silver.rejected_transactions)"
    ).fetchone()
frame = lakehouse_assets.training_data(1)
snapshot = frame.attrs["snapshot_id"]
with lakehouse_assets.connect() as conn:
    features = conn.execute(f"SELECT count(*) FROM {features_at(snapshot)}").fetchone()[0]
print("training_data(1):", len(frame), "rows, splits", sorted(set(frame["split"])))
print(json.dumps({"scores": scores, "bronze": bronze, "silver": silver, "rejected": rejected,
                  "rows": len(frame), "splits": sorted(set(frame["split"])),
                  "snapshot": snapshot, "features_at_snapshot": features}))
"""


def test_the_graph_keeps_its_lake_on_postgres_and_s3(
    lakehouse_home, instance, tmp_path, monkeypatch
):
    for name in [n for n in os.environ if n.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        monkeypatch.delenv(name, raising=False)
    landing = tmp_path / "landing"
    write_sample(landing)  # the prod profile reads a configured landing folder only
    signing_key = secrets.token_hex(16)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        with (
            postgres_server(tmp_path / "pg") as pg,
            seaweedfs_s3(tmp_path / "seaweedfs", bucket="lake") as s3,
        ):
            pg.create_database("lake")
            catalog = (
                f"postgres:dbname=lake host={pg.host} port={pg.port} user={pg.user} "
                f"password={pg.password}"
            )
            env = {
                **s3.env(),  # keys, AWS_REGION=us-east-1, AWS_ENDPOINT_URL_S3
                "LAKEHOUSE_ENV": "prod",
                "LAKEHOUSE_HOME": str(lakehouse_home),
                "LAKEHOUSE_CATALOG": catalog,
                "LAKEHOUSE_DATA_PATH": DATA_PATH,
                "LAKEHOUSE_LANDING_DIR": str(landing),
                "LAKEHOUSE_MODEL_SIGNING_KEY": signing_key,
                "MLFLOW_TRACKING_URI": tracking_uri,
            }
            for name, value in env.items():
                monkeypatch.setenv(name, value)

            result = run_graph(instance)
            assert result.success, failure_messages(result)
            assert all(error_check_results(result).values()), error_check_results(result)

            # The Parquet files are in the bucket, none on the local disk.
            keys = s3.keys("lakehouse/")
            parquet = [k for k in keys if k.endswith(".parquet")]
            assert parquet, keys
            for table in ("bronze/transactions/", "silver/transactions/", "gold/churn_scores/"):
                assert any(k.startswith(f"lakehouse/{table}") for k in parquet), (table, keys)
            local = lakehouse_home / "lake"
            assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))
            assert list(lakehouse_home.rglob("*.parquet")) == []
            assert not (lakehouse_home / "catalog.sqlite").exists()

            # The catalog is in PostgreSQL.
            with closing(psycopg2.connect(pg.url(database="lake"))) as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM ducklake_snapshot")
                assert cur.fetchone()[0] > 1
                cur.execute("SELECT value FROM ducklake_metadata WHERE key = 'data_path'")
                assert cur.fetchone()[0] == DATA_PATH
                cur.execute(
                    "SELECT s.schema_name || '.' || t.table_name FROM ducklake_table t "
                    "JOIN ducklake_schema s USING (schema_id) WHERE t.end_snapshot IS NULL "
                    "AND s.end_snapshot IS NULL"
                )
                tables = {row[0] for row in cur.fetchall()}
            assert {"bronze.transactions", "silver.transactions", "gold.churn_scores"} <= tables

            # Another process finds the lake from the same environment.
            reader = subprocess.run(
                [sys.executable, "-c", READER],
                env=clean_env(**env),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert reader.returncode == 0, reader.stderr[-3000:]
            read = json.loads(reader.stdout.strip().splitlines()[-1])
            assert read["scores"] > 0
            assert read["bronze"] == read["silver"] + read["rejected"] > 0
            assert read["rows"] == read["features_at_snapshot"] > 0
            assert {"train", "test"} <= set(read["splits"]) <= {"train", "test", "unused"}

            texts = run_log_texts(instance, result.run_id)
            texts["events in memory"] = "\n".join(repr(e) for e in result.all_events)
            texts["reader output"] = reader.stdout + reader.stderr
    finally:
        lake.close_all()  # this process's DuckDB instances, attached to the stopped PostgreSQL

    client = client_for(tracking_uri)
    version = client.get_model_version(MODEL, "1")
    run = client.get_run(version.run_id)
    assert run.data.tags["lakehouse_catalog"].startswith("ducklake:postgres:dbname=lake ")
    assert int(run.data.tags["lakehouse_snapshot_id"]) == read["snapshot"]
    texts["mlflow run"] = repr((run.data.tags, run.data.params, run.inputs))
    texts["model version tags"] = repr(version.tags)
    credentials = {
        "s3 secret key": s3.secret_key,
        "s3 access key": s3.access_key,
        "postgres password": pg.password,
        "model signing key": signing_key,
    }
    assert leaked_secrets(texts, credentials) == []
    assert "password=***" in texts["mlflow run"]  # the catalog is shown, redacted
