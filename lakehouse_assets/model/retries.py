"""The retry policy of steps that talk to MLflow: transient failures only, with backoff and jitter."""

import os

import dagster as dg

DELAY_ENV = "LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS"
DEFAULT_DELAY_SECONDS = 2.0
MAX_RETRIES = 2


def mlflow_retry_policy() -> dg.RetryPolicy:
    """2 retries, exponential backoff from `$LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS` (default 2 s),
    with jitter. Read when the code location loads. Deterministic errors raise
    `dg.Failure(allow_retries=False)` and are never retried."""
    delay = float(os.environ.get(DELAY_ENV) or DEFAULT_DELAY_SECONDS)
    return dg.RetryPolicy(
        max_retries=MAX_RETRIES,
        delay=delay,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
