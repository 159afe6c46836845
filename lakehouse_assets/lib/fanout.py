"""Fan-out: a customer-level table computed bucket by bucket, each bucket a step of its own that
any worker can run, and committed as one DuckLake snapshot.

The asset is a graph of three ops, so the UI still shows one asset with its lineage, metadata
and checks (docs/deployment.md, "Several workers", says why not partitions):

* `plan_<asset>`: decides how to refresh (full, append, unchanged) and notes the lake snapshot
  it read; one step.
* `bucket_of_<asset>`: one step per bucket. It reads its bucket's rows as of that snapshot and
  writes them as one Parquet piece under the lake's data path, outside the catalog.
* `commit_<asset>`: in one transaction, replaces the table (or deletes the customers it
  recomputed, or for silver only appends) and inserts the pieces' rows.

Silver's "buckets" are shards of bronze by transaction identity, not customer buckets
(defs/silver/silver_transactions.py says why).

Until the commit the catalog is unchanged, so a worker killed mid-run leaves the lake at the
snapshot it had. The commit deletes the run's pieces; those of a run that never committed are no
table's files, and the maintenance job deletes them (`ducklake_delete_orphaned_files`, after a
day).
"""

import contextlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from lakehouse_assets.lib import buckets, lake
from lakehouse_assets.lib.metadata import log_progress, table_exists
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, transaction
from lakehouse_assets.lib.tables import SILVER_TRANSACTIONS

SILVER_IN_BUCKET = "silver_in_bucket"  # a bucket's silver rows as of the plan, as SQL reads them
PIECES_FOLDER = "fanout"  # below the lake's data path: fanout/<table>/<run id>/bucket=<b>/
PIECE_COMPRESSION = "zstd"  # as the lake's own files (lake.PARQUET_COMPRESSION)
# Parquet has no 128-bit integer (DuckDB would write a DOUBLE): stored as 64-bit.
WIDE_INTEGERS = {"HUGEINT": "BIGINT", "UHUGEINT": "UBIGINT"}


@dataclass(frozen=True)
class BucketTask:
    """What one bucket step computes: `bucket` of `buckets`, from the lake as of `snapshot`,
    following `plan`; its piece goes to `folder`."""

    table: str
    plan: RefreshPlan
    snapshot: int
    bucket: int
    buckets: int
    folder: str
    extra: dict[str, Any]

    @property
    def piece_path(self) -> str:
        return self.path_of("piece.parquet")

    def path_of(self, name: str) -> str:
        """Where this bucket's file `name` goes, beside its piece."""
        return f"{self.folder}{buckets.COLUMN}={self.bucket}/{name}"

    def at_snapshot(self, table: str, columns: str = "*") -> str:
        """SQL reading `table` (one with a bucket column) as of the plan's snapshot, this
        bucket's rows only."""
        return (
            f"SELECT {columns} FROM {table} AT (VERSION => {int(self.snapshot)}) "
            f"WHERE {buckets.COLUMN} = {int(self.bucket)}"
        )


@dataclass(frozen=True)
class Piece:
    """A bucket's rows, written as one Parquet file (`rows` may be 0); `others`: more files the
    step wrote or read for the commit to use and delete (silver's rejected rows, its staged
    bronze rows), `counts` what it counted on the way."""

    bucket: int
    path: str
    rows: int
    seconds: float
    others: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Planned:
    """The plan of a bucketed asset, with what its commit needs besides the pieces; `guard`:
    what the asset's guard read at the plan."""

    plan: RefreshPlan
    snapshot: int
    buckets: int
    extra: dict[str, Any]
    guard: Any = None


def pieces_folder(location: lake.LakeLocation, table: str, run_id: str) -> str:
    """Where a run's pieces of `table` go: below the data path, one folder per run."""
    return f"{location.data_path}{PIECES_FOLDER}/{table}/{run_id}/"


def write_piece(conn: duckdb.DuckDBPyConnection, task: BucketTask, select_sql: str) -> Piece:
    """Write the rows of `select_sql` (with this bucket's number as `bucket`) as the task's
    piece."""
    started = time.perf_counter()
    rows = copy_rows(conn, select_sql, task.piece_path, bucket=task.bucket)
    return Piece(task.bucket, task.piece_path, rows, time.perf_counter() - started)


