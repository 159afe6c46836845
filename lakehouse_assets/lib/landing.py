"""Landed files: discovery, content hashes, and how each format is read by DuckDB."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

REQUIRED_COLUMNS = ("customer_id", "event_time", "amount")
OPTIONAL_COLUMNS = ("quantity", "transaction_id")
CONTRACT_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
HASH_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class LandedFile:
    """A data file in the landing folder, identified by its content hash."""

    path: Path
    relative_path: str
    size_bytes: int
    sha256: str


def describe_files(folder: Path, paths: list[Path]) -> list[LandedFile]:
    return [
        LandedFile(p, p.relative_to(folder).as_posix(), p.stat().st_size, sha256_of(p))
        for p in paths
    ]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def reader_sql(path: Path) -> str:
    """A DuckDB table function reading `path` (given as parameter `$path`) with every value as text
    and a 1-based `_source_row`."""
    if path.suffix.lower() == ".parquet":
        return (
            "(SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS _source_row "
            "FROM read_parquet($path, file_row_number = true))"
        )
    # CSV has no file_row_number; a single-threaded scan keeps file order for row_number().
    return (
        "(SELECT *, row_number() OVER () AS _source_row "
        "FROM read_csv($path, all_varchar = true, header = true, parallel = false))"
    )


def columns_sql(path: Path) -> str:
    """A DuckDB table function reading `path` (parameter `$path`) with the file's own columns."""
    if path.suffix.lower() == ".parquet":
        return "read_parquet($path)"
    return "read_csv($path, all_varchar = true, header = true)"
