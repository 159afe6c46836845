"""Every environment variable the project reads, in one place, read at the moment it is used.

Read when a run starts (never at import time): where local state lives, the DuckDB memory limit,
the MLflow tracking URI and the model signing key (a secret: never logged, never put in config). Read when the code location loads, because Dagster needs them to
define the code location (restart or reload it after a change): the deployment profile, the
MLflow steps' retry delay and the landing sensor's interval. The README's configuration table
lists them all. One variable of another library is set, not read, when the package is imported:
OpenBLAS's thread timeout (`let_idle_blas_threads_sleep`).
"""

import os
from pathlib import Path

HOME_ENV = "LAKEHOUSE_HOME"
LANDING_ENV = "LAKEHOUSE_LANDING_DIR"
DUCKDB_ENV = "LAKEHOUSE_DUCKDB_PATH"
MEMORY_LIMIT_ENV = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PROFILE_ENV = "LAKEHOUSE_ENV"
RETRY_DELAY_ENV = "LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS"
SENSOR_INTERVAL_ENV = "LAKEHOUSE_SENSOR_INTERVAL_SECONDS"
SIGNING_KEY_ENV = "LAKEHOUSE_MODEL_SIGNING_KEY"
OPENBLAS_TIMEOUT_ENV = "OPENBLAS_THREAD_TIMEOUT"  # OpenBLAS's own, set (unless set) at import

DEFAULT_PROFILE = "local"
DEFAULT_RETRY_DELAY_SECONDS = 2.0
DEFAULT_SENSOR_INTERVAL_SECONDS = 30


# -- read when a run starts


def lakehouse_home() -> Path:
    """`$LAKEHOUSE_HOME`, default `.lakehouse/` under the working directory."""
    return Path(os.environ.get(HOME_ENV) or ".lakehouse").absolute()


def landing_dir() -> Path:
    """`$LAKEHOUSE_LANDING_DIR`, default `$LAKEHOUSE_HOME/landing`."""
    configured = os.environ.get(LANDING_ENV)
    return Path(configured).absolute() if configured else lakehouse_home() / "landing"


def duckdb_path() -> Path:
    """`$LAKEHOUSE_DUCKDB_PATH`, default `$LAKEHOUSE_HOME/lakehouse.duckdb`."""
    configured = os.environ.get(DUCKDB_ENV)
    return Path(configured).absolute() if configured else lakehouse_home() / "lakehouse.duckdb"


def duckdb_memory_limit() -> str:
    """`$LAKEHOUSE_DUCKDB_MEMORY_LIMIT` (e.g. `8GB`), empty when unset."""
    return os.environ.get(MEMORY_LIMIT_ENV, "").strip()


def mlflow_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, else the local sqlite store `$LAKEHOUSE_HOME/mlflow.db`."""
    return os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{lakehouse_home() / 'mlflow.db'}"


def model_signing_key() -> str | None:
    """`$LAKEHOUSE_MODEL_SIGNING_KEY`: the HMAC key that signs and verifies model pickles
    (`model/signing.py`); None when unset or blank (models are then unsigned)."""
    return os.environ.get(SIGNING_KEY_ENV, "").strip() or None


# -- read when the code location loads


def profile() -> str:
    """`$LAKEHOUSE_ENV` (default `local`), lower-cased; `profiles.py` checks the name."""
    return os.environ.get(PROFILE_ENV, "").strip().lower() or DEFAULT_PROFILE


def mlflow_retry_delay_seconds() -> float:
    """`$LAKEHOUSE_MLFLOW_RETRY_DELAY_SECONDS` (default 2): the first delay of the MLflow steps'
    retry policy."""
    raw = os.environ.get(RETRY_DELAY_ENV) or str(DEFAULT_RETRY_DELAY_SECONDS)
    try:
        delay = float(raw)
    except ValueError:
        delay = -1.0
    if delay < 0:
        raise ValueError(f"{RETRY_DELAY_ENV} must be a number of seconds >= 0, got {raw!r}")
    return delay


def sensor_interval_seconds() -> int:
    """`$LAKEHOUSE_SENSOR_INTERVAL_SECONDS` (default 30): how often the landing sensor looks."""
    raw = os.environ.get(SENSOR_INTERVAL_ENV) or str(DEFAULT_SENSOR_INTERVAL_SECONDS)
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise ValueError(
            f"{SENSOR_INTERVAL_ENV} must be a whole number of seconds >= 1, got {raw!r}"
        )
    return seconds


# -- set when the package is imported


def let_idle_blas_threads_sleep() -> None:
    """`OPENBLAS_THREAD_TIMEOUT=4`, unless the environment sets it: idle OpenBLAS threads (numpy's
    and scipy's BLAS, one per core) then sleep at once instead of spinning for about 2^28 CPU
    cycles after every call. Spinning, they take the cores the step's own thread needs between
    the calls: on 2 busy cores the 25,000-row logistic regression fit took 3 to 6 s instead of
    0.15 s. The number of threads, so the split of every sum and the model, stays the same.
    OpenBLAS reads it once, when it is loaded: this must run before numpy is imported (it is,
    from `lakehouse_assets/__init__.py`); later it changes nothing."""
    os.environ.setdefault(OPENBLAS_TIMEOUT_ENV, "4")