def copy_rows(
    conn: duckdb.DuckDBPyConnection, select_sql: str, path: str, bucket: int | None = None
) -> int:
    """Write the rows of `select_sql` to the Parquet file `path` and return their number; with
    `bucket`, their bucket column is set to it. 128-bit integers become BIGINT (Parquet would
    make them DOUBLE)."""
    columns = conn.execute(f"DESCRIBE {select_sql}").fetchall()
    select = ", ".join(
        f'"{name}"::{WIDE_INTEGERS[str(kind)]} AS "{name}"'
        if str(kind) in WIDE_INTEGERS
        else f'"{name}"'
        for name, kind, *_ in columns
        if bucket is None or name != buckets.COLUMN
    )
    if bucket is not None:
        select += f", {int(bucket)}::INTEGER AS {buckets.COLUMN}"
    if not path.startswith("s3://"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn.execute(
        f"COPY (SELECT {select} FROM ({select_sql})) TO {lake.quote(path)} "
        f"(FORMAT parquet, COMPRESSION {PIECE_COMPRESSION})"
    )
    (rows,) = conn.execute(
        "SELECT count(*) FROM read_parquet($path, hive_partitioning => false)", {"path": path}
    ).fetchone()  # type: ignore[misc]  # from the footer: no data read
    return rows


def commit_pieces(
    conn: duckdb.DuckDBPyConnection, table: str, mode: Refresh, pieces: list[Piece], count: int
) -> None:
    """Make `pieces` the table's new rows, in the caller's transaction: `full` recreates the
    table (partitioned by bucket) from them; `append` first deletes their customers' rows.

    The rows are copied into the lake's own files. `ducklake_add_data_files` would take the
    pieces as they are, but records them by absolute path, so a lake copied or moved elsewhere
    would still read (or miss) the originals."""
    files = [piece.path for piece in sorted(pieces, key=lambda p: p.bucket)]
    if mode == Refresh.APPEND:
        conn.execute(
            f"DELETE FROM {table} WHERE customer_id IN (SELECT customer_id FROM {READ_FILES})",
            {"files": files},
        )
    insert_files(conn, table, files, replace=mode == Refresh.FULL, count=count)


READ_FILES = "read_parquet($files, hive_partitioning => false)"


def insert_files(
    conn: duckdb.DuckDBPyConnection, table: str, files: list[str], replace: bool, count: int
) -> None:
    """Insert the rows of the Parquet `files` into `table`, in the caller's transaction; with
    `replace`, the table is first recreated empty, partitioned by bucket (`buckets.partition`)."""
    if replace:
        conn.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {READ_FILES} LIMIT 0",
            {"files": files},
        )
        buckets.partition(conn, table, count)
    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {READ_FILES}", {"files": files})


def replace_partitioned(
    conn: duckdb.DuckDBPyConnection, table: str, select_sql: str, params: dict, count: int
) -> None:
    """Replace `table` with the rows of `select_sql` (which has a bucket column), partitioned by
    bucket (`buckets.partition`), in the caller's transaction."""
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM ({select_sql}) LIMIT 0", params)
    buckets.partition(conn, table, count)
    conn.execute(f"INSERT INTO {table} {select_sql}", params)


def remove_pieces(pieces: list[Piece]) -> None:
    """Delete committed pieces and their emptied folders (on S3, the maintenance job's
    `ducklake_delete_orphaned_files` does it)."""
    for piece in pieces:
        for file in (*piece.others, piece.path):  # the piece's folder holds the others
            if file and not file.startswith("s3://"):
                path = Path(file)
                path.unlink(missing_ok=True)
                for folder in (path.parent, path.parent.parent):
                    with contextlib.suppress(OSError):  # not empty: another file is left
                        folder.rmdir()


