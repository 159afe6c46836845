"""Where local state lives: read from the environment when a run starts, never at import time."""

import os
from pathlib import Path

HOME_ENV = "LAKEHOUSE_HOME"
LANDING_ENV = "LAKEHOUSE_LANDING_DIR"
DUCKDB_ENV = "LAKEHOUSE_DUCKDB_PATH"


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


MEMORY_LIMIT_ENV = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT"


def duckdb_memory_limit() -> str:
    """`$LAKEHOUSE_DUCKDB_MEMORY_LIMIT` (e.g. `8GB`), empty when unset."""
    return os.environ.get(MEMORY_LIMIT_ENV, "").strip()
