"""End to end, as a user runs it: `dagster dev` (webserver and daemon) with the shipped instance
settings, showing the README's main command's run, and the landing sensor reacting to dropped
files. (A run submitted through GraphQL, as "Materialize all" does, is test_browser.py's.)

    pytest -m e2e
"""

import time
from pathlib import Path

import dagster as dg

from lakehouse_assets.defs.automation.landing_sensor import LANDING_SENSOR
from lakehouse_assets.defs.automation.mlflow_run_failure_sensor import FAILURE_SENSOR
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.support.dagster_dev import (
    INSTANCE_QUERY,
    DagsterDev,
    dagster_dev,
    quickstart_run,
    wait_until_sensor_idle,
)
from lakehouse_assets_tests.support.helpers import ASSET_NAMES, MODEL, client_for, lake_conn

SENSOR_RUN_TIMEOUT = 180.0  # from dropping a file to the end of the run it triggers
IDLE_TIMEOUT = 420.0  # the refresh triggered by the sample file raw writes, then quiet ticks
TABLES = (
    "bronze.transactions",
    "bronze.ingested_files",
    "silver.transactions",
    "silver.rejected_transactions",
    "gold.customer_summary",
    "gold.customer_features",
    "gold.churn_scores",
)
NEW_ROWS = 24
NEW_FILE = "transactions_e2e.csv"
NEW_CSV = "transaction_id,customer_id,event_time,amount,quantity\n" + "".join(
    f"e2e-{i},e2e-customer-{i % 4},2025-05-{1 + i:02d}T10:00:00Z,{10 + i}.25,{1 + i % 3}\n"
    for i in range(NEW_ROWS)
)
BAD_FILE = "missing_amount.csv"
BAD_CSV = "transaction_id,customer_id,event_time\nbad-1,c1,2025-05-01\n"


def table_state(home: Path) -> dict[str, tuple]:
    """Row count and an order-independent content hash of each table (read-only)."""
    with lake_conn(home) as conn:
        return {
            t: conn.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {t} AS t").fetchone()
            for t in TABLES
        }


def model_versions(home: Path) -> list[str]:
    client = client_for(f"sqlite:///{home / 'mlflow.db'}")
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))


def tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def wait_for_sensor_run(dev: DagsterDev, known: set[str], deadline: float) -> dict:
    """The first run that is not in `known` (created by the sensor), ended."""
    while time.monotonic() < deadline:
        new = [r for r in dev.runs() if r["runId"] not in known]
        if new:
            assert len(new) == 1, f"expected one run, got {new}"
            run = new[0]
            status = dev.wait_for_run(run["runId"], max(deadline - time.monotonic(), 1))
            return {**run, "status": status}
        time.sleep(1)
    raise AssertionError(f"the sensor requested no run in time\n{dev.log_tail()}")