def latest_of(table: str, column: str) -> Callable[[duckdb.DuckDBPyConnection], Any]:
    """A guard: the largest `column` of `table` (None before the table exists), which another
    run's commit of the asset changes."""

    def latest(conn: duckdb.DuckDBPyConnection) -> Any:
        if not table_exists(conn, table):
            return None
        return conn.execute(f"SELECT max({column}) FROM {table}").fetchone()[0]  # type: ignore[index]

    return latest


def _check_bucketing(conn: duckdb.DuckDBPyConnection, count: int, asset: str) -> None:
    """Fail unless silver's rows are bucketed as this run splits the work, on this DuckDB."""
    if not table_exists(conn, SILVER_TRANSACTIONS):
        conn.execute(f"SELECT 1 FROM {SILVER_TRANSACTIONS}")  # names the asset to materialize
    stored = buckets.stored(conn)
    if stored is not None and buckets.change(stored, buckets.current(conn, count)) is None:
        return
    said = (
        "has no buckets yet"
        if stored is None
        else f"is split into {stored.buckets} bucket(s) by another DuckDB's hash"
        if stored.buckets == count
        else f"is split into {stored.buckets} bucket(s)"
    )
    raise dg.Failure(
        f"silver.transactions {said}, but this run splits {asset} into {count} "
        f"($LAKEHOUSE_BUCKETS or the duckdb resource's buckets): materialize silver_transactions "
        "first, which rebuilds it with the new bucket count.",
        metadata={"buckets": count, "silver_buckets": stored.buckets if stored else 0},
        allow_retries=False,
    )


class NoConfig(dg.Config):
    """An asset that takes no run config."""


PlanFn = Callable[[dg.OpExecutionContext, duckdb.DuckDBPyConnection, Any], tuple[RefreshPlan, dict]]
PieceFn = Callable[[dg.OpExecutionContext, duckdb.DuckDBPyConnection, BucketTask], Piece]
CommitFn = Callable[[dg.OpExecutionContext, duckdb.DuckDBPyConnection, Planned, list[Piece]], dict]


