"""The code location: every asset, check, resource, sensor and schedule in one place."""

import dagster as dg

from lakehouse_assets import automation
from lakehouse_assets.checks import data_checks
from lakehouse_assets.layers.bronze import bronze_transactions
from lakehouse_assets.layers.features import customer_features, scoring_features
from lakehouse_assets.layers.gold import gold_customer_summary
from lakehouse_assets.layers.raw import raw_transactions
from lakehouse_assets.layers.silver import silver_transactions
from lakehouse_assets.model.churn_scores import churn_scores
from lakehouse_assets.model.evaluation import churn_model_evaluation
from lakehouse_assets.model.registry import registered_churn_model
from lakehouse_assets.model.training import churn_model
from lakehouse_assets.profiles import build_resources

data_assets = [
    raw_transactions,
    bronze_transactions,
    silver_transactions,
    gold_customer_summary,
    customer_features,
    scoring_features,
]
model_assets = [churn_model, churn_model_evaluation, registered_churn_model, churn_scores]


def build_definitions(executor: dg.ExecutorDefinition = dg.in_process_executor) -> dg.Definitions:
    """The code location, with `executor` running its steps. By default they run one after
    another in the run's own process: DuckDB allows one writing process per file, and a process
    per step would cost more than most steps themselves. The Celery and Kubernetes locations
    (`lakehouse_assets.deploy`) pass their own executor."""
    return dg.Definitions(
        assets=[*data_assets, *model_assets],
        asset_checks=data_checks,
        resources=build_resources(),
        jobs=automation.jobs,
        sensors=automation.sensors,
        schedules=automation.schedules,
        executor=executor,
    )


defs = build_definitions()
