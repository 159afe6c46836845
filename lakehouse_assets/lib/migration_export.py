"""Write every table of a DuckDB file as Parquet, with a manifest of its tables and views.

Run as a script (`python migration_export.py <file> <folder>`) by `migration.py`, so that it can
use a newer DuckDB than the project's: it imports nothing from the package.
"""

import json
import sys
from pathlib import Path

import duckdb


def exact_column(name: str, kind: str) -> str:
    """A column as Parquet keeps it exactly: 128-bit integers (which DuckDB writes to Parquet as
    DOUBLE) as DECIMAL(38, 0)."""
    quoted = '"' + name.replace('"', '""') + '"'
    if kind in ("HUGEINT", "UHUGEINT"):
        return f"CAST({quoted} AS DECIMAL(38, 0)) AS {quoted}"
    return quoted


def export(source: str, folder: Path) -> None:
    conn = duckdb.connect(source, read_only=True)
    tables = conn.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
    ).fetchall()
    views = conn.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
    ).fetchall()
    exported: list[list] = []
    manifest = {"duckdb": duckdb.__version__, "tables": exported, "views": views}
    for i, (schema, table) in enumerate(tables):
        path = folder / f"{i:03d}.parquet"
        quoted = "'" + str(path).replace("'", "''") + "'"
        columns = conn.execute(f'DESCRIBE {schema}."{table}"').fetchall()
        select = ", ".join(exact_column(name, str(kind)) for name, kind, *_ in columns)
        conn.execute(f'COPY (SELECT {select} FROM {schema}."{table}") TO {quoted} (FORMAT parquet)')
        types = [[name, str(kind)] for name, kind, *_ in columns]
        exported.append([schema, table, str(path), types])
    (folder / "manifest.json").write_text(json.dumps(manifest))


if __name__ == "__main__":
    export(sys.argv[1], Path(sys.argv[2]))