def bucketed_asset(
    *,
    name: str,
    table: str,
    upstream: list[str],
    group_name: str,
    description: str,
    plan: PlanFn,
    piece: PieceFn,
    commit: CommitFn,
    config_class: type[dg.Config] | None = None,
    guard: Callable[[duckdb.DuckDBPyConnection], Any] | None = None,
    resource_keys: frozenset[str] = frozenset(),
    commit_resource_keys: frozenset[str] = frozenset(),
    retry_policy: dg.RetryPolicy | None = None,
    kinds: frozenset[str] = frozenset({"duckdb"}),
    reads_buckets: bool = True,
) -> dg.AssetsDefinition:
    """The asset `name`, writing `table` through `plan`, one `piece` per bucket and `commit`.

    `plan(context, conn, config)` returns the refresh plan and what the pieces and the commit
    need (`extra`); `piece` writes a bucket's piece (with `write_piece`);
    `commit(context, conn, planned, pieces)` runs in the commit's transaction and returns the
    asset's metadata. Every op gets the resources `resource_keys` (besides `duckdb`), the commit
    also `commit_resource_keys`, and every op the `retry_policy`.

    `guard(conn)` reads what another run writing the table would change (its watermark, its
    latest scoring time). The commit reads it again in its transaction and fails, writing
    nothing, if it changed since the plan: the pieces are then older than the table.

    `reads_buckets`: the buckets read silver's bucket column, so the plan first checks that
    silver is split as this run splits the work (silver itself, which writes the column, does
    not)."""
    config_class = config_class or NoConfig

    @dg.op(
        name=f"plan_{name}",
        ins={key: dg.In(dg.Nothing) for key in upstream},
        out={"tasks": dg.DynamicOut(BucketTask), "planned": dg.Out(Planned)},
        description=f"Plans the refresh of {table} and hands each bucket its task.",
        required_resource_keys={"duckdb", *resource_keys},
        retry_policy=retry_policy,
    )
    def plan_op(context: dg.OpExecutionContext, config: config_class):  # type: ignore[valid-type]
        duckdb: LakehouseDuckDB = context.resources.duckdb
        count = duckdb.bucket_count()
        with duckdb.get_connection() as conn:
            conn.execute("BEGIN TRANSACTION")  # the plan and the snapshot id agree
            try:
                if reads_buckets:
                    _check_bucketing(conn, count, name)
                refresh_plan, extra = plan(context, conn, config)
                snapshot = lake.current_snapshot(conn)
                guarded = guard(conn) if guard else None
            finally:
                conn.execute("ROLLBACK")
        context.log.info(
            f"{table}: {refresh_plan.mode} refresh in {count} bucket(s), as of lake snapshot "
            f"{snapshot}: {refresh_plan.reason}"
        )
        yield dg.Output(Planned(refresh_plan, snapshot, count, extra, guarded), "planned")
        folder = pieces_folder(duckdb.location(), table, context.run_id)
        # Unchanged: one idle bucket step, so that the commit still runs and reports the table.
        for bucket in range(1 if refresh_plan.mode == Refresh.UNCHANGED else count):
            task = BucketTask(table, refresh_plan, snapshot, bucket, count, folder, extra)
            yield dg.DynamicOutput(task, mapping_key=f"bucket_{bucket}", output_name="tasks")

    @dg.op(
        name=f"bucket_of_{name}",
        out=dg.Out(Piece),
        description=f"Computes one bucket of {table} and writes it as a Parquet piece.",
        required_resource_keys={"duckdb", *resource_keys},
        retry_policy=retry_policy,
    )
    def bucket_op(context: dg.OpExecutionContext, task: BucketTask) -> Piece:
        duckdb: LakehouseDuckDB = context.resources.duckdb
        if task.plan.mode == Refresh.UNCHANGED:
            return Piece(task.bucket, "", 0, 0.0)
        started = time.perf_counter()
        with duckdb.get_connection() as conn:
            written = piece(context, conn, task)
        log_progress(
            context, f"{table}: bucket {task.bucket} of {task.buckets}: piece written,",
            written.rows, started,
        )  # fmt: skip
        return written

    @dg.op(
        name=f"commit_{name}",
        out=dg.Out(dg.Nothing),
        pool="duckdb",
        description=f"Commits every bucket's piece to {table} in one DuckLake transaction.",
        required_resource_keys={"duckdb", *resource_keys, *commit_resource_keys},
        retry_policy=retry_policy,
    )
    def commit_op(context: dg.OpExecutionContext, planned: Planned, pieces: list[Piece]) -> None:
        duckdb: LakehouseDuckDB = context.resources.duckdb
        started = time.perf_counter()
        with duckdb.get_connection() as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {table.split('.')[0]}")
            with transaction(conn):
                if guard and guard(conn) != planned.guard:
                    raise dg.Failure(
                        f"Another run wrote {table} after this run planned it (at lake snapshot "
                        f"{planned.snapshot}); this run's pieces are older, so nothing was "
                        "written. Run the asset again to bring it up to date.",
                        allow_retries=False,
                    )
                metadata = commit(context, conn, planned, sorted(pieces, key=lambda p: p.bucket))
        remove_pieces(pieces)
        rows = sum(p.rows for p in pieces)
        log_progress(
            context, f"{table}: {planned.plan.mode}; {len(pieces)} piece(s) committed,", rows,
            started,
        )  # fmt: skip
        context.add_output_metadata(
            {
                **metadata,
                "buckets": planned.buckets,
                "lake_snapshot_read": planned.snapshot,
                "bucket_rows": dg.MetadataValue.json({str(p.bucket): p.rows for p in pieces}),
            }
        )

    @dg.graph_asset(
        name=name,
        ins={key: dg.AssetIn(dagster_type=dg.Nothing) for key in upstream},
        config=dg.ConfigMapping(
            config_fn=lambda values: {plan_op.name: {"config": values}},
            config_schema=config_class.to_config_schema(),
        ),
        group_name=group_name,
        kinds=set(kinds),
        description=inspect.cleandoc(description),
    )
    def bucketed(**upstream_assets):
        tasks, planned = plan_op(**upstream_assets)
        return commit_op(planned, tasks.map(bucket_op).collect())

    return bucketed
