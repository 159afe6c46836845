"""`lakehouse_maintenance`: keep the lake small without breaking model lineage.

Every write adds Parquet files and a snapshot, and a rewrite leaves the old files for time travel.
The job merges small files, expires snapshots older than `keep_days` and deletes the files no
snapshot needs any more. It never expires a snapshot that a registered model version was
trained on (its run's `lakehouse_snapshot_id`), so `training_data(version)` keeps working.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from mlflow.exceptions import MlflowException

from lakehouse_assets.lib import lake
from lakehouse_assets.lib.metadata import markdown_rows
from lakehouse_assets.lib.model.mlflow_errors import retry_only_transient
from lakehouse_assets.lib.model.mlflow_resource import MlflowTracking
from lakehouse_assets.lib.model.training_data import SNAPSHOT_TAG
from lakehouse_assets.lib.resources import LakehouseDuckDB
from lakehouse_assets.lib.sql import sql

FILES_SQL = sql("maintenance/lake_files")  # the catalog's tables, for the lake attached as `lake`


class MaintenanceConfig(dg.Config):
    keep_days: float = 7.0
    """Snapshots younger than this many days stay (time travel within that window)."""


def lake_size(conn) -> dict[str, int]:
    """Files (data and delete files) the catalog knows, their bytes, and the snapshots."""
    files, size = conn.execute(FILES_SQL).fetchone()
    snapshots = conn.execute(f"SELECT count(*) FROM {lake.LAKE}.snapshots()").fetchone()[0]
    return {"files": files, "bytes": int(size), "snapshots": snapshots}


def protected_snapshots(mlflow: MlflowTracking, log) -> dict[int, str]:
    """Snapshot id -> the registered versions trained on it. A version whose run is gone (deleted
    in MLflow) records nothing to keep: `log` warns about it."""
    client = mlflow.client()
    name = mlflow.registered_model_name
    with mlflow.errors(f"search versions of {name!r}"):
        versions = client.search_model_versions(f"name = '{name}'")
    found: dict[int, list[str]] = {}
    for version in versions:
        try:
            run = client.get_run(version.run_id) if version.run_id else None
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            run = None
        if run is None:
            log.warning(f"Version {version.version} of {name!r} has no MLflow run: nothing to keep")
            continue
        tag = run.data.tags.get(SNAPSHOT_TAG)
        if tag is not None:
            found.setdefault(int(tag), []).append(str(version.version))
    return {snapshot: ", ".join(v) for snapshot, v in found.items()}


def expirable(conn, keep_days: float, protected: set[int]) -> list[int]:
    """Snapshots older than `keep_days`, except the latest and the protected ones."""
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    rows = conn.execute(
        f"SELECT snapshot_id FROM {lake.LAKE}.snapshots() WHERE snapshot_time < $cutoff "
        f"AND snapshot_id < (SELECT max(snapshot_id) FROM {lake.LAKE}.snapshots()) ORDER BY 1",
        {"cutoff": cutoff},
    ).fetchall()
    return [r[0] for r in rows if r[0] not in protected]


@dg.op(out=dg.Out(dg.Nothing), pool="duckdb")  # apart from the steps that write or read the lake
def maintain_lake(
    context: dg.OpExecutionContext,
    config: MaintenanceConfig,
    duckdb: LakehouseDuckDB,
    mlflow: MlflowTracking,
) -> None:
    """Merge small files, expire old snapshots (never one a registered model version was trained
    on) and delete the files no snapshot needs; metadata shows files and bytes before and after."""
    if not config.keep_days >= 0:  # also refuses NaN
        raise dg.Failure(f"keep_days must be 0 or more, got {config.keep_days:g}")
    with retry_only_transient("lakehouse_maintenance"):
        protected = protected_snapshots(mlflow, context.log)
    with duckdb.get_connection() as conn:
        before = lake_size(conn)
        conn.execute(f"CALL ducklake_rewrite_data_files('{lake.LAKE}')")  # files with many deletes
        conn.execute(f"CALL ducklake_merge_adjacent_files('{lake.LAKE}')")
        expired = expirable(conn, config.keep_days, set(protected))
        if expired:
            conn.execute(
                f"CALL ducklake_expire_snapshots('{lake.LAKE}', versions => $v)", {"v": expired}
            )
        conn.execute(f"CALL ducklake_cleanup_old_files('{lake.LAKE}', cleanup_all => true)")
        # Files no snapshot ever listed (a writer that died before its commit), a day old, so
        # that a write in progress elsewhere keeps its files.
        conn.execute(
            f"CALL ducklake_delete_orphaned_files('{lake.LAKE}', older_than => now() - INTERVAL 1 DAY)"
        )
        after = lake_size(conn)
    context.log.info(
        f"The lake: {before['files']:,} files ({before['bytes'] / 1e6:,.1f} MB) -> "
        f"{after['files']:,} files ({after['bytes'] / 1e6:,.1f} MB); {len(expired)} snapshots "
        f"expired, {len(protected)} kept for registered model versions"
    )
    context.add_output_metadata(
        {
            **{f"{k}_before": v for k, v in before.items()},
            **{f"{k}_after": v for k, v in after.items()},
            "snapshots_expired": len(expired),
            "kept_for_models": dg.MetadataValue.md(
                markdown_rows(["snapshot", "model versions"], sorted(protected.items()))
            ),
        }
    )


@dg.job(
    description="Merge the lake's small files, expire snapshots older than a week (never one a "
    "registered model version was trained on) and delete unreferenced files."
)
def lakehouse_maintenance():
    maintain_lake()


weekly_maintenance_schedule = dg.ScheduleDefinition(
    name="weekly_lakehouse_maintenance",
    job=lakehouse_maintenance,
    cron_schedule="0 3 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sundays 03:00 UTC: lakehouse_maintenance.",
)