def test_dagster_dev_shows_the_quickstart_and_its_sensor_refreshes_every_layer(tmp_path):
    # The README's main command, then `dagster dev` on the same (shipped) instance settings.
    quickstart = quickstart_run(tmp_path)
    assert quickstart.returncode == 0, quickstart.stderr[-3000:]
    with dagster_dev(tmp_path) as dev:
        home = dev.lakehouse_home
        instance = dev.graphql(INSTANCE_QUERY)["instance"]
        assert instance["poolConfig"] == {"poolGranularity": "run", "defaultPoolLimit": 1}
        assert instance["runQueueConfig"]["maxConcurrentRuns"] == 2

        # The UI shows the quickstart's run: every asset materialized by it, with its metadata
        # and its checks' results.
        (cli_run,) = dev.runs()
        assert cli_run["status"] == "SUCCESS"
        assets = dev.assets()
        assert set(ASSET_NAMES) <= set(assets)
        for name in ASSET_NAMES:
            assert assets[name]["run_id"] == cli_run["runId"], name
        assert "dagster/row_count" in assets["silver_transactions"]["metadata"]
        assert "roc_auc" in assets["churn_model_evaluation"]["metadata"]
        checks = {c: s for a in assets.values() for c, s in a["checks"].items()}
        assert checks["silver_conserves_bronze_rows"] == "SUCCEEDED"
        assert checks["churn_model_beats_baseline"] == "SUCCEEDED"
        assert checks["churn_scores_one_row_per_customer"] == "SUCCEEDED"
        # The sensor sees the sample the quickstart loaded and requests nothing for it.
        wait_until_sensor_idle(dev, IDLE_TIMEOUT)
        assert [r["runId"] for r in dev.runs()] == [cli_run["runId"]]
        log = dev.sensor_log(LANDING_SENSOR)
        assert (
            "sample_transactions.parquet: already loaded into bronze by the latest refresh; "
            "nothing to do" in log
        ), log

        # (A second refresh of unchanged data registers no new version:
        # test_churn_scores.py::test_running_twice_on_the_same_data_registers_one_version.)
        before = table_state(home)
        versions = model_versions(home)
        assert versions == ["1"]

        # A new valid file: one sensor run refreshes every layer; its rows are older than the
        # latest, so the cutoff stays and retraining is not due: the champion is kept.
        known = {r["runId"] for r in dev.runs()}
        dropped = time.monotonic()
        (dev.landing / NEW_FILE).write_text(NEW_CSV)
        run = wait_for_sensor_run(dev, known, dropped + SENSOR_RUN_TIMEOUT)
        assert run["status"] == "SUCCESS", dev.step_failures(run["runId"])
        assert time.monotonic() - dropped <= SENSOR_RUN_TIMEOUT
        assert tag(run, "dagster/sensor_name") == LANDING_SENSOR
        assert tag(run, "lakehouse/landed_files") == NEW_FILE
        after = table_state(home)
        assert after["bronze.transactions"][0] == before["bronze.transactions"][0] + NEW_ROWS
        assert after["bronze.ingested_files"][0] == before["bronze.ingested_files"][0] + 1
        assert after["silver.transactions"][0] == before["silver.transactions"][0] + NEW_ROWS
        assert after["gold.customer_summary"][0] == before["gold.customer_summary"][0] + 4
        new_versions = model_versions(home)
        assert new_versions == versions

        # A file without a required column: its run fails clearly and no table changes. (Before
        # the next step, so that the run-failure sensor's wait for its tick overlaps that step's.)
        known.add(run["runId"])
        dropped = time.monotonic()
        (dev.landing / BAD_FILE).write_text(BAD_CSV)
        bad = wait_for_sensor_run(dev, known, dropped + SENSOR_RUN_TIMEOUT)
        assert bad["status"] == "FAILURE"
        failures = "\n".join(dev.step_failures(bad["runId"]))
        assert failures.startswith("bronze_transactions: ")
        assert f"{dev.landing / BAD_FILE} lacks required column(s) amount" in failures
        assert "Nothing was written" in failures
        assert table_state(home) == after
        assert model_versions(home) == new_versions

        # The same file dropped again (same bytes, new mtime) triggers nothing; nor does a file
        # that is not data, which is logged.
        known.add(bad["runId"])
        wait_until_sensor_idle(dev, IDLE_TIMEOUT)
        again = time.time()
        (dev.landing / NEW_FILE).write_text(NEW_CSV)
        (dev.landing / "README.txt").write_text("not data")
        deadline = time.monotonic() + SENSOR_RUN_TIMEOUT
        while len([t for t in dev.sensor_ticks(LANDING_SENSOR) if t["timestamp"] > again]) < 3:
            assert time.monotonic() < deadline, dev.log_tail()
            time.sleep(2)
        assert {r["runId"] for r in dev.runs()} == known
        assert table_state(home) == after
        log = dev.sensor_log(LANDING_SENSOR, since=again)
        assert "README.txt: not a CSV or Parquet file, ignored" in log, log
        assert f"{NEW_FILE}: touched, but its content is unchanged; nothing to do" in log, log

        # The run-failure sensor (default interval 30 s) handled the failed run in the daemon.
        deadline = time.monotonic() + 120
        expected = (
            f"Run {bad['runId']} failed before it opened an MLflow run: bronze_transactions: "
            f"Landing file {dev.landing / BAD_FILE} lacks required column(s) amount"
        )
        while not any(m.startswith(expected) for m in dev.sensor_log(FAILURE_SENSOR)):
            assert time.monotonic() < deadline, dev.sensor_log(FAILURE_SENSOR)
            time.sleep(3)

        # The duckdb pool (limit 1, run granularity) kept the runs from overlapping.
        runs = sorted(dev.runs(), key=lambda r: r["startTime"])
        for earlier, later in zip(runs, runs[1:], strict=False):
            assert earlier["endTime"] <= later["startTime"], (earlier, later)
        limit = dev.graphql(INSTANCE_QUERY)["instance"]["concurrencyLimit"]
        assert limit["slotCount"] == 1


def test_the_main_command_and_a_sensor_run_take_turns_on_one_lakehouse(tmp_path):
    """The main command, started while the landing sensor's run is in progress, does not
    interleave its steps with it: one of the two waits for the other's run lock, both succeed,
    and one model version is registered."""
    with dagster_dev(tmp_path) as dev:
        write_sample(dev.landing)
        deadline = time.monotonic() + SENSOR_RUN_TIMEOUT
        while not (started := [r for r in dev.runs() if r["status"] == "STARTED"]):
            assert time.monotonic() < deadline, f"no sensor run started\n{dev.log_tail()}"
            time.sleep(0.5)
        (sensor_run,) = started
        main_command = quickstart_run(tmp_path)
        assert main_command.returncode == 0, main_command.stderr[-3000:]
        assert dev.wait_for_run(sensor_run["runId"], SENSOR_RUN_TIMEOUT) == "SUCCESS"

        with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
            sensor_log = [e.user_message for e in instance.all_logs(sensor_run["runId"])]
        waited = [
            text
            for text in [main_command.stderr, *sensor_log]
            if "Waiting for" in text and "lakehouse.lock" in text
        ]
        assert waited, "neither run waited for the other's run lock"
        assert model_versions(dev.lakehouse_home) == ["1"]
        assert "Run summary: 996 customers scored by champion version 1" in main_command.stderr
