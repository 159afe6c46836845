"""The landing sensor, the weekly schedule and the run-failure sensor, through Dagster's own
entry points (`build_sensor_context`, `build_run_status_sensor_context`)."""

import os
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_assets import defs
from lakehouse_assets.defs.automation import refresh_lakehouse
from lakehouse_assets.defs.automation.landing_sensor import LANDING_SENSOR, build_landing_sensor
from lakehouse_assets.defs.automation.mlflow_run_failure_sensor import (
    FAILED_RUN_TAG,
    FAILURE_SENSOR,
    FAILURE_TAG,
)
from lakehouse_assets.defs.automation.refresh_lakehouse import WEEKLY_RETRAINING
from lakehouse_assets.lib.model.mlflow_resource import DAGSTER_RUN_TAG, MlflowTracking
from lakehouse_assets.lib.resources import LandingZone
from lakehouse_assets.lib.settings import SENSOR_INTERVAL_ENV as INTERVAL_ENV
from lakehouse_assets.lib.settings import sensor_interval_seconds
from lakehouse_assets_tests.support.helpers import ASSET_NAMES, client_for

CSV = "transaction_id,customer_id,event_time,amount\nt1,c1,2025-01-01,10.5\nt2,c2,2025-01-02,3\n"
FAILURE_MESSAGE = "the landing file lacks required column(s) amount"
ALL_ASSETS = set(ASSET_NAMES)


SENSORS = {sensor.name: sensor for sensor in defs.sensors}
SCHEDULES = {schedule.name: schedule for schedule in defs.schedules}


class Ticker:
    """Evaluates `landing_sensor` the way the daemon does: each tick gets the previous cursor,
    on an instance that has materialized nothing (so that no file counts as loaded)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.sensor = SENSORS[LANDING_SENSOR]

    def tick(self, cursor: str | None = None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            cursor=self.cursor if cursor is None else cursor,
            instance=self.instance,
            resources={"landing": LandingZone(path=str(self.folder))},
        )
        result = self.sensor(context)
        assert isinstance(result, dg.SensorResult)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result

    def run_keys(self) -> list[str]:
        return [r.run_key for r in self.tick().run_requests or []]


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def bump_mtime(path: Path, seconds: int = 10) -> None:
    """Move the mtime on, as a later write would (file systems may have coarse timestamps)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 1_000_000_000))


def test_sensor_definition_defaults():
    sensor = SENSORS[LANDING_SENSOR]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == sensor_interval_seconds()
    job = defs.resolve_job_def(sensor.job_name)
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == ALL_ASSETS
    schedule = SCHEDULES[WEEKLY_RETRAINING]
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == sensor.job_name
    failure = SENSORS[FAILURE_SENSOR]
    assert failure.default_status == dg.DefaultSensorStatus.RUNNING


def test_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "7")
    sensor = build_landing_sensor(refresh_lakehouse.refresh_lakehouse_job)
    assert sensor.minimum_interval_seconds == 7
    monkeypatch.setenv(INTERVAL_ENV, "0")
    with pytest.raises(ValueError, match=INTERVAL_ENV):
        sensor_interval_seconds()
    monkeypatch.delenv(INTERVAL_ENV)
    assert sensor_interval_seconds() == 30


def test_an_empty_or_missing_folder_requests_nothing(tmp_path):
    ticker = Ticker(tmp_path / "missing")
    assert ticker.run_keys() == []
    assert "does not exist" in ticker.tick().skip_reason.skip_message
    (tmp_path / "missing").mkdir()
    assert "No new or changed data files" in ticker.tick().skip_reason.skip_message


def test_a_new_file_triggers_once_after_it_settled(landing):
    ticker = Ticker(landing)
    (landing / "a.csv").write_text(CSV)
    first = ticker.tick()
    assert not first.run_requests
    assert "a.csv" in first.skip_reason.skip_message  # waiting for it to settle
    [request] = ticker.tick().run_requests
    assert request.run_key.startswith("landing-")
    assert request.tags["lakehouse/landed_files"] == "a.csv"
    assert ticker.run_keys() == []
    assert ticker.run_keys() == []


def test_the_same_file_again_triggers_nothing(landing):
    ticker = Ticker(landing)
    (landing / "a.csv").write_text(CSV)
    ticker.tick()
    assert len(ticker.run_keys()) == 1
    (landing / "a.csv").write_text(CSV)  # dropped again: same bytes, new mtime
    bump_mtime(landing / "a.csv")
    assert ticker.run_keys() == []
    assert ticker.run_keys() == []  # its hash matched: recorded, not hashed again


def test_a_changed_file_triggers_again_with_a_new_run_key(landing):
    ticker = Ticker(landing)
    (landing / "a.csv").write_text(CSV)
    ticker.tick()
    [first] = ticker.run_keys()
    (landing / "a.csv").write_text(CSV + "t3,c3,2025-01-03,7\n")
    bump_mtime(landing / "a.csv")
    assert ticker.run_keys() == []
    [second] = ticker.run_keys()
    assert second != first
    assert ticker.run_keys() == []


