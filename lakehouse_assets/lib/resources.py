"""Resources of the data layers: the DuckDB database and the landing folder."""

import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import dagster as dg
import duckdb
from pydantic import Field, PrivateAttr

from lakehouse_assets.lib import lake, locks, migration, settings, tables
from lakehouse_assets.lib.metadata import log_progress, table_exists, table_metadata

DATA_SUFFIXES = (".csv", ".parquet")
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".numbers")
# DuckDB's memory limit, unless configured: this share of the memory the process may use (the
# machine's RAM, or a smaller cgroup limit), and at least the floor. The rest is left to the
# Python process (the model steps), Dagster and whatever else runs on the machine. More did not
# pay (docs/benchmark.md, "Measurements behind the code").
MEMORY_SHARE = 1 / 16
MEMORY_FLOOR_BYTES = 1024**3
CGROUP_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def available_memory_bytes() -> int:
    """Physical memory, or the cgroup (container) memory limit when it is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in CGROUP_LIMIT_FILES:
        try:
            text = Path(name).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def derived_memory_limit(available_bytes: int | None = None) -> str:
    """`MEMORY_SHARE` of the available memory, at least `MEMORY_FLOOR_BYTES`, in MiB."""
    available = available_memory_bytes() if available_bytes is None else available_bytes
    limit = max(int(available * MEMORY_SHARE), MEMORY_FLOOR_BYTES)
    return f"{limit // 1024**2}MiB"


class LakehouseDuckDB(dg.ConfigurableResource):
    """The lakehouse's tables: DuckDB over a DuckLake catalog, attached as `lake` and in use, so
    that SQL names tables as `silver.transactions`. Used as dagster-duckdb's resource is:
    `with duckdb.get_connection() as conn: ...`.

    The catalog is `catalog`, else `$LAKEHOUSE_CATALOG`, else `$LAKEHOUSE_HOME/catalog.sqlite`;
    the Parquet files go to `data_path`, else `$LAKEHOUSE_DATA_PATH`, else
    `$LAKEHOUSE_HOME/lake/` (or `s3://...`, with the AWS variables). Connections use UTC, a
    bounded buffer pool (DuckDB spills to disk beyond it) and no insertion-order guarantee; SQL
    never reads Python variables.

    The memory limit is `memory_limit`, else `$LAKEHOUSE_DUCKDB_MEMORY_LIMIT`, else 1/16 of the
    machine's (or container's) memory, at least 1 GiB. Work that still does not fit
    fails with a `dg.Failure` that names the limit and how to raise it.

    While it is set up, it holds the lakehouse's run lock (`$LAKEHOUSE_HOME/lakehouse.lock`):
    with the in-process executor that is the whole run, so that runs on one machine never
    interleave their steps; a second run waits, logging which run it waits for. A run that
    finds a lakehouse file from before DuckLake fails at once, naming the migration command.
    """

    catalog: str = Field(
        default="",
        description="DuckLake catalog: sqlite:<file> or postgres:<libpq string>; empty = from "
        "the environment.",
    )
    data_path: str = Field(
        default="",
        description="Folder or s3:// URL of the Parquet files; empty = from the environment.",
    )
    memory_limit: str = Field(
        default="",
        description="DuckDB's buffer pool limit (e.g. '8GB'); larger work spills to disk. Empty "
        "= $LAKEHOUSE_DUCKDB_MEMORY_LIMIT, else 1/16 of the machine's memory, at least 1 GiB.",
    )
    threads: int = Field(default=0, description="DuckDB worker threads; 0 = one per core.")
    buckets: int = Field(
        default=0,
        description="Customer buckets the heavy data steps split into, each a step of its own; "
        "0 = $LAKEHOUSE_BUCKETS, else 1.",
    )
    run_lock: bool = Field(
        default=True,
        description="Hold the run lock ($LAKEHOUSE_HOME/lakehouse.lock) while set up. The "
        "Celery and Kubernetes locations turn it off: there each step sets the resource up in "
        "its own process, and the `duckdb` pool keeps lake writers apart.",
    )
    _run_lock: IO[str] | None = PrivateAttr(default=None)

    def location(self) -> lake.LakeLocation:
        return lake.LakeLocation.from_settings(self.catalog, self.data_path)

    def bucket_count(self) -> int:
        """The bucket count: the `buckets` field, else `$LAKEHOUSE_BUCKETS`, else 1."""
        if self.buckets:
            return settings.check_buckets(self.buckets, "the duckdb resource's buckets")
        return settings.buckets()

    def run_lock_path(self) -> Path:
        return settings.lakehouse_home() / "lakehouse.lock"

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Check the settings and that no pre-DuckLake file waits to be migrated, then take the
        run lock (waiting for another run to end)."""
        self.resolved_memory_limit()
        self.location()
        self.bucket_count()
        migration.fail_if_unmigrated()
        if not self.run_lock:
            return
        path = self.run_lock_path()
        log = context.log or dg.get_dagster_logger()
        try:
            self._run_lock = locks.acquire(path, f"Dagster run {context.run_id}", log.info)
        except OSError as error:  # e.g. ENOLCK: a network volume without flock
            log.warning(
                f"Could not take the run lock {path} ({error}): this run is not kept apart from "
                "other runs by it (the Dagster queue's duckdb pool still keeps queued runs apart)."
            )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_lock is not None:
            locks.release(self._run_lock)
            self._run_lock = None

    def resolved_memory_limit(self) -> tuple[str, str]:
        """The memory limit and where it comes from (a value DuckDB refuses fails here, naming
        the setting)."""
        if self.memory_limit.strip():
            setting = "the duckdb resource's memory_limit"
            return settings.check_memory_limit(self.memory_limit, setting), setting
        if settings.duckdb_memory_limit():
            return settings.duckdb_memory_limit(), f"${settings.MEMORY_LIMIT_ENV}"
        available = available_memory_bytes()
        return (
            derived_memory_limit(available),
            f"derived: 1/{round(1 / MEMORY_SHARE)} of {available / 1024**3:.1f} GiB, at least "
            f"{MEMORY_FLOOR_BYTES / 1024**3:g} GiB",
        )

    @contextmanager
    def get_connection(self):
        """A connection to the lake, closed even when the block raises.

        DuckDB running out of memory in the block becomes a `dg.Failure` that says which
        setting to raise; a lakehouse table that does not exist yet, one that names the asset to
        materialize first."""
        limit, source = self.resolved_memory_limit()
        conn = lake.cursor(self.location())
        try:
            conn.execute("SET memory_limit = $limit", {"limit": limit})
            conn.execute("SET preserve_insertion_order = false")
            # A missing table is an error, never a Python variable of the same name.
            conn.execute("SET python_enable_replacements = false")
            if self.threads > 0:
                conn.execute("SET threads = $threads", {"threads": self.threads})
            else:  # DuckDB's default: the cores it may use (a container's CPU limit included)
                conn.execute("RESET threads")
            yield conn
        except duckdb.CatalogException as error:
            missing = tables.missing_table(str(error), lambda t: table_exists(conn, t))
            if missing is None:
                raise
            asset = tables.WRITTEN_BY[missing]
            raise dg.Failure(
                f"{missing} does not exist yet: materialize {asset} (and what it depends on) "
                f"first, e.g. `dagster asset materialize -m lakehouse_assets --select '*{asset}'`.",
                metadata={"missing_table": missing, "materialize_first": asset},
                allow_retries=False,
            ) from error
        except duckdb.OutOfMemoryException as error:
            duckdb_said = str(error).splitlines()[0]  # DuckDB's advice is about its own SET
            raise dg.Failure(
                f"DuckDB ran out of memory with memory_limit = {limit} ({source}). Raise it: "
                f"set {settings.MEMORY_LIMIT_ENV} (e.g. {settings.MEMORY_LIMIT_ENV}=8GB) or the "
                f"`duckdb` resource's `memory_limit`, or lower its `threads`. DuckDB said: {duckdb_said}",
                metadata={"memory_limit": limit, "memory_limit_source": source},
                allow_retries=False,
            ) from error
        finally:
            conn.close()


