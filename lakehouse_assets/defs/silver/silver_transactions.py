"""Silver layer: typed, validated, deduplicated transactions, and every rejected row with a reason.

Silver refreshes in proportion to what landed: when bronze only gained files since the last load,
only their rows are typed, validated and deduplicated (against silver and among themselves) and
appended; otherwise both tables are rebuilt from all of bronze. `lib/refresh.py` decides
which, and records what silver has seen.
"""

import time
from datetime import UTC, datetime

import dagster as dg

from lakehouse_assets.lib import acceptance, buckets, refresh
from lakehouse_assets.lib.metadata import log_progress, markdown_rows, table_metadata
from lakehouse_assets.lib.refresh import Refresh, RefreshPlan
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone, query_one, transaction
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import (
    BRONZE_TRANSACTIONS,
    SILVER_LOADS,
    SILVER_REJECTED,
    SILVER_TRANSACTIONS,
)

TYPED = "typed_transactions"  # temp tables that typed.sql and (new_)later_copies.sql create
LATER_COPIES = "later_copies"
# The format of typed.sql's fast event_time parse (parse_event_time.sql), for the pandas benchmark.
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S"
# The bronze rows a run reads, as `bronze_rows`: all of them (a view, no copy), or in an append
# those ingested after `$since`, copied into a temp table: a view cannot hold the parameter, the
# new files' rows are few, and typed.sql and rejected.sql then read them once from the lake.
BRONZE_ROWS = "bronze_rows"
ALL_BRONZE_SQL = f"CREATE OR REPLACE TEMP VIEW {BRONZE_ROWS} AS SELECT * FROM {BRONZE_TRANSACTIONS}"
NEW_BRONZE_ROWS_SQL = (
    f"CREATE OR REPLACE TEMP TABLE {BRONZE_ROWS} AS "
    f"SELECT * FROM {BRONZE_TRANSACTIONS} WHERE _ingested_at > $since"
)
EXPIRED_FUTURE_SQL = sql("silver/expired_future")


class SilverConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild silver from all of bronze even when only new files landed (gold follows)."""


@dg.asset(deps=["bronze_transactions"], group_name="silver", kinds={"duckdb"}, pool="duckdb")
def silver_transactions(
    context: dg.AssetExecutionContext, config: SilverConfig, duckdb: LakehouseDuckDB
) -> dg.MaterializeResult:
    """`silver.transactions`: typed (`event_time` TIMESTAMP in UTC, `amount` DOUBLE, `quantity`
    INTEGER), validated and deduplicated (on `transaction_id`, else on the whole record; the
    first copy by ingestion time, file and row is kept). Each row's `bucket` (hash of
    `customer_id` mod `$LAKEHOUSE_BUCKETS`) splits the customer-level steps after it; the table is
    partitioned by it when there are several.

    Every bronze row that does not reach silver is in `silver.rejected_transactions` with its
    lineage and a `reason`: missing_customer_id, bad_event_time, future_event_time, bad_amount,
    bad_quantity or duplicate. rows(bronze) = rows(silver) + rows(rejected).
    `silver.file_acceptance` counts, per landed file version, its rows, accepted rows and rejects
    by reason with an example value; the metadata shows them for the files this load saw first.

    Incremental: when bronze only gained files since the last run, only their rows are
    processed and appended; when a file was replaced (or silver does not match bronze, or
    `full_refresh` is set), both tables are rebuilt. The metadata `refresh` says which, and
    `refresh_reason` why. Either way the result is the same, row for row.
    """
    now = datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    with duckdb.get_connection() as conn:
        bucketing = buckets.current(conn, duckdb.bucket_count())
        conn.execute("CREATE SCHEMA IF NOT EXISTS silver")
        conn.execute(sql("silver/parse_event_time"))  # the macro EXPIRED_FUTURE_SQL and typed use
        with transaction(conn):
            refresh.create_tables(conn)
            plan = refresh.plan_silver(
                conn,
                (SILVER_TRANSACTIONS, SILVER_REJECTED),
                EXPIRED_FUTURE_SQL,
                now,
                config.full_refresh,
                bucketing,
            )
            context.log.info(f"{SILVER_TRANSACTIONS}: {plan.mode} refresh: {plan.reason}")
            load_id, new_files = 0, []
            if plan.mode == Refresh.UNCHANGED:
                processed = 0
            else:
                processed = _refresh(context, conn, plan, now, bucketing.buckets, started)
                buckets.record(conn, bucketing)
                added = conn.execute(
                    f"SELECT (SELECT count(*) FROM {SILVER_TRANSACTIONS}), (SELECT count(*) FROM {SILVER_REJECTED})"
                ).fetchone()
                load_id = refresh.record_load(conn, plan, now, *added)
                context.log.info(f"{SILVER_LOADS}: recorded load {load_id} ({plan.mode})")
                full = plan.mode == Refresh.FULL
                new_files = acceptance.record(conn, full, load_id, plan.since)
                _drop_temporaries(conn, full)
        rejected = dict(
            conn.execute(
                f"SELECT reason, count(*) FROM {SILVER_REJECTED} GROUP BY reason ORDER BY reason"
            ).fetchall()
        )
        metadata = table_metadata(conn, SILVER_TRANSACTIONS)
    log_progress(
        context, f"{SILVER_TRANSACTIONS}: done; bronze rows processed:", processed, started
    )
    context.log.info(f"{SILVER_REJECTED}: {rejected}")
    for f in new_files[: acceptance.FILES_LISTED]:
        context.log.info(
            f"{f.source_file}: {f.accepted:,} of {f.rows:,} rows accepted"
            + (f"; rejected: {f.reasons()}" if f.rejected else "")
        )
    return dg.MaterializeResult(
        metadata={
            **metadata,
            **plan.metadata(),
            "silver_load_id": load_id,
            "new_files": len(new_files),
            "new_files_rows": sum(f.rows for f in new_files),
            "new_files_accepted_rows": sum(f.accepted for f in new_files),
            "new_files_rejected_by_reason": dg.MetadataValue.json(
                acceptance.rejected_by_reason(new_files)
            ),
            "new_files_acceptance": dg.MetadataValue.md(acceptance.markdown(new_files)),
            "bronze_rows_processed": processed,
            "rejected_rows": sum(rejected.values()),
            "rejected_by_reason": dg.MetadataValue.md(
                markdown_rows(["reason", "rows"], list(rejected.items()))
            ),
            **{f"rejected/{reason}": count for reason, count in rejected.items()},
        }
    )


def _refresh(context, conn, plan: RefreshPlan, now: datetime, count: int, started: float) -> int:
    """Rebuild (`full`) or append (`append`) both tables, in the caller's transaction (the temp
    tables `TYPED` and `LATER_COPIES` stay for the acceptance counts); returns the number of
    bronze rows processed."""
    full = plan.mode == Refresh.FULL
    if full:
        conn.execute(ALL_BRONZE_SQL)
    else:
        conn.execute(NEW_BRONZE_ROWS_SQL, {"since": plan.since})
    processed = conn.execute(sql("silver/typed"), {"now": now, "buckets": count}).fetchone()[0]
    log_progress(context, f"{SILVER_TRANSACTIONS}: typed and validated", processed, started)
    copies_sql = sql("silver/later_copies" if full else "silver/new_later_copies")
    copies = conn.execute(copies_sql).fetchone()[0]
    log_progress(
        context, f"{SILVER_TRANSACTIONS}: {copies:,} later copies found in", processed, started
    )
    conn.execute(sql("silver/kept"))
    conn.execute(sql("silver/rejected"))
    if full:
        conn.execute(sql("silver/write_transactions"))
        buckets.partition(conn, SILVER_TRANSACTIONS, count)
    rows = conn.execute(sql("silver/append_transactions")).fetchone()[0]
    conn.execute(sql("silver/write_rejected" if full else "silver/append_rejected"))
    log_progress(
        context, f"{SILVER_TRANSACTIONS}: {'written' if full else 'appended'},", rows, started
    )
    return processed


def _drop_temporaries(conn, full: bool) -> None:
    """Drop what `_refresh` created on `conn` (temp objects live as long as the connection)."""
    conn.execute("DROP VIEW kept_transactions")
    conn.execute("DROP VIEW rejected_rows")
    conn.execute(f"DROP TABLE {TYPED}")
    conn.execute(f"DROP TABLE {LATER_COPIES}")
    conn.execute(f"DROP {'VIEW' if full else 'TABLE'} {BRONZE_ROWS}")


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
