"""lakehouse-assets: a Dagster code location for a lakehouse ML pipeline on DuckDB and MLflow."""

from lakehouse_assets.definitions import defs

__all__ = ["defs"]