class LandingZone(dg.ConfigurableResource):
    """The folder where raw transaction files (CSV or Parquet) land."""

    path: str = Field(default="", description="Landing folder; empty = from the environment.")

    def folder(self) -> Path:
        return Path(self.path).absolute() if self.path else settings.landing_dir()

    def configured_by(self) -> str | None:
        """The setting that chose the folder (`$LAKEHOUSE_LANDING_DIR` or the resource's
        `path`), None for the default `$LAKEHOUSE_HOME/landing`."""
        from_env = os.environ.get(settings.LANDING_ENV, "")
        if from_env and (not self.path or self.path == from_env):
            return f"${settings.LANDING_ENV}"
        return "the `landing` resource's `path`" if self.path else None

    def files(self) -> list[Path]:
        """Every file under the landing folder, sorted by path."""
        folder = self.folder()
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []

    def data_files(self) -> list[Path]:
        """The CSV and Parquet files in the landing folder, sorted by name (hidden files skipped)."""
        return [p for p in self.files() if is_data_file(p)]

    def relative_data_files(self) -> list[str]:
        folder = self.folder()
        return [p.relative_to(folder).as_posix() for p in self.data_files()]

    def ignored_files(self) -> dict[str, str]:
        """The other files (relative path -> why it is not read); hidden files left out."""
        folder = self.folder()
        return {
            p.relative_to(folder).as_posix(): why_ignored(p)
            for p in self.files()
            if not is_data_file(p) and not p.name.startswith(".")
        }


