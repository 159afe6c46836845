"""Moving a lakehouse from before DuckLake (one DuckDB file) into the lake, once.

`python -m lakehouse_assets.migration` copies every table and view of `$LAKEHOUSE_DUCKDB_PATH`
(default `$LAKEHOUSE_HOME/lakehouse.duckdb`) into the lake in one transaction, then renames the
file to `<name>.pre-ducklake`, which runs ignore.
"""

import sys
from pathlib import Path

import dagster as dg

from lakehouse_assets import lake, settings

COMMAND = "python -m lakehouse_assets.migration"
MIGRATED_SUFFIX = ".pre-ducklake"


def unmigrated_file() -> Path | None:
    """The pre-DuckLake lakehouse file, if one is there."""
    path = settings.duckdb_path()
    return path if path.is_file() else None


def fail_if_unmigrated() -> None:
    """Fail at once while a pre-DuckLake lakehouse file waits to be migrated."""
    path = unmigrated_file()
    if path is not None:
        raise dg.Failure(
            f"{path} holds a lakehouse from before DuckLake; runs now read and write the lake "
            f"({lake.LakeLocation.from_settings().describe()}). Copy its tables into the lake "
            f"with one command, `{COMMAND}` (with the same environment), then run again.",
            allow_retries=False,
        )


def migrate(source: Path, location: lake.LakeLocation) -> dict[str, int]:
    """Copy every table (rows) and view of the DuckDB file `source` into the lake, in one
    transaction; fails, writing nothing, if the lake already holds one of them."""
    conn = lake.cursor(location)
    try:
        conn.execute(f"ATTACH {lake._quote(str(source))} AS old (READ_ONLY)")
        try:
            tables = conn.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = 'old' "
                "ORDER BY ALL"
            ).fetchall()
            views = conn.execute(
                "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE database_name = 'old' "
                "AND NOT internal ORDER BY ALL"
            ).fetchall()
            copied = {}
            conn.execute("BEGIN TRANSACTION")
            try:
                lake.set_commit_message(conn, f"migrated from {source}", "{}")
                for schema in sorted({s for s, *_ in tables + views}):
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                for schema, table in tables:
                    copied[f"{schema}.{table}"] = conn.execute(
                        f'CREATE TABLE {schema}."{table}" AS SELECT * FROM old.{schema}."{table}"'
                    ).fetchone()[0]
                for schema, _, sql in views:
                    conn.execute(
                        f"USE {lake.LAKE}.{schema}"
                    )  # the view's SQL names its schema's tables
                    conn.execute(sql)
                    conn.execute(f"USE {lake.LAKE}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.execute(f"USE {lake.LAKE}")
            conn.execute("DETACH old")
    finally:
        conn.close()
    return copied


def main() -> int:
    source = unmigrated_file()
    if source is None:
        print(f"Nothing to migrate: {settings.duckdb_path()} does not exist.")
        return 0
    location = lake.LakeLocation.from_settings()
    print(f"Copying the tables of {source} into {location.describe()} ...")
    copied = migrate(source, location)
    for table, rows in copied.items():
        print(f"  {table}: {rows:,} rows")
    done = source.with_name(source.name + MIGRATED_SUFFIX)
    source.rename(done)
    print(f"Done: {len(copied)} tables in one snapshot; the old file is now {done}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
