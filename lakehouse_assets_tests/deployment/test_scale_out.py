"""Past one machine (issue 22): the lake's catalog on PostgreSQL and its files on SeaweedFS, the
graph up to gold run by the Celery location with 4 buckets on two Celery workers (separate
processes, as on separate machines). A worker SIGKILLed mid-silver leaves the lake at its
snapshot; the rerun's bucket steps run on both live workers, and every table equals the
in-process, one-bucket build of the same landing folder."""

import contextlib
import os
import signal
import time

import dagster as dg
import pytest

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets_tests.integration.test_fanout import (
    UP_TO_GOLD,
    assert_same_tables_as,
)
from lakehouse_assets_tests.support.helpers import (
    NO_SEED,
    failure_messages,
    home_location,
    run_graph,
)
from lakehouse_assets_tests.support.processes import clean_env, run_command, server_process
from lakehouse_assets_tests.support.seaweedfs import seaweedfs_s3
from lakehouse_assets_tests.support.services import (
    celery_worker,
    dagster_home,
    dagster_pg_env,
    postgres_server,
    redis_server,
)

pytestmark = pytest.mark.scale_out

WORKERS = ("worker-a", "worker-b", "worker-c")  # a: killed mid-silver; c: started after
BUCKETS = 4
DATA_PATH = "s3://lake/lakehouse/"
BUCKET_STEPS = ".bucket_of_"  # in the step keys of every bucketed asset's bucket steps
SILVER_SHARD_STEP = "silver_transactions.bucket_of_silver_transactions"


def _executed_by(events) -> dict[str, str]:
    """Step key -> the Celery worker that executed it (the worker reports it)."""
    found = {}
    for event in events:
        if event.is_dagster_event and event.dagster_event_type.value == "ENGINE_EVENT":
            data = event.dagster_event.engine_event_data.metadata
            if "Celery worker" in data:
                found[event.step_key] = data["Celery worker"].value.split("@")[0]
    return found


def _silver_step_running_on(instance, run_id: str, worker: str) -> str | None:
    """A silver shard step of the run that `worker` executes and has not finished, if any."""
    logs = instance.all_logs(run_id)
    finished = {e.step_key for e in logs if e.is_dagster_event and e.dagster_event.is_step_success}
    for step, ran_on in _executed_by(logs).items():
        if SILVER_SHARD_STEP in step and ran_on == worker and step not in finished:
            return step
    return None


def _kill_a_worker_mid_silver(shared, materialize, env, tmp_path, worker) -> str:
    """Run `materialize`, SIGKILL `worker` while it runs a silver shard step, then the run's own
    process; returns the step it killed."""
    log = tmp_path / "killed-run.log"
    with server_process("killed run", materialize, log, lambda: True, env=env, cwd=tmp_path) as run:
        deadline = time.monotonic() + 300
        step = None
        while step is None:
            assert run.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "no silver shard step ran on the worker"
            runs = shared.get_runs(limit=1)
            step = runs and _silver_step_running_on(shared, runs[0].run_id, WORKERS[0])
            time.sleep(0.1)
        os.killpg(worker.pid, signal.SIGKILL)
        os.killpg(run.pid, signal.SIGKILL)
        run_id = runs[0].run_id
    logs = shared.all_logs(run_id)
    assert not any(e.step_key == step and e.dagster_event.is_step_success for e in logs
                   if e.is_dagster_event), f"{step} finished before the kill"  # fmt: skip
    return step


