"""`mlflow_run_failure_sensor`: a failed Dagster run's MLflow runs end as FAILED, tagged with why."""

import dagster as dg

from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking

FAILURE_SENSOR = "mlflow_run_failure_sensor"
FAILURE_TAG = "dagster_failure"
FAILED_RUN_TAG = "dagster_failed_run_id"
MAX_TAG_CHARS = 4000  # below MLflow's tag value limit (5000 on 2.x servers, 8000 on 3.x)


@dg.run_failure_sensor(name=FAILURE_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING)
def mlflow_run_failure_sensor(context: dg.RunFailureSensorContext, mlflow: MlflowTracking) -> None:
    """When a run fails, ends every MLflow run it left RUNNING as FAILED and tags all of its
    MLflow runs with `dagster_failure` (the failed steps and their errors)."""
    run_id = context.dagster_run.run_id
    message = failure_message(context)
    tagged = mlflow.end_runs_of_dagster_run(
        run_id,
        "FAILED",
        tags={FAILURE_TAG: message[:MAX_TAG_CHARS], FAILED_RUN_TAG: run_id},
    )
    if tagged:
        context.log.info(
            f"Run {run_id} failed; marked MLflow run(s) {', '.join(tagged)}: {message}"
        )
    else:
        context.log.info(f"Run {run_id} failed before it opened an MLflow run: {message}")


def failure_message(context: dg.RunFailureSensorContext) -> str:
    """The failed steps with their errors, or the run's failure message if no step failed."""
    steps = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data is None:
            continue
        if data.user_failure_data and data.user_failure_data.description:  # a dg.Failure
            steps.append(f"{event.step_key}: {data.user_failure_data.description}")
        elif data.error:
            steps.append(f"{event.step_key}: {data.error.message.strip()}")
    return "\n".join(steps) or (context.failure_event.message or "run failed")
