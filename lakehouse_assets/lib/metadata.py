"""Metadata the Dagster UI understands: row count, column schema and a small preview."""

import time
from typing import Any

import dagster as dg
import duckdb

PREVIEW_ROWS = 5


def table_metadata(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, dg.MetadataValue]:
    """`dagster/row_count`, `dagster/column_schema` and a markdown preview of `table`."""
    rows = scalar(conn, f"SELECT count(*) FROM {table}")
    columns = conn.execute(f"DESCRIBE {table}").fetchall()
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=name, type=str(col_type)) for name, col_type, *_ in columns]
    )
    preview = conn.execute(f"SELECT * FROM {table} LIMIT {PREVIEW_ROWS}")
    return {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(schema),
        "table": dg.MetadataValue.text(table),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def markdown_table(result: duckdb.DuckDBPyConnection) -> str:
    """Render a DuckDB result as a markdown table (values shortened, pipes escaped)."""
    return markdown_rows([d[0] for d in result.description], result.fetchall())


def _cell(value) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def markdown_rows(header: list[str], rows: list[tuple]) -> str:
    """A markdown table of `rows` under `header` (values shortened, pipes escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def log_progress(context, message: str, rows: int, started: float) -> None:
    """Log `message: N rows in T s (R rows/s)`, timed from `started` (a `time.perf_counter()`)."""
    elapsed = time.perf_counter() - started
    rate = rows / max(elapsed, 1e-9)
    context.log.info(f"{message} {rows:,} rows in {elapsed:.1f} s ({rate:,.0f} rows/s)")


def table_exists(conn: duckdb.DuckDBPyConnection, table: str, views: bool = True) -> bool:
    """Whether `schema.table` exists in the database (`views=False`: as a table, not a view)."""
    schema, name = table.split(".")
    return (
        scalar(
            conn,
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = "
            "current_database() AND table_schema = $s AND table_name = $t AND "
            "($views OR table_type = 'BASE TABLE')",
            {"s": schema, "t": name, "views": views},
        )
        > 0
    )


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: dict | list | None = None) -> Any:
    """The first value of the first row of `sql`: what a count or a lookup reads."""
    row = (conn.execute(sql) if params is None else conn.execute(sql, params)).fetchone()
    if row is None:
        raise LookupError(f"no row from: {sql}")
    return row[0]
