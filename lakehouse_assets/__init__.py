"""lakehouse-assets: a Dagster code location for a lakehouse ML pipeline on DuckDB and MLflow."""

import atexit
import gc
import sys
from pathlib import Path

from lakehouse_assets.lib import settings

settings.let_idle_blas_threads_sleep()  # before anything loads numpy, and with it OpenBLAS


def _exit_without_final_collections() -> None:
    """In Dagster's own processes, freeze every object at exit, so that the interpreter's last
    garbage collections skip them (docs/benchmark.md, "Measurements behind the code"). The
    pipeline closes its connections, files and MLflow runs itself; other importers are left
    alone."""
    command = Path((getattr(sys, "argv", None) or [""])[0])
    if "dagster" in (command.name, command.parent.name):  # `dagster …` or `python -m dagster …`
        atexit.register(gc.freeze)


_exit_without_final_collections()

from lakehouse_assets.definitions import defs  # noqa: E402
from lakehouse_assets.lib.lake import connect  # noqa: E402
from lakehouse_assets.lib.model.champion import load_champion  # noqa: E402
from lakehouse_assets.lib.model.training_data import training_data  # noqa: E402

__all__ = ["connect", "defs", "load_champion", "training_data"]