def is_data_file(path: Path) -> bool:
    return path.suffix.lower() in DATA_SUFFIXES and not path.name.startswith(".")


def why_ignored(path: Path) -> str:
    """Why a file in the landing folder is not read, with what to do when there is a fix."""
    if path.suffix.lower() in SPREADSHEET_SUFFIXES:
        return "a spreadsheet: export it as CSV, with a header row"
    return "not a CSV or Parquet file"


COMMIT_RETRIES = 3  # a step whose commit conflicts with another writer is run again


@contextmanager
def transaction(conn):
    """Run the block in one DuckLake transaction: all of it is committed as one snapshot, or
    none of it. Inside a Dagster step the snapshot's commit message names the asset and the
    run. A commit refused because another writer committed at the same time asks Dagster to
    run the step again (at most `COMMIT_RETRIES` times, after a random 1 to 5 s): every asset
    recomputes its write from what the lake holds then, so running it again is safe."""
    conn.execute("BEGIN TRANSACTION")
    try:
        context = _current_step()
        if context is not None:
            lake.set_commit_message(conn, *_commit_message(context))
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except duckdb.Error as error:
        _rollback_quietly(conn)
        if not lake.is_commit_conflict(error):
            raise
        raise _conflict(error) from error


def _rollback_quietly(conn) -> None:
    try:
        conn.execute("ROLLBACK")
    except duckdb.Error:
        pass  # DuckLake already rolled the failed commit back


def _current_step():
    try:
        return dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return None


def _step_assets(context) -> list[str]:
    """The assets the step materializes (none for an op)."""
    if not context.has_assets_def:
        return []
    return sorted(k.to_user_string() for k in context.selected_asset_keys)


def _commit_message(context) -> tuple[str, str]:
    keys = _step_assets(context)
    what = f"asset {', '.join(keys)}" if keys else f"op {context.op.name}"
    return (
        f"{what}, Dagster run {context.run_id}",
        json.dumps({"assets": keys, "run_id": context.run_id, "step": context.op.name}),
    )


def _conflict(error: duckdb.Error) -> BaseException:
    """Another try of the step inside a Dagster run, else a Failure naming the conflict."""
    said = settings.redacted_catalog(str(error).splitlines()[0])
    context = _current_step()
    if context is not None and context.retry_number < COMMIT_RETRIES:
        context.log.warning(
            f"The commit conflicted with another writer ({said}); nothing was written. Running "
            f"the step again (try {context.retry_number + 2} of {COMMIT_RETRIES + 1})."
        )
        return dg.RetryRequested(max_retries=COMMIT_RETRIES, seconds_to_wait=random.uniform(1, 5))
    where = ""
    if context is not None:
        assets = _step_assets(context)
        written = [t for t, a in tables.WRITTEN_BY.items() if a in assets]
        where = f" of {', '.join(written) or _commit_message(context)[0]}"
    return dg.Failure(
        f"The lake refused the commit{where} because another writer committed at the same "
        f"time, {COMMIT_RETRIES} retries included; nothing was written. DuckDB said: {said}",
        allow_retries=False,
    )


def rebuild_table(conn, table: str, sql: str, params: dict | None = None, context=None) -> dict:
    """Run `sql`, which creates or replaces `table`, in one transaction (its schema created
    first); return the table's UI metadata, and log its rows and time to `context` if given."""
    started = time.perf_counter()
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
    with transaction(conn):
        conn.execute(sql, params or {})
    metadata = table_metadata(conn, table)
    if context is not None:
        rows = int(metadata["dagster/row_count"].value)  # type: ignore[arg-type]
        log_progress(context, f"{table}: written,", rows, started)
    return metadata


def query_one(duckdb: LakehouseDuckDB, sql: str) -> tuple:
    """The first row of `sql` on a fresh cursor: what an asset check reads."""
    with duckdb.get_connection() as conn:
        return conn.execute(sql).fetchone()
