"""The Celery deployment of docs/deployment.md: Redis as broker and result backend, two
`dagster-celery` workers (deploy/celery.yaml) and the Postgres-backed instance; the whole graph
is launched by the daemon from deploy/workspace-celery.yaml, every step runs in a worker, and
the `duckdb` pool still lets one lake-writing step (a bucketed asset's commit among them) run at
a time."""

import contextlib

import dagster as dg

from lakehouse_assets import defs
from lakehouse_assets_tests.support.processes import run_command, server_process
from lakehouse_assets_tests.support.services import (
    DEPLOY_DIR,
    celery_worker,
    dagster_home,
    dagster_pg_env,
    file_texts,
    leaked_secrets,
    postgres_server,
    prod_env,
    redis_server,
    run_log_texts,
    wait_for_finished_run,
)

WORKERS = ("worker-a", "worker-b")
WORKSPACE = DEPLOY_DIR / "workspace-celery.yaml"
STEP_END = ("STEP_SUCCESS", "STEP_FAILURE")


def _duckdb_pool_steps() -> set[str]:
    """The step keys of the ops in the `duckdb` pool (a bucketed asset's commit among them)."""
    job = defs.resolve_job_def("refresh_lakehouse")
    steps = set()
    for name, node in job.graph.node_dict.items():
        if isinstance(node.definition, dg.GraphDefinition):
            inner = node.definition.node_dict.items()
            steps |= {f"{name}.{op}" for op, n in inner if n.definition.pool == "duckdb"}
        elif node.definition.pool == "duckdb":
            steps.add(name)
    return steps


def _step_intervals(events, steps: set[str]) -> list[tuple[float, float, str]]:
    """(submitted to Celery, finished, step) of each step in ``steps``, by submission time."""
    submitted, intervals = {}, []
    for event in events:
        if event.step_key not in steps or not event.is_dagster_event:
            continue
        message = event.dagster_event.message or ""
        if message.startswith("Submitting celery task"):
            submitted[event.step_key] = event.timestamp
        elif event.dagster_event_type.value in STEP_END:
            intervals.append((submitted[event.step_key], event.timestamp, event.step_key))
    return sorted(intervals)


def test_graph_runs_on_two_celery_workers_one_duckdb_writer_at_a_time(tmp_path, monkeypatch):
    import redis

    with postgres_server(tmp_path / "pg") as pg, redis_server(tmp_path / "redis") as broker:
        home = dagster_home(tmp_path / "dagster_home", pg)
        lake = tmp_path / "lakehouse"
        env = prod_env(
            pg,
            home,
            lake,
            MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
            LAKEHOUSE_SENSOR_INTERVAL_SECONDS="3600",  # no second run from the landing sensor
            DAGSTER_CELERY_BROKER_URL=broker,
            DAGSTER_CELERY_BACKEND_URL=broker,
        )
        with contextlib.ExitStack() as workers:
            for name in WORKERS:
                workers.enter_context(celery_worker(name, env, tmp_path))
            daemon_log = tmp_path / "dagster-daemon.log"
            daemon = ["dagster-daemon", "run", "-w", str(WORKSPACE)]
            workers.enter_context(
                server_process(
                    "dagster-daemon", daemon, daemon_log, lambda: True, env=env, cwd=tmp_path
                )
            )
            launch_log = tmp_path / "dagster-job-launch.log"
            launch = ["dagster", "job", "launch", "-w", str(WORKSPACE), "-j", "refresh_lakehouse"]
            code = run_command(launch, env, launch_log, timeout=300, cwd=tmp_path)
            assert code == 0, launch_log.read_text()[-3000:]
            for name, value in dagster_pg_env(pg).items():
                monkeypatch.setenv(name, value)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                run = wait_for_finished_run(instance, timeout=420)
            assert run.is_success, daemon_log.read_text()[-3000:]
            broker_texts = {
                f"redis {key!r}": repr(redis.Redis.from_url(broker).dump(key))
                for key in redis.Redis.from_url(broker).keys("*")
            }

        with dg.DagsterInstance.from_config(str(home)) as instance:
            events = instance.all_logs(run.run_id)
            texts = run_log_texts(instance, run.run_id)
            pool_slots = instance.event_log_storage.get_concurrency_info("duckdb").slot_count

    # Every step ran in a worker, and both workers took steps.
    job = defs.resolve_job_def("refresh_lakehouse")
    executed_in = {}
    for event in events:
        if event.is_dagster_event and event.dagster_event_type.value == "ENGINE_EVENT":
            data = event.dagster_event.engine_event_data.metadata
            if "Celery worker" in data:  # reported by the worker that executes the step
                executed_in[event.step_key] = data["Celery worker"].value
    succeeded = {
        e.step_key
        for e in events
        if e.is_dagster_event and e.dagster_event_type.value == "STEP_SUCCESS"
    }
    assert set(executed_in) == succeeded
    assert {step.split(".")[0] for step in succeeded} == set(job.graph.node_dict)
    assert {worker.split("@")[0] for worker in executed_in.values()} == set(WORKERS)
    for name in WORKERS:
        assert "Task execute_plan[" in (tmp_path / f"{name}.log").read_text()

    # The orchestrator submitted a step of the duckdb pool only after the previous one finished,
    # also where several were ready together (the three checks of silver_transactions, the
    # three of customer_features): the pool, not DuckDB's file lock, kept them apart.
    assert pool_slots == 1
    pool_steps = _duckdb_pool_steps()
    intervals = _step_intervals(events, pool_steps)
    assert {step for _, _, step in intervals} == pool_steps
    for (_, end, step), (start, _, next_step) in zip(intervals, intervals[1:], strict=False):
        assert end <= start, f"{next_step} was submitted while {step} held the DuckDB file"

    texts |= broker_texts
    logs = (daemon_log, launch_log, *(tmp_path / f"{n}.log" for n in WORKERS))
    texts |= file_texts(home / "storage", *logs)
    assert leaked_secrets(texts, {"postgres password": pg.password}) == []
