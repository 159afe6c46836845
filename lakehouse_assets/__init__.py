"""lakehouse-assets: a Dagster code location for a lakehouse ML pipeline on DuckDB and MLflow."""

from lakehouse_assets import settings

settings.let_idle_blas_threads_sleep()  # before anything loads numpy, and with it OpenBLAS

from lakehouse_assets.definitions import defs  # noqa: E402
from lakehouse_assets.model.champion import load_champion  # noqa: E402

__all__ = ["defs", "load_champion"]
