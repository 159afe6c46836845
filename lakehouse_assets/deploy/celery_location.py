"""Code location for Celery deployments: every step is sent through a Redis broker to
`dagster-celery` workers, which may run on other machines.

Workspace: `python_module: lakehouse_assets.deploy.celery_location`. Broker and result backend
come from `$DAGSTER_CELERY_BROKER_URL` and `$DAGSTER_CELERY_BACKEND_URL` when a run starts; the
workers read the same variables through deploy/celery.yaml.

Steps share no process, so nothing is passed in memory: assets write the lake (on PostgreSQL and
S3, so that every worker sees it) or MLflow, and the model assets read upstream materializations
from the instance, which must be the shared Postgres one. Lake writes stay one at a time through
the `duckdb` pool: the run's orchestrator claims a
slot from the instance before it submits a step of that pool to Celery (deploy/dagster.yaml sets
`concurrency: pools: default_limit: 1, granularity: op`).
"""

from dagster_celery import celery_executor

from lakehouse_assets.definitions import build_definitions

BROKER_ENV = "DAGSTER_CELERY_BROKER_URL"
BACKEND_ENV = "DAGSTER_CELERY_BACKEND_URL"

defs = build_definitions(
    celery_executor.configured(
        {"broker": {"env": BROKER_ENV}, "backend": {"env": BACKEND_ENV}},
        name="lakehouse_celery",
    )
)
