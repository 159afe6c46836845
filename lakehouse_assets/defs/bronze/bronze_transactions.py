"""Bronze layer: every landed row as text, with lineage, loaded once per file version."""

import time
from datetime import UTC, datetime

import dagster as dg
import duckdb

from lakehouse_assets.lib.acceptance import header_hint
from lakehouse_assets.lib.landing import (
    CONTRACT_COLUMNS,
    REQUIRED_COLUMNS,
    LandedFile,
    columns_sql,
    describe_files,
    reader_sql,
)
from lakehouse_assets.lib.metadata import log_progress, markdown_rows, table_metadata
from lakehouse_assets.lib.resources import LakehouseDuckDB, LandingZone, query_one, transaction
from lakehouse_assets.lib.tables import BRONZE_FILES, BRONZE_TRANSACTIONS

LINEAGE_COLUMNS = ("_source_file", "_source_row", "_ingested_at")


@dg.asset(deps=["raw_transactions"], group_name="bronze", kinds={"duckdb"}, pool="duckdb")
def bronze_transactions(
    context: dg.AssetExecutionContext, duckdb: LakehouseDuckDB, landing: LandingZone
) -> dg.MaterializeResult:
    """`bronze.transactions`: every landed row as-is (text), plus `_source_file`, `_source_row`
    and `_ingested_at`.

    A file is identified by its path and its content by SHA-256: a file loaded before with the
    same content adds nothing; a changed file replaces its own rows. (A copy under another name
    is loaded, and silver rejects its rows as duplicates.) All files of a run are validated and
    written in one transaction, so a bad file leaves the table as it was.
    """
    folder = landing.folder()
    files = describe_files(folder, landing.data_files())
    ingested_at = datetime.now(UTC).replace(tzinfo=None)
    with duckdb.get_connection() as conn, transaction(conn):
        _create_tables(conn)
        loaded = dict(conn.execute(f"SELECT source_file, sha256 FROM {BRONZE_FILES}").fetchall())
        todo = []
        for f in files:
            if loaded.get(f.relative_path) == f.sha256:
                context.log.info(f"{f.relative_path}: unchanged since it was loaded, skipped")
            else:
                todo.append(f)
        columns = {f.relative_path: _checked_columns(conn, f) for f in todo}
        loaded_rows = _load(context, conn, todo, columns, ingested_at)
        metadata = table_metadata(conn, BRONZE_TRANSACTIONS)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "files_loaded": len(todo),
            "files_skipped": len(files) - len(todo),
            "rows_loaded": sum(loaded_rows.values()),
            "loaded_files": dg.MetadataValue.md(
                markdown_rows(
                    ["file", "rows", "sha256"],
                    [
                        (f.relative_path, f"{loaded_rows[f.relative_path]:,}", f"{f.sha256[:16]}…")
                        for f in todo
                    ],
                )
            ),  # fmt: skip
        }
    )


def _create_tables(conn: duckdb.DuckDBPyConnection) -> None:
    contract = ", ".join(f"{c} VARCHAR" for c in CONTRACT_COLUMNS)
    conn.execute("CREATE SCHEMA IF NOT EXISTS bronze")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {BRONZE_TRANSACTIONS} (_source_file VARCHAR, _source_row BIGINT, "
        f"_ingested_at TIMESTAMP, {contract})"
    )
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {BRONZE_FILES} (source_file VARCHAR, "
        "sha256 VARCHAR, size_bytes BIGINT, row_count BIGINT, ingested_at TIMESTAMP)"
    )


def _fail(f: LandedFile, problem: str, hint: str = "") -> dg.Failure:
    return dg.Failure(
        f"Landing file {f.path} {problem}. Nothing was written; fix or remove the file and rerun."
        + hint,
        metadata={"file": dg.MetadataValue.path(str(f.path))},
        allow_retries=False,
    )


