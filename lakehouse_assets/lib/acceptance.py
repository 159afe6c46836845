"""Per-file acceptance: how many rows of each landed file version silver accepted and rejected
(by reason, with an example), and hints that name the likely cause of a misread file."""

import re
from dataclasses import dataclass
from datetime import datetime

import duckdb

from lakehouse_assets.lib.metadata import markdown_rows
from lakehouse_assets.lib.sql import sql
from lakehouse_assets.lib.tables import (
    BRONZE_FILES,
    SILVER_FILE_ACCEPTANCE,
    SILVER_LOADS,
)

WARN_REJECTED_SHARE = 0.10  # a new file with more rejected rows than this gets a warning
REASONS_NAMED = 3
FILES_LISTED = 20

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {SILVER_FILE_ACCEPTANCE} (
    source_file VARCHAR, sha256 VARCHAR, first_load_id BIGINT, rows BIGINT, accepted BIGINT,
    rejected BIGINT, invalid BIGINT,
    rejects STRUCT(reason VARCHAR, rows BIGINT, first_row BIGINT, example VARCHAR)[]
)
"""


@dataclass(frozen=True)
class FileAcceptance:
    """What silver made of one landed file version."""

    source_file: str
    rows: int
    accepted: int
    rejected: int
    invalid: int
    rejects: list[dict]  # reason, rows, first_row, example; most rows first

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0

    def reasons(self) -> str:
        """The top reasons with an example value each."""
        named = [
            f"{r['reason']} {r['rows']:,} (e.g. {r['example']!r} in data row {r['first_row']})"
            for r in self.rejects[:REASONS_NAMED]
        ]
        more = len(self.rejects) - REASONS_NAMED
        return ", ".join(named) + (f" and {more} more reason(s)" if more > 0 else "")


def record(
    conn: duckdb.DuckDBPyConnection, full: bool, load_id: int, since: datetime | None
) -> list[FileAcceptance]:
    """Record the acceptance of every file version the silver load `load_id` processed, from the
    temp views `bronze_rows` and `bronze_files` (bronze as the load read it) and the rejected rows
    (in the caller's transaction; a full load re-counts every file, keeping when each was first
    seen); returns the file versions this load saw first, most rejected first."""
    conn.execute(CREATE_SQL)
    conn.execute(sql("silver/file_stats"), {"since": None if full else since})
    if full:
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE previous_acceptance AS "
            f"SELECT source_file, sha256, first_load_id FROM {SILVER_FILE_ACCEPTANCE}"
        )
        conn.execute(f"DELETE FROM {SILVER_FILE_ACCEPTANCE}")
        first_seen = "coalesce(p.first_load_id, $load)"
        join = "LEFT JOIN previous_acceptance p USING (source_file, sha256)"
    else:
        first_seen, join = "$load", ""
    conn.execute(
        f"INSERT INTO {SILVER_FILE_ACCEPTANCE} SELECT s.source_file, s.sha256, {first_seen}, "
        f"s.rows, s.accepted, s.rejected, s.invalid, s.rejects FROM file_stats s {join}",
        {"load": load_id},
    )
    conn.execute("DROP TABLE file_stats")
    if full:
        conn.execute("DROP TABLE previous_acceptance")
    return first_seen_in(conn, load_id)


def first_seen_in(conn: duckdb.DuckDBPyConnection, load_id: int) -> list[FileAcceptance]:
    """The file versions that silver load `load_id` saw first, most rejected first."""
    return _files(conn, "WHERE first_load_id = $load", {"load": load_id})


def latest_load(conn: duckdb.DuckDBPyConnection) -> tuple[int, list[FileAcceptance]]:
    """The latest silver load and the file versions it saw first."""
    (load,) = conn.execute(f"SELECT coalesce(max(load_id), 0) FROM {SILVER_LOADS}").fetchall()[0]
    return load, first_seen_in(conn, load)


def without_valid_rows(conn: duckdb.DuckDBPyConnection, landed: set[str]) -> list[FileAcceptance]:
    """The files still in the landing folder (`landed`, relative paths) none of whose rows, in
    the version bronze and silver hold, passed validation (a valid row that copies a kept one
    passed: a copy of a good file is no misread file)."""
    found = _files(
        conn, f"SEMI JOIN {BRONZE_FILES} b USING (source_file, sha256) WHERE invalid = rows"
    )
    return [f for f in found if f.source_file in landed]


def _files(conn, where: str, params: dict | None = None) -> list[FileAcceptance]:
    rows = conn.execute(
        f"SELECT source_file, rows, accepted, rejected, invalid, rejects "
        f"FROM {SILVER_FILE_ACCEPTANCE} {where} ORDER BY rejected / rows DESC, source_file",
        params or {},
    ).fetchall()
    return [FileAcceptance(*row) for row in rows]


def mostly_rejected(files: list[FileAcceptance]) -> list[FileAcceptance]:
    return [f for f in files if f.rejected_share > WARN_REJECTED_SHARE]


def markdown(files: list[FileAcceptance]) -> str:
    """The files as a markdown table for the UI (at most `FILES_LISTED` rows)."""
    rows = [
        (f.source_file, f.rows, f.accepted, f.rejected, f"{f.rejected_share:.1%}", f.reasons())
        for f in files[:FILES_LISTED]
    ]
    table = markdown_rows(["file", "rows", "accepted", "rejected", "share", "rejects"], rows)
    more = len(files) - FILES_LISTED
    return table + (f"\n\n…and {more} more file(s)" if more > 0 else "")


def rejected_by_reason(files: list[FileAcceptance]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for f in files:
        for r in f.rejects:
            totals[r["reason"]] = totals.get(r["reason"], 0) + r["rows"]
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


# -- hints: the likely cause of a misread file, from the values that failed

DECIMAL_COMMA = re.compile(r"^\s*[+-]?(\d{1,3}(\.\d{3})+|\d+),\d+\s*$")
DAY_FIRST_DATE = re.compile(r"^\s*\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
EPOCH_NUMBER = re.compile(r"^\s*\d{9,13}(\.\d+)?\s*$")
HEADER_NAMES = {"customer_id", "event_time", "amount", "quantity", "transaction_id"}


def hints(f: FileAcceptance) -> list[str]:
    """What may have gone wrong, judged from the example values of the file's rejects."""
    examples = {r["reason"]: (r["example"] or "") for r in f.rejects}
    found = []
    if DECIMAL_COMMA.match(examples.get("bad_amount", "")):
        found.append(
            "Decimal commas? `amount` must use a dot as decimal separator (12.50, not 12,50), "
            "as European spreadsheet exports often do not"
        )
    if any(";" in value for value in examples.values()):
        found.append("Semicolons? a value holds ';': the file may be separated by semicolons")
    if any(value.strip().lower() in HEADER_NAMES for value in examples.values()):
        found.append(
            "A header row inside the file? a value is a column name: files may have been "
            "concatenated with their header rows"
        )
    event_time = examples.get("bad_event_time", "")
    if DAY_FIRST_DATE.match(event_time):
        found.append("Day-first dates? `event_time` must be ISO-8601, e.g. 2025-01-31 10:00:00")
    elif EPOCH_NUMBER.match(event_time):
        found.append("Epoch numbers? `event_time` must be ISO-8601, e.g. 2025-01-31 10:00:00")
    return found


def header_hint(names: list[str]) -> str:
    """A hint for a file whose header lacks the required columns, or '' when none fits."""
    if len(names) == 1 and ";" in names[0]:
        return " Semicolons? The header was read as one column: is the file ';'-separated?"
    looks_like_data = [n for n in names if re.match(r"^\s*[\d.,:/ +-]+\s*$", n)]
    if looks_like_data:
        return (
            f" A header row? The first line was read as column names, and {looks_like_data[0]!r} "
            "looks like a value: the first line must name the columns."
        )
    return ""
