"""lakehouse-assets: a Dagster code location for a lakehouse ML pipeline on DuckDB and MLflow."""

import atexit
import gc

from lakehouse_assets import settings

settings.let_idle_blas_threads_sleep()  # before anything loads numpy, and with it OpenBLAS
# At exit the interpreter's last garbage collections walk every object still alive (Dagster,
# MLflow, scikit-learn, pandas and what a run left): 1.5 to 2.5 s after every run of the main
# command. Frozen objects are skipped (they are freed by reference counting or with the process);
# registered early, this runs after the exit handlers of what is imported later.
atexit.register(gc.freeze)

from lakehouse_assets.definitions import defs  # noqa: E402
from lakehouse_assets.model.champion import load_champion  # noqa: E402

__all__ = ["defs", "load_champion"]
