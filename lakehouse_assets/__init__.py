"""lakehouse-assets: a Dagster code location for a lakehouse ML pipeline on DuckDB and MLflow."""

from lakehouse_assets.definitions import defs
from lakehouse_assets.model.champion import load_champion

__all__ = ["defs", "load_champion"]