def _checked_columns(conn: duckdb.DuckDBPyConnection, f: LandedFile) -> dict[str, str]:
    """Map the file's column names to bronze names (trimmed, lower case); fail on a bad file."""
    if f.size_bytes == 0:
        raise _fail(f, "is empty (0 bytes)")
    try:
        described = conn.execute(
            f"DESCRIBE SELECT * FROM {columns_sql(f.path)}", {"path": str(f.path)}
        ).fetchall()
    except duckdb.Error as error:
        kind = "Parquet" if f.path.suffix.lower() == ".parquet" else "CSV"
        raise _fail(f, f"cannot be read as {kind}: {error}") from error
    names = {row[0]: row[0].strip().lower() for row in described}
    if len(set(names.values())) != len(names):
        raise _fail(f, f"has columns that differ only in case or spaces: {sorted(names)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in names.values()]
    if missing:
        raise _fail(
            f,
            f"lacks required column(s) {', '.join(missing)} "
            f"(found: {', '.join(names) or 'none'}; required: {', '.join(REQUIRED_COLUMNS)})",
            header_hint(list(names)),
        )
    clashing = [n for n in names.values() if n in LINEAGE_COLUMNS]
    if clashing:
        raise _fail(f, f"has column(s) reserved for lineage: {', '.join(clashing)}")
    return names


def _load(context, conn, todo: list[LandedFile], columns, ingested_at: datetime) -> dict:
    """Write every file in `todo` (inside the caller's transaction); returns its rows by file."""
    loaded = {}
    for f in todo:
        started = time.perf_counter()
        rows, replaced = _load_file(conn, f, columns[f.relative_path], ingested_at)
        loaded[f.relative_path] = rows
        note = f" (replacing {replaced:,} rows of its previous version)" if replaced else ""
        log_progress(
            context, f"{f.relative_path}: loaded into {BRONZE_TRANSACTIONS}{note}", rows, started
        )
    return loaded


def _load_file(
    conn, f: LandedFile, names: dict[str, str], ingested_at: datetime
) -> tuple[int, int]:
    """Replace the rows of `f`'s path with its current content; returns (inserted, replaced)."""
    existing = {r[0] for r in conn.execute(f"DESCRIBE {BRONZE_TRANSACTIONS}").fetchall()}
    for extra in sorted(set(names.values()) - existing):
        conn.execute(f"ALTER TABLE {BRONZE_TRANSACTIONS} ADD COLUMN {_quote(extra)} VARCHAR")
    replaced = conn.execute(
        f"DELETE FROM {BRONZE_TRANSACTIONS} WHERE _source_file = $file", {"file": f.relative_path}
    ).fetchone()[0]
    select = ", ".join(
        f"CAST({_quote(src)} AS VARCHAR) AS {_quote(dst)}" for src, dst in names.items()
    )
    try:
        inserted = conn.execute(
            f"INSERT INTO {BRONZE_TRANSACTIONS} BY NAME SELECT $file AS _source_file, _source_row, "
            f"$ingested_at AS _ingested_at, {select} FROM {reader_sql(f.path)}",
            {"file": f.relative_path, "ingested_at": ingested_at, "path": str(f.path)},
        ).fetchone()[0]
    except duckdb.Error as error:  # e.g. a CSV malformed past the rows DuckDB sniffed
        raise _fail(f, f"could not be read: {error}") from error
    if inserted == 0:
        raise _fail(f, "holds no rows (only a header, or an empty table)")
    # One row per path (DuckLake has no primary keys): the previous version's row goes.
    conn.execute(f"DELETE FROM {BRONZE_FILES} WHERE source_file = $file", {"file": f.relative_path})
    conn.execute(
        f"INSERT INTO {BRONZE_FILES} VALUES ($file, $sha, $size, $rows, $at)",
        {
            "file": f.relative_path,
            "sha": f.sha256,
            "size": f.size_bytes,
            "rows": inserted,
            "at": ingested_at,
        },
    )
    return inserted, replaced


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Checks
BRONZE_NOT_EMPTY = "bronze_not_empty"


@dg.asset_check(asset=bronze_transactions, name=BRONZE_NOT_EMPTY, blocking=True, pool="duckdb")
def bronze_not_empty(duckdb: LakehouseDuckDB) -> dg.AssetCheckResult:
    """bronze.transactions holds at least one row."""
    (rows,) = query_one(duckdb, f"SELECT count(*) FROM {BRONZE_TRANSACTIONS}")
    return dg.AssetCheckResult(passed=rows > 0, metadata={"rows": rows})