def test_a_file_still_being_written_waits_until_its_size_stops_changing(landing):
    ticker = Ticker(landing)
    path = landing / "big.csv"
    path.write_text(CSV)
    assert ticker.run_keys() == []
    with path.open("a") as handle:
        handle.write("t3,c3,2025-01-03,7\n")
    assert ticker.run_keys() == []  # grew since the last tick
    with path.open("a") as handle:
        handle.write("t4,c4,2025-01-04,8\n")
    assert ticker.run_keys() == []
    [key] = ticker.run_keys()  # unchanged for one tick
    assert ticker.run_keys() == []
    assert key


def test_files_that_are_not_csv_or_parquet_are_ignored_with_a_log_line(landing, capfd):
    ticker = Ticker(landing)
    (landing / "notes.txt").write_text("not data")
    (landing / ".a.csv.partial").write_text(CSV)
    assert ticker.run_keys() == []
    assert ticker.run_keys() == []
    logged = capfd.readouterr().err  # the sensor's log (Dagster's console logger)
    assert logged.count("notes.txt: not a CSV or Parquet file, ignored") == 1
    assert logged.count(".a.csv.partial: hidden, ignored") == 1
    (landing / "b.parquet").write_bytes(b"PAR1 whatever")  # data by its name: the run judges it
    assert ticker.run_keys() == []
    assert len(ticker.run_keys()) == 1


def test_a_restart_resumes_from_the_saved_cursor(landing):
    ticker = Ticker(landing)
    (landing / "a.csv").write_text(CSV)
    ticker.tick()
    [key_a] = ticker.run_keys()
    (landing / "b.csv").write_text(CSV.replace("t1", "t9"))
    ticker.tick()  # b.csv seen once: pending in the cursor
    saved = ticker.cursor

    restarted = Ticker(landing)  # a new daemon process: only the stored cursor survives
    result = restarted.tick(cursor=saved)
    [request] = result.run_requests  # b.csv settled across the restart, a.csv stays done
    assert request.tags["lakehouse/landed_files"] == "b.csv"
    assert restarted.run_keys() == []

    lost = Ticker(landing)  # even without a cursor, the same versions give the same run keys,
    lost.tick()  # which the daemon skips because runs with those keys exist
    [both] = lost.run_keys()
    assert both != key_a  # one request covering a.csv and b.csv


def test_run_keys_are_the_same_for_the_same_file_versions(landing):
    (landing / "a.csv").write_text(CSV)
    first, second = Ticker(landing), Ticker(landing)
    first.tick()
    second.tick()
    assert first.run_keys() == second.run_keys()


def test_failure_sensor_ends_and_tags_the_mlflow_runs_of_a_failed_run(lakehouse_home, instance):
    @dg.op
    def boom():
        raise dg.Failure(FAILURE_MESSAGE)

    @dg.job
    def failing():
        boom()

    result = failing.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    mlflow = MlflowTracking()
    client = mlflow.client()
    experiment_id = mlflow.experiment_id(client)
    left_running = client.create_run(experiment_id, tags={DAGSTER_RUN_TAG: result.run_id}).info
    already_failed = client.create_run(experiment_id, tags={DAGSTER_RUN_TAG: result.run_id}).info
    client.set_terminated(already_failed.run_id, status="FAILED")
    other = client.create_run(experiment_id, tags={DAGSTER_RUN_TAG: "another-run"}).info

    failure_event = next(
        e.event_log_entry.dagster_event
        for e in instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE
        ).records
    )
    context = dg.build_run_status_sensor_context(
        sensor_name=FAILURE_SENSOR,
        dagster_event=failure_event,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"mlflow": mlflow},
    ).for_run_failure()
    SENSORS[FAILURE_SENSOR](context)

    uri = mlflow.uri()
    for run_id in (left_running.run_id, already_failed.run_id):
        run = client_for(uri).get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags[FAILED_RUN_TAG] == result.run_id
        assert run.data.tags[FAILURE_TAG] == f"boom: {FAILURE_MESSAGE}"
    untouched = client_for(uri).get_run(other.run_id)
    assert untouched.info.status == "RUNNING" and FAILURE_TAG not in untouched.data.tags


def test_shipped_instance_settings_queue_runs_and_limit_the_duckdb_pool(tmp_path):
    from dagster._core.instance.config import PoolGranularity
    from dagster._core.run_coordinator import QueuedRunCoordinator

    from lakehouse_assets_tests.support.dagster_dev import SHIPPED_INSTANCE_YAML

    (tmp_path / "dagster.yaml").write_text(SHIPPED_INSTANCE_YAML.read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity == PoolGranularity.RUN
        assert config.run_queue_config.max_concurrent_runs == 2
        assert instance.event_log_storage.supports_global_concurrency_limits
