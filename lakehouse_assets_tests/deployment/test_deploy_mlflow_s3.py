"""The team set-up of docs/deployment.md: the whole graph, started with `dagster job execute` on
the Postgres-backed instance (deploy/dagster.yaml) in the `prod` profile, registers its model on
an MLflow server (deploy/mlflow-server.sh) whose store is Postgres and whose artifacts are in an
S3-compatible bucket (moto on loopback). Credentials appear in no log and no metadata."""

import hashlib
import secrets

import dagster as dg

from lakehouse_assets_tests.support.helpers import MODEL, champion_predicts, client_for
from lakehouse_assets_tests.support.processes import run_command
from lakehouse_assets_tests.support.services import (
    clean_env,
    dagster_home,
    dagster_pg_env,
    file_texts,
    leaked_secrets,
    postgres_server,
    prod_env,
    run_log_texts,
    s3_server,
    team_mlflow_server,
)


def test_graph_registers_a_model_whose_pickle_is_in_the_bucket(tmp_path, monkeypatch):
    # The test process and the Dagster run have no bucket credentials: only the MLflow server.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", secrets.token_hex(20)
    with (
        postgres_server(tmp_path / "pg") as pg,
        s3_server(access_key=access_key, secret_key=secret_key) as s3,
        team_mlflow_server(tmp_path, pg, s3) as mlflow_url,
    ):
        home = dagster_home(tmp_path / "dagster_home", pg)
        lake = tmp_path / "lakehouse"
        env = prod_env(pg, home, lake, MLFLOW_TRACKING_URI=mlflow_url)
        log = tmp_path / "dagster-job-execute.log"
        cmd = ["dagster", "job", "execute", "-m", "lakehouse_assets", "-j", "refresh_lakehouse"]
        code = run_command(cmd, env, log, timeout=600, cwd=tmp_path)
        assert code == 0, log.read_text()[-3000:]

        for name, value in dagster_pg_env(pg).items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            [run] = instance.get_runs()
            assert run.is_success
            texts = run_log_texts(instance, run.run_id)
            registered = instance.get_latest_materialization_event(
                dg.AssetKey("registered_churn_model")
            ).asset_materialization.metadata
        assert registered["champion"].value is True

        version, roc_auc = champion_predicts(mlflow_url, lake)
        assert version == registered["version"].value == "1"
        assert roc_auc > 0.75
        client = client_for(mlflow_url)
        model_version = client.get_model_version(MODEL, version)
        # Clients upload through the server (mlflow-artifacts:/), which writes to the bucket.
        assert client.get_run(model_version.run_id).info.artifact_uri.startswith(
            "mlflow-artifacts:/"
        )
        objects = s3.client().list_objects_v2(Bucket="mlflow")["Contents"]
        [key] = [
            o["Key"]
            for o in objects
            if o["Key"].endswith(f"/{model_version.run_id}/artifacts/model/model.pkl")
        ]
        body = s3.client().get_object(Bucket="mlflow", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == model_version.tags["model_sha256"]

        # The upgrade step of docs/deployment.md (a no-op on a current schema), password from
        # PGPASSWORD as in deploy/mlflow-server.sh.
        upgrade_log = tmp_path / "mlflow-db-upgrade.log"
        store = f"postgresql+psycopg2://{pg.user}@{pg.host}:{pg.port}/mlflow"
        upgrade = ["mlflow", "db", "upgrade", store]
        upgrade_env = clean_env(PGPASSWORD=pg.password)
        code = run_command(upgrade, upgrade_env, upgrade_log, timeout=180, cwd=tmp_path)
        assert code == 0, upgrade_log.read_text()[-3000:]

        mlflow_run = client.get_run(model_version.run_id).data
        texts["mlflow run params and tags"] = repr((mlflow_run.params, mlflow_run.tags))
        texts["model version tags"] = repr(model_version.tags)

    texts |= file_texts(log, upgrade_log, home / "storage", tmp_path / "mlflow-server.log")
    credentials = {
        "postgres password": pg.password,
        "s3 access key": access_key,
        "s3 secret key": secret_key,
    }
    assert leaked_secrets(texts, credentials) == []
    assert any("compute_logs" in source for source in texts)  # the steps' stdout/stderr
