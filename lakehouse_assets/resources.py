"""Resources of the data layers: the DuckDB database and the landing folder."""

from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster._utils.backoff import backoff
from dagster_duckdb import DuckDBResource
from pydantic import Field

from lakehouse_assets import settings

DATA_SUFFIXES = (".csv", ".parquet")


class LakehouseDuckDB(DuckDBResource):
    """dagster-duckdb's resource, with the path resolved when a run starts.

    Used wherever DuckDBResource is: `with duckdb.get_connection() as conn: ...`.

    An empty `database` means `$LAKEHOUSE_DUCKDB_PATH`, else `$LAKEHOUSE_HOME/lakehouse.duckdb`.
    Connections use UTC so that timestamps with offsets are read consistently, a bounded
    buffer pool (DuckDB spills to disk beyond it) and no insertion-order guarantee: every
    table that needs an order says so with ORDER BY, and unordered writes run in parallel
    with less memory. SQL never reads Python variables (no replacement scans).
    """

    database: str = Field(default="", description="DuckDB file; empty = from the environment.")
    memory_limit: str = Field(
        default="1GB", description="DuckDB's buffer pool limit; larger work spills to disk."
    )
    threads: int = Field(default=0, description="DuckDB worker threads; 0 = one per core.")

    def database_path(self) -> Path:
        return Path(self.database).absolute() if self.database else settings.duckdb_path()

    @contextmanager
    def get_connection(self):
        """A connection that is closed even when the block raises (DuckDBResource's is not)."""
        path = self.database_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = backoff(
            fn=duckdb.connect,
            retry_on=(duckdb.IOException,),  # another process holds the write lock
            kwargs={
                "database": str(path),
                "config": {"custom_user_agent": "dagster", **self.connection_config},
            },
            max_retries=10,
        )
        try:
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute("SET memory_limit = $limit", {"limit": self.memory_limit})
            conn.execute("SET preserve_insertion_order = false")
            # A missing table is an error, never a Python variable of the same name.
            conn.execute("SET python_enable_replacements = false")
            if self.threads > 0:
                conn.execute("SET threads = $threads", {"threads": self.threads})
            yield conn
        finally:
            conn.close()


class LandingZone(dg.ConfigurableResource):
    """The folder where raw transaction files (CSV or Parquet) land."""

    path: str = Field(default="", description="Landing folder; empty = from the environment.")

    def folder(self) -> Path:
        return Path(self.path).absolute() if self.path else settings.landing_dir()

    def data_files(self) -> list[Path]:
        """The CSV and Parquet files in the landing folder, sorted by name (hidden files skipped)."""
        folder = self.folder()
        if not folder.is_dir():
            return []
        return sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".")
        )


@contextmanager
def transaction(conn):
    """Run the block in one DuckDB transaction: all of it is committed, or none of it."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
