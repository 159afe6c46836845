"""The retry policy of steps that talk to MLflow: transient failures only, with backoff and jitter."""

import dagster as dg

from lakehouse_assets.lib import settings

MAX_RETRIES = 2


def mlflow_retry_policy() -> dg.RetryPolicy:
    """2 retries, exponential backoff from `$LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS` (default 2 s),
    with jitter. Read when the code location loads. Deterministic errors raise
    `dg.Failure(allow_retries=False)` and are never retried."""
    return dg.RetryPolicy(
        max_retries=MAX_RETRIES,
        delay=settings.mlflow_retry_delay_seconds(),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
