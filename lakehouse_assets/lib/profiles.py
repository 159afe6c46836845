"""Resources per deployment profile, swapped in this one place.

`LAKEHOUSE_ENV` names the profile; it is read once, when the code location loads (restart or
reload the code location to switch). Values inside a profile are read when a run starts.

* `local` (default): one person, one machine. Paths under `$LAKEHOUSE_HOME`; MLflow at
  `$MLFLOW_TRACKING_URI`, else a sqlite store under `$LAKEHOUSE_HOME`. Models are signed only
  when `LAKEHOUSE_MODEL_SIGNING_KEY` is set.
* `prod`: a team deployment (docs/deployment.md). Every location is a required environment
  variable, so a missing one fails the run at its start, naming the variable, instead of
  silently writing to a local default: `LAKEHOUSE_CATALOG` (the DuckLake catalog, e.g. on
  PostgreSQL), `LAKEHOUSE_DATA_PATH` (its Parquet files, e.g. on S3), `LAKEHOUSE_LANDING_DIR` and `MLFLOW_TRACKING_URI` (the team's MLflow server, whose
  artifacts live in object storage behind it). `LAKEHOUSE_MODEL_SIGNING_KEY` is required too:
  without it every run fails at its start, since unsigned pickles must not be trusted.
"""

from collections.abc import Callable

import dagster as dg

from lakehouse_assets.lib import settings
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone
from lakehouse_assets.lib.run_report import RunReport


def local_resources(run_lock: bool = True) -> dict:
    """Paths resolved from the environment when a run starts, with local defaults."""
    mlflow = MlflowTracking()
    return {
        "duckdb": LakehouseDuckDB(run_lock=run_lock),
        "landing": LandingZone(),
        "mlflow": mlflow,
        "run_report": RunReport(mlflow=mlflow),
    }


def prod_resources(run_lock: bool = True) -> dict:
    """Required environment variables, no local fallbacks."""
    mlflow = MlflowTracking(
        tracking_uri=dg.EnvVar(settings.TRACKING_URI_ENV), require_signed_models=True
    )
    return {
        "duckdb": LakehouseDuckDB(
            catalog=dg.EnvVar(settings.CATALOG_ENV),
            data_path=dg.EnvVar(settings.DATA_PATH_ENV),
            run_lock=run_lock,
        ),
        "landing": LandingZone(path=dg.EnvVar(settings.LANDING_ENV)),
        "mlflow": mlflow,
        "run_report": RunReport(mlflow=mlflow),
    }


PROFILES: dict[str, Callable[..., dict]] = {"local": local_resources, "prod": prod_resources}


def profile_name() -> str:
    """The profile `$LAKEHOUSE_ENV` names (default `local`); an unknown name fails loudly."""
    name = settings.profile()
    if name not in PROFILES:
        raise ValueError(
            f"{settings.PROFILE_ENV}={name!r} is not a deployment profile; use one of {sorted(PROFILES)}."
        )
    return name


def build_resources(profile: str | None = None, run_lock: bool = True) -> dict:
    """Resources of `profile`, by default the one `$LAKEHOUSE_ENV` names; `run_lock`: whether
    the duckdb resource holds the run lock (docs/deployment.md)."""
    return PROFILES[profile or profile_name()](run_lock=run_lock)
