"""Moving a lakehouse from before DuckLake (one DuckDB file) into the lake, once.

`python -m lakehouse_assets.migration` copies every table and view of `$LAKEHOUSE_DUCKDB_PATH`
(default `$LAKEHOUSE_HOME/lakehouse.duckdb`) into the lake in one transaction, then renames the
file to `<name>.pre-ducklake`, which runs ignore. A file written by DuckDB 2.x (which 1.5.5
cannot open) is read by a DuckDB 2.x that the command installs from PyPI into
`$LAKEHOUSE_HOME/migration/duckdb`, in a process of its own.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg

from lakehouse_assets.lib import lake, settings
from lakehouse_assets.lib.metadata import scalar

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


NEWER_FILE = "created with an newer version of DuckDB"  # DuckDB's own wording


def export_tables(source: Path, folder: Path, newer_duckdb: Path) -> dict:
    """Every table of `source` as Parquet in `folder`, read by this DuckDB, or, for a file that a
    newer DuckDB wrote (the project used 2.x before DuckLake pinned 1.5.5), by the newest DuckDB
    from PyPI, installed once into `newer_duckdb`."""
    script = Path(__file__).with_name("migration_export.py")
    command = [sys.executable, str(script), str(source), str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 and NEWER_FILE in done.stderr:
        if not (newer_duckdb / "duckdb").is_dir():
            print(f"{source} was written by a newer DuckDB; installing one into {newer_duckdb} ...")
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
            installed = subprocess.run(
                [*pip, str(newer_duckdb), "duckdb>1.5.5"], capture_output=True, text=True
            )
            if installed.returncode != 0:
                raise RuntimeError(
                    f"{source} was written by a newer DuckDB, and pip could not install one: "
                    f"{installed.stderr.strip()[-500:]}"
                )
        env = {**os.environ, "PYTHONPATH": str(newer_duckdb)}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RuntimeError(f"Could not read {source}: {said}")
    return json.loads((folder / "manifest.json").read_text())


def migrate(source: Path, location: lake.LakeLocation, work: Path) -> dict[str, int]:
    """Copy every table (rows) and view of the DuckDB file `source` into the lake, in one
    transaction; fails, writing nothing, if the lake already holds one of them."""
    manifest = export_tables(source, work, settings.lakehouse_home() / "migration" / "duckdb")
    conn = lake.cursor(location)
    copied = {}
    try:
        conn.execute("BEGIN TRANSACTION")
        try:
            lake.set_commit_message(
                conn, f"migrated from {source}", json.dumps({"source": str(source)})
            )
            for schema in sorted({t[0] for t in manifest["tables"] + manifest["views"]}):
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            for schema, table, path, types in manifest["tables"]:
                columns = ", ".join(
                    f'CAST("{name}" AS {kind}) AS "{name}"' for name, kind in types
                )  # the source's types, where Parquet changed them
                copied[f"{schema}.{table}"] = scalar(
                    conn,
                    f'CREATE TABLE {schema}."{table}" AS SELECT {columns} FROM read_parquet($path)',
                    {"path": path},
                )
            for schema, _, sql in manifest["views"]:
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
        conn.close()
    return copied


def already_migrated(source: Path, location: lake.LakeLocation) -> bool:
    """Whether the lake holds a migration of `source` (committed, the file not yet renamed)."""
    sqlite = location.sqlite_file
    if sqlite is not None and not sqlite.exists():
        return False
    with lake.cursor(location) as conn:
        found = scalar(
            conn,
            f"SELECT count(*) FROM {lake.LAKE}.snapshots() WHERE commit_message = $m",
            {"m": f"migrated from {source}"},
        )
    return found > 0


def main() -> int:
    source = unmigrated_file()
    if source is None:
        print(f"Nothing to migrate: {settings.duckdb_path()} does not exist.")
        return 0
    location = lake.LakeLocation.from_settings()
    done = source.with_name(source.name + MIGRATED_SUFFIX)
    if already_migrated(source, location):
        source.rename(done)
        print(f"{source} was migrated before; the old file is now {done}.")
        return 0
    print(f"Copying the tables of {source} into {location.describe()} ...")
    home = settings.lakehouse_home()
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home) as work:
        copied = migrate(source, location, Path(work))
    for table, rows in copied.items():
        print(f"  {table}: {rows:,} rows")
    source.rename(done)
    print(f"Done: {len(copied)} tables in one snapshot; the old file is now {done}.")
    return 0
