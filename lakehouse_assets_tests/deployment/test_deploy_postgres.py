"""The Dagster instance of a team deployment on PostgreSQL (deploy/dagster.yaml, `prod` profile):
the daemon launches the whole graph from the queue, and run history, asset materializations and
the pool limit survive a restart of the database and of the instance; the webserver shows the
run afterwards, and no credential appears in what it shows or in any log."""

import json
import urllib.request

import dagster as dg
import pytest

from lakehouse_assets.lib import profiles, settings
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.helpers import ASSET_NAMES, failure_messages, run_graph
from lakehouse_assets_tests.support.processes import (
    REPO_ROOT,
    free_port,
    http_status,
    run_command,
    server_process,
)
from lakehouse_assets_tests.support.services import (
    clean_env,
    dagster_home,
    dagster_pg_env,
    file_texts,
    leaked_secrets,
    postgres_server,
    run_log_texts,
    wait_for_finished_run,
)

ASSETS = set(ASSET_NAMES)


# What the UI shows of a run: its config and tags, every event's message and metadata.
UI_QUERY = """
query UiView($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { runId status runConfigYaml tags { key value } } }
  logsForRun(runId: $runId) { __typename ... on EventConnection { events { __typename
    ... on MessageEvent { message }
    ... on DisplayableEvent { label description metadataEntries { __typename label description
      ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
      ... on UrlMetadataEntry { url } ... on PathMetadataEntry { path }
      ... on JsonMetadataEntry { jsonString } } } } } }
}
"""


def _graphql(url: str, query: str, variables: dict) -> str:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def test_daemon_runs_the_graph_on_postgres_and_history_survives_a_restart(tmp_path, monkeypatch):
    with postgres_server(tmp_path / "pg") as pg:
        home = dagster_home(tmp_path / "dagster_home", pg)
        lake = tmp_path / "lakehouse"
        deployment = {
            **dagster_pg_env(pg),
            "DAGSTER_HOME": str(home),
            "LAKEHOUSE_ENV": "prod",
            "LAKEHOUSE_MODEL_SIGNING_KEY": "deploy-test-signing-key",
            "LAKEHOUSE_CATALOG": f"sqlite:{lake / 'catalog.sqlite'}",
            "LAKEHOUSE_DATA_PATH": str(lake / "data"),
            "LAKEHOUSE_LANDING_DIR": str(lake / "landing"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            # The landing sensor would request a second run once the sample lands; not here.
            "LAKEHOUSE_SENSOR_INTERVAL_SECONDS": "3600",
        }
        write_sample(lake / "landing")  # the prod profile's landing folder must hold data
        env = clean_env(**deployment)
        for name, value in deployment.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)  # MLflow's local artifacts (./mlruns) stay in tmp_path
        workspace = ["-w", str(REPO_ROOT / "workspace.yaml")]

        daemon_log = tmp_path / "dagster-daemon.log"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            daemon = ["dagster-daemon", "run", *workspace]
            with server_process(
                "dagster-daemon", daemon, daemon_log, lambda: True, env=env, cwd=tmp_path
            ):
                launch_log = tmp_path / "dagster-job-launch.log"
                launch = ["dagster", "job", "launch", *workspace, "-j", "refresh_lakehouse"]
                code = run_command(launch, env, launch_log, timeout=300, cwd=tmp_path)
                assert code == 0, launch_log.read_text()[-3000:]
                run = wait_for_finished_run(instance, timeout=420)
            assert run.is_success, daemon_log.read_text()[-3000:]
            first_run_id = run.run_id
            texts = run_log_texts(instance, first_run_id)
            pool = instance.event_log_storage.get_concurrency_info("duckdb")
            assert pool.slot_count == 1

        pg.restart()
        with dg.DagsterInstance.from_config(str(home)) as instance:
            [run] = instance.get_runs()
            assert run.run_id == first_run_id and run.is_success
            materialized = {
                key
                for key in ASSETS
                if instance.get_latest_materialization_event(dg.AssetKey(key)) is not None
            }
            assert materialized == ASSETS
            assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 1
            # The model assets find what churn_model recorded before the restart.
            again = run_graph(
                instance,
                dg.AssetSelection.assets("churn_model_evaluation", "registered_churn_model"),
            )
            assert again.success, failure_messages(again)
            assert len(instance.get_runs()) == 2

        # The webserver on the restarted instance shows the first run, credentials nowhere.
        port = free_port()
        web_url = f"http://127.0.0.1:{port}"
        webserver = ["dagster-webserver", *workspace, "-h", "127.0.0.1", "-p", str(port)]
        web_log = tmp_path / "dagster-webserver.log"
        ready = lambda: http_status(f"{web_url}/server_info") is not None  # noqa: E731
        with server_process(
            "dagster-webserver", webserver, web_log, ready, timeout=180, env=env, cwd=tmp_path
        ):
            ui_view = _graphql(web_url, UI_QUERY, {"runId": first_run_id})
        ui = json.loads(ui_view)["data"]
        assert ui["runOrError"]["status"] == "SUCCESS", ui_view[:2000]
        assert any(
            entry["label"] == "mlflow_run_id"
            for event in ui["logsForRun"]["events"]
            for entry in event.get("metadataEntries") or []
        )
        texts["UI view of the run"] = ui_view

        # The upgrade step of docs/deployment.md, and the pool as an operator sees it.
        cli_log = tmp_path / "dagster-instance.log"
        migrate = ["dagster", "instance", "migrate"]
        code = run_command(migrate, env, cli_log, timeout=120, cwd=tmp_path)
        assert code == 0, cli_log.read_text()
        pool_info = ["dagster", "instance", "concurrency", "get", "duckdb"]
        assert run_command(pool_info, env, cli_log, timeout=120, cwd=tmp_path) == 0
        assert '"duckdb": 0 / 1 slots occupied' in cli_log.read_text()

    texts |= file_texts(daemon_log, launch_log, web_log, cli_log, home / "storage")
    assert leaked_secrets(texts, {"postgres password": pg.password}) == []


def test_unknown_profile_fails_loudly(monkeypatch):
    monkeypatch.setenv(settings.PROFILE_ENV, "staging")
    with pytest.raises(ValueError, match="LAKEHOUSE_ENV='staging' is not a deployment profile"):
        profiles.build_resources()


def test_prod_profile_fails_at_run_start_naming_a_missing_variable(monkeypatch, tmp_path):
    from lakehouse_assets.defs.raw.raw_transactions import raw_transactions

    for name in ("LAKEHOUSE_HOME", "LAKEHOUSE_LANDING_DIR", "LAKEHOUSE_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    resources = profiles.build_resources("prod")
    with (
        dg.instance_for_test() as instance,
        pytest.raises(
            dg.DagsterInvalidConfigError, match='"LAKEHOUSE_LANDING_DIR" which is not set'
        ),
    ):
        dg.materialize([raw_transactions], resources=resources, instance=instance)
    assert not (tmp_path / ".lakehouse").exists()  # no silent local fallback
