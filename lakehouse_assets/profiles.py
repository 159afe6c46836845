"""Resources per deployment profile, swapped in this one place."""

from lakehouse_assets.model.mlflow_resource import MlflowTracking
from lakehouse_assets.resources import LakehouseDuckDB, LandingZone


def build_resources() -> dict:
    """Resources of the local profile; paths are resolved from the environment when a run starts."""
    return {"duckdb": LakehouseDuckDB(), "landing": LandingZone(), "mlflow": MlflowTracking()}