def test_buckets_on_two_celery_workers_equal_the_one_process_build(
    tmp_path, lakehouse_home, instance, monkeypatch
):
    """Bronze first; then silver and gold, during which one worker is SIGKILLed mid-silver (the
    lake keeps its snapshot); then again, on the surviving worker and a new one."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name, raising=False)
    landing = tmp_path / "landing"
    write_sample(landing, events=1_000_000, customers=100_000, seed=5)
    try:
        with (
            postgres_server(tmp_path / "pg") as pg,
            seaweedfs_s3(tmp_path / "seaweedfs", bucket="lake") as s3,
            redis_server(tmp_path / "redis") as broker,
        ):
            pg.create_database("lake")
            catalog = (
                f"postgres:dbname=lake host={pg.host} port={pg.port} user={pg.user} "
                f"password={pg.password}"
            )
            home = dagster_home(tmp_path / "dagster_home", pg)
            env = clean_env(
                **s3.env(),
                **dagster_pg_env(pg),
                DAGSTER_HOME=str(home),
                LAKEHOUSE_ENV="prod",
                LAKEHOUSE_HOME=str(lakehouse_home),
                LAKEHOUSE_CATALOG=catalog,
                LAKEHOUSE_DATA_PATH=DATA_PATH,
                LAKEHOUSE_LANDING_DIR=str(landing),
                LAKEHOUSE_BUCKETS=str(BUCKETS),
                LAKEHOUSE_MODEL_SIGNING_KEY=os.urandom(16).hex(),
                MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
                DAGSTER_CELERY_BROKER_URL=broker,
                DAGSTER_CELERY_BACKEND_URL=broker,
            )
            for name, value in {**dagster_pg_env(pg), **s3.env()}.items():
                monkeypatch.setenv(name, value)
            materialize = ["dagster", "asset", "materialize", "-m",
                           "lakehouse_assets.deploy.celery_location", "--select"]  # fmt: skip
            location = lake.LakeLocation(catalog, DATA_PATH)
            with (
                contextlib.ExitStack() as workers,
                dg.DagsterInstance.from_config(str(home)) as shared,
            ):
                killed = workers.enter_context(celery_worker(WORKERS[0], env, tmp_path))
                workers.enter_context(celery_worker(WORKERS[1], env, tmp_path))
                run_log = tmp_path / "bronze.log"
                code = run_command([*materialize, "raw_transactions,bronze_transactions"], env,
                                   run_log, timeout=900, cwd=tmp_path)  # fmt: skip
                assert code == 0, run_log.read_text()[-4000:]
                with lake.cursor(location, read_only=True) as conn:
                    before = lake.current_snapshot(conn)

                silver_and_gold = [*materialize, "silver_transactions,gold_customer_summary"]
                step = _kill_a_worker_mid_silver(shared, silver_and_gold, env, tmp_path, killed)
                with lake.cursor(location, read_only=True) as conn:
                    assert lake.current_snapshot(conn) == before, f"killed in {step}"

                workers.enter_context(celery_worker(WORKERS[2], env, tmp_path))
                run_log = tmp_path / "silver-and-gold.log"
                code = run_command(silver_and_gold, env, run_log, timeout=900, cwd=tmp_path)
                assert code == 0, run_log.read_text()[-4000:]
                run = shared.get_runs(limit=1)[0]
                assert run.is_success
                executed_by = _executed_by(shared.all_logs(run.run_id))

            # Every step ran in a worker, and both live workers ran bucket steps.
            bucket_steps = {k: w for k, w in executed_by.items() if BUCKET_STEPS in k}
            assert len(bucket_steps) == 2 * BUCKETS, executed_by  # silver's and gold's
            assert set(bucket_steps.values()) == set(WORKERS[1:]), bucket_steps

            # The workers wrote their pieces to S3 (the maintenance job deletes them there)...
            pieces = s3.keys("lakehouse/fanout/gold.customer_summary/")
            assert len([k for k in pieces if k.endswith("/piece.parquet")]) == BUCKETS, pieces
            # ...and the lake's tables hold what one process with one bucket builds.
            one = tmp_path / "one"
            local_location = home_location(one)
            local = {
                "duckdb": LakehouseDuckDB(
                    catalog=local_location.catalog, data_path=local_location.data_path, buckets=1
                ),
                "landing": LandingZone(path=str(landing)),
            }
            result = run_graph(instance, UP_TO_GOLD, NO_SEED, local)
            assert result.success, failure_messages(result)
            with lake.cursor(location, read_only=True) as conn:
                buckets = conn.execute(
                    "SELECT DISTINCT bucket FROM gold.customer_summary ORDER BY 1"
                ).fetchall()
                assert buckets == [(b,) for b in range(BUCKETS)]
                assert_same_tables_as(conn, local_location.catalog)
    finally:
        lake.close_all()  # this process's DuckDB instances, attached to the stopped PostgreSQL
