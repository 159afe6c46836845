"""Silver layer: typed, validated, deduplicated transactions, and every rejected row with a reason.

Silver refreshes in proportion to what landed: when bronze only gained files since the last load,
only their rows are typed, validated and deduplicated (against silver and among themselves) and
appended; otherwise both tables are rebuilt from all of bronze. `lib/refresh.py` decides
which, and records what silver has seen.

The work is split into `$LAKEHOUSE_BUCKETS` shards (`lib/fanout.py`), by the hash of each row's
identity (its `transaction_id`, else its `customer_id`): every copy of a transaction is in the
same shard, so each shard deduplicates on its own, and the commit adds them as one snapshot.
"""

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from lakehouse_assets.lib import acceptance, buckets, fanout, lake, refresh
from lakehouse_assets.lib.metadata import log_progress, markdown_rows, table_metadata
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone, query_one
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import (
    BRONZE_FILES,
    BRONZE_TRANSACTIONS,
    SILVER_LOADS,
    SILVER_REJECTED,
    SILVER_TRANSACTIONS,
)

TYPED = "typed_transactions"  # temp tables that typed.sql and (new_)later_copies.sql create
LATER_COPIES = "later_copies"
# The format of typed.sql's fast event_time parse (parse_event_time.sql), for the pandas benchmark.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S"
# The bronze rows a shard reads, as `bronze_rows` (and at the commit, bronze's file list as
# `bronze_files`): with several shards, its rows as the plan staged them; with one, bronze as of
# the plan's snapshot: all of it (a view, no copy), or in an append the rows ingested after
# `$since`, copied into a temp table: a view cannot hold the parameter, the new files' rows are
# few, and typed.sql and rejected.sql then read them once from the lake.
BRONZE_ROWS = "bronze_rows"
BRONZE_FILES_READ = "bronze_files"
EXPIRED_FUTURE_SQL = sql("silver/expired_future")
# A row's shard: the hash of its identity as typed.sql trims it (the transaction_id, else the
# customer_id, which a copy without transaction_id shares with its original; a row without
# either is invalid, and its shard does not matter). About 1 s per scan of 10M rows.
IDENTITY_HASH = "hash(coalesce(nullif(trim(transaction_id), ''), trim(customer_id)))"
REJECTED_PIECE = "rejected.parquet"


def shard_of(shards: int) -> str:
    """SQL giving a bronze row's shard, of `shards`."""
    return f"{IDENTITY_HASH} % {int(shards)}::UBIGINT"


def bronze_at(snapshot: int, table: str = BRONZE_TRANSACTIONS) -> str:
    """SQL reading a bronze table as of the lake snapshot the plan read."""
    return f"SELECT * FROM {table} AT (VERSION => {int(snapshot)})"


class SilverConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild silver from all of bronze even when only new files landed (gold follows)."""


def _plan(context, conn, config: SilverConfig) -> tuple[RefreshPlan, dict]:
    now = datetime.now(UTC).replace(tzinfo=None)
    conn.execute(f"SELECT 1 FROM {BRONZE_TRANSACTIONS} LIMIT 0")  # if missing, names the asset
    bucketing = buckets.current(conn, context.resources.duckdb.bucket_count())
    conn.execute(sql("silver/parse_event_time"))  # the macro EXPIRED_FUTURE_SQL uses
    plan = refresh.plan_silver(
        conn,
        (SILVER_TRANSACTIONS, SILVER_REJECTED),
        EXPIRED_FUTURE_SQL,
        now,
        config.full_refresh,
        bucketing,
    )
    extra = {"now": now, "bucketing": tuple(bucketing)}
    if plan.mode != Refresh.UNCHANGED and bucketing.buckets > 1:
        extra["staged"] = _stage_shards(context, conn, plan, bucketing.buckets)
    return plan, extra


def _stage_shards(context, conn, plan: RefreshPlan, shards: int) -> dict[int, list[str]]:
    """Write the bronze rows the refresh reads (all, or those of new files) split by shard, one
    Parquet folder per shard beside the pieces; returns each shard's files (a shard without rows
    has none). One pass over bronze here costs less than one per shard step (each would scan all
    of bronze and hash every row)."""
    started = time.perf_counter()
    location = context.resources.duckdb.location()
    folder = fanout.pieces_folder(location, SILVER_TRANSACTIONS, context.run_id) + "bronze/"
    since = (
        "" if plan.since is None else f" WHERE _ingested_at > TIMESTAMP '{plan.since.isoformat()}'"
    )
    if not folder.startswith("s3://"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    (_, files) = conn.execute(
        f"COPY (SELECT *, {shard_of(shards)} AS shard "
        f"FROM {BRONZE_TRANSACTIONS}{since}) TO {lake.quote(folder)} "
        f"(FORMAT parquet, COMPRESSION {fanout.PIECE_COMPRESSION}, PARTITION_BY (shard), "
        "OVERWRITE_OR_IGNORE, RETURN_FILES)"
    ).fetchone()
    by_shard: dict[int, list[str]] = {}
    for file in files:  # <folder>shard=<k>/data_<i>.parquet: this run's files only
        shard = int(re.search(r"/shard=(\d+)/[^/]*$", file).group(1))  # type: ignore[union-attr]
        by_shard.setdefault(shard, []).append(file)
    context.log.info(
        f"{SILVER_TRANSACTIONS}: bronze rows split into {shards} shards in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return by_shard


def _piece(context, conn, task: fanout.BucketTask) -> fanout.Piece:
    """Type, validate and deduplicate the shard's bronze rows (all, or those of new files); its
    kept rows are the piece, its rejected rows a second file beside it."""
    started = time.perf_counter()
    shard = f"{SILVER_TRANSACTIONS}: shard {task.bucket} of {task.buckets}:"
    if tuple(buckets.current(conn, task.buckets)) != tuple(task.extra["bucketing"]):
        raise dg.Failure(
            f"{shard} this worker's DuckDB hashes customer ids differently from the plan's (another "
            "DuckDB version): every process of a deployment needs the same DuckDB.",
            allow_retries=False,
        )
    conn.execute(sql("silver/parse_event_time"))  # the macro typed.sql uses
    full = task.plan.mode == Refresh.FULL
    staged: tuple[str, ...] = ()
    if "staged" in task.extra:  # the plan split the rows by shard
        staged = tuple(task.extra["staged"].get(task.bucket, ()))
        rows = (
            f"SELECT * FROM read_parquet([{', '.join(map(lake.quote, staged))}], "
            "hive_partitioning => false)"
            if staged
            else f"{bronze_at(task.snapshot)} LIMIT 0"  # no row in this shard
        )
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {BRONZE_ROWS} AS {rows}")
    elif full:
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {BRONZE_ROWS} AS {bronze_at(task.snapshot)}")
    else:
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE {BRONZE_ROWS} AS {bronze_at(task.snapshot)} "
            "WHERE _ingested_at > $since",
            {"since": task.plan.since},
        )
    now, count = task.extra["now"], task.extra["bucketing"][0]
    processed = conn.execute(sql("silver/typed"), {"now": now, "buckets": count}).fetchone()[0]
    log_progress(context, f"{shard} typed and validated", processed, started)
    copies = conn.execute(sql("silver/later_copies" if full else "silver/new_later_copies"))
    log_progress(
        context, f"{shard} {copies.fetchone()[0]:,} later copies found in", processed, started
    )
    conn.execute(sql("silver/kept"))
    conn.execute(sql("silver/rejected"))
    kept = fanout.copy_rows(conn, "SELECT * FROM kept_transactions", task.piece_path)
    rejected_path = task.path_of(REJECTED_PIECE)
    fanout.copy_rows(conn, "SELECT * FROM rejected_rows", rejected_path)
    return fanout.Piece(
        task.bucket, task.piece_path, kept, time.perf_counter() - started, (rejected_path, *staged),
        {"processed": processed},
    )  # fmt: skip


def _commit(context, conn, planned: fanout.Planned, pieces: list[fanout.Piece]) -> dict:
    """Add (or, in a full refresh, replace with) every shard's rows, record the load, the
    watermark and each new file's acceptance, in the commit's transaction."""
    plan = planned.plan
    refresh.create_tables(conn)
    load_id, new_files = 0, []
    if plan.mode != Refresh.UNCHANGED:
        full = plan.mode == Refresh.FULL
        conn.execute(f"CREATE OR REPLACE TEMP VIEW {BRONZE_ROWS} AS {bronze_at(planned.snapshot)}")
        conn.execute(
            f"CREATE OR REPLACE TEMP VIEW {BRONZE_FILES_READ} AS "
            f"{bronze_at(planned.snapshot, BRONZE_FILES)}"
        )
        kept = [p.path for p in pieces]
        rejected = [p.others[0] for p in pieces]
        fanout.insert_files(conn, SILVER_TRANSACTIONS, kept, replace=full, count=planned.buckets)
        fanout.insert_files(conn, SILVER_REJECTED, rejected, replace=full, count=1)
        buckets.record(conn, buckets.Bucketing(*planned.extra["bucketing"]))
        silver_rows, rejected_rows = conn.execute(
            f"SELECT (SELECT count(*) FROM {SILVER_TRANSACTIONS}), (SELECT count(*) FROM {SILVER_REJECTED})"
        ).fetchone()
        load_id = refresh.record_load(
            conn, plan, planned.extra["now"], silver_rows, rejected_rows, BRONZE_FILES_READ
        )
        context.log.info(f"{SILVER_LOADS}: recorded load {load_id} ({plan.mode})")
        new_files = acceptance.record(conn, full, load_id, plan.since)
    rejected_by_reason = dict(
        conn.execute(
            f"SELECT reason, count(*) FROM {SILVER_REJECTED} GROUP BY reason ORDER BY reason"
        ).fetchall()
    )
    context.log.info(f"{SILVER_REJECTED}: {rejected_by_reason}")
    for f in new_files[: acceptance.FILES_LISTED]:
        context.log.info(
            f"{f.source_file}: {f.accepted:,} of {f.rows:,} rows accepted"
            + (f"; rejected: {f.reasons()}" if f.rejected else "")
        )
    return {
        **table_metadata(conn, SILVER_TRANSACTIONS),
        **plan.metadata(),
        "silver_load_id": load_id,
        "new_files": len(new_files),
        "new_files_rows": sum(f.rows for f in new_files),
        "new_files_accepted_rows": sum(f.accepted for f in new_files),
        "new_files_rejected_by_reason": dg.MetadataValue.json(
            acceptance.rejected_by_reason(new_files)
        ),
        "new_files_acceptance": dg.MetadataValue.md(acceptance.markdown(new_files)),
        "bronze_rows_processed": sum(p.counts.get("processed", 0) for p in pieces),
        "rejected_rows": sum(rejected_by_reason.values()),
        "rejected_by_reason": dg.MetadataValue.md(
            markdown_rows(["reason", "rows"], list(rejected_by_reason.items()))
        ),
        **{f"rejected/{reason}": count for reason, count in rejected_by_reason.items()},
    }


silver_transactions = fanout.bucketed_asset(
    name="silver_transactions",
    table=SILVER_TRANSACTIONS,
    upstream=["bronze_transactions"],
    group_name="silver",
    description="""`silver.transactions`: typed (`event_time` TIMESTAMP in UTC, `amount` DOUBLE,
    `quantity` INTEGER), validated and deduplicated (on `transaction_id`, else on the whole
    record; the first copy by ingestion time, file and row is kept). Each row's `bucket` (hash of
    `customer_id` mod `$LAKEHOUSE_BUCKETS`) splits the customer-level steps after it; the table is
    partitioned by it when there are several.

    Every bronze row that does not reach silver is in `silver.rejected_transactions` with its
    lineage and a `reason`: missing_customer_id, bad_event_time, future_event_time, bad_amount,
    bad_quantity or duplicate. rows(bronze) = rows(silver) + rows(rejected).
    `silver.file_acceptance` counts, per landed file version, its rows, accepted rows and rejects
    by reason with an example value; the metadata shows them for the files this load saw first.

    Computed in shards by transaction identity, committed as one snapshot. Incremental: when
    bronze only gained files since the last run, only their rows are processed and appended;
    when a file was replaced (or silver does not match bronze, or `full_refresh` is set), both
    tables are rebuilt. The metadata `refresh` says which, and `refresh_reason` why. Either way
    the result is the same, row for row.""",
    config_class=SilverConfig,
    guard=fanout.latest_of(SILVER_LOADS, "load_id"),  # another run's commit adds a load
    plan=_plan,
    piece=_piece,
    commit=_commit,
    reads_buckets=False,
)


# Checks
SILVER_NOT_EMPTY = "silver_not_empty"
SILVER_NO_NULL_KEYS = "silver_no_null_keys"
SILVER_CONSERVES_ROWS = "silver_conserves_bronze_rows"
LANDED_FILES_READABLE = "silver_landed_files_have_valid_rows"
NEW_FILES_MOSTLY_ACCEPTED = "silver_new_files_mostly_accepted"


@dg.asset_check(asset=silver_transactions, name=SILVER_NOT_EMPTY, blocking=True, pool="duckdb")
def silver_not_empty(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """silver.transactions holds at least one valid row."""
    (rows,) = query_one(duckdb, f"SELECT count(*) FROM {SILVER_TRANSACTIONS}")
    return dg.AssetCheckResult(passed=rows > 0, metadata={"rows": rows})


@dg.asset_check(asset=silver_transactions, name=SILVER_NO_NULL_KEYS, blocking=True, pool="duckdb")
def silver_no_null_keys(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """No silver row lacks customer_id, event_time or amount."""
    (nulls,) = query_one(
        duckdb,
        f"SELECT count(*) FROM {SILVER_TRANSACTIONS} "
        "WHERE customer_id IS NULL OR event_time IS NULL OR amount IS NULL",
    )
    return dg.AssetCheckResult(passed=nulls == 0, metadata={"rows_with_null_keys": nulls})


@dg.asset_check(asset=silver_transactions, name=SILVER_CONSERVES_ROWS, blocking=True, pool="duckdb")
def silver_conserves_bronze_rows(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """rows(bronze) = rows(silver) + rows(rejected): nothing disappears silently."""
    bronze, silver, rejected = query_one(
        duckdb,
        f"SELECT (SELECT count(*) FROM {BRONZE_TRANSACTIONS}), (SELECT count(*) FROM {SILVER_TRANSACTIONS}),"
        f" (SELECT count(*) FROM {SILVER_REJECTED})",
    )
    return dg.AssetCheckResult(
        passed=bronze == silver + rejected,
        metadata={"bronze_rows": bronze, "silver_rows": silver, "rejected_rows": rejected,
                  "unaccounted_rows": bronze - silver - rejected},
    )  # fmt: skip


@dg.asset_check(asset=silver_transactions, name=LANDED_FILES_READABLE, blocking=True, pool="duckdb")
def silver_landed_files_have_valid_rows(
    context: dg.AssetCheckExecutionContext, duckdb: LakehouseDuckDB, landing: LandingZone
) -> dg.AssetCheckResult:
    """Every file in the landing folder has at least one valid row in the version silver holds:
    a file whose every row was rejected was most likely misread (decimal commas, another
    separator, no header), so the run stops until it is fixed or removed from the folder."""
    landed = set(landing.relative_data_files())
    with duckdb.get_connection() as conn:
        bad = acceptance.without_valid_rows(conn, landed)
    problems = [
        f"every row of landing file {f.source_file} ({f.rows:,} rows) was rejected: {f.reasons()}."
        + "".join(f" {hint}." for hint in acceptance.hints(f))
        for f in bad
    ]
    if problems:
        description = (
            " ".join(p[0].upper() + p[1:] for p in problems)
            + " Its rows stay in bronze.transactions and silver.rejected_transactions. Fix the "
            "file and land it under the same name (a changed file replaces its rows), or remove "
            "it from the landing folder; then rerun."
        )
        context.log.error(description)
    else:
        description = f"Each of the {len(landed)} landed file(s) has valid rows."
    return dg.AssetCheckResult(
        passed=not bad,
        description=description,
        metadata={
            "landed_files": len(landed),
            "files_without_valid_rows": dg.MetadataValue.md(acceptance.markdown(bad)),
        },
    )


@dg.asset_check(asset=silver_transactions, name=NEW_FILES_MOSTLY_ACCEPTED, pool="duckdb")
def silver_new_files_mostly_accepted(
    context: dg.AssetCheckExecutionContext, duckdb: LakehouseDuckDB
) -> dg.AssetCheckResult:
    """Warns about the files of the latest silver load more than 10% of whose rows were rejected
    (any reason, copies included): `silver.file_acceptance` has the reasons and an example of
    each."""
    with duckdb.get_connection() as conn:
        load, files = acceptance.latest_load(conn)
    flagged = acceptance.mostly_rejected(files)
    if flagged:
        description = (
            f"{len(flagged)} file(s) of silver load {load} had more than "
            f"{acceptance.WARN_REJECTED_SHARE:.0%} of their rows rejected: "
            + "; ".join(
                f"{f.source_file} {f.rejected_share:.0%} ({f.reasons()})" for f in flagged[:5]
            )
            + (f"; and {len(flagged) - 5} more" if len(flagged) > 5 else "")
        )
        context.log.warning(description)
    else:
        description = (
            f"{len(files)} new file(s) in silver load {load}, none with more than "
            f"{acceptance.WARN_REJECTED_SHARE:.0%} of their rows rejected."
        )
    return dg.AssetCheckResult(
        passed=not flagged,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "silver_load_id": load,
            "new_files": len(files),
            "files_mostly_rejected": dg.MetadataValue.md(acceptance.markdown(flagged)),
        },
    )
