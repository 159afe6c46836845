"""`refresh_lakehouse`: every asset, as one job; and `weekly_retraining`, its schedule."""

import dagster as dg

WEEKLY_RETRAINING = "weekly_retraining"

refresh_lakehouse_job = dg.define_asset_job(
    "refresh_lakehouse",
    selection=dg.AssetSelection.all(),
    description="Every layer (raw -> bronze -> silver -> gold -> features), their checks, and the "
    "model: train (when retraining is due), evaluate, register, score every customer, "
    "and judge past scores against what the customers then did.",
)

weekly_retraining_schedule = dg.ScheduleDefinition(
    name=WEEKLY_RETRAINING,
    job=refresh_lakehouse_job,
    cron_schedule="0 4 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    # Retrain whatever the data's age (the landing sensor's runs retrain once it is a week on).
    run_config={"ops": {"churn_model": {"config": {"retrain_after_days": 0}}}},
    description="Mondays 04:00 UTC: refresh every layer and retrain, evaluate and register the "
    "model, even when less than `retrain_after_days` of data landed since the last training. "
    "Off by default; turn it on in the UI (Automation).",
)
